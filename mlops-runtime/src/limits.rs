//! What a listener allows its connections, for the HTTP and gRPC front ends alike.

/// What one listener allows its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a new connection may stay silent before it is closed (10 s): a socket
    /// that never sends a byte must not hold a descriptor.
    pub first_byte_timeout: std::time::Duration,
    /// The most connections open at once (4,096); more are closed as they are accepted,
    /// so the descriptors left keep health checks and the listener itself working.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            first_byte_timeout: std::time::Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// HTTP/2's connection preface: what a gRPC client (or an HTTP/2 one) sends first.
#[cfg(any(feature = "http", feature = "grpc"))]
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a new connection starts a request within `timeout`: one byte that cannot
/// begin HTTP/2's preface (HTTP/1, whose header reads have their own deadline), or the
/// whole preface. A client that sends part of it and stops is closed like a silent one:
/// the server's version sniffing would wait for the rest with no deadline.
#[cfg(any(feature = "http", feature = "grpc"))]
pub(crate) async fn starts_a_request(
    stream: &tokio::net::TcpStream,
    timeout: std::time::Duration,
) -> bool {
    let wait = async {
        let mut head = [0u8; 24];
        loop {
            let n = match stream.peek(&mut head).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if head[..n] != H2_PREFACE[..n] || n == H2_PREFACE.len() {
                return true;
            }
            // Part of the preface: its bytes stay unread, so wait a little for the rest.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}
