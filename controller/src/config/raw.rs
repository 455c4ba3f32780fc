//! The config file's shape as serde reads it: closed tables (`deny_unknown_fields`), values kept as written.
//!
//! Nothing here is checked beyond TOML types; [`super::validate`] turns a [`RawConfig`] into a
//! [`crate::model::Policy`] and reports every problem with its path.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) services: BTreeMap<String, RawService>,
    /// `[api]` (a daemon setting, not the policy).
    pub(crate) api: Option<RawApi>,
    /// `[discovery]` (a daemon setting, not the policy).
    pub(crate) discovery: Option<RawDiscovery>,
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub(crate) listen: String,
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) isp_ca: String,
    pub(crate) tokens: String,
    pub(crate) metrics_listen: Option<String>,
}

/// `[discovery]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    pub(crate) interfaces: Vec<String>,
    pub(crate) advertise: Option<bool>,
    pub(crate) friendly_name: Option<String>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) datapath_id: String,
    pub(crate) listen: Option<String>,
    pub(crate) connect: Option<String>,
    pub(crate) uplink: RawUplink,
    #[serde(default)]
    pub(crate) lan: Vec<RawPort>,
    pub(crate) local: Option<bool>,
    pub(crate) headroom: Option<f64>,
    pub(crate) interactive_share: Option<f64>,
    pub(crate) foreign_flows: Option<String>,
}

/// `[gateway.uplink]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    pub(crate) port: RawPort,
    pub(crate) up_rate: String,
    pub(crate) down_rate: String,
}

/// A port: a number or an interface name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPort {
    Number(i64),
    Name(String),
}

/// `[services.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) port: RawPort,
    pub(crate) mac: String,
    #[serde(default)]
    pub(crate) ipv4: Vec<String>,
    #[serde(default)]
    pub(crate) ipv6: Vec<String>,
    pub(crate) class: String,
    pub(crate) queue: i64,
    pub(crate) min_rate: Option<String>,
    pub(crate) max_rate: Option<String>,
    pub(crate) down_min_rate: Option<String>,
    pub(crate) down_max_rate: Option<String>,
    pub(crate) latency: Option<String>,
    pub(crate) priority: Option<i64>,
    pub(crate) priority_bounds: Option<Vec<i64>>,
    #[serde(default)]
    pub(crate) reach: Vec<String>,
    pub(crate) user: Option<RawUser>,
}

/// `[services.NAME.user]`: what the home user chose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) priority: Option<i64>,
    pub(crate) max_rate: Option<String>,
}
