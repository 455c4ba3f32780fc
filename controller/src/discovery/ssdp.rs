//! SSDP messages (UPnP Device Architecture 1.1, section 1): a tolerant parser and a formatter.
//!
//! Owns: turning one UDP payload into a [`Message`] (M-SEARCH, NOTIFY or a search response)
//! and back. Pure: no sockets, no clock. Must never panic on any input; everything it refuses
//! comes back as a [`ParseError`] whose [`ParseError::refusal`] names the counter to bump.
//!
//! Tolerance, from the devices we run against: header names in any case (`Host`, `HOST`,
//! `NT:` with no space), LF-only line endings, missing MX (defaults to 1), missing
//! CACHE-CONTROL (defaults to [`DEFAULT_MAX_AGE`]), extra headers (UPnP 1.1's `BOOTID.UPNP.ORG`,
//! `01-NLS`, `OPT`), `max-age = 30` with blanks and other cache directives around it.
//! Refused: anything over [`MAX_SSDP_LEN`] bytes, a start line that is none of the three,
//! a NOTIFY or response without USN/NT/ST, a USN that does not start with `uuid:`.

use std::fmt::Write as _;

use super::counters::Refusal;

/// Largest SSDP datagram accepted (real ones are under 600 bytes).
pub const MAX_SSDP_LEN: usize = 8 * 1024;
/// The SSDP IPv4 multicast group.
pub const SSDP_GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 255, 250);
/// The SSDP port.
pub const SSDP_PORT: u16 = 1900;
/// max-age assumed when an alive or a response carries none (the UPnP recommended minimum).
pub const DEFAULT_MAX_AGE: u32 = 1800;
/// Cap on any max-age (one day): a device announcing more is still checked daily.
pub const MAX_MAX_AGE: u32 = 86_400;
/// At most this many header lines are read.
const MAX_HEADERS: usize = 64;

/// One parsed SSDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `M-SEARCH * HTTP/1.1`
    Search(Search),
    /// `NOTIFY * HTTP/1.1`
    Notify(Notify),
    /// `HTTP/1.1 200 OK`: an answer to an M-SEARCH.
    Response(Response),
}

/// An M-SEARCH request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Search target (`ssdp:all`, `upnp:rootdevice`, `uuid:...`, `urn:...`).
    pub st: String,
    /// Seconds a device may wait before answering (absent: 1; unicast searches have none).
    pub mx: u32,
    /// `MAN` header (must be `"ssdp:discover"`, quotes included, for the request to count).
    pub man: String,
}

/// Notification sub-type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nts {
    /// `ssdp:alive`
    Alive,
    /// `ssdp:byebye`
    ByeBye,
    /// `ssdp:update` (UPnP 1.1: boot id changes)
    Update,
}

impl Nts {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Nts::Alive => "ssdp:alive",
            Nts::ByeBye => "ssdp:byebye",
            Nts::Update => "ssdp:update",
        }
    }
}

/// A unique service name: `uuid:UDN` or `uuid:UDN::TYPE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usn {
    /// `uuid:...` (kept with its prefix, as in descriptions' `<UDN>`).
    pub udn: String,
    /// What follows `::` (`upnp:rootdevice`, `urn:...`), if anything.
    pub kind: Option<String>,
}

impl Usn {
    /// Splits a USN value; None unless it starts with `uuid:` (any case) and has a non-empty id.
    pub fn parse(s: &str) -> Option<Usn> {
        let s = s.trim();
        let head = s.get(..5)?;
        if !head.eq_ignore_ascii_case("uuid:") {
            return None;
        }
        let (udn, kind) = match s.find("::") {
            Some(i) => (&s[..i], Some(s[i + 2..].to_string())),
            None => (s, None),
        };
        if udn.len() <= 5 || udn.chars().any(char::is_whitespace) {
            return None;
        }
        Some(Usn {
            udn: format!("uuid:{}", &udn[5..]),
            kind: kind.filter(|k| !k.is_empty()),
        })
    }
}

impl std::fmt::Display for Usn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Some(k) => write!(f, "{}::{k}", self.udn),
            None => f.write_str(&self.udn),
        }
    }
}

/// Fields shared by an alive NOTIFY and a search response: what the inventory needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// `NT` (NOTIFY) or `ST` (response).
    pub target: String,
    /// `USN`.
    pub usn: Usn,
    /// `LOCATION` (absent only in byebye).
    pub location: Option<String>,
    /// From `CACHE-CONTROL: max-age=N`, capped at [`MAX_MAX_AGE`]; None if absent.
    pub max_age: Option<u32>,
    /// `SERVER`.
    pub server: Option<String>,
    /// `BOOTID.UPNP.ORG` (UPnP 1.1).
    pub boot_id: Option<u32>,
    /// `CONFIGID.UPNP.ORG` (UPnP 1.1).
    pub config_id: Option<u32>,
}

