//! The resources: which role may call what, and what each request does. Transport-free: a parsed [`Request`] and the [`Client`] in, a [`Reply`] out.
//!
//! Every request is authenticated first (a bearer token decides the role when one is sent;
//! otherwise a client certificate from the ISP CA is the isp role), then rate-limited per
//! credential (per IP address when there is none), then checked against the route's roles:
//! no credential or a bad one is 401, a role the route does not list is 403. Writes are
//! read-modify-write of the whole policy: the change is made to the policy's JSON document,
//! validated by the config parser, and pushed with the version it was made from
//! (compare-and-swap), so nothing changes on any error and concurrent edits never overwrite
//! each other silently. [`ROUTES`] is the table docs/openapi.json documents (a test holds
//! them together).

use super::control::{
    ApiEvent, ControlPlane, PolicyState, Proposal, PushError, PushOutcome, Role, Verdict,
};
use super::doc::{parse_doc, policy_doc, service_doc};
use super::http::{Request, Response};
use super::metrics::{self, ApiCounters};
use super::ratelimit::{Limits, RateLimiter};
use super::stats::Tracker;
use super::tls::IspVerifier;
use super::tokens::TokenStore;
use super::trace::{trace, Destination, TraceError};
use crate::config::{ConfigError, PRIORITY_MAX};
use crate::model::Policy;
use serde_json::{json, Map, Value};
use shg_flows::rate::{format_rate, parse_rate};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Index,
    AppJs,
    Style,
    OpenApi,
    Whoami,
    GetPolicy,
    PutPolicy,
    ListServices,
    GetService,
    PutService,
    DeleteService,
    GetPriorities,
    PutPriorities,
    Devices,
    Status,
    Congestion,
    Trace,
    Events,
    Metrics,
}

/// One route: method, path pattern (`{name}` is one segment), the roles allowed (empty:
/// public), the query parameters it takes.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub op: Op,
    pub roles: &'static [Role],
    pub query: &'static [&'static str],
}

const ALL: &[Role] = &[Role::Isp, Role::User, Role::Monitor];
const ISP: &[Role] = &[Role::Isp];
const ISP_MON: &[Role] = &[Role::Isp, Role::Monitor];
const USER: &[Role] = &[Role::User];
const DRY: &[&str] = &["dry_run"];

/// Every route.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        pattern: "/",
        op: Op::Index,
        roles: &[],
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/app.js",
        op: Op::AppJs,
        roles: &[],
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/style.css",
        op: Op::Style,
        roles: &[],
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/openapi.json",
        op: Op::OpenApi,
        roles: &[],
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/whoami",
        op: Op::Whoami,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/policy",
        op: Op::GetPolicy,
        roles: ISP_MON,
        query: &[],
    },
    Route {
        method: "PUT",
        pattern: "/v1/policy",
        op: Op::PutPolicy,
        roles: ISP,
        query: DRY,
    },
    Route {
        method: "GET",
        pattern: "/v1/services",
        op: Op::ListServices,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/services/{name}",
        op: Op::GetService,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "PUT",
        pattern: "/v1/services/{name}",
        op: Op::PutService,
        roles: ISP,
        query: DRY,
    },
    Route {
        method: "DELETE",
        pattern: "/v1/services/{name}",
        op: Op::DeleteService,
        roles: ISP,
        query: DRY,
    },
    Route {
        method: "GET",
        pattern: "/v1/priorities",
        op: Op::GetPriorities,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "PUT",
        pattern: "/v1/priorities",
        op: Op::PutPriorities,
        roles: USER,
        query: DRY,
    },
    Route {
        method: "GET",
        pattern: "/v1/devices",
        op: Op::Devices,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/status",
        op: Op::Status,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/congestion",
        op: Op::Congestion,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/v1/trace",
        op: Op::Trace,
        roles: ALL,
        query: &["service", "destination"],
    },
    Route {
        method: "GET",
        pattern: "/v1/events",
        op: Op::Events,
        roles: ALL,
        query: &[],
    },
    Route {
        method: "GET",
        pattern: "/metrics",
        op: Op::Metrics,
        roles: ISP_MON,
        query: &[],
    },
];

