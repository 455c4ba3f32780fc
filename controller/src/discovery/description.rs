//! UPnP device description XML (`rootDesc.xml`) to a [`DeviceInfo`] tree.
//!
//! Owns: checking the size, refusing DTDs (so no entity can expand: billion laughs and
//! external entities are both refused before any expansion), parsing with `roxmltree` under a
//! node limit, and reading the fields policy and people need: device type, friendly name,
//! manufacturer, model, UDN, services, embedded devices. Pure; never panics on any input.
//!
//! Tolerant of: a missing or unusual namespace (elements are matched by local name), a UTF-8
//! BOM, invalid UTF-8 bytes (replaced), blanks around values, missing optional fields.
//! Bounded: [`MAX_DESCRIPTION_LEN`] bytes, [`MAX_NODES`] nodes, embedded devices nested at most
//! [`MAX_DEPTH`] deep, at most [`MAX_CHILDREN`] services and devices per device, each text
//! field cut to [`MAX_FIELD_LEN`] characters.

use roxmltree::{Document, Node, ParsingOptions};

use super::counters::Refusal;

/// Largest description accepted (real ones are 2-4 KiB).
pub const MAX_DESCRIPTION_LEN: usize = 256 * 1024;
/// Node limit handed to the XML parser.
pub const MAX_NODES: u32 = 20_000;
/// Deepest embedded-device nesting read (root = 0).
pub const MAX_DEPTH: usize = 6;
/// Most services and most embedded devices read per device.
pub const MAX_CHILDREN: usize = 64;
/// Longest text field kept (characters).
pub const MAX_FIELD_LEN: usize = 256;

/// One service of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `urn:schemas-upnp-org:service:ContentDirectory:1`
    pub service_type: String,
    /// `urn:upnp-org:serviceId:ContentDirectory`
    pub service_id: String,
    /// SCPDURL as written (relative or absolute).
    pub scpd_url: String,
    /// controlURL as written.
    pub control_url: String,
    /// eventSubURL as written.
    pub event_sub_url: String,
}

/// A device as its description tells it (root or embedded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `urn:schemas-upnp-org:device:MediaServer:1`
    pub device_type: String,
    /// `uuid:...`
    pub udn: String,
    /// Human name.
    pub friendly_name: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// modelName.
    pub model_name: String,
    /// modelNumber.
    pub model_number: String,
    /// modelDescription.
    pub model_description: String,
    /// serialNumber.
    pub serial_number: String,
    /// presentationURL.
    pub presentation_url: String,
    /// serviceList.
    pub services: Vec<ServiceInfo>,
    /// deviceList (embedded devices).
    pub devices: Vec<DeviceInfo>,
}

impl DeviceInfo {
    /// This device and every embedded one, depth first.
    pub fn all(&self) -> Vec<&DeviceInfo> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(d) = stack.pop() {
            out.push(d);
            stack.extend(d.devices.iter().rev());
        }
        out
    }

    /// Every device type in the tree (root first).
    pub fn device_types(&self) -> Vec<&str> {
        self.all().iter().map(|d| d.device_type.as_str()).collect()
    }

    /// Every service type in the tree.
    pub fn service_types(&self) -> Vec<&str> {
        self.all()
            .iter()
            .flat_map(|d| d.services.iter().map(|s| s.service_type.as_str()))
            .collect()
    }
}

/// A parsed description document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// specVersion (major, minor), (1, 0) if absent.
    pub spec_version: (u32, u32),
    /// URLBase (UPnP 1.0 only), if present.
    pub url_base: Option<String>,
    /// The root device.
    pub device: DeviceInfo,
}

/// Why a description was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionError {
    /// description of {0} bytes is over the 256 KiB limit
    TooLarge(usize),
    /// description has a DTD (entity declarations are refused)
    Dtd,
    /// description is not well-formed XML: {0}
    Xml(String),
    /// description has more than 20000 XML nodes
    TooManyNodes,
    /// description has no root `<device>` with a `<UDN>`
    NotUpnp,
}

impl std::fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DescriptionError::TooLarge(n) => {
                write!(f, "description of {n} bytes is over the 256 KiB limit")
            }
            DescriptionError::Dtd => {
                f.write_str("description has a DTD (entity declarations are refused)")
            }
            DescriptionError::Xml(e) => write!(f, "description is not well-formed XML: {e}"),
            DescriptionError::TooManyNodes => {
                write!(f, "description has more than {MAX_NODES} XML nodes")
            }
            DescriptionError::NotUpnp => {
                f.write_str("description has no root <device> with a <UDN>")
            }
        }
    }
}

impl std::error::Error for DescriptionError {}

impl DescriptionError {
    /// The counter this refusal increments.
    pub fn refusal(&self) -> Refusal {
        match self {
            DescriptionError::TooLarge(_) => Refusal::DescriptionOversize,
            DescriptionError::Dtd => Refusal::DescriptionEntity,
            DescriptionError::Xml(_) | DescriptionError::TooManyNodes => {
                Refusal::DescriptionMalformed
            }
            DescriptionError::NotUpnp => Refusal::DescriptionNotUpnp,
        }
    }
}