/// A NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// alive, byebye or update.
    pub nts: Nts,
    /// NT, USN, LOCATION, ...
    pub advert: Advert,
}

/// A search response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// ST, USN, LOCATION, ...
    pub advert: Advert,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// datagram of {0} bytes is over the 8 KiB limit
    TooLong(usize),
    /// not text (no header block, or not UTF-8)
    NotText,
    /// start line {0:?} is not M-SEARCH, NOTIFY or HTTP/1.x 200
    StartLine(String),
    /// missing or empty header {0}
    Missing(&'static str),
    /// header {0} has a bad value {1:?}
    BadValue(&'static str, String),
    /// more than 64 header lines
    TooManyHeaders,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooLong(n) => write!(f, "datagram of {n} bytes is over the 8 KiB limit"),
            ParseError::NotText => f.write_str("not text (no header block, or not UTF-8)"),
            ParseError::StartLine(l) => {
                write!(
                    f,
                    "start line {l:?} is not M-SEARCH, NOTIFY or HTTP/1.x 200"
                )
            }
            ParseError::Missing(h) => write!(f, "missing or empty header {h}"),
            ParseError::BadValue(h, v) => write!(f, "header {h} has a bad value {v:?}"),
            ParseError::TooManyHeaders => f.write_str("more than 64 header lines"),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The counter this refusal increments.
    pub fn refusal(&self) -> Refusal {
        match self {
            ParseError::TooLong(_) => Refusal::SsdpOversize,
            _ => Refusal::SsdpMalformed,
        }
    }
}

/// Header lines of one message, names as received.
struct Headers<'a> {
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> Headers<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.lines
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn required(&self, name: &'static str) -> Result<&'a str, ParseError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ParseError::Missing(name)),
        }
    }

    fn opt_string(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }
}

/// Parses one datagram.
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    if data.len() > MAX_SSDP_LEN {
        return Err(ParseError::TooLong(data.len()));
    }
    let text = std::str::from_utf8(data).map_err(|_| ParseError::NotText)?;
    // The header block ends at the first empty line; a body (minidlna sends
    // `Content-Length: 0`) is ignored.
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or("").trim();
    let mut headers = Headers { lines: Vec::new() };
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        if headers.lines.len() >= MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        // A line without a colon is skipped (tolerance), not fatal.
        if let Some((n, v)) = line.split_once(':') {
            headers.lines.push((n.trim(), v.trim()));
        }
    }
    let mut words = start.split_ascii_whitespace();
    let (w0, w1, w2) = (words.next(), words.next(), words.next());
    match (w0, w1, w2) {
        (Some(m), Some("*"), Some(v)) if m.eq_ignore_ascii_case("M-SEARCH") && is_http1(v) => {
            parse_search(&headers).map(Message::Search)
        }
        (Some(m), Some("*"), Some(v)) if m.eq_ignore_ascii_case("NOTIFY") && is_http1(v) => {
            parse_notify(&headers).map(Message::Notify)
        }
        (Some(v), Some("200"), _) if is_http1(v) => {
            parse_advert(&headers, "ST").map(|advert| Message::Response(Response { advert }))
        }
        _ => Err(ParseError::StartLine(start.chars().take(64).collect())),
    }
}

fn is_http1(v: &str) -> bool {
    v.eq_ignore_ascii_case("HTTP/1.1") || v.eq_ignore_ascii_case("HTTP/1.0")
}

fn parse_search(h: &Headers<'_>) -> Result<Search, ParseError> {
    let st = h.required("ST")?.to_string();
    let man = h.get("MAN").unwrap_or("").to_string();
    let mx = match h.get("MX") {
        None | Some("") => 1,
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| ParseError::BadValue("MX", v.to_string()))?,
    };
    Ok(Search { st, mx, man })
}

fn parse_notify(h: &Headers<'_>) -> Result<Notify, ParseError> {
    let nts_text = h.required("NTS")?;
    let nts = if nts_text.eq_ignore_ascii_case("ssdp:alive") {
        Nts::Alive
    } else if nts_text.eq_ignore_ascii_case("ssdp:byebye") {
        Nts::ByeBye
    } else if nts_text.eq_ignore_ascii_case("ssdp:update") {
        Nts::Update
    } else {
        return Err(ParseError::BadValue("NTS", nts_text.to_string()));
    };
    let advert = parse_advert(h, "NT")?;
    if nts != Nts::ByeBye && advert.location.is_none() {
        return Err(ParseError::Missing("LOCATION"));
    }
    Ok(Notify { nts, advert })
}

