//! The smallest HTTP/1.1 that discovery needs: a GET client for device descriptions and the
//! request reader of the gateway's own description server.
//!
//! Owns: framing (Content-Length, chunked, read-to-close), the size limit, the timeout.
//! The framing decisions are pure ([`parse_response`], [`parse_request_head`]) and tested on
//! bytes; [`get`] is the thin tokio wrapper. Must never follow redirects, resolve names or
//! connect anywhere but the address it is given (the inventory checked that address).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::counters::Refusal;
use super::ssdp::HttpUrl;

/// Largest response head (status line and headers) read.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// Why a fetch failed.
#[derive(Debug)]
pub enum HttpError {
    /// connecting or talking to the device failed: {0}
    Io(std::io::Error),
    /// no complete response within the timeout
    Timeout,
    /// status {0} (only 200 is accepted)
    Status(u16),
    /// malformed response: {0}
    Malformed(&'static str),
    /// body over the size limit ({0} bytes or more)
    TooLarge(usize),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "connecting or talking to the device failed: {e}"),
            HttpError::Timeout => f.write_str("no complete response within the timeout"),
            HttpError::Status(s) => write!(f, "status {s} (only 200 is accepted)"),
            HttpError::Malformed(w) => write!(f, "malformed response: {w}"),
            HttpError::TooLarge(n) => write!(f, "body over the size limit ({n} bytes or more)"),
        }
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// The counter this failure increments.
    pub fn refusal(&self) -> Refusal {
        match self {
            HttpError::Timeout => Refusal::DescriptionTimeout,
            HttpError::TooLarge(_) => Refusal::DescriptionOversize,
            HttpError::Io(_) | HttpError::Status(_) | HttpError::Malformed(_) => {
                Refusal::DescriptionHttp
            }
        }
    }
}

