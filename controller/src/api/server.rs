//! The HTTPS server: accepts TCP, shakes hands with rustls, reads requests with limits and timeouts, answers through [`Api::handle`], streams events.
//!
//! Takes an already bound listener and a shutdown future (tests bind port 0 and stop
//! cleanly). Each connection is its own task: a slow or flooding client holds only its own
//! task, and beyond [`ApiConfig::max_connections`](super::ApiConfig::max_connections) connections are closed at accept. A body
//! over the limit is answered 413 without being read. Background tasks sample the counters
//! every [`ApiConfig::poll_interval`](super::ApiConfig::poll_interval) and forward the control plane's events to the event
//! streams. Also [`serve_plain_metrics`]: `/metrics` without TLS or credentials, only on a
//! loopback address.

use super::control::ApiEvent;
use super::http::{parse_head, sse_head, Head, HttpError, Request, Response};
use super::metrics;
use super::routes::{error, Api, CertState, Client, Reply};
use ring::digest::{digest, SHA256};
use rustls::ServerConfig;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(api.config.max_connections));
    let bg = spawn_background(api.clone(), stop_rx.clone());
    if let Ok(a) = listener.local_addr() {
        info!("api: listening on https://{a}");
    }
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!("api: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            api.counters().connections_refused += 1;
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (api, acceptor, stop) = (api.clone(), acceptor.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    api.counters().tls_failures += 1;
                    debug!("api: TLS handshake with {peer}: {e}");
                    return;
                }
                Err(_) => {
                    api.counters().tls_failures += 1;
                    debug!("api: TLS handshake with {peer} timed out");
                    return;
                }
            };
            let cert = match tls.get_ref().1.peer_certificates() {
                None | Some([]) => CertState::None,
                Some(chain) => match &api.isp {
                    Some(v) => match v.check(chain) {
                        Ok(()) => CertState::Valid(fingerprint(chain[0].as_ref())),
                        Err(why) => CertState::Invalid(why),
                    },
                    None => CertState::Invalid("no ISP CA is configured".into()),
                },
            };
            let client = Client {
                addr: peer.ip(),
                cert,
            };
            connection(&api, tls, &client, stop).await;
        });
    }
    let _ = stop_tx.send(true);
    for t in bg {
        t.abort();
    }
}

fn fingerprint(der: &[u8]) -> String {
    digest(&SHA256, der)
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sampler and the event forwarder.
fn spawn_background(
    api: Arc<Api>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let a = api.clone();
    let mut s1 = stop.clone();
    let poll = tokio::spawn(async move {
        let mut tick = tokio::time::interval(a.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => a.poll_once().await,
                _ = s1.changed() => break,
            }
        }
    });
    let mut rx = api.control.subscribe();
    let mut s2 = stop;
    let fwd = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => api.publish(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => warn!("api: {n} control-plane event(s) lost"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = s2.changed() => break,
            }
        }
    });
    vec![poll, fwd]
}

enum Read {
    Request(Request),
    /// Answer this and close.
    Refuse(Response),
    /// The peer closed, timed out idle, or the server stops.
    Gone,
}