fn parse_advert(h: &Headers<'_>, target: &'static str) -> Result<Advert, ParseError> {
    let target_v = h.required(target)?.to_string();
    let usn_text = h.required("USN")?;
    let usn = Usn::parse(usn_text).ok_or_else(|| ParseError::BadValue("USN", usn_text.into()))?;
    let location = h.opt_string("LOCATION");
    if target == "ST" && location.is_none() {
        return Err(ParseError::Missing("LOCATION"));
    }
    Ok(Advert {
        target: target_v,
        usn,
        location,
        max_age: h.get("CACHE-CONTROL").and_then(parse_max_age),
        server: h.opt_string("SERVER"),
        boot_id: h.get("BOOTID.UPNP.ORG").and_then(|v| v.parse().ok()),
        config_id: h.get("CONFIGID.UPNP.ORG").and_then(|v| v.parse().ok()),
    })
}

/// `max-age=N` from a CACHE-CONTROL value (`no-cache="Ext", max-age = 5000` too), capped.
pub fn parse_max_age(v: &str) -> Option<u32> {
    v.split(',').find_map(|d| {
        let (k, val) = d.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let n: u64 = val.trim().trim_matches('"').parse().ok()?;
        Some(u32::try_from(n.min(u64::from(MAX_MAX_AGE))).unwrap_or(MAX_MAX_AGE))
    })
}

/// An `http://HOST[:PORT]/PATH` URL whose host is an IP literal (the only kind we fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The host as an address.
    pub addr: std::net::SocketAddr,
    /// Path and query (`/` when absent).
    pub path: String,
}

/// Parses a LOCATION. None for another scheme, a host name, userinfo, a bad port, or a path
/// with control characters or spaces (it goes into a request line).
pub fn parse_http_url(s: &str) -> Option<HttpUrl> {
    let s = s.trim();
    let rest = match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("http://") => &s[7..],
        _ => return None,
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if authority.contains('@') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let addr = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let ip: std::net::Ipv6Addr = host.parse().ok()?;
        let port = match after {
            "" => 80,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        std::net::SocketAddr::new(ip.into(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 80),
        };
        let ip: std::net::Ipv4Addr = host.parse().ok()?;
        std::net::SocketAddr::new(ip.into(), port)
    };
    if addr.port() == 0 {
        return None;
    }
    Some(HttpUrl { addr, path })
}

/// An M-SEARCH for `st` with `mx` (clamped to 1..=5, as UPnP 1.1 requires).
pub fn format_search(st: &str, mx: u32, user_agent: &str) -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: {}\r\nST: {st}\r\nUSER-AGENT: {user_agent}\r\n\r\n",
        mx.clamp(1, 5)
    )
}

/// What an advertising device says about one of its targets (NT or ST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce<'a> {
    /// NT / ST.
    pub target: &'a str,
    /// USN.
    pub usn: &'a Usn,
    /// LOCATION.
    pub location: &'a str,
    /// max-age.
    pub max_age: u32,
    /// SERVER.
    pub server: &'a str,
    /// BOOTID.UPNP.ORG and CONFIGID.UPNP.ORG.
    pub boot_id: u32,
    /// CONFIGID.UPNP.ORG.
    pub config_id: u32,
}

/// A NOTIFY (alive or update carries LOCATION and CACHE-CONTROL; byebye does not).
pub fn format_notify(nts: Nts, a: &Announce<'_>) -> String {
    let mut s = String::from("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n");
    if nts != Nts::ByeBye {
        let _ = write!(
            s,
            "CACHE-CONTROL: max-age={}\r\nLOCATION: {}\r\nSERVER: {}\r\n",
            a.max_age, a.location, a.server
        );
    }
    let _ = write!(
        s,
        "NT: {}\r\nNTS: {}\r\nUSN: {}\r\nBOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
        a.target,
        nts.as_str(),
        a.usn,
        a.boot_id,
        a.config_id
    );
    s
}

