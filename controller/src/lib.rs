//! shg-controller: the local controller, and `shgctl`, the operator's command-line tool.
//!
//! The controller side, pure except the southbound and the runtime: [`config`] reads and validates the policy
//! file into a [`model::Policy`]; [`admission`] decides whether its guarantees fit the link;
//! [`planner`] turns (old policy, new policy, observed switch state, now) into the ordered
//! changes a southbound applies; [`fake_switch`] is the switch side for tests; [`cli`] holds
//! the `shg-controller` commands. [`southbound`] is the OpenFlow 1.3 client that applies plans;
//! [`store`] keeps the accepted policy crash-safely; [`runtime`] is the daemon that ties them
//! together (meets the switch, syncs, reloads, stops). `shgctl`'s commands live in [`ofp`] (offline OpenFlow tools
//! over `shg-flows`) and [`switch_ctl`] (the client of shg-switch's control socket).

pub mod admission;
pub mod api;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod fake_switch;
pub mod model;
pub mod nbctl;
pub mod ofp;
pub mod planner;
pub mod runtime;
pub mod southbound;
pub mod store;
pub mod switch_ctl;
