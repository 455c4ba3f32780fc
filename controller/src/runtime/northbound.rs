//! Starting and stopping the northbound API inside the daemon: the settings in force (`[api]` with the command-line flags over it), the TLS files, the token store, the listeners.
//!
//! [`api_settings`] is pure. [`Northbound::start`] binds the HTTPS listener (and the optional
//! plain `/metrics` listener, loopback only) and spawns [`crate::api::serve`] over the
//! daemon's [`Link`]; any failure (a missing certificate, a key that does not fit, an address
//! in use) is returned so the daemon refuses to start rather than run without the API it was
//! asked for.

use crate::api::link::Link;
use crate::api::tls::{server_config, TlsFiles};
use crate::api::tokens::TokenStore;
use crate::api::{serve, serve_plain_metrics, Api, ApiConfig};
use crate::model::ApiSettings;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// `[api]` keys given on the command line (each overrides the file's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiFlags {
    pub listen: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub isp_ca: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
}

impl ApiFlags {
    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        *self == ApiFlags::default()
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The API settings in force: the file's `[api]` with `flags` over it (None: no API). Relative
/// file paths are resolved against `base` (the config file's directory); paths from flags
/// are used as given. Every missing key is named.
pub fn api_settings(
    file: Option<&ApiSettings>,
    flags: &ApiFlags,
    base: &Path,
) -> Result<Option<ApiSettings>, String> {
    if file.is_none() && flags.is_empty() {
        return Ok(None);
    }
    let f = |pick: fn(&ApiSettings) -> &PathBuf| file.map(|a| resolve(base, pick(a)));
    let listen = flags.listen.or(file.map(|a| a.listen));
    let cert = flags.cert.clone().or_else(|| f(|a| &a.cert));
    let key = flags.key.clone().or_else(|| f(|a| &a.key));
    let isp_ca = flags.isp_ca.clone().or_else(|| f(|a| &a.isp_ca));
    let tokens = flags.tokens.clone().or_else(|| f(|a| &a.tokens));
    let metrics_listen = flags.metrics_listen.or(file.and_then(|a| a.metrics_listen));
    let missing: Vec<&str> = [
        ("listen (--api-listen)", listen.is_none()),
        ("cert (--api-cert)", cert.is_none()),
        ("key (--api-key)", key.is_none()),
        ("isp_ca (--api-isp-ca)", isp_ca.is_none()),
        ("tokens (--api-tokens)", tokens.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the API needs {} (in [api] or as flags)",
            missing.join(", ")
        ));
    }
    if let Some(m) = metrics_listen.filter(|m| !m.ip().is_loopback()) {
        return Err(format!(
            "the plain metrics listener {m} is not on a loopback address"
        ));
    }
    match (listen, cert, key, isp_ca, tokens) {
        (Some(listen), Some(cert), Some(key), Some(isp_ca), Some(tokens)) => {
            Ok(Some(ApiSettings {
                listen,
                cert,
                key,
                isp_ca,
                tokens,
                metrics_listen,
            }))
        }
        _ => Err("the API settings are incomplete".into()),
    }
}

/// The running API.
#[derive(Debug)]
pub struct Northbound {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Where it listens (the bound address: a port 0 is resolved).
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
}

impl Northbound {
    /// Loads the TLS files and the token store, binds and serves the API over `link`.
    pub async fn start(s: &ApiSettings, link: &Link) -> Result<Northbound, String> {
        let (tls, isp) = server_config(&TlsFiles {
            cert: s.cert.clone(),
            key: s.key.clone(),
            isp_ca: s.isp_ca.clone(),
        })
        .map_err(|e| format!("api: TLS: {e}"))?;
        let tokens = TokenStore::open(&s.tokens).map_err(|e| format!("api: tokens: {e}"))?;
        let api = Api::new(
            Arc::new(link.clone()),
            tokens,
            Some(isp),
            ApiConfig::default(),
        );
        let listener = TcpListener::bind(s.listen)
            .await
            .map_err(|e| format!("api: listen on {}: {e}", s.listen))?;
        let addr = listener.local_addr().unwrap_or(s.listen);
        let (stop, rx) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        if let Some(m) = s.metrics_listen {
            let l = TcpListener::bind(m)
                .await
                .map_err(|e| format!("api: metrics listener on {m}: {e}"))?;
            metrics_addr = l.local_addr().ok();
            let (api, rx) = (api.clone(), rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = serve_plain_metrics(api, l, until(rx)).await {
                    warn!("api: plain metrics listener: {e}");
                }
            }));
            info!("api: plain metrics on http://{m}/metrics");
        }
        tasks.push(tokio::spawn(serve(api, listener, tls, until(rx))));
        info!(
            "api: https://{addr} (certificate {}, ISP CA {}, tokens {})",
            s.cert.display(),
            s.isp_ca.display(),
            s.tokens.display()
        );
        Ok(Northbound {
            stop,
            tasks,
            addr,
            metrics_addr,
        })
    }

    /// Stops the listeners and the open connections (waits at most a second).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ApiSettings {
        ApiSettings {
            listen: "198.18.0.1:8443".parse().unwrap(),
            cert: "api/server.pem".into(),
            key: "/etc/shg/server.key".into(),
            isp_ca: "isp-ca.pem".into(),
            tokens: "tokens".into(),
            metrics_listen: None,
        }
    }

    #[test]
    fn flags_override_and_paths_resolve() {
        let base = Path::new("/etc/shg");
        assert_eq!(api_settings(None, &ApiFlags::default(), base), Ok(None));
        let s = api_settings(Some(&file()), &ApiFlags::default(), base)
            .unwrap()
            .unwrap();
        assert_eq!(s.cert, PathBuf::from("/etc/shg/api/server.pem"));
        assert_eq!(s.key, PathBuf::from("/etc/shg/server.key"));
        assert_eq!(s.tokens, PathBuf::from("/etc/shg/tokens"));
        let flags = ApiFlags {
            listen: Some("127.0.0.1:9443".parse().unwrap()),
            tokens: Some("t2".into()),
            metrics_listen: Some("[::1]:9100".parse().unwrap()),
            ..ApiFlags::default()
        };
        let s = api_settings(Some(&file()), &flags, base).unwrap().unwrap();
        assert_eq!(s.listen.port(), 9443);
        assert_eq!(s.tokens, PathBuf::from("t2"));
        assert_eq!(s.isp_ca, PathBuf::from("/etc/shg/isp-ca.pem"));
        assert!(s.metrics_listen.is_some());
        // Flags alone must say everything.
        let e = api_settings(None, &flags, base).unwrap_err();
        assert!(
            e.contains("cert (--api-cert)") && e.contains("isp_ca") && !e.contains("listen"),
            "{e}"
        );
        let bad = ApiFlags {
            metrics_listen: Some("198.18.0.1:9100".parse().unwrap()),
            ..ApiFlags::default()
        };
        assert!(api_settings(Some(&file()), &bad, base)
            .unwrap_err()
            .contains("loopback"));
    }
}