async fn read_request<S: AsyncRead + Unpin>(
    api: &Api,
    io: &mut S,
    buf: &mut Vec<u8>,
    stop: &mut watch::Receiver<bool>,
) -> Read {
    let mut chunk = [0u8; 8192];
    // The head: idle timeout before the first byte, request timeout after.
    let (request, head_len, body_len) = loop {
        match parse_head(buf) {
            Ok(Head::Complete {
                request,
                len,
                content_length,
            }) => break (request, len, content_length),
            Ok(Head::Incomplete) => {}
            Err(HttpError { status, message }) => {
                return Read::Refuse(error(status, "bad_request", message, json!(null)))
            }
        }
        let wait = if buf.is_empty() {
            api.config.idle_timeout
        } else {
            api.config.request_timeout
        };
        let n = tokio::select! {
            r = tokio::time::timeout(wait, io.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
                Ok(Ok(n)) => n,
                Err(_) if buf.is_empty() => return Read::Gone,
                Err(_) => return Read::Refuse(error(408, "timeout", "request head not received in time", json!(null))),
            },
            _ = stop.changed() => return Read::Gone,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    if body_len > api.config.body_limit {
        return Read::Refuse(error(
            413,
            "body_too_large",
            format!(
                "the body is {body_len} bytes; at most {} are accepted",
                api.config.body_limit
            ),
            json!({"limit": api.config.body_limit}),
        ));
    }
    let need = head_len + body_len;
    let deadline = tokio::time::Instant::now() + api.config.request_timeout;
    while buf.len() < need {
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
                Ok(Ok(n)) => n,
                Err(_) => return Read::Refuse(error(408, "timeout", "request body not received in time", json!(null))),
            },
            _ = stop.changed() => return Read::Gone,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let mut request = request;
    request.body = buf.get(head_len..need).unwrap_or_default().to_vec();
    buf.drain(..need);
    Read::Request(request)
}

/// Serves requests on one connection until it closes.
pub(crate) async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    api: &Api,
    mut io: S,
    client: &Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    loop {
        let req = match read_request(api, &mut io, &mut buf, &mut stop).await {
            Read::Request(r) => r,
            Read::Refuse(r) => {
                api.count(r.status);
                let _ = io.write_all(&r.to_bytes(false, false)).await;
                let _ = io.shutdown().await;
                linger(&mut io).await;
                return;
            }
            Read::Gone => return,
        };
        let keep = req.keep_alive();
        let head_only = req.method == "HEAD";
        match api.handle(&req, client).await {
            Reply::Response(r) => {
                if io.write_all(&r.to_bytes(keep, head_only)).await.is_err() {
                    return;
                }
                if !keep {
                    let _ = io.shutdown().await;
                    return;
                }
            }
            Reply::Events(rx) => {
                events(api, &mut io, rx, &mut stop).await;
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}

/// After refusing a request whose body was not read: reads and discards what the client is
/// still sending (at most 1 MiB, 2 s) so that closing does not reset the connection before
/// the client has read the answer.
async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while left > 0 {
        match tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// One server-sent event.
pub fn sse_event(id: u64, e: &ApiEvent) -> String {
    let data = serde_json::to_string(e).unwrap_or_default();
    format!("id: {id}\nevent: {}\ndata: {data}\n\n", e.kind())
}

async fn events<S: AsyncWrite + Unpin>(
    api: &Api,
    io: &mut S,
    mut rx: broadcast::Receiver<(u64, ApiEvent)>,
    stop: &mut watch::Receiver<bool>,
) {
    api.counters().event_streams += 1;
    let st = api.control.policy();
    let hello = format!(
        "retry: 2000\nevent: hello\ndata: {}\n\n",
        json!({"version": st.version, "connected": api.control.connected()})
    );
    let mut out = sse_head();
    out.extend_from_slice(hello.as_bytes());
    let mut ok = io.write_all(&out).await.is_ok() && io.flush().await.is_ok();
    let mut beat = tokio::time::interval(api.config.heartbeat);
    beat.tick().await;
    while ok {
        let chunk = tokio::select! {
            r = rx.recv() => match r {
                Ok((id, e)) => sse_event(id, &e),
                Err(broadcast::error::RecvError::Lagged(n)) => format!("event: lagged\ndata: {{\"lost\": {n}}}\n\n"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = beat.tick() => ": keepalive\n\n".to_string(),
            _ = stop.changed() => break,
        };
        ok = io.write_all(chunk.as_bytes()).await.is_ok() && io.flush().await.is_ok();
    }
    let mut c = api.counters();
    c.event_streams = c.event_streams.saturating_sub(1);
}

/// Serves only `GET /metrics`, in clear and without credentials, on a loopback listener
/// (refused otherwise: anything else needs TLS and a role).
pub async fn serve_plain_metrics(
    api: Arc<Api>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the plain metrics listener must be on a loopback address, not {local}"),
        ));
    }
    tokio::pin!(shutdown);
    let (_stop_tx, stop_rx) = watch::channel(false);
    loop {
        let (mut tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            () = &mut shutdown => return Ok(()),
        };
        let api = api.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let r = match read_request(&api, &mut tcp, &mut buf, &mut stop).await {
                Read::Request(req) if req.method == "GET" && req.path == "/metrics" => {
                    Response::bytes(200, metrics::CONTENT_TYPE, api.metrics_text())
                }
                Read::Request(_) => error(
                    404,
                    "not_found",
                    "only GET /metrics is served here",
                    json!(null),
                ),
                Read::Refuse(r) => r,
                Read::Gone => return,
            };
            let _ = tcp.write_all(&r.to_bytes(false, false)).await;
            let _ = tcp.shutdown().await;
        });
    }
}
