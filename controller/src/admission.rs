//! Admission control: whether a valid policy's guarantees, caps, latency classes and user choices fit the link and the ISP's bounds.
//!
//! Pure: a [`Policy`] in, [`Admitted`] or a [`Rejection`] naming every short resource out. A
//! rejected policy gets no plan ([`crate::planner::plan`] runs this first). Rules:
//! - per direction, the sum of guarantees (`min_rate` up, `down_min_rate` down) must be at most
//!   the line rate × `gateway.headroom`; the verdict says by how much it is short and which
//!   services hold it (largest first, then by name);
//! - caps (`max_rate`, `down_max_rate`, the user's `max_rate`) must not exceed the line rate;
//! - a guarantee must not exceed the cap in force (`min_rate <= max_rate`);
//! - interactive services need a priority of 0 or 1 (strict priority is what holds their
//!   latency), and their guarantees together at most line rate × `gateway.interactive_share`;
//! - the user's priority must lie within the ISP's `priority_bounds`, and the user may only
//!   lower `max_rate`.

use crate::model::{format_permille, scale_permille, Class, Policy, Service};
use shg_flows::rate::format_rate;
use std::fmt;

/// Highest priority number an interactive service may have.
pub const INTERACTIVE_PRIORITY_MAX: u8 = 1;

/// A policy that passed admission (the only way to get one).
#[derive(Debug, Clone, Copy)]
pub struct Admitted<'a> {
    policy: &'a Policy,
}

impl<'a> Admitted<'a> {
    /// The admitted policy.
    pub fn policy(&self) -> &'a Policy {
        self.policy
    }
}

/// Why a policy was refused: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reasons: Vec<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join("\n"))
    }
}

impl std::error::Error for Rejection {}

/// Checks every rule; all failures are reported.
pub fn admit(p: &Policy) -> Result<Admitted<'_>, Rejection> {
    let mut reasons = Vec::new();
    let g = &p.gateway;
    let up = g.uplink.up_rate;
    let down = g.uplink.down_rate;
    let services: Vec<&Service> = p.services.values().collect();

    for s in &services {
        let at = |k: &str| format!("services.{}.{k}", s.name);
        for (key, v, line, dir) in [
            ("max_rate", s.max_rate, up, "up"),
            ("down_max_rate", s.down_max_rate, down, "down"),
            ("user.max_rate", s.user.max_rate, up, "up"),
        ] {
            if let Some(v) = v.filter(|&v| v > line) {
                reasons.push(format!(
                    "{}: {} exceeds the uplink {dir} line rate {}",
                    at(key),
                    format_rate(v),
                    format_rate(line)
                ));
            }
        }
        if let (Some(u), Some(isp)) = (s.user.max_rate, s.max_rate) {
            if u > isp {
                reasons.push(format!(
                    "{}: {} is above the ISP's max_rate {} (the user may only lower it)",
                    at("user.max_rate"),
                    format_rate(u),
                    format_rate(isp)
                ));
            }
        }
        if let Some(max) = s.effective_max_rate().filter(|&m| s.min_rate > m) {
            let key = if s.user.max_rate.is_some() {
                "user.max_rate"
            } else {
                "max_rate"
            };
            reasons.push(format!(
                "{}: guarantee {} is above the cap {} ({key})",
                at("min_rate"),
                format_rate(s.min_rate),
                format_rate(max)
            ));
        }
        if let Some(max) = s.down_max_rate.filter(|&m| s.down_min_rate > m) {
            reasons.push(format!(
                "{}: guarantee {} is above the cap {} (down_max_rate)",
                at("down_min_rate"),
                format_rate(s.down_min_rate),
                format_rate(max)
            ));
        }
        if let Some(up_prio) = s.user.priority {
            let (lo, hi) = s.priority_bounds;
            if !(lo..=hi).contains(&up_prio) {
                reasons.push(format!(
                    "{}: {up_prio} is outside the ISP's bounds {lo}..={hi} for {}",
                    at("user.priority"),
                    s.name
                ));
            }
        }
        if s.class == Class::Interactive && s.effective_priority() > INTERACTIVE_PRIORITY_MAX {
            let key = if s.user.priority.is_some() {
                "user.priority"
            } else {
                "priority"
            };
            reasons.push(format!(
                "{}: interactive services need priority 0..={INTERACTIVE_PRIORITY_MAX}, got {}",
                at(key),
                s.effective_priority()
            ));
        }
    }

    let held = |f: &dyn Fn(&Service) -> u64, filter: &dyn Fn(&Service) -> bool| {
        let mut v: Vec<(&str, u64)> = services
            .iter()
            .filter(|s| filter(s) && f(s) > 0)
            .map(|s| (s.name.as_str(), f(s)))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    };
    let all = |_: &Service| true;
    let interactive = |s: &Service| s.class == Class::Interactive;
    for (what, holders, line, permille) in [
        (
            "uplink up",
            held(&|s| s.min_rate, &all),
            up,
            g.headroom_permille,
        ),
        (
            "uplink down",
            held(&|s| s.down_min_rate, &all),
            down,
            g.headroom_permille,
        ),
        (
            "uplink up, interactive class",
            held(&|s| s.min_rate, &interactive),
            up,
            g.interactive_share_permille,
        ),
    ] {
        if let Some(r) = shortage(what, &holders, line, permille) {
            reasons.push(r);
        }
    }

    if reasons.is_empty() {
        Ok(Admitted { policy: p })
    } else {
        Err(Rejection { reasons })
    }
}

fn shortage(what: &str, holders: &[(&str, u64)], line: u64, permille: u32) -> Option<String> {
    let sum = holders
        .iter()
        .fold(0u64, |acc, (_, r)| acc.saturating_add(*r));
    let cap = scale_permille(line, permille);
    if sum <= cap {
        return None;
    }
    let list: Vec<String> = holders
        .iter()
        .map(|(n, r)| format!("{n} {}", format_rate(*r)))
        .collect();
    Some(format!(
        "{what}: guarantees {} > {} ({} × {}): short by {}; held by {}",
        format_rate(sum),
        format_rate(cap),
        format_rate(line),
        format_permille(permille),
        format_rate(sum - cap),
        list.join(", ")
    ))
}
