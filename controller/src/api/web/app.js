// The home user's page: services with live rates and grades, priorities within the ISP's bounds, devices.
// Talks to the same JSON API as shgctl, with the bearer token kept in this tab's sessionStorage.
"use strict";
(function () {
  const $ = (s) => document.querySelector(s);
  const state = { token: null, role: null, prios: {}, draft: {} };

  function takeToken() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem("shg-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);
    }
    state.token = sessionStorage.getItem("shg-token");
  }

  async function api(path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    o.headers.Authorization = "Bearer " + state.token;
    const r = await fetch(path, o);
    if (r.status === 401) { showLogin("The token was refused."); throw new Error("401"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(body.message || r.statusText); e.status = r.status; throw e; }
    return body;
  }

  function rate(bps) {
    if (bps === null || bps === undefined) return "–";
    if (bps >= 1e9) return (bps / 1e9).toFixed(1) + " Gbit/s";
    if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
    if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
    return bps + " bit/s";
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function showLogin(msg) {
    $("#app").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = msg || "";
  }

  async function refreshStatus() {
    const [st, cg] = await Promise.all([api("/v1/status"), api("/v1/congestion")]);
    $("#uplink").textContent = "Upload: " + rate(st.uplink.achieved_bps) + " of " + rate(st.uplink.rate_bps) +
      (st.connected ? "" : " (switch not connected)");
    const c = $("#congestion");
    const r = cg.resources[0];
    c.textContent = cg.congested ? r.summary + (r.hurts.length ? "; affected: " + r.hurts.map((h) => h.service).join(", ") : "") : "No congestion.";
    c.className = cg.congested ? "congested" : "";
    const tb = $("#services tbody");
    tb.replaceChildren();
    for (const s of st.services) {
      const tr = el("tr");
      tr.dataset.service = s.name;
      tr.append(el("td", s.name), el("td", s.grade, "grade grade-" + s.grade), el("td", rate(s.achieved_bps)),
        el("td", s.guarantee_bps ? rate(s.guarantee_bps) : "–"),
        el("td", s.delay_p99_ms === null ? "–" : s.delay_p99_ms.toFixed(1) + " ms"), el("td", String(s.drops)));
      tb.append(tr);
    }
  }

  function renderPriorities() {
    const ol = $("#priorities");
    ol.replaceChildren();
    const editable = state.role === "user";
    const names = Object.keys(state.prios);
    const cur = (n) => (n in state.draft ? state.draft[n] : state.prios[n].priority);
    names.sort((a, b) => cur(a) - cur(b) || a.localeCompare(b));
    for (const n of names) {
      const p = state.prios[n];
      const li = el("li");
      li.dataset.service = n;
      const label = el("span", n + " — priority " + cur(n), n in state.draft ? "changed" : "");
      label.className += " prio-label";
      li.append(label, el("span", " (allowed " + p.bounds[0] + "–" + p.bounds[1] + ")", "muted"));
      const up = el("button", "↑", "up");
      up.type = "button";
      up.title = "serve earlier";
      up.disabled = !editable || cur(n) <= p.bounds[0];
      up.addEventListener("click", () => move(n, -1));
      const down = el("button", "↓", "down");
      down.type = "button";
      down.title = "serve later";
      down.disabled = !editable || cur(n) >= p.bounds[1];
      down.addEventListener("click", () => move(n, 1));
      li.append(up, down);
      ol.append(li);
    }
    $("#save").disabled = !editable || Object.keys(state.draft).length === 0;
  }

  function move(n, d) {
    const p = state.prios[n];
    const v = (n in state.draft ? state.draft[n] : p.priority) + d;
    if (v < p.bounds[0] || v > p.bounds[1]) return;
    if (v === p.priority) delete state.draft[n]; else state.draft[n] = v;
    renderPriorities();
  }

  async function refreshPriorities() {
    state.prios = (await api("/v1/priorities")).services;
    renderPriorities();
  }

  async function save() {
    const services = {};
    for (const [n, v] of Object.entries(state.draft)) services[n] = { priority: v };
    const out = $("#save-result");
    try {
      const r = await api("/v1/priorities", { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ services }) });
      state.draft = {};
      out.textContent = "Saved (policy version " + r.version + ").";
      out.className = "saved";
      await refreshPriorities();
    } catch (e) {
      out.textContent = "Not saved: " + e.message;
      out.className = "error";
    }
  }

  async function refreshDevices() {
    const d = (await api("/v1/devices")).devices;
    const ul = $("#devices");
    ul.replaceChildren();
    if (!d.length) ul.append(el("li", "No devices found yet.", "muted"));
    for (const x of d) {
      const type = (x.device_type.split(":")[3] || x.device_type || "device");
      const li = el("li", (x.friendly_name || x.udn) + " — " + type + " at " + x.address);
      li.dataset.udn = x.udn;
      ul.append(li);
    }
  }

  async function follow() {
    // EventSource cannot send a bearer token: read the stream with fetch.
    for (;;) {
      try {
        const r = await fetch("/v1/events", { headers: { Authorization: "Bearer " + state.token } });
        if (!r.ok) throw new Error(String(r.status));
        const rd = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await rd.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const m = /^event: (\w+)$/m.exec(block);
            if (!m) continue;
            if (m[1] === "policy") refreshPriorities().catch(() => {});
            if (m[1] === "device") refreshDevices().catch(() => {});
            if (m[1] === "congestion") refreshStatus().catch(() => {});
          }
        }
      } catch (e) { /* reconnect below */ }
      await new Promise((ok) => setTimeout(ok, 3000));
    }
  }

  async function start() {
    takeToken();
    if (!state.token) { showLogin(); return; }
    try {
      const me = await api("/v1/whoami");
      state.role = me.role;
      $("#who").textContent = "signed in as " + me.role;
    } catch (e) { return; }
    $("#login").hidden = true;
    $("#app").hidden = false;
    await Promise.all([refreshStatus(), refreshPriorities(), refreshDevices()]).catch(() => {});
    document.body.dataset.ready = "1";
    setInterval(() => refreshStatus().catch(() => {}), 2000);
    follow();
  }

  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("shg-token", $("#token").value.trim());
    start();
  });
  $("#save").addEventListener("click", save);
  start();
})();