/// The OpenAPI document (served at `/v1/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// Tunables.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, bytes (larger: 413).
    pub body_limit: usize,
    pub limits: Limits,
    /// Most connections open at once (more are closed at accept).
    pub max_connections: usize,
    /// Time allowed to send a request head once started, and a body.
    pub request_timeout: Duration,
    /// Time a kept-alive connection may stay idle.
    pub idle_timeout: Duration,
    /// How often counters are sampled.
    pub poll_interval: Duration,
    /// Comment lines on an idle event stream.
    pub heartbeat: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 64 * 1024,
            limits: Limits::default(),
            max_connections: 256,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// What the client showed at the TLS layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    None,
    /// Chains to the ISP CA; the value names it (SHA-256 of the certificate, 16 hex digits).
    Valid(String),
    /// Sent, but refused (why).
    Invalid(String),
}

/// The peer of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub cert: CertState,
}

/// An answer, or an event stream.
#[derive(Debug)]
pub enum Reply {
    Response(Response),
    /// Start a server-sent event stream.
    Events(broadcast::Receiver<(u64, ApiEvent)>),
}

/// The API's state.
#[derive(Debug)]
pub struct Api {
    pub(crate) control: Arc<dyn ControlPlane>,
    tokens: Mutex<TokenStore>,
    pub(crate) isp: Option<IspVerifier>,
    limiter: Mutex<RateLimiter>,
    tracker: Mutex<Tracker>,
    hub: broadcast::Sender<(u64, ApiEvent)>,
    seq: AtomicU64,
    pub(crate) counters: Mutex<ApiCounters>,
    pub config: ApiConfig,
    started: Instant,
}

impl std::fmt::Debug for dyn ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlPlane")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `{"error": code, "message": ...}` plus extra fields.
pub fn error(status: u16, code: &str, message: impl Into<String>, extra: Value) -> Response {
    let mut m = Map::new();
    m.insert("error".into(), json!(code));
    m.insert("message".into(), json!(message.into()));
    if let Value::Object(x) = extra {
        m.extend(x);
    }
    Response::json(status, &Value::Object(m))
}

fn bad(code: &str, message: impl Into<String>) -> Response {
    error(400, code, message, Value::Null)
}

fn bad_field(path: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    error(
        400,
        "bad_field",
        format!("{path}: {message}"),
        json!({ "field": path }),
    )
}

fn config_errors(errs: &[ConfigError]) -> Response {
    let first = errs.first().map(ToString::to_string).unwrap_or_default();
    let list: Vec<Value> = errs
        .iter()
        .map(|e| json!({"field": e.path, "message": e.message}))
        .collect();
    error(
        400,
        "invalid_policy",
        first,
        json!({ "field": errs.first().map(|e| e.path.clone()), "errors": list }),
    )
}

fn etag(version: u64) -> String {
    format!("\"v{version}\"")
}

fn ok_json(v: &impl serde::Serialize) -> Response {
    Response::json(200, &serde_json::to_value(v).unwrap_or(Value::Null))
}

/// Matches `path` against `pattern`; the `{name}` segment's value.
fn matches(pattern: &str, path: &str) -> Option<Option<String>> {
    let p: Vec<&str> = pattern.split('/').collect();
    let q: Vec<&str> = path.split('/').collect();
    if p.len() != q.len() {
        return None;
    }
    let mut param = None;
    for (a, b) in p.iter().zip(&q) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
            param = Some((*b).to_string());
        } else if a != b {
            return None;
        }
    }
    Some(param)
}

/// How a request authenticated.
enum Auth {
    Ok { role: Role, key: String, id: String },
    Fail(String),
    Anonymous,
}

/// Parses `If-Match`: `"v3"`, `v3`, `3` or `*` (any).
fn if_match(req: &Request) -> Result<Option<u64>, Response> {
    let Some(h) = req.header("if-match") else {
        return Ok(None);
    };
    let t = h.trim();
    if t == "*" {
        return Ok(None);
    }
    let v = t.trim_start_matches("W/").trim_matches('"');
    v.trim_start_matches('v')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| {
            bad(
                "bad_header",
                format!("If-Match {h:?} is not a version ETag like \"v3\""),
            )
        })
}

fn dry_run(req: &Request) -> Result<bool, Response> {
    match req.query("dry_run") {
        None => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(bad(
            "bad_query",
            format!("dry_run={v:?}: expected true or false"),
        )),
    }
}

