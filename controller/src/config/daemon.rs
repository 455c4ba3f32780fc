//! The daemon's own tables of the config file, `[api]` and `[discovery]`: checked with the policy (so `check-config` reports their errors with their paths), but kept out of [`crate::model::Policy`].
//!
//! They say how this machine runs the controller (where the API listens, which files hold its
//! certificates and tokens, which interfaces discovery uses), not what the gateway does, so the
//! API never shows or changes them and a policy pushed through it keeps the file's ones.
//! Paths are returned as written; the runtime resolves relative ones against the config file's
//! directory. Pure.

use super::raw::{RawApi, RawConfig, RawDiscovery, RawPort};
use super::{ConfigError, Errors};
use crate::model::{ApiSettings, DaemonSettings, DiscoverySettings};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The friendly name announced when `[discovery] advertise = true` gives none.
pub const DEFAULT_FRIENDLY_NAME: &str = "shg home gateway";
/// Longest friendly name (UPnP recommends < 64 characters).
pub const FRIENDLY_NAME_MAX: usize = 63;

/// Parses `text` and returns its `[api]` and `[discovery]` settings, or every error.
pub fn daemon_settings(text: &str) -> Result<DaemonSettings, Vec<ConfigError>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| vec![super::toml_error(text, &e)])?;
    let mut errs = Errors::default();
    let s = check(&raw, &mut errs);
    if errs.0.is_empty() {
        Ok(s)
    } else {
        Err(errs.0)
    }
}

/// Checks the daemon's tables; errors are added to `errs`.
pub(super) fn check(raw: &RawConfig, errs: &mut Errors) -> DaemonSettings {
    DaemonSettings {
        api: raw.api.as_ref().and_then(|a| api(a, errs)),
        discovery: raw.discovery.as_ref().and_then(|d| discovery(d, errs)),
    }
}

fn address(s: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Some(a),
        Ok(_) => {
            errs.push(path, format!("{s:?}: the port must not be 0"));
            None
        }
        Err(_) => {
            errs.push(
                path,
                format!("{s:?} is not an address: expected IP:PORT, e.g. \"198.18.0.1:8443\" or \"[2001:db8::1]:8443\""),
            );
            None
        }
    }
}

fn file(s: &str, path: &str, errs: &mut Errors) -> Option<PathBuf> {
    if s.trim().is_empty() {
        errs.push(path, "must name a file");
        return None;
    }
    Some(PathBuf::from(s))
}

fn api(a: &RawApi, errs: &mut Errors) -> Option<ApiSettings> {
    let n = errs.0.len();
    let listen = address(&a.listen, "api.listen", errs);
    let cert = file(&a.cert, "api.cert", errs);
    let key = file(&a.key, "api.key", errs);
    let isp_ca = file(&a.isp_ca, "api.isp_ca", errs);
    let tokens = file(&a.tokens, "api.tokens", errs);
    let metrics_listen = match &a.metrics_listen {
        None => None,
        Some(m) => match address(m, "api.metrics_listen", errs) {
            Some(x) if x.ip().is_loopback() => Some(x),
            Some(x) => {
                errs.push(
                    "api.metrics_listen",
                    format!("{x} is not a loopback address: the plain metrics listener has no TLS and no credentials (use 127.0.0.1 or ::1)"),
                );
                None
            }
            None => None,
        },
    };
    if metrics_listen.is_some() && metrics_listen == listen {
        errs.push("api.metrics_listen", "is the same address as api.listen");
    }
    if errs.0.len() != n {
        return None;
    }
    Some(ApiSettings {
        listen: listen?,
        cert: cert?,
        key: key?,
        isp_ca: isp_ca?,
        tokens: tokens?,
        metrics_listen,
    })
}

