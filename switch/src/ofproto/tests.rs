//! Unit tests of the core's internals (the wire-level behaviour is tested by the fake
//! controller in `switch/tests/ofproto_fake_controller.rs`).

use super::*;
use shg_flows::error::ErrorCode;
use shg_flows::text::{parse_flow, parse_group};
use shg_flows::wire::message::{encode, HelloElement, Role};
use shg_flows::wire::port::config as config_bits;

const SEC: u64 = 1_000_000_000;

fn ready(of: &mut Ofproto, conn: ConnId, kind: ConnKind) {
    of.connect(conn, kind, 0);
    let hello = Message::Hello {
        version: 4,
        elements: vec![HelloElement::versions(&[4])],
    };
    assert!(of.handle(conn, &encode(1, &hello), 0).is_empty());
}

fn send(of: &mut Ofproto, conn: ConnId, msg: &Message, now: u64) -> Vec<Effect> {
    of.handle(conn, &encode(7, msg), now)
}

fn flow(s: &str, cmd: FlowModCommand) -> Message {
    Message::FlowMod(parse_flow(s, cmd).unwrap_or_else(|e| panic!("{s}: {e}")))
}

#[test]
fn group_and_meter_refs_follow_modify_and_delete() {
    let mut of = Ofproto::new(OfprotoConfig::default());
    ready(&mut of, 1, ConnKind::Active);
    let gm = parse_group(
        "group_id=4,type=all,bucket=actions=output:1",
        GroupModCommand::Add,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(send(&mut of, 1, &Message::GroupMod(gm), 0).is_empty());
    for prio in [1, 2, 3] {
        let s = format!("priority={prio},actions=group:4,group:4");
        assert!(send(&mut of, 1, &flow(&s, FlowModCommand::Add), 0).is_empty());
    }
    of.sync_refs();
    // A flow naming the group twice counts once.
    assert_eq!(of.groups.get(4).map(|g| g.flow_refs()), Some(3));
    // A modify that drops the group action, and a delete.
    let m = flow("priority=1,actions=output:2", FlowModCommand::ModifyStrict);
    assert!(send(&mut of, 1, &m, 0).is_empty());
    let d = flow("priority=2", FlowModCommand::DeleteStrict);
    assert!(send(&mut of, 1, &d, 0).is_empty());
    of.sync_refs();
    assert_eq!(of.groups.get(4).map(|g| g.flow_refs()), Some(1));
    assert!(!of.refs_dirty);
}

#[test]
fn expiry_hint_is_never_late() {
    let mut of = Ofproto::new(OfprotoConfig {
        echo_interval_ns: 1000 * SEC,
        echo_timeout_ns: 3000 * SEC,
        ..OfprotoConfig::default()
    });
    ready(&mut of, 1, ConnKind::Passive);
    assert_eq!(of.next_deadline(), Some(1000 * SEC));
    let add = flow(
        "priority=1,idle_timeout=10,hard_timeout=30,actions=drop",
        FlowModCommand::Add,
    );
    send(&mut of, 1, &add, 5 * SEC);
    assert_eq!(of.next_deadline(), Some(15 * SEC));
    // Deleting the flow leaves an early hint; the tick at the hint clears it.
    send(&mut of, 1, &flow("", FlowModCommand::Delete), 6 * SEC);
    assert_eq!(of.next_deadline(), Some(15 * SEC));
    assert!(of.tick(15 * SEC).is_empty());
    assert_eq!(of.expiry_hint, None);
    // The echo deadline counts from the last frame (6 s).
    assert_eq!(of.next_deadline(), Some(1006 * SEC));
}

#[test]
fn passive_connections_are_not_controllers() {
    let mut of = Ofproto::new(OfprotoConfig::default());
    ready(&mut of, 1, ConnKind::Passive);
    assert!(!of.controller_connected());
    ready(&mut of, 2, ConnKind::Active);
    assert!(of.controller_connected());
    of.disconnect(2);
    assert!(!of.controller_connected());
    // Frames for a connection we never saw, or closed, are ignored.
    assert!(of
        .handle(2, &encode(1, &Message::FeaturesRequest), 0)
        .is_empty());
}

#[test]
fn a_header_too_short_is_bad_len_with_xid_zero() {
    let mut of = Ofproto::new(OfprotoConfig::default());
    ready(&mut of, 1, ConnKind::Active);
    let fx = of.handle(1, &[4, 5, 0], 0);
    match &fx[..] {
        [Effect::Send {
            conn: 1,
            xid: 0,
            msg: Message::Error { code, data },
        }] => {
            assert_eq!(*code, ErrorCode::BadRequest(BadRequestCode::BadLen));
            assert_eq!(data, &vec![4, 5, 0]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn role_reply_before_any_generation_is_zero_and_master_demotes() {
    let mut of = Ofproto::new(OfprotoConfig::default());
    ready(&mut of, 1, ConnKind::Active);
    ready(&mut of, 2, ConnKind::Active);
    let nochange = Role {
        role: ControllerRole::NoChange,
        generation_id: 99,
    };
    assert_eq!(
        of.role_request(1, nochange),
        Ok(Role {
            role: ControllerRole::Equal,
            generation_id: 0
        })
    );
    assert_eq!(of.generation_id, None);
    let master = |g| Role {
        role: ControllerRole::Master,
        generation_id: g,
    };
    assert!(of.role_request(1, master(u64::MAX)).is_ok());
    // u64::MAX + 1 wraps to 0: newer, not stale.
    assert!(of.role_request(2, master(0)).is_ok());
    assert_eq!(of.role_of(1), ControllerRole::Slave);
    assert_eq!(of.role_of(2), ControllerRole::Master);
    // Re-asserting master with the same generation is fine.
    assert!(of.role_request(2, master(0)).is_ok());
    assert_eq!(of.role_of(2), ControllerRole::Master);
}

#[test]
fn port_mod_ignores_unknown_config_bits_and_unchanged_config_is_silent() {
    let mut of = Ofproto::new(OfprotoConfig::default());
    ready(&mut of, 1, ConnKind::Active);
    let info = PortInfo {
        name: "p1".into(),
        hw_addr: [2, 0, 0, 0, 0, 1],
        curr_speed_kbps: 0,
        max_speed_kbps: 0,
        ifindex: None,
    };
    assert_eq!(of.add_port(1, info.clone(), true, 0).len(), 1);
    let pm = |config, mask| {
        Message::PortMod(PortMod {
            port_no: 1,
            hw_addr: info.hw_addr,
            config,
            mask,
            advertise: 0,
        })
    };
    // Bit 1 (NO_STP in 1.0) is not an OF1.3 config bit.
    assert!(send(&mut of, 1, &pm(2, 2), 0).is_empty());
    assert_eq!(of.ports[&1].config, 0);
    assert_eq!(
        send(&mut of, 1, &pm(config_bits::NO_FWD, config_bits::NO_FWD), 0).len(),
        1
    );
    assert_eq!(of.ports[&1].config, config_bits::NO_FWD);
    assert!(send(&mut of, 1, &pm(config_bits::NO_FWD, config_bits::NO_FWD), 0).is_empty());
    // Re-adding a port number is a MODIFY.
    let fx = of.add_port(1, info, false, 0);
    assert!(matches!(
        &fx[..],
        [Effect::Send {
            msg: Message::PortStatus {
                reason: message::PortReason::Modify,
                ..
            },
            ..
        }]
    ));
}