enum Body {
    Json(Value),
    Toml(String),
}

fn body(req: &Request, toml_ok: bool) -> Result<Body, Response> {
    let ct = req
        .header("content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match ct.as_str() {
        "" | "application/json" => {}
        "application/toml" if toml_ok => {
            return String::from_utf8(req.body.clone())
                .map(Body::Toml)
                .map_err(|_| bad("bad_body", "the TOML body is not UTF-8"));
        }
        other => {
            return Err(error(
                415,
                "unsupported_media_type",
                format!(
                    "Content-Type {other:?}: send application/json{}",
                    if toml_ok { " or application/toml" } else { "" }
                ),
                Value::Null,
            ))
        }
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("bad_json", "empty body: expected a JSON object"));
    }
    serde_json::from_slice::<Value>(&req.body)
        .map(Body::Json)
        .map_err(|e| {
            error(
                400,
                "bad_json",
                format!("malformed JSON: {e}"),
                json!({"line": e.line(), "column": e.column()}),
            )
        })
}

fn json_body(req: &Request) -> Result<Value, Response> {
    match body(req, false)? {
        Body::Json(v) => Ok(v),
        Body::Toml(_) => Err(bad("bad_body", "expected JSON")),
    }
}

/// The ports map of the last switch read-back (empty without one).
fn ports_of(control: &dyn ControlPlane) -> BTreeMap<String, u32> {
    control.observed().map(|o| o.ports).unwrap_or_default()
}

fn service_view(p: &Policy, name: &str) -> Option<Value> {
    let s = p.services.get(name)?;
    let mut v = service_doc(s);
    if let Value::Object(m) = &mut v {
        m.insert("name".into(), json!(name));
        m.insert("effective_priority".into(), json!(s.effective_priority()));
        m.insert(
            "effective_max_rate".into(),
            json!(s.effective_max_rate().map(format_rate)),
        );
    }
    Some(v)
}

/// The user's requested change to one service.
#[derive(Debug, Default)]
struct UserChange {
    /// Some(None): back to the ISP's value.
    priority: Option<Option<u8>>,
    max_rate: Option<Option<u64>>,
}

impl Api {
    /// A new API over `control`. `isp`: the ISP CA check (`None`: no client is the isp role).
    pub fn new(
        control: Arc<dyn ControlPlane>,
        tokens: TokenStore,
        isp: Option<IspVerifier>,
        config: ApiConfig,
    ) -> Arc<Api> {
        let (hub, _) = broadcast::channel(256);
        Arc::new(Api {
            control,
            tokens: Mutex::new(tokens),
            isp,
            limiter: Mutex::new(RateLimiter::new(config.limits)),
            tracker: Mutex::new(Tracker::new()),
            hub,
            seq: AtomicU64::new(0),
            counters: Mutex::new(ApiCounters::default()),
            config,
            started: Instant::now(),
        })
    }