fn discovery(d: &RawDiscovery, errs: &mut Errors) -> Option<DiscoverySettings> {
    let n = errs.0.len();
    if d.interfaces.is_empty() {
        errs.push(
            "discovery.interfaces",
            "name at least one LAN interface (or leave [discovery] out)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, ifname) in d.interfaces.iter().enumerate() {
        let path = format!("discovery.interfaces[{i}]");
        if super::port(&RawPort::Name(ifname.clone()), &path, errs).is_some()
            && !seen.insert(ifname.as_str())
        {
            errs.push(path, format!("{ifname:?} is listed twice"));
        }
    }
    let name = d
        .friendly_name
        .clone()
        .unwrap_or_else(|| DEFAULT_FRIENDLY_NAME.to_string());
    if name.trim().is_empty()
        || name.chars().count() > FRIENDLY_NAME_MAX
        || name.chars().any(char::is_control)
    {
        errs.push(
            "discovery.friendly_name",
            format!("{name:?}: 1 to {FRIENDLY_NAME_MAX} characters, no control characters"),
        );
    }
    if d.friendly_name.is_some() && d.advertise != Some(true) {
        errs.push(
            "discovery.friendly_name",
            "is only used with advertise = true",
        );
    }
    if errs.0.len() != n {
        return None;
    }
    Some(DiscoverySettings {
        interfaces: d.interfaces.clone(),
        advertise: d.advertise.unwrap_or(false),
        friendly_name: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = include_str!("../../../tests/fixtures/controller/gateway.toml");

    fn errors(extra: &str) -> Vec<String> {
        let text = format!("{GATEWAY}\n{extra}");
        let mut out: Vec<String> = daemon_settings(&text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        // The policy parser reports the same errors (check-config shows them).
        let policy: Vec<String> = crate::config::parse(&text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(out, policy);
        out.sort();
        out
    }

    #[test]
    fn absent_tables_are_no_settings() {
        assert_eq!(daemon_settings(GATEWAY), Ok(DaemonSettings::default()));
    }

    #[test]
    fn api_and_discovery_are_read() {
        let text = format!(
            "{GATEWAY}\n[api]\nlisten = \"198.18.0.1:8443\"\ncert = \"api/server.pem\"\nkey = \"/etc/shg/server.key\"\nisp_ca = \"isp-ca.pem\"\ntokens = \"tokens\"\nmetrics_listen = \"127.0.0.1:9100\"\n\n[discovery]\ninterfaces = [\"lan1\", \"lan2\"]\nadvertise = true\nfriendly_name = \"Home\"\n"
        );
        let s = daemon_settings(&text).unwrap();
        let api = s.api.unwrap();
        assert_eq!(api.listen, "198.18.0.1:8443".parse().unwrap());
        assert_eq!(api.cert, PathBuf::from("api/server.pem"));
        assert_eq!(api.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let d = s.discovery.unwrap();
        assert_eq!(d.interfaces, vec!["lan1", "lan2"]);
        assert!(d.advertise);
        assert_eq!(d.friendly_name, "Home");
        // The policy is the same with or without them.
        assert_eq!(
            crate::config::parse(&text).unwrap(),
            crate::config::parse(GATEWAY).unwrap()
        );
        let d = daemon_settings(&format!(
            "{GATEWAY}\n[discovery]\ninterfaces = [\"eth1\"]\n"
        ))
        .unwrap()
        .discovery
        .unwrap();
        assert!(!d.advertise);
        assert_eq!(d.friendly_name, DEFAULT_FRIENDLY_NAME);
    }

    #[test]
    fn every_error_has_its_path() {
        let e = errors(
            "[api]\nlisten = \"8443\"\ncert = \"\"\nkey = \"k\"\nisp_ca = \"c\"\ntokens = \"t\"\nmetrics_listen = \"198.18.0.1:9100\"\n\n[discovery]\ninterfaces = [\"eth1\", \"a/b\", \"eth1\"]\nfriendly_name = \"x\"\n",
        );
        let paths: Vec<&str> = e.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            vec![
                "api.cert",
                "api.listen",
                "api.metrics_listen",
                "discovery.friendly_name",
                "discovery.interfaces[1]",
                "discovery.interfaces[2]",
            ],
            "{e:#?}"
        );
        assert!(errors("[discovery]\ninterfaces = []\n")[0].starts_with("discovery.interfaces:"));
        assert!(errors("[api]\nlisten = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\nisp_ca = \"c\"\ntokens = \"t\"\n")[0].contains("port must not be 0"));
        // Unknown and missing keys are TOML errors, with their table.
        let e = errors("[api]\nlisten = \"127.0.0.1:1\"\ncert = \"c\"\nkey = \"k\"\nisp_ca = \"c\"\ntokens = \"t\"\nport = 3\n");
        assert!(e[0].starts_with("api"), "{e:?}");
        let e = errors("[discovery]\nadvertise = true\n");
        assert!(e[0].contains("interfaces"), "{e:?}");
    }
}
