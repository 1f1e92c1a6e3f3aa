//! A minimal HTTP/1.1 client for load generation: keep-alive connections from a pool,
//! each request written as bytes serialised once, each response read with one parse of its
//! head and its body consumed by length (or chunks).
//!
//! A general client (hyper's pooled one) spends more CPU per request than the small
//! servers it would measure here: pool keys hashed per request, a channel and a task
//! wake-up between the caller and the connection, a body type per request. A load
//! generator sends the same few requests again and again, so it needs none of that.

use std::sync::Mutex;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::TargetError;

/// A response: its status, the binary-extension header length if any, and its body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) header_length: Option<usize>,
    pub(crate) body: Bytes,
}

struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

/// Keep-alive connections to one `host:port`.
pub(crate) struct Pool {
    address: String,
    idle: Mutex<Vec<Connection>>,
}

const MAX_HEADERS: usize = 32;
/// The largest response head read.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// The largest response body read (the gRPC front end's message limit).
const MAX_BODY_BYTES: usize = 64 << 20;

impl Pool {
    pub(crate) fn new(address: String) -> Pool {
        Pool {
            address,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connect(&self) -> Result<Connection, TargetError> {
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| TargetError::new("connect", format!("{}: {e}", self.address)))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` (a whole serialised HTTP/1.1 request) and reads the response; the
    /// body is kept only when `keep_body`. A pooled connection the server has closed
    /// meanwhile is replaced once, transparently.
    pub(crate) async fn send(
        &self,
        request: &[u8],
        keep_body: bool,
    ) -> Result<Response, TargetError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let result = exchange(&mut conn, request, keep_body).await;
        let (response, keep_alive) = match result {
            Ok(r) => r,
            // The server closed an idle connection before our request reached it.
            Err(Exchange::Closed) if reused => {
                conn = self.connect().await?;
                match exchange(&mut conn, request, keep_body).await {
                    Ok(r) => r,
                    Err(e) => return Err(e.into_error()),
                }
            }
            Err(e) => return Err(e.into_error()),
        };
        if keep_alive {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        Ok(response)
    }
}

enum Exchange {
    /// The connection was closed before any of the response arrived.
    Closed,
    Failed(TargetError),
}

impl Exchange {
    fn into_error(self) -> TargetError {
        match self {
            Exchange::Closed => {
                TargetError::new("connection_closed", "the server closed the connection")
            }
            Exchange::Failed(e) => e,
        }
    }
}

fn lost(e: impl std::fmt::Display) -> Exchange {
    Exchange::Failed(TargetError::new("connection_lost", e.to_string()))
}

fn malformed(e: impl std::fmt::Display) -> Exchange {
    Exchange::Failed(TargetError::new("malformed_response", e.to_string()))
}

/// One request and its response on `conn`; returns the response and whether the
/// connection can be used again.
async fn exchange(
    conn: &mut Connection,
    request: &[u8],
    keep_body: bool,
) -> Result<(Response, bool), Exchange> {
    if let Err(e) = conn.stream.write_all(request).await {
        return Err(match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                Exchange::Closed
            }
            _ => lost(e),
        });
    }
    // A pooled connection holds no bytes of an earlier response (see the end).
    conn.buf.clear();
    // The head.
    let (status, head_len, content_length, chunked, close, header_length) = loop {
        if conn.buf.len() > MAX_HEAD_BYTES {
            return Err(malformed(format!(
                "a response head over {MAX_HEAD_BYTES} bytes"
            )));
        }
        if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
            return Err(if conn.buf.is_empty() {
                Exchange::Closed
            } else {
                lost("connection closed mid-response")
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&conn.buf).map_err(malformed)? {
            httparse::Status::Partial => continue,
            httparse::Status::Complete(head_len) => {
                let mut content_length = None;
                let (mut chunked, mut close) = (false, parsed.version == Some(0));
                let mut header_length = None;
                for h in parsed.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        content_length = Some(value.parse::<usize>().map_err(malformed)?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.eq_ignore_ascii_case("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = value.eq_ignore_ascii_case("close");
                    } else if h
                        .name
                        .eq_ignore_ascii_case(mlops_runtime::http::HEADER_LENGTH)
                    {
                        header_length = value.parse::<usize>().ok();
                    }
                }
                break (
                    parsed.code.unwrap_or(0),
                    head_len,
                    content_length,
                    chunked,
                    close,
                    header_length,
                );
            }
        }
    };
    conn.buf.advance(head_len);
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    if content_length.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(malformed(format!(
            "a response body over {MAX_BODY_BYTES} bytes"
        )));
    }
    let body = if bodiless {
        Bytes::new()
    } else if chunked {
        read_chunked(conn).await?
    } else if let Some(len) = content_length {
        while conn.buf.len() < len {
            if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
                return Err(lost("connection closed mid-body"));
            }
        }
        conn.buf.split_to(len).freeze()
    } else {
        // No length: the body runs to the end of the connection.
        loop {
            if conn.buf.len() > MAX_BODY_BYTES {
                return Err(malformed(format!(
                    "a response body over {MAX_BODY_BYTES} bytes"
                )));
            }
            if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
                break;
            }
        }
        return Ok((
            Response {
                status,
                header_length,
                body: conn.buf.split().freeze(),
            },
            false,
        ));
    };
    let body = if keep_body || !(200..300).contains(&status) {
        body
    } else {
        Bytes::new()
    };
    // Bytes beyond this response mean the connection is out of step: not reused.
    let in_step = conn.buf.is_empty();
    Ok((
        Response {
            status,
            header_length,
            body,
        },
        !close && in_step,
    ))
}

async fn read_chunked(conn: &mut Connection) -> Result<Bytes, Exchange> {
    let mut body = BytesMut::new();
    loop {
        // A size line.
        let line_end = loop {
            if let Some(i) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if conn.buf.len() > MAX_HEAD_BYTES {
                return Err(malformed("a chunk size line too long"));
            }
            if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
                return Err(lost("connection closed mid-chunk"));
            }
        };
        let line = std::str::from_utf8(&conn.buf[..line_end]).map_err(malformed)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(malformed)?;
        if size > MAX_BODY_BYTES || body.len() + size > MAX_BODY_BYTES {
            return Err(malformed(format!(
                "a response body over {MAX_BODY_BYTES} bytes"
            )));
        }
        conn.buf.advance(line_end + 2);
        if size == 0 {
            // Trailers, if any, then the blank line that ends the body.
            loop {
                let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") else {
                    if conn.buf.len() > MAX_HEAD_BYTES {
                        return Err(malformed("trailers too long"));
                    }
                    if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
                        return Err(lost("connection closed in the trailers"));
                    }
                    continue;
                };
                conn.buf.advance(end + 2);
                if end == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        // The chunk and its CRLF.
        while conn.buf.len() < size + 2 {
            if conn.stream.read_buf(&mut conn.buf).await.map_err(lost)? == 0 {
                return Err(lost("connection closed mid-chunk"));
            }
        }
        if &conn.buf[size..size + 2] != b"\r\n" {
            return Err(malformed("a chunk not followed by CRLF"));
        }
        body.extend_from_slice(&conn.buf[..size]);
        conn.buf.advance(size + 2);
    }
}
