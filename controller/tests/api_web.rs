//! The home user's web page in headless Chromium, driven through chromedriver's W3C WebDriver
//! HTTP API with a tiny hand-written client: it signs in with a token, shows services with
//! grades and live rates, the discovered devices, and saves a priority change within the
//! ISP's bounds. Skipped (with a message) when chromium or chromedriver is not installed
//! (tests/setup.sh installs both).

mod api_support;

use api_support::*;
use serde_json::{json, Value};
use shg_controller::api::control::DeviceView;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find(bin: &str) -> Option<String> {
    ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
        .iter()
        .map(|d| format!("{d}/{bin}"))
        .find(|p| std::path::Path::new(p).exists())
}

/// chromedriver, stopped by its PID when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode_chunked(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

impl Driver {
    /// One WebDriver command: (HTTP status, JSON value).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let b = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            self.port,
            b.len()
        )
        .unwrap();
        // Read the head, then Content-Length bytes (chromedriver may keep the connection).
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let split = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "chromedriver closed the connection");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let mut body = raw[split + 4..].to_vec();
        match length {
            Some(n) => {
                while body.len() < n {
                    let k = s.read(&mut buf).unwrap();
                    assert!(k > 0, "chromedriver closed the connection");
                    body.extend_from_slice(&buf[..k]);
                }
            }
            None => {
                s.read_to_end(&mut body).unwrap();
            }
        }
        if head.contains("transfer-encoding: chunked") {
            body = decode_chunked(&body);
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, v["value"].clone())
    }
}

struct Session<'a> {
    d: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .d
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self.d.call(
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        );
        assert_eq!(st, 200, "{method} {path}: {v}");
        v
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn wait_js(&self, script: &str, what: &str) -> Value {
        for _ in 0..300 {
            let v = self.js(script);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    fn click(&self, css: &str) {
        let e = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = e[ELEMENT].as_str().unwrap().to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }
}

#[test]
fn api_web_page_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) else {
        eprintln!(
            "skipping: chromium and chromedriver are not installed (tests/setup.sh installs them)"
        );
        return;
    };
    let s = TestServer::start();
    s.fake.set_devices(vec![DeviceView {
        udn: "uuid:tv".into(),
        friendly_name: "Living room TV".into(),
        device_type: "urn:schemas-upnp-org:device:MediaRenderer:1".into(),
        address: "198.18.0.50".into(),
        interface: "lan1".into(),
        manufacturer: String::new(),
        model_name: String::new(),
        last_seen_s: 1,
        expires_in_s: 1700,
    }]);
    let (a, b) = congested_samples();
    s.fake.feed(a);
    s.fake.feed(b);

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Driver { child, port };
    wait_for(20, || {
        TcpStream::connect(("127.0.0.1", port)).ok()?;
        let (st, v) = d.call("GET", "/status", None);
        (st == 200 && v["ready"] == true).then_some(())
    });
    let profile = TempDir::new("chromium");
    let (st, v) = d.call(
        "POST",
        "/session",
        Some(&json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.0.display())]
            }
        }}})),
    );
    assert_eq!(st, 200, "new session: {v}");
    let sess = Session {
        d: &d,
        id: v["sessionId"].as_str().unwrap().to_string(),
    };

    sess.cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("https://127.0.0.1:{}/#token={}", s.addr.port(), s.user)})),
    );
    sess.wait_js(
        "return document.body.dataset.ready === '1';",
        "the page to load",
    );
    assert_eq!(
        sess.js("return location.hash;"),
        json!(""),
        "the token leaves the address bar"
    );
    assert_eq!(
        sess.js("return document.querySelector('#who').textContent;"),
        json!("signed in as user")
    );

    // Services with grades and live rates (the congested sample: videocall starved).
    let grade = sess.wait_js(
        "const r = document.querySelector('#services tr[data-service=videocall]'); \
         return r && r.children[1].textContent === 'F' ? r.children[1].className : null;",
        "videocall's grade",
    );
    assert_eq!(grade, json!("grade grade-F"));
    let rate = sess.js(
        "return document.querySelector('#services tr[data-service=nas]').children[2].textContent;",
    );
    assert_eq!(rate, json!("16.0 Mbit/s"));
    let cong = sess.wait_js(
        "const c = document.querySelector('#congestion'); return c.className === 'congested' ? c.textContent : null;",
        "the congestion line",
    );
    assert!(
        cong.as_str().unwrap().contains("mostly used by nas"),
        "{cong}"
    );

    // Devices.
    let dev =
        sess.js("return document.querySelector('#devices li[data-udn=\"uuid:tv\"]').textContent;");
    assert_eq!(dev, json!("Living room TV — MediaRenderer at 198.18.0.50"));

    // Priorities: order, bounds, a change saved through the API.
    let order = sess
        .js("return [...document.querySelectorAll('#priorities li')].map(l => l.dataset.service);");
    assert_eq!(order, json!(["videocall", "iptv", "nas"]));
    assert_eq!(
        sess.js("return document.querySelector('li[data-service=videocall] button.up').disabled;"),
        json!(true),
        "videocall is at the top of its bounds"
    );
    sess.click("li[data-service=iptv] button.down");
    assert_eq!(
        sess.js("return document.querySelector('li[data-service=iptv] .prio-label').textContent;"),
        json!("iptv — priority 4")
    );
    sess.click("#save");
    let saved = sess.wait_js(
        "const t = document.querySelector('#save-result').textContent; return t ? t : null;",
        "the save result",
    );
    assert_eq!(saved, json!("Saved (policy version 2)."));
    let p = shg_controller::api::ControlPlane::policy(&s.fake).policy;
    assert_eq!(p.services["iptv"].user.priority, Some(4));
    assert_eq!(
        sess.js("return document.querySelector('li[data-service=iptv] button.down').disabled;"),
        json!(true),
        "4 is the ISP's upper bound for iptv"
    );
}
