//! Admission control: accepted and rejected policies, with the exact verdict text.

use shg_controller::admission::admit;
use shg_controller::config::parse;

fn policy(services: &str, gateway_extra: &str) -> shg_controller::model::Policy {
    let text = format!(
        r#"
[gateway]
datapath_id = "1"
listen = "ptcp:6653"
{gateway_extra}
[gateway.uplink]
port = 1
up_rate = "20mbit"
down_rate = "100mbit"
{services}"#
    );
    parse(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn svc(name: &str, n: u8, class: &str, extra: &str) -> String {
    format!(
        "\n[services.{name}]\nport = {}\nmac = \"02:00:00:00:00:{n:02x}\"\nipv4 = [\"10.0.0.{n}\"]\nclass = \"{class}\"\nqueue = {n}\n{extra}\n",
        u32::from(n) + 10
    )
}

fn verdict(p: &shg_controller::model::Policy) -> Vec<String> {
    admit(p).map(|_| ()).unwrap_err().reasons
}

#[test]
fn fits_exactly_at_the_headroom() {
    // 6 + 12 = 18 = 20 × 0.9: accepted (the bound is inclusive).
    let p = policy(
        &(svc("videocall", 1, "interactive", "min_rate = \"6mbit\"")
            + &svc("backup", 2, "bulk", "min_rate = \"12mbit\"")),
        "",
    );
    assert!(admit(&p).is_ok());
    assert!(std::ptr::eq(admit(&p).unwrap().policy(), &p));
}

#[test]
fn uplink_up_short_names_amount_and_holders() {
    let p = policy(
        &(svc("videocall", 1, "interactive", "min_rate = \"6mbit\"")
            + &svc("backup", 2, "bulk", "min_rate = \"12mbit\"")
            + &svc("iptv", 3, "streaming", "min_rate = \"5mbit\"")),
        "",
    );
    assert_eq!(
        verdict(&p),
        vec!["uplink up: guarantees 23mbit > 18mbit (20mbit × 0.9): short by 5mbit; held by backup 12mbit, videocall 6mbit, iptv 5mbit"]
    );
}

#[test]
fn headroom_is_configurable_and_down_is_checked_too() {
    let p = policy(
        &(svc(
            "a",
            1,
            "streaming",
            "min_rate = \"15mbit\"\ndown_min_rate = \"60mbit\"",
        ) + &svc("b", 2, "bulk", "down_min_rate = \"20500kbit\"")),
        "headroom = 0.8",
    );
    assert_eq!(
        verdict(&p),
        vec![
            "uplink down: guarantees 80500kbit > 80mbit (100mbit × 0.8): short by 500kbit; held by a 60mbit, b 20500kbit",
        ]
    );
    let p = policy(
        &svc("a", 1, "streaming", "min_rate = \"17mbit\""),
        "headroom = 0.8",
    );
    assert_eq!(
        verdict(&p),
        vec!["uplink up: guarantees 17mbit > 16mbit (20mbit × 0.8): short by 1mbit; held by a 17mbit"]
    );
}

#[test]
fn interactive_class_limits() {
    let p = policy(
        &(svc(
            "call",
            1,
            "interactive",
            "min_rate = \"6mbit\"\npriority = 3",
        ) + &svc("game", 2, "interactive", "min_rate = \"5mbit\"")),
        "interactive_share = 0.5",
    );
    assert_eq!(
        verdict(&p),
        vec![
            "services.call.priority: interactive services need priority 0..=1, got 3",
            "uplink up, interactive class: guarantees 11mbit > 10mbit (20mbit × 0.5): short by 1mbit; held by call 6mbit, game 5mbit",
        ]
    );
}

#[test]
fn caps_and_guarantees() {
    let p = policy(
        &(svc("a", 1, "bulk", "min_rate = \"3mbit\"\nmax_rate = \"2mbit\"")
            + &svc(
                "b",
                2,
                "bulk",
                "max_rate = \"25mbit\"\ndown_max_rate = \"200mbit\"",
            )),
        "",
    );
    assert_eq!(
        verdict(&p),
        vec![
            "services.a.min_rate: guarantee 3mbit is above the cap 2mbit (max_rate)",
            "services.b.max_rate: 25mbit exceeds the uplink up line rate 20mbit",
            "services.b.down_max_rate: 200mbit exceeds the uplink down line rate 100mbit",
        ]
    );
}

#[test]
fn user_choices_stay_within_isp_bounds() {
    let ok = "priority = 2\npriority_bounds = [2, 4]\nmax_rate = \"8mbit\"\n[services.tv.user]\npriority = 4\nmax_rate = \"5mbit\"";
    let p = policy(&svc("tv", 1, "streaming", ok), "");
    assert!(admit(&p).is_ok());
    assert_eq!(p.services["tv"].effective_priority(), 4);

    let bad = "priority = 2\npriority_bounds = [2, 4]\nmin_rate = \"4mbit\"\nmax_rate = \"8mbit\"\n[services.tv.user]\npriority = 1\nmax_rate = \"9mbit\"";
    let p = policy(&svc("tv", 1, "streaming", bad), "");
    assert_eq!(
        verdict(&p),
        vec![
            "services.tv.user.max_rate: 9mbit is above the ISP's max_rate 8mbit (the user may only lower it)",
            "services.tv.user.priority: 1 is outside the ISP's bounds 2..=4 for tv",
        ]
    );
    // Lowering the cap below the guarantee is refused, naming the user's key.
    let low =
        "min_rate = \"4mbit\"\nmax_rate = \"8mbit\"\n[services.tv.user]\nmax_rate = \"3mbit\"";
    let p = policy(&svc("tv", 1, "streaming", low), "");
    assert_eq!(
        verdict(&p),
        vec!["services.tv.min_rate: guarantee 4mbit is above the cap 3mbit (user.max_rate)"]
    );
    // An interactive service whose user moved it to priority 2 (bounds allow it) is refused.
    let p = policy(
        &svc(
            "call",
            1,
            "interactive",
            "priority_bounds = [0, 2]\n[services.call.user]\npriority = 2",
        ),
        "",
    );
    assert_eq!(
        verdict(&p),
        vec!["services.call.user.priority: interactive services need priority 0..=1, got 2"]
    );
}
