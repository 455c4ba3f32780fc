//! The northbound API: HTTPS JSON for the ISP (client certificate), the home user (bearer token) and monitors (read-only token), with Prometheus metrics, server-sent events and the home user's web page.
//!
//! Pure parts first: [`http`] frames HTTP/1.1; [`doc`] turns the policy into its JSON document
//! and back through the config parser; [`stats`] makes status, grades and the congestion
//! report from counter samples; [`trace`] walks a probe packet through the installed flows;
//! [`ratelimit`] is the per-client token bucket; [`metrics`] renders the Prometheus text;
//! [`tokens`] keeps hashed bearer tokens. [`routes`] is the resource table and the request
//! handling (roles, bad input, read-modify-write with versions); [`server`] is the only part
//! with sockets (tokio + rustls, [`tls`]). [`control`] is the boundary to the daemon: the
//! [`ControlPlane`] trait, implemented by [`link::Link`] for the daemon and
//! [`fake::FakeControlPlane`] for tests.
//! The resources are documented in docs/api.md and docs/openapi.json.
//!
//! Never: decide policy (the config parser, admission and the planner do), hold a lock across
//! an await, or change anything on a refused request.

pub mod control;
pub mod doc;
pub mod fake;
pub mod http;
pub mod link;
pub mod metrics;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod stats;
pub mod tls;
pub mod tokens;
pub mod trace;

pub use control::{
    ApiEvent, ControlPlane, PolicyState, Proposal, PushError, PushOutcome, Role, Sample,
};
pub use routes::{Api, ApiConfig, ROUTES};
pub use server::{serve, serve_plain_metrics};
