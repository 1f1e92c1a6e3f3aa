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