    /// Nanoseconds since the API started (the rate limiter's clock).
    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Publishes an event to every event stream.
    pub fn publish(&self, e: ApiEvent) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.hub.send((id, e));
    }

    /// Takes a counter sample now and updates status and congestion.
    pub async fn poll_once(&self) {
        match self.control.sample().await {
            Ok(s) => {
                let policy = self.control.policy().policy;
                let ports = ports_of(self.control.as_ref());
                let events = lock(&self.tracker).update(s, &policy, &ports);
                for e in events {
                    self.publish(e);
                }
            }
            Err(e) => tracing::debug!("api: no counter sample: {e}"),
        }
    }

    pub(crate) fn count(&self, status: u16) {
        *lock(&self.counters).responses.entry(status).or_insert(0) += 1;
    }

    pub(crate) fn counters(&self) -> std::sync::MutexGuard<'_, ApiCounters> {
        lock(&self.counters)
    }

    fn authenticate(&self, req: &Request, client: &Client) -> Auth {
        if let Some(h) = req.header("authorization") {
            let Some(tok) = h.strip_prefix("Bearer ").map(str::trim) else {
                return Auth::Fail("the Authorization header must be `Bearer TOKEN`".into());
            };
            let mut store = lock(&self.tokens);
            if let Err(e) = store.refresh() {
                tracing::warn!("api: token store: {e}");
            }
            return match store.verify(tok) {
                Some((role, id)) => Auth::Ok {
                    role,
                    key: format!("token:{id}"),
                    id,
                },
                None => Auth::Fail("unknown or revoked token".into()),
            };
        }
        match &client.cert {
            CertState::Valid(fp) => Auth::Ok {
                role: Role::Isp,
                key: format!("cert:{fp}"),
                id: fp.clone(),
            },
            CertState::Invalid(why) => Auth::Fail(why.clone()),
            CertState::None => Auth::Anonymous,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Request, client: &Client) -> Reply {
        let reply = self.dispatch(req, client).await;
        let status = match &reply {
            Reply::Response(r) => r.status,
            Reply::Events(_) => 200,
        };
        self.count(status);
        reply
    }

    async fn dispatch(&self, req: &Request, client: &Client) -> Reply {
        let auth = self.authenticate(req, client);
        let key = match &auth {
            Auth::Ok { key, .. } => key.clone(),
            _ => format!("ip:{}", client.addr),
        };
        if let Err(wait) = lock(&self.limiter).check(&key, self.now()) {
            lock(&self.counters).rate_limited += 1;
            return Reply::Response(
                error(
                    429,
                    "rate_limited",
                    format!("too many requests: retry in {wait} s"),
                    json!({"retry_after_s": wait}),
                )
                .with_header("Retry-After", wait.to_string()),
            );
        }
        let found: Vec<(&Route, Option<String>)> = ROUTES
            .iter()
            .filter_map(|r| matches(r.pattern, &req.path).map(|p| (r, p)))
            .collect();
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        let Some((route, param)) = found.iter().find(|(r, _)| r.method == method).cloned() else {
            if found.is_empty() {
                return Reply::Response(error(
                    404,
                    "not_found",
                    format!("no resource {}", req.path),
                    Value::Null,
                ));
            }
            let allow: Vec<&str> = found.iter().map(|(r, _)| r.method).collect();
            return Reply::Response(
                error(
                    405,
                    "method_not_allowed",
                    format!("{} is not allowed on {}", req.method, req.path),
                    json!({"allow": allow}),
                )
                .with_header("Allow", allow.join(", ")),
            );
        };
        let (role, id) = if route.roles.is_empty() {
            (None, String::new())
        } else {
            match auth {
                Auth::Anonymous => {
                    return Reply::Response(
                        error(
                            401,
                            "unauthenticated",
                            "send a bearer token or a client certificate from the ISP CA",
                            Value::Null,
                        )
                        .with_header("WWW-Authenticate", "Bearer realm=\"shg\""),
                    )
                }
                Auth::Fail(why) => {
                    return Reply::Response(
                        error(401, "unauthenticated", why, Value::Null).with_header(
                            "WWW-Authenticate",
                            "Bearer realm=\"shg\", error=\"invalid_token\"",
                        ),
                    )
                }
                Auth::Ok { role, id, .. } => {
                    if !route.roles.contains(&role) {
                        let allowed: Vec<&str> = route.roles.iter().map(|r| r.name()).collect();
                        return Reply::Response(error(
                            403,
                            "forbidden",
                            format!(
                                "role {} may not {} {}: allowed for {}",
                                role.name(),
                                route.method,
                                route.pattern,
                                allowed.join(", ")
                            ),
                            Value::Null,
                        ));
                    }
                    (Some(role), id)
                }
            }
        };
        if let Some((k, _)) = req
            .query
            .iter()
            .find(|(k, _)| !route.query.contains(&k.as_str()))
        {
            return Reply::Response(bad(
                "bad_query",
                format!(
                    "unknown query parameter {k:?} for {} {}",
                    route.method, route.pattern
                ),
            ));
        }
        let role = role.unwrap_or(Role::Monitor);
        let name = param.unwrap_or_default();
        let r = match route.op {
            Op::Index => Response::bytes(200, "text/html; charset=utf-8", INDEX_HTML).with_header(
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
            Op::AppJs => Response::bytes(200, "text/javascript; charset=utf-8", APP_JS),
            Op::Style => Response::bytes(200, "text/css; charset=utf-8", STYLE_CSS),
            Op::OpenApi => Response::bytes(200, "application/json", OPENAPI),
            Op::Whoami => Response::json(200, &json!({"role": role.name(), "id": id})),
            Op::GetPolicy => {
                let st = self.control.policy();
                Response::json(200, &policy_doc(&st.policy)).with_header("ETag", etag(st.version))
            }
            Op::PutPolicy => self.put_policy(req, role).await,
            Op::ListServices => {
                let p = self.control.policy().policy;
                let list: Vec<Value> = p
                    .services
                    .keys()
                    .filter_map(|n| service_view(&p, n))
                    .collect();
                Response::json(200, &json!({ "services": list }))
            }
            Op::GetService => {
                let st = self.control.policy();
                match service_view(&st.policy, &name) {
                    Some(v) => Response::json(200, &v).with_header("ETag", etag(st.version)),
                    None => error(
                        404,
                        "not_found",
                        format!("no service {name:?}"),
                        Value::Null,
                    ),
                }
            }
            Op::PutService => self.put_service(req, role, &name).await,
            Op::DeleteService => self.delete_service(req, role, &name).await,
            Op::GetPriorities => {
                let st = self.control.policy();
                Response::json(200, &priorities_view(&st.policy))
                    .with_header("ETag", etag(st.version))
            }
            Op::PutPriorities => self.put_priorities(req, role).await,
            Op::Devices => Response::json(200, &json!({ "devices": self.control.devices() })),
            Op::Status => {
                let st = self.control.policy();
                let ports = ports_of(self.control.as_ref());
                let report = lock(&self.tracker).status(
                    &st.policy,
                    &ports,
                    self.control.connected(),
                    st.version,
                );
                ok_json(&report)
            }
            Op::Congestion => {
                let st = self.control.policy();
                let ports = ports_of(self.control.as_ref());
                let report = lock(&self.tracker).congestion(&st.policy, &ports);
                ok_json(&report)
            }
            Op::Trace => self.trace(req),
            Op::Events => return Reply::Events(self.hub.subscribe()),
            Op::Metrics => Response::bytes(200, metrics::CONTENT_TYPE, self.metrics_text()),
        };
        Reply::Response(r)
    }

    /// The Prometheus exposition.
    pub fn metrics_text(&self) -> String {
        let st = self.control.policy();
        let ports = ports_of(self.control.as_ref());
        let tracker = lock(&self.tracker);
        let status = tracker.status(&st.policy, &ports, self.control.connected(), st.version);
        let devices = self.control.devices().len();
        let api = lock(&self.counters).clone();
        metrics::render(
            tracker.latest(),
            &status,
            &self.control.discovery_counters(),
            devices,
            &api,
        )
    }

    fn trace(&self, req: &Request) -> Response {
        let (Some(service), Some(dest)) = (req.query("service"), req.query("destination")) else {
            return bad(
                "bad_query",
                "trace needs the query parameters service and destination",
            );
        };
        let st = self.control.policy();
        if !st.policy.services.contains_key(service) {
            return error(
                404,
                "not_found",
                format!("no service {service:?}"),
                Value::Null,
            );
        }
        let dest = match Destination::parse(dest, &st.policy) {
            Ok(d) => d,
            Err(e) => return bad("bad_query", e),
        };
        let Some(observed) = self.control.observed() else {
            return error(
                503,
                "unavailable",
                "the switch has not been read yet",
                Value::Null,
            );
        };
        match trace(&st.policy, &observed, service, &dest) {
            Ok(t) => ok_json(&t),
            Err(TraceError::NotFound(m)) => error(404, "not_found", m, Value::Null),
            Err(TraceError::BadRequest(m)) => bad("bad_query", m),
            Err(TraceError::Unavailable(m)) => error(503, "unavailable", m, Value::Null),
        }
    }

    /// Pushes `policy`; maps the outcome to an answer. `created`: answer 201 on success.
    async fn push(
        &self,
        proposal: Proposal,
        created: bool,
    ) -> Result<Response, (PushError, Response)> {
        let dry = proposal.dry_run;
        let version_before = proposal.if_match;
        match self.control.push(proposal).await {
            Ok(o) => {
                let status = if created && !dry { 201 } else { 200 };
                Ok(ok_json(&o)
                    .with_status(status)
                    .with_header("ETag", etag(o.version)))
            }
            Err(e) => {
                let r = match &e {
                    PushError::Conflict { current } => error(
                        412,
                        "version_mismatch",
                        format!(
                            "the policy is at version {current}, not {}: read it again",
                            version_before.unwrap_or(0)
                        ),
                        json!({"current_version": current}),
                    )
                    .with_header("ETag", etag(*current)),
                    PushError::Rejected(reasons) if dry => {
                        let v = self.control.policy().version;
                        ok_json(&PushOutcome {
                            version: v,
                            changed: false,
                            dry_run: true,
                            applied: false,
                            admission: Verdict {
                                admitted: false,
                                reasons: reasons.clone(),
                            },
                            plan: Default::default(),
                        })
                    }
                    PushError::Rejected(reasons) => error(
                        422,
                        "admission_refused",
                        reasons.join("; "),
                        json!({"admission": {"admitted": false, "reasons": reasons}}),
                    ),
                    PushError::Failed(m) => error(502, "switch_refused", m.clone(), Value::Null),
                    PushError::Unavailable(m) => error(503, "unavailable", m.clone(), Value::Null),
                };
                Err((e, r))
            }
        }
    }

    /// Read-modify-write: `edit` makes the new policy document from the current state; it is
    /// pushed with the state's version. Without a client If-Match, a concurrent change is
    /// retried (up to 3 times); with one, it is the client's 412.
    async fn modify(
        &self,
        req: &Request,
        role: Role,
        what: String,
        created: bool,
        edit: impl Fn(&PolicyState) -> Result<Value, Response>,
    ) -> Response {
        let client_if = match if_match(req) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let dry = match dry_run(req) {
            Ok(d) => d,
            Err(r) => return r,
        };
        for _ in 0..3 {
            let st = self.control.policy();
            if let Some(v) = client_if.filter(|v| *v != st.version) {
                return error(
                    412,
                    "version_mismatch",
                    format!(
                        "the policy is at version {}, not {v}: read it again",
                        st.version
                    ),
                    json!({"current_version": st.version}),
                )
                .with_header("ETag", etag(st.version));
            }
            let doc = match edit(&st) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let (policy, text) = match parse_doc(&doc) {
                Ok(x) => x,
                Err(errs) => return config_errors(&errs),
            };
            let p = Proposal {
                policy,
                text,
                if_match: Some(st.version),
                dry_run: dry,
                origin: role,
                what: what.clone(),
            };
            match self.push(p, created).await {
                Ok(r) => return r,
                Err((PushError::Conflict { .. }, _)) if client_if.is_none() => continue,
                Err((_, r)) => return r,
            }
        }
        error(
            409,
            "conflict",
            "the policy kept changing while this request was applied; try again",
            Value::Null,
        )
    }

    async fn put_policy(&self, req: &Request, role: Role) -> Response {
        let if_m = match if_match(req) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let dry = match dry_run(req) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let parsed = match body(req, true) {
            Ok(Body::Json(v)) => parse_doc(&v),
            Ok(Body::Toml(t)) => crate::config::parse(&t).map(|p| (p, t)),
            Err(r) => return r,
        };
        let (policy, text) = match parsed {
            Ok(x) => x,
            Err(errs) => return config_errors(&errs),
        };
        let p = Proposal {
            policy,
            text,
            if_match: if_m,
            dry_run: dry,
            origin: role,
            what: "PUT /v1/policy".into(),
        };
        match self.push(p, false).await {
            Ok(r) | Err((_, r)) => r,
        }
    }

    async fn put_service(&self, req: &Request, role: Role, name: &str) -> Response {
        let v = match json_body(req) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if !v.is_object() {
            return bad_field(&format!("services.{name}"), "expected a JSON object");
        }
        let exists = self.control.policy().policy.services.contains_key(name);
        self.modify(
            req,
            role,
            format!("PUT /v1/services/{name}"),
            !exists,
            |st| {
                let mut doc = policy_doc(&st.policy);
                let mut new = v.clone();
                // The user's choices survive an ISP edit that does not mention them.
                if let (Some(old), Value::Object(m)) = (st.policy.services.get(name), &mut new) {
                    if !m.contains_key("user") {
                        if let Some(u) = service_doc(old).get("user") {
                            m.insert("user".into(), u.clone());
                        }
                    }
                }
                doc["services"][name] = new;
                Ok(doc)
            },
        )
        .await
    }

    async fn delete_service(&self, req: &Request, role: Role, name: &str) -> Response {
        if !self.control.policy().policy.services.contains_key(name) {
            return error(
                404,
                "not_found",
                format!("no service {name:?}"),
                Value::Null,
            );
        }
        self.modify(
            req,
            role,
            format!("DELETE /v1/services/{name}"),
            false,
            |st| {
                if !st.policy.services.contains_key(name) {
                    return Err(error(
                        404,
                        "not_found",
                        format!("no service {name:?}"),
                        Value::Null,
                    ));
                }
                let mut doc = policy_doc(&st.policy);
                if let Some(Value::Object(s)) = doc.get_mut("services") {
                    s.remove(name);
                }
                Ok(doc)
            },
        )
        .await
    }

    async fn put_priorities(&self, req: &Request, role: Role) -> Response {
        let v = match json_body(req) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let changes = match parse_priorities(&v) {
            Ok(c) => c,
            Err(r) => return r,
        };
        self.modify(req, role, "PUT /v1/priorities".into(), false, |st| {
            check_bounds(&st.policy, &changes)?;
            let mut doc = policy_doc(&st.policy);
            for (name, c) in &changes {
                let svc = &mut doc["services"][name.as_str()];
                let mut user = svc.get("user").cloned().unwrap_or_else(|| json!({}));
                if let Some(p) = c.priority {
                    match p {
                        Some(p) => user["priority"] = json!(p),
                        None => {
                            if let Some(m) = user.as_object_mut() {
                                m.remove("priority");
                            }
                        }
                    }
                }
                if let Some(r) = c.max_rate {
                    match r {
                        Some(r) => user["max_rate"] = json!(format_rate(r)),
                        None => {
                            if let Some(m) = user.as_object_mut() {
                                m.remove("max_rate");
                            }
                        }
                    }
                }
                if let Some(m) = svc.as_object_mut() {
                    if user.as_object().is_some_and(Map::is_empty) {
                        m.remove("user");
                    } else {
                        m.insert("user".into(), user);
                    }
                }
            }
            Ok(doc)
        })
        .await
    }
}

trait WithStatus {
    fn with_status(self, status: u16) -> Self;
}

impl WithStatus for Response {
    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// `GET /v1/priorities`.
fn priorities_view(p: &Policy) -> Value {
    let m: Map<String, Value> = p
        .services
        .values()
        .map(|s| {
            (
                s.name.clone(),
                json!({
                    "priority": s.effective_priority(),
                    "isp_priority": s.priority,
                    "user_priority": s.user.priority,
                    "bounds": [s.priority_bounds.0, s.priority_bounds.1],
                    "class": s.class.name(),
                    "max_rate": s.effective_max_rate().map(format_rate),
                    "isp_max_rate": s.max_rate.map(format_rate),
                    "user_max_rate": s.user.max_rate.map(format_rate),
                    "min_rate": format_rate(s.min_rate),
                }),
            )
        })
        .collect();
    json!({ "services": m })
}

/// `{"services": {"NAME": {"priority": N|null, "max_rate": "RATE"|null}}}`, every unknown
/// key refused with its path.
fn parse_priorities(v: &Value) -> Result<Vec<(String, UserChange)>, Response> {
    let Some(top) = v.as_object() else {
        return Err(bad_field("(body)", "expected a JSON object with services"));
    };
    if let Some(k) = top.keys().find(|k| k.as_str() != "services") {
        return Err(bad_field(k, "unknown field: expected services"));
    }
    let Some(svcs) = top.get("services").and_then(Value::as_object) else {
        return Err(bad_field(
            "services",
            "required: an object of service name → change",
        ));
    };
    let mut out = Vec::new();
    for (name, c) in svcs {
        let at = |k: &str| format!("services.{name}.{k}");
        let Some(c) = c.as_object() else {
            return Err(bad_field(
                &format!("services.{name}"),
                "expected an object with priority and/or max_rate",
            ));
        };
        if let Some(k) = c
            .keys()
            .find(|k| !matches!(k.as_str(), "priority" | "max_rate"))
        {
            return Err(bad_field(
                &at(k),
                "unknown field: expected priority or max_rate",
            ));
        }
        let mut uc = UserChange::default();
        if let Some(p) = c.get("priority") {
            uc.priority = Some(match p {
                Value::Null => None,
                Value::Number(n) => match n.as_u64().and_then(|x| u8::try_from(x).ok()) {
                    Some(x) if x <= PRIORITY_MAX => Some(x),
                    _ => {
                        return Err(bad_field(
                            &at("priority"),
                            format!("{n} is not a priority: expected 0..={PRIORITY_MAX}"),
                        ))
                    }
                },
                other => {
                    return Err(bad_field(
                        &at("priority"),
                        format!("expected an integer 0..={PRIORITY_MAX} or null, got {other}"),
                    ))
                }
            });
        }
        if let Some(r) = c.get("max_rate") {
            uc.max_rate = Some(match r {
                Value::Null => None,
                Value::String(s) => match parse_rate(s) {
                    Ok(0) => return Err(bad_field(&at("max_rate"), format!("{s:?} must be > 0"))),
                    Ok(x) => Some(x),
                    Err(e) => return Err(bad_field(&at("max_rate"), e.0)),
                },
                other => {
                    return Err(bad_field(
                        &at("max_rate"),
                        format!("expected a rate like \"6mbit\" or null, got {other}"),
                    ))
                }
            });
        }
        out.push((name.clone(), uc));
    }
    Ok(out)
}

/// The ISP's bounds: a user choice outside them is 403 with the reason.
fn check_bounds(p: &Policy, changes: &[(String, UserChange)]) -> Result<(), Response> {
    for (name, c) in changes {
        let Some(s) = p.services.get(name) else {
            return Err(error(
                404,
                "not_found",
                format!("services.{name}: no service {name:?}"),
                json!({"field": format!("services.{name}")}),
            ));
        };
        let forbid =
            |field: &str, msg: String| error(403, "outside_bounds", msg, json!({"field": field}));
        if let Some(Some(prio)) = c.priority {
            let (lo, hi) = s.priority_bounds;
            if !(lo..=hi).contains(&prio) {
                let f = format!("services.{name}.priority");
                return Err(forbid(
                    &f,
                    format!("{f}: {prio} is outside the ISP's bounds {lo}..={hi} for {name}"),
                ));
            }
        }
        if let Some(Some(r)) = c.max_rate {
            let f = format!("services.{name}.max_rate");
            if let Some(isp) = s.max_rate.filter(|&m| r > m) {
                return Err(forbid(
                    &f,
                    format!(
                        "{f}: {} is above the ISP's cap {} (the user may only lower it)",
                        format_rate(r),
                        format_rate(isp)
                    ),
                ));
            }
            if r < s.min_rate {
                return Err(forbid(
                    &f,
                    format!(
                        "{f}: {} is below the ISP's guarantee {} for {name}",
                        format_rate(r),
                        format_rate(s.min_rate)
                    ),
                ));
            }
            if r > p.gateway.uplink.up_rate {
                return Err(forbid(
                    &f,
                    format!(
                        "{f}: {} is above the uplink's rate {}",
                        format_rate(r),
                        format_rate(p.gateway.uplink.up_rate)
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            matches("/v1/services/{name}", "/v1/services/iptv"),
            Some(Some("iptv".into()))
        );
        assert_eq!(matches("/v1/services/{name}", "/v1/services/"), None);
        assert_eq!(matches("/v1/services", "/v1/services"), Some(None));
        assert_eq!(matches("/v1/services", "/v1/services/x"), None);
    }

    #[test]
    fn priorities_body_names_the_field() {
        let e = parse_priorities(&json!({"services": {"iptv": {"prio": 3}}})).unwrap_err();
        assert!(String::from_utf8_lossy(&e.body).contains("services.iptv.prio"));
        let e = parse_priorities(&json!({"services": {"iptv": {"priority": 9}}})).unwrap_err();
        assert!(String::from_utf8_lossy(&e.body).contains("services.iptv.priority"));
        let e = parse_priorities(&json!({"svc": {}})).unwrap_err();
        assert_eq!(e.status, 400);
        let ok = parse_priorities(
            &json!({"services": {"iptv": {"priority": null, "max_rate": "5mbit"}}}),
        )
        .unwrap();
        assert_eq!(ok[0].1.priority, Some(None));
        assert_eq!(ok[0].1.max_rate, Some(Some(5_000_000)));
    }
}
