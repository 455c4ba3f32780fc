//! HTTP/1.1 framing for the API, pure: request heads parsed from bytes within limits, responses rendered to bytes.
//!
//! Only what the API needs: `Content-Length` bodies (a `Transfer-Encoding` request is refused
//! with 501, so no request smuggling through framing disagreements), keep-alive, CRLF line ends,
//! no obsolete line folding. Every failure is an [`HttpError`] carrying the status to answer
//! with. Never does I/O; [`super::server`] reads and writes the bytes.

use std::fmt::Write as _;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path, without the query.
    pub path: String,
    /// Percent-decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.0 (close after the answer unless keep-alive is asked).
    pub http10: bool,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the answer.
    pub fn keep_alive(&self) -> bool {
        let conn = self
            .header("connection")
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if self.http10 {
            conn.split(',').any(|t| t.trim() == "keep-alive")
        } else {
            !conn.split(',').any(|t| t.trim() == "close")
        }
    }
}

/// A request that cannot be served, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

/// What [`parse_head`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    /// A complete head of `len` bytes; the body (`content_length` bytes) follows it.
    Complete {
        request: Request,
        len: usize,
        content_length: usize,
    },
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Head, HttpError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::new(431, "request head too large"));
        }
        return Ok(Head::Incomplete);
    };
    if end > MAX_HEAD {
        return Err(HttpError::new(431, "request head too large"));
    }
    let head = std::str::from_utf8(buf.get(..end).unwrap_or_default())
        .map_err(|_| HttpError::new(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::new(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::new(400, "malformed method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(HttpError::new(505, "only HTTP/1.0 and HTTP/1.1 are served")),
    };
    if !target.starts_with('/') {
        return Err(HttpError::new(
            400,
            "request target must be an absolute path",
        ));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| HttpError::new(400, "bad percent-encoding in the path"))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) else {
            return Err(HttpError::new(400, "bad percent-encoding in the query"));
        };
        query.push((k, v));
    }
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::new(431, "too many header lines"));
        }
        if l.starts_with([' ', '\t']) {
            return Err(HttpError::new(400, "obsolete header line folding"));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(HttpError::new(400, "malformed header line"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HttpError::new(400, "malformed header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HttpError::new(400, "control character in a header value"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        http10,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(HttpError::new(
            501,
            "Transfer-Encoding is not supported: send Content-Length",
        ));
    }
    let mut lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str());
    let content_length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<usize>().unwrap_or(usize::MAX)
        }
        _ => return Err(HttpError::new(400, "bad or repeated Content-Length")),
    };
    Ok(Head::Complete {
        request,
        len: end + 4,
        content_length,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` (and `+` as a space in queries); `None` on a bad escape or non-UTF-8 result.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = hex_val(*b.get(i + 1)?)?;
                let lo = hex_val(*b.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a path segment or query value (unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Extra headers (Content-Type, Content-Length, Connection and the security headers are
    /// added by [`Response::to_bytes`]).
    pub headers: Vec<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    /// A plain answer of `content_type`.
    pub fn bytes(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The full answer on the wire. `head_only` leaves the body out (HEAD).
    pub fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut h = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let _ = write!(h, "Content-Type: {}\r\n", self.content_type);
        let _ = write!(h, "Content-Length: {}\r\n", self.body.len());
        h.push_str("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
        for (n, v) in &self.headers {
            let _ = write!(h, "{n}: {v}\r\n");
        }
        h.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut out = h.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The head that opens a server-sent event stream.
pub fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n".to_vec()
}

/// The reason phrase of a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(b: &[u8]) -> (Request, usize, usize) {
        match parse_head(b).unwrap() {
            Head::Complete {
                request,
                len,
                content_length,
            } => (request, len, content_length),
            Head::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn parses_a_request() {
        let raw =
            b"PUT /v1/services/iptv%20x?dry_run=true&a=b+c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let (r, len, cl) = complete(raw);
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/v1/services/iptv x");
        assert_eq!(r.query("dry_run"), Some("true"));
        assert_eq!(r.query("a"), Some("b c"));
        assert_eq!(r.header("host"), Some("x"));
        assert_eq!(cl, 5);
        assert_eq!(&raw[len..], b"hello");
        assert!(r.keep_alive());
    }

    #[test]
    fn every_prefix_is_incomplete_or_an_error() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(parse_head(&raw[..n]), Ok(Head::Incomplete), "prefix {n}");
        }
    }

    #[test]
    fn refuses_bad_framing() {
        for (raw, status) in [
            (
                &b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                501,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET / HTTP/2\r\n\r\n", 505),
            (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n folded\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        ] {
            assert_eq!(
                parse_head(raw).map_err(|e| e.status),
                Err(status),
                "{raw:?}"
            );
        }
        let big = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(parse_head(&big).map_err(|e| e.status), Err(431));
    }

    #[test]
    fn renders_a_response() {
        let r = Response::bytes(404, "text/plain", "no").with_header("ETag", "\"v1\"");
        let s = String::from_utf8(r.to_bytes(false, false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("ETag: \"v1\"\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\nno"));
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