/// A search response (`date` is an RFC 1123 date, or empty to leave DATE out).
pub fn format_response(a: &Announce<'_>, date: &str) -> String {
    let mut s = format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={}\r\n",
        a.max_age
    );
    if !date.is_empty() {
        let _ = write!(s, "DATE: {date}\r\n");
    }
    let _ = write!(
        s,
        "EXT:\r\nLOCATION: {}\r\nSERVER: {}\r\nST: {}\r\nUSN: {}\r\nBOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
        a.location, a.server, a.target, a.usn, a.boot_id, a.config_id
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usn_forms() {
        let u = Usn::parse("uuid:abc::upnp:rootdevice").unwrap();
        assert_eq!(u.udn, "uuid:abc");
        assert_eq!(u.kind.as_deref(), Some("upnp:rootdevice"));
        assert_eq!(u.to_string(), "uuid:abc::upnp:rootdevice");
        assert_eq!(Usn::parse("UUID:abc").unwrap().udn, "uuid:abc");
        assert!(Usn::parse("uuid:").is_none());
        assert!(Usn::parse("urn:x").is_none());
        assert!(Usn::parse("").is_none());
        assert!(Usn::parse("uu").is_none());
        assert!(Usn::parse("uuid:é").is_some());
    }

    #[test]
    fn max_age_variants() {
        assert_eq!(parse_max_age("max-age=30"), Some(30));
        assert_eq!(parse_max_age("MAX-AGE = 1800"), Some(1800));
        assert_eq!(
            parse_max_age("no-cache=\"Ext\", max-age = 5000"),
            Some(5000)
        );
        assert_eq!(parse_max_age("max-age=99999999999"), Some(MAX_MAX_AGE));
        assert_eq!(parse_max_age("max-age=-1"), None);
        assert_eq!(parse_max_age("no-cache"), None);
    }

    #[test]
    fn urls() {
        let u = parse_http_url("http://198.18.0.2:8200/rootDesc.xml").unwrap();
        assert_eq!(u.addr, "198.18.0.2:8200".parse().unwrap());
        assert_eq!(u.path, "/rootDesc.xml");
        assert_eq!(
            parse_http_url("HTTP://198.18.0.2").unwrap().addr,
            "198.18.0.2:80".parse().unwrap()
        );
        assert_eq!(parse_http_url("http://198.18.0.2?x").unwrap().path, "/?x");
        assert_eq!(
            parse_http_url("http://[2001:db8::1]:80/d").unwrap().addr,
            "[2001:db8::1]:80".parse().unwrap()
        );
        for bad in [
            "https://198.18.0.2/",
            "http://example.com/x",
            "http://a@198.18.0.2/",
            "http://198.18.0.2:0/",
            "http://198.18.0.2:99999/",
            "http://198.18.0.2/a b",
            "http://198.18.0.2/a\r\nX: y",
            "ftp://x",
            "",
        ] {
            assert!(parse_http_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn format_parse_round_trip() {
        let usn = Usn::parse("uuid:1234::upnp:rootdevice").unwrap();
        let a = Announce {
            target: "upnp:rootdevice",
            usn: &usn,
            location: "http://198.18.0.1:49000/d.xml",
            max_age: 120,
            server: "Linux/6 UPnP/1.1 shg/0.1",
            boot_id: 7,
            config_id: 1,
        };
        for nts in [Nts::Alive, Nts::ByeBye, Nts::Update] {
            let Message::Notify(n) = parse(format_notify(nts, &a).as_bytes()).unwrap() else {
                panic!("not a notify")
            };
            assert_eq!(n.nts, nts);
            assert_eq!(n.advert.usn, usn);
            assert_eq!(n.advert.boot_id, Some(7));
            if nts != Nts::ByeBye {
                assert_eq!(n.advert.max_age, Some(120));
                assert_eq!(n.advert.location.as_deref(), Some(a.location));
            }
        }
        let Message::Response(r) = parse(format_response(&a, "").as_bytes()).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.advert.target, "upnp:rootdevice");
        let Message::Search(s) = parse(format_search("ssdp:all", 9, "x").as_bytes()).unwrap()
        else {
            panic!("not a search")
        };
        assert_eq!(
            (s.st.as_str(), s.mx, s.man.as_str()),
            ("ssdp:all", 5, "\"ssdp:discover\"")
        );
    }

    #[test]
    fn tolerances_and_refusals() {
        let lf_only = "notify * http/1.1\nnt:upnp:rootdevice\nnts:ssdp:byebye\nusn:uuid:x::upnp:rootdevice\n\n";
        assert!(matches!(parse(lf_only.as_bytes()), Ok(Message::Notify(_))));
        let no_mx = "M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n";
        let Ok(Message::Search(s)) = parse(no_mx.as_bytes()) else {
            panic!()
        };
        assert_eq!(s.mx, 1);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ParseError::StartLine("GET / HTTP/1.1".into()))
        );
        assert_eq!(
            parse(
                "NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\nUSN: uuid:a\r\n\r\n".as_bytes()
            ),
            Err(ParseError::Missing("LOCATION"))
        );
        assert_eq!(parse(&[0xff; 10]), Err(ParseError::NotText));
        let big = vec![b'a'; MAX_SSDP_LEN + 1];
        assert_eq!(parse(&big).unwrap_err().refusal(), Refusal::SsdpOversize);
        assert_eq!(parse(b"").unwrap_err().refusal(), Refusal::SsdpMalformed);
    }
}
