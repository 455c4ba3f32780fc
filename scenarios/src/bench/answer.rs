//! The round-trip reference of `bench flows`: an OpenFlow 1.3 endpoint that answers what
//! `ovs-ofctl add-flows` waits for and does nothing else.
//!
//! It runs as `shg-scenario bench answer ADDR` in the benchmark's namespace, started and
//! stopped (by PID) by [`super::flows`]. It answers HELLO, ECHO_REQUEST, FEATURES_REQUEST,
//! BARRIER_REQUEST and the two multipart requests ovs-ofctl sends (TABLE_FEATURES, of one
//! table, and PORT_DESC, empty); other multipart requests get OFPT_ERROR; every other message
//! (FLOW_MOD above all) is read and dropped without being decoded. Like shg-switch's
//! connection reader it polls its socket for [`SPIN`] (the reader's own window) after each
//! read before it blocks, with the same non-blocking poll ([`poll_socket`]). Its row in the benchmark
//! is therefore the time ovs-ofctl's round trips take on this machine when the other end
//! costs nothing: the distance between it and shg-switch is what handling the messages costs.

use shg_flows::error::{BadRequestCode, Error};
use shg_flows::wire::message::{
    decode, encode, error_reply, frame_len, HeaderView, HelloElement, Message, SwitchFeatures,
    HEADER_LEN,
};
use shg_flows::wire::multipart::{MultipartReply, MultipartRequest};
use shg_switch::agent::{poll_socket, SPIN};
use shg_switch::ofproto::table_features;
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// The FLOW_MOD message type, dropped without decoding.
const FLOW_MOD: u8 = 14;

/// Listens on `addr` and serves every connection on a thread of its own until the process
/// is killed. Returns only with an error from bind or accept. Says "listening" on stderr once
/// it accepts connections.
pub fn answer(addr: &str) -> io::Result<Infallible> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("shg-scenario bench answer: listening on {addr}");
    loop {
        let (stream, peer) = listener.accept()?;
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("shg-scenario bench answer: {peer}: {e}");
            }
        });
    }
}

/// One connection, until the peer closes it.
fn serve(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let hello = Message::Hello {
        version: 4,
        elements: vec![HelloElement::versions(&[4])],
    };
    s.write_all(&encode(1, &hello))?;
    let fd = s.as_raw_fd();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut spin_until: Option<Instant> = None;
    loop {
        buf.reserve(64 * 1024);
        let polled = match spin_until {
            Some(t) if Instant::now() < t => poll_socket(fd, &mut buf, t)?,
            _ => None,
        };
        let n = match polled {
            Some(n) => n,
            None => {
                let n = s.read(&mut chunk)?;
                buf.extend_from_slice(&chunk[..n]);
                n
            }
        };
        if n == 0 {
            return Ok(());
        }
        spin_until = Some(Instant::now() + SPIN);
        let mut used = 0;
        while let Some(len) = frame_len(&buf[used..]) {
            if buf.len() - used < len {
                break;
            }
            answer_one(&buf[used..used + len], &mut out);
            used += len;
        }
        if buf.len() - used >= HEADER_LEN && frame_len(&buf[used..]).is_none() {
            return Err(io::Error::other("message length below 8"));
        }
        buf.drain(..used);
        if !out.is_empty() {
            s.write_all(&out)?;
            out.clear();
        }
    }
}

/// Appends the answer to one message (if it gets one) to `out`.
fn answer_one(frame: &[u8], out: &mut Vec<u8>) {
    if frame.get(1) == Some(&FLOW_MOD) {
        return;
    }
    let (xid, msg) = match decode(frame) {
        Ok(m) => m,
        Err(e) => {
            let xid = HeaderView::new_checked(frame).map_or(0, |h| h.xid());
            out.extend(encode(xid, &error_reply(&e, frame)));
            return;
        }
    };
    let reply = match msg {
        Message::EchoRequest(data) => Message::EchoReply(data),
        Message::FeaturesRequest => Message::FeaturesReply(SwitchFeatures {
            datapath_id: 1,
            n_buffers: 0,
            n_tables: 1,
            auxiliary_id: 0,
            capabilities: 0,
            reserved: 0,
        }),
        Message::BarrierRequest => Message::BarrierReply,
        Message::MultipartRequest { body, .. } => match body {
            MultipartRequest::TableFeatures(_) => Message::MultipartReply {
                flags: 0,
                body: MultipartReply::TableFeatures(table_features(1)),
            },
            MultipartRequest::PortDesc => Message::MultipartReply {
                flags: 0,
                body: MultipartReply::PortDesc(Vec::new()),
            },
            _ => error_reply(
                &Error::bad_request(
                    BadRequestCode::BadMultipart,
                    "the reference answers only TABLE_FEATURES and PORT_DESC",
                ),
                frame,
            ),
        },
        _ => return,
    };
    out.extend(encode(xid, &reply));
}