/// Parses a description document.
pub fn parse(bytes: &[u8]) -> Result<Description, DescriptionError> {
    if bytes.len() > MAX_DESCRIPTION_LEN {
        return Err(DescriptionError::TooLarge(bytes.len()));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    // Refuse a DTD ourselves too, so the reason is exact whatever the parser says about
    // a malformed one.
    if contains_ignore_case(&text, "<!DOCTYPE") || contains_ignore_case(&text, "<!ENTITY") {
        return Err(DescriptionError::Dtd);
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(&text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected | roxmltree::Error::EntityReferenceLoop(_) => {
            DescriptionError::Dtd
        }
        roxmltree::Error::NodesLimitReached => DescriptionError::TooManyNodes,
        other => DescriptionError::Xml(cut(&other.to_string())),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "root" {
        return Err(DescriptionError::NotUpnp);
    }
    let spec_version = child(root, "specVersion")
        .map(|s| {
            let num = |n| {
                child(s, n)
                    .and_then(|c| text_of(c).parse().ok())
                    .unwrap_or(0)
            };
            (num("major"), num("minor"))
        })
        .unwrap_or((1, 0));
    let url_base = child(root, "URLBase")
        .map(text_of)
        .filter(|s| !s.is_empty());
    let device = child(root, "device")
        .map(|d| read_device(d, 0))
        .ok_or(DescriptionError::NotUpnp)?;
    if device.udn.is_empty() {
        return Err(DescriptionError::NotUpnp);
    }
    Ok(Description {
        spec_version,
        url_base,
        device,
    })
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The concatenated text directly inside an element, trimmed and cut.
fn text_of(n: Node<'_, '_>) -> String {
    let mut s = String::new();
    for t in n.children().filter(Node::is_text) {
        s.push_str(t.text().unwrap_or(""));
        if s.len() > MAX_FIELD_LEN * 4 {
            break;
        }
    }
    cut(s.trim())
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD_LEN).collect()
}

fn field(n: Node<'_, '_>, name: &str) -> String {
    child(n, name).map(text_of).unwrap_or_default()
}

fn read_device(n: Node<'_, '_>, depth: usize) -> DeviceInfo {
    let services = child(n, "serviceList")
        .map(|l| {
            children(l, "service")
                .take(MAX_CHILDREN)
                .map(|s| ServiceInfo {
                    service_type: field(s, "serviceType"),
                    service_id: field(s, "serviceId"),
                    scpd_url: field(s, "SCPDURL"),
                    control_url: field(s, "controlURL"),
                    event_sub_url: field(s, "eventSubURL"),
                })
                .collect()
        })
        .unwrap_or_default();
    let devices = if depth < MAX_DEPTH {
        child(n, "deviceList")
            .map(|l| {
                children(l, "device")
                    .take(MAX_CHILDREN)
                    .map(|d| read_device(d, depth + 1))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    DeviceInfo {
        device_type: field(n, "deviceType"),
        udn: field(n, "UDN"),
        friendly_name: field(n, "friendlyName"),
        manufacturer: field(n, "manufacturer"),
        model_name: field(n, "modelName"),
        model_number: field(n, "modelNumber"),
        model_description: field(n, "modelDescription"),
        serial_number: field(n, "serialNumber"),
        presentation_url: field(n, "presentationURL"),
        services,
        devices,
    }
}

/// Escapes text for an XML element or attribute.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device><deviceType>urn:x:device:A:1</deviceType><UDN> uuid:a </UDN><friendlyName>A &amp; B</friendlyName><deviceList><device><deviceType>urn:x:device:B:1</deviceType><UDN>uuid:b</UDN><serviceList><service><serviceType>urn:x:service:S:1</serviceType></service></serviceList></device></deviceList></device></root>";

    #[test]
    fn minimal_tree() {
        let d = parse(MINI.as_bytes()).unwrap();
        assert_eq!(d.spec_version, (1, 0));
        assert_eq!(d.device.udn, "uuid:a");
        assert_eq!(d.device.friendly_name, "A & B");
        assert_eq!(
            d.device.device_types(),
            ["urn:x:device:A:1", "urn:x:device:B:1"]
        );
        assert_eq!(d.device.service_types(), ["urn:x:service:S:1"]);
    }

    #[test]
    fn no_namespace_and_bom() {
        let s = format!(
            "\u{feff}{}",
            MINI.replace(" xmlns=\"urn:schemas-upnp-org:device-1-0\"", "")
        );
        assert_eq!(parse(s.as_bytes()).unwrap().device.udn, "uuid:a");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(b"<root><device/></root>"),
            Err(DescriptionError::NotUpnp)
        );
        assert_eq!(parse(b"<html/>"), Err(DescriptionError::NotUpnp));
        assert!(matches!(
            parse(b"<root><device>"),
            Err(DescriptionError::Xml(_))
        ));
        assert!(matches!(parse(b""), Err(DescriptionError::Xml(_))));
        let dtd = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\">]><root/>";
        assert_eq!(parse(dtd.as_bytes()), Err(DescriptionError::Dtd));
        let big = vec![b' '; MAX_DESCRIPTION_LEN + 1];
        assert_eq!(
            parse(&big).unwrap_err().refusal(),
            Refusal::DescriptionOversize
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut s = String::from("<root><device><UDN>uuid:r</UDN>");
        for i in 0..50 {
            s.push_str(&format!("<deviceList><device><UDN>uuid:{i}</UDN>"));
        }
        for _ in 0..50 {
            s.push_str("</device></deviceList>");
        }
        s.push_str("</device></root>");
        let d = parse(s.as_bytes()).unwrap();
        assert_eq!(d.device.all().len(), MAX_DEPTH + 1);
    }

    #[test]
    fn escape() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