/// Whether a response is complete yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Read more.
    Need,
    /// The body.
    Done(Vec<u8>),
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Decides, from the bytes received so far (`eof` once the peer closed), whether the
/// response is complete, and returns its body. Pure.
pub fn parse_response(buf: &[u8], eof: bool, limit: usize) -> Result<Progress, HttpError> {
    let Some((head_len, body_at)) = find_head_end(&buf[..buf.len().min(MAX_HEAD_LEN + 4)]) else {
        if buf.len() > MAX_HEAD_LEN {
            return Err(HttpError::Malformed("head over 16 KiB"));
        }
        return if eof {
            Err(HttpError::Malformed(
                "connection closed before the end of the head",
            ))
        } else {
            Ok(Progress::Need)
        };
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_ascii_whitespace();
    match parts.next() {
        Some(v) if v.eq_ignore_ascii_case("HTTP/1.1") || v.eq_ignore_ascii_case("HTTP/1.0") => {}
        _ => return Err(HttpError::Malformed("no HTTP/1.x status line")),
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed("bad status code"))?;
    if status != 200 {
        return Err(HttpError::Status(status));
    }
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let (n, v) = (n.trim(), v.trim());
        if n.eq_ignore_ascii_case("Content-Length") {
            let len: usize = v
                .parse()
                .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(len);
        } else if n.eq_ignore_ascii_case("Transfer-Encoding") {
            chunked = v
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let body = &buf[body_at..];
    if chunked {
        return match decode_chunked(body, limit)? {
            Some(b) => Ok(Progress::Done(b)),
            None if eof => Err(HttpError::Malformed("connection closed inside a chunk")),
            None => Ok(Progress::Need),
        };
    }
    if let Some(len) = content_length {
        if len > limit {
            return Err(HttpError::TooLarge(len));
        }
        return if body.len() >= len {
            Ok(Progress::Done(body[..len].to_vec()))
        } else if eof {
            Err(HttpError::Malformed(
                "connection closed before Content-Length bytes",
            ))
        } else {
            Ok(Progress::Need)
        };
    }
    if body.len() > limit {
        return Err(HttpError::TooLarge(body.len()));
    }
    if eof {
        Ok(Progress::Done(body.to_vec()))
    } else {
        Ok(Progress::Need)
    }
}

/// A chunked body: Some(body) once the last chunk is in, None while incomplete.
fn decode_chunked(mut rest: &[u8], limit: usize) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.iter().position(|b| *b == b'\n') else {
            return if rest.len() > 1024 {
                Err(HttpError::Malformed("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&rest[..eol])
            .map_err(|_| HttpError::Malformed("chunk size is not text"))?;
        let size_text = line
            .trim_end_matches('\r')
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        rest = &rest[eol + 1..];
        if size == 0 {
            // Trailers are not needed: the body is complete.
            return Ok(Some(out));
        }
        if size > limit || out.len() + size > limit {
            return Err(HttpError::TooLarge(out.len().saturating_add(size)));
        }
        if rest.len() < size {
            return Ok(None);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        // CRLF after the chunk data.
        if rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        } else if rest.starts_with(b"\n") {
            rest = &rest[1..];
        } else if rest.len() < 2 {
            return Ok(None);
        } else {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
    }
}

/// The request sent for a description.
pub fn format_get(url: &HttpUrl, user_agent: &str) -> String {
    let host = match url.addr {
        std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: text/xml, application/xml\r\nConnection: close\r\n\r\n",
        url.path
    )
}

/// GETs `url` (connecting only to `url.addr`) and returns a body of at most `limit` bytes;
/// the whole exchange, connect included, must finish within `timeout`.
pub async fn get(
    url: &HttpUrl,
    limit: usize,
    timeout: Duration,
    user_agent: &str,
) -> Result<Vec<u8>, HttpError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(url.addr)
            .await
            .map_err(HttpError::Io)?;
        stream
            .write_all(format_get(url, user_agent).as_bytes())
            .await
            .map_err(HttpError::Io)?;
        let mut buf = Vec::with_capacity(8 * 1024);
        let mut chunk = [0u8; 8 * 1024];
        loop {
            let n = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
            buf.extend_from_slice(&chunk[..n]);
            match parse_response(&buf, n == 0, limit)? {
                Progress::Done(body) => return Ok(body),
                Progress::Need if n == 0 => {
                    return Err(HttpError::Malformed("connection closed early"))
                }
                Progress::Need => {}
            }
            // Chunk-size lines and trailers add a little; anything far past the limit is
            // refused without reading on.
            if buf.len() > limit + MAX_HEAD_LEN + 64 * 1024 {
                return Err(HttpError::TooLarge(buf.len()));
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(HttpError::Timeout))
}

/// A request head: Some((method, path)) once complete, None while incomplete.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(String, String)>, HttpError> {
    let Some((head_len, _)) = find_head_end(&buf[..buf.len().min(MAX_HEAD_LEN + 4)]) else {
        return if buf.len() > MAX_HEAD_LEN {
            Err(HttpError::Malformed("request head over 16 KiB"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| HttpError::Malformed("request head is not UTF-8"))?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_ascii_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") => {
            Ok(Some((m.to_string(), p.to_string())))
        }
        _ => Err(HttpError::Malformed("bad request line")),
    }
}

/// A complete response with `Connection: close`.
pub fn format_response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(r: Result<Progress, HttpError>) -> Vec<u8> {
        match r {
            Ok(Progress::Done(b)) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length() {
        let r = b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\n\r\nabcdef";
        assert_eq!(done(parse_response(r, false, 100)), b"abc");
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                false,
                100
            )
            .unwrap(),
            Progress::Need
        );
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, 100),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
                false,
                100
            ),
            Err(HttpError::TooLarge(500))
        ));
    }

    #[test]
    fn chunked_and_close() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(done(parse_response(r, false, 100)), b"abcde");
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab";
        assert_eq!(parse_response(partial, false, 100).unwrap(), Progress::Need);
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
        assert!(matches!(
            parse_response(big, false, 100),
            Err(HttpError::TooLarge(_))
        ));
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n";
        assert!(matches!(
            parse_response(huge, false, 100),
            Err(HttpError::Malformed(_))
        ));
        let close = b"HTTP/1.0 200 OK\r\n\r\nxyz";
        assert_eq!(parse_response(close, false, 100).unwrap(), Progress::Need);
        assert_eq!(done(parse_response(close, true, 100)), b"xyz");
        assert!(matches!(
            parse_response(close, true, 2),
            Err(HttpError::TooLarge(3))
        ));
    }

    #[test]
    fn status_and_head() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", true, 10),
            Err(HttpError::Status(404))
        ));
        assert!(matches!(
            parse_response(b"SSH-2.0\r\n\r\n", true, 10),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(
            parse_response(b"HTTP/1.1 200", false, 10).unwrap(),
            Progress::Need
        );
        let long = vec![b'a'; MAX_HEAD_LEN + 10];
        assert!(matches!(
            parse_response(&long, false, 10),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(
            parse_request_head(b"GET /d.xml HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            Some(("GET".into(), "/d.xml".into()))
        );
        assert_eq!(
            parse_request_head(b"GET /d.xml HTTP/1.1\r\n").unwrap(),
            None
        );
    }
}
