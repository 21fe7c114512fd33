// bootyard console: the machines list and one machine's page, from the admin API.
// No framework, no CDN. Live updates from /api/v1/events/stream (server-sent events).
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
// the event kinds the services write (the stream names each message by its kind)
const KINDS = ["dhcp.discover", "dhcp.offer", "dhcp.ack", "dhcp.nak", "dhcp.ignored",
  "dhcp.release", "dhcp.decline", "dhcp.inform", "dhcp.expire", "tftp.transfer",
  "http.script", "http.file", "http.install", "http.install_done", "http.denied",
  "http.discovery", "http.render_error", "http.once_served", "tftp.once_served", "http.booted",
  "doctor.start", "doctor.end", "power.request", "power.result",
  "blockexport.attach", "blockexport.first_read", "blockexport.io_error",
  "blockexport.io_recovered", "blockexport.iscsi_login", "blockexport.iscsi_logout",
  "blockexport.iscsi_login_failed", "blockexport.iscsi_reset", "mirror.started",
  "mirror.published", "mirror.failed", "mirror.skipped", "discovery.report", "discovery.adopted",
  "discovery.refused"];

async function api(path, options = {}) {
  const opts = { credentials: "same-origin", headers: {}, ...options };
  if (opts.method && opts.method !== "GET") {
    opts.headers["X-CSRF-Token"] = CSRF;
    opts.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) { location.href = "/console/login"; throw new Error("logged out"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function ago(ts) {
  if (ts == null) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.floor(s / 60) + " min ago";
  if (s < 172800) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function seconds(s) {
  if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function live(onEvent, host) {
  const badge = document.getElementById("live");
  const source = new EventSource("/api/v1/events/stream" + (host ? "?host=" + host : ""));
  source.onopen = () => { badge.textContent = "live"; badge.classList.add("on"); };
  source.onerror = () => { badge.textContent = "reconnecting…"; badge.classList.remove("on"); };
  let seen = 0;
  for (const kind of KINDS) {
    source.addEventListener(kind, (msg) => {
      badge.dataset.events = ++seen;
      onEvent(JSON.parse(msg.data));
    });
  }
  return source;
}

// -- the machines list ------------------------------------------------------------------------
async function machines() {
  const body = document.querySelector("#machines tbody");
  const count = document.getElementById("count");
  const filters = { state: document.getElementById("f-state"),
    profile: document.getElementById("f-profile"), tag: document.getElementById("f-tag"),
    text: document.getElementById("f-text") };
  const rows = new Map();  // mac -> {host, state, tr, text}
  const [hosts, states] = await Promise.all([api("/api/v1/hosts"), api("/api/v1/states")]);
  const profiles = new Set();
  for (const [mac, host] of Object.entries(hosts)) {
    rows.set(mac, { host, state: states[mac] || { state: "idle" } });
    if (host.profile) profiles.add(host.profile);
  }
  for (const name of [...profiles].sort()) filters.profile.append(el("option", {}, name));

  function render(row, mac) {
    const st = row.state;
    const tr = el("tr", { "data-mac": mac, "data-state": st.state },
      el("td", { class: "mac" }, el("a", { href: "/console/machines/" + mac }, mac)),
      el("td", {}, row.host.hostname || ""), el("td", {}, row.host.profile || ""),
      el("td", {}, row.host.boot_mode || "install"),
      el("td", {}, el("span", { class: "badge " + st.state }, st.state)),
      el("td", {}, st.stage_text || ""), el("td", { class: "since" }, ago(st.since)),
      el("td", { class: "reason" }, st.reason || ""));
    row.text = [mac, row.host.hostname, row.host.profile, st.reason, st.stage]
      .join(" ").toLowerCase();
    if (row.tr) row.tr.replaceWith(tr);
    row.tr = tr;
    return tr;
  }

  function visible(row) {
    const tags = row.host.tags || [];
    return (!filters.state.value || row.state.state === filters.state.value)
      && (!filters.profile.value || row.host.profile === filters.profile.value)
      && (!filters.tag.value || tags.includes(filters.tag.value))
      && (!filters.text.value || row.text.includes(filters.text.value.toLowerCase()));
  }

  function applyFilters() {
    let shown = 0;
    for (const row of rows.values()) {
      const show = visible(row);
      row.tr.hidden = !show;
      if (show) shown++;
    }
    count.textContent = shown + " of " + rows.size + " machines";
  }

  const fragment = document.createDocumentFragment();
  for (const mac of [...rows.keys()].sort()) fragment.append(render(rows.get(mac), mac));
  body.append(fragment);
  applyFilters();
  for (const input of Object.values(filters)) input.addEventListener("input", applyFilters);

  // live: the hosts an event named are refreshed together, at most every half second
  const dirty = new Set();
  let timer = null;
  async function refresh() {
    timer = null;
    const macs = [...dirty];
    dirty.clear();
    const fresh = macs.length > 20 ? await api("/api/v1/states") : Object.fromEntries(
      await Promise.all(macs.map(async (m) => [m, await api("/api/v1/hosts/" + m + "/state")])));
    for (const mac of macs) {
      const row = rows.get(mac);
      if (!row || !fresh[mac]) continue;
      row.state = fresh[mac];
      render(row, mac);
      row.tr.hidden = !visible(row);
    }
    applyFilters();
  }
  live((event) => {
    if (!event.mac || !rows.has(event.mac)) return;
    dirty.add(event.mac);
    if (!timer) timer = setTimeout(refresh, 500);
  });
  setInterval(() => { for (const mac of rows.keys()) dirty.add(mac); refresh(); }, 30000);
}

// -- one machine ------------------------------------------------------------------------------
async function machine() {
  const mac = document.body.dataset.mac;
  const events = document.querySelector("#events tbody");
  let lastTs = null;

  async function showState() {
    const st = await api("/api/v1/hosts/" + mac + "/state");
    const p = document.getElementById("state");
    p.replaceChildren(el("span", { class: "badge " + st.state }, st.state), " ",
      st.stage_text ? st.stage_text + " " + ago(st.since) : "no boot seen",
      st.reason ? el("div", { class: "error", id: "reason" }, st.reason) : "");
    const stages = document.getElementById("stages");
    stages.replaceChildren();
    const list = st.attempt ? st.attempt.stages : [];
    const total = list.reduce((a, s) => a + Math.max(s.seconds, 0.5), 0) || 1;
    list.forEach((s, i) => {
      const current = i === list.length - 1;
      const bar = el("div", { class: "stage" + (current ? " current " + st.state : ""),
        title: s.stage + ": " + seconds(s.seconds) }, el("b", {}, s.stage), seconds(s.seconds));
      bar.style.flexGrow = Math.max(s.seconds, 0.5) / total * 100;  // CSSOM: allowed by the CSP
      stages.append(bar);
    });
    const attempts = document.querySelector("#attempts tbody");  // every attempt, newest first
    attempts.replaceChildren(...[...(st.history || [])].reverse().map((a) => el("tr",
      { "data-attempt": a.id, class: a.number === st.attempt?.number ? "latest" : "" },
      el("td", { class: "mac" }, "#" + a.number), el("td", {},
        new Date(a.start * 1000).toLocaleString()),
      el("td", {}, el("span", { class: "badge " + a.state }, a.state)), el("td", {}, a.stage),
      el("td", { class: "reason" }, a.reason || ""))));
  }

  async function showRecord() {
    const shown = await api("/api/v1/hosts/" + mac);
    const record = document.getElementById("record");
    record.replaceChildren();
    for (const [k, v] of Object.entries(shown.fields)) {
      record.append(el("tr", {}, el("td", {}, k),
        el("td", {}, Array.isArray(v) ? v.join(", ")
          : typeof v === "object" ? JSON.stringify(v) : v)));
    }
    document.getElementById("mode").textContent = shown.fields.boot_mode || "install";
    const problems = document.getElementById("problems");
    problems.replaceChildren(...shown.problems.map(
      (p) => el("li", {}, p.field + ": " + p.reason)));
    if (shown.fields.ip) {
      try {
        const lease = await api("/api/v1/leases/" + shown.fields.ip);
        document.getElementById("lease").textContent = shown.fields.ip + ": " + lease.state
          + (lease.mac === mac ? "" : " (held by " + lease.mac + ")")
          + ", until " + new Date(lease.expires * 1000).toLocaleString();
      } catch (e) { document.getElementById("lease").textContent = "none"; }
    }
  }

  async function showEffective() {  // what the host boots with, and where each value is from
    const found = await api("/api/v1/hosts/" + mac + "?effective=1");
    document.getElementById("groups").textContent = "Groups: " + (found.groups.length
      ? found.groups.map((g) => g.name + " (" + g.specificity + ")").join(", ") : "none")
      + (found.once ? " · one-shot: " + found.once.mode + " " + found.once.profile : "");
    const table = document.getElementById("effective");
    table.replaceChildren();
    const row = (k, item) => table.append(el("tr", {}, el("td", {}, k),
      el("td", {}, item.value ?? "-"), el("td", { class: "source" }, item.source)));
    for (const k of ["profile", "boot_mode", "kernel", "cmdline", "kernel_args"]) row(k, found[k]);
    for (const [k, item] of Object.entries(found.vars)) row("var." + k, item);
    for (const [k, item] of Object.entries(found.options)) row("option." + k, item);
    if (found.plan.cmdline !== undefined) {
      row("kernel arguments", { value: found.plan.cmdline, source: "boot plan" });
    }
    document.getElementById("conflicts").replaceChildren(
      ...found.conflicts.map((c) => el("li", {}, "tie: " + c)));
  }

  async function act(path, method, body, done) {
    const result = document.getElementById("action-result");
    try {
      await api("/api/v1/hosts/" + mac + path, { method, body: JSON.stringify(body) });
      result.textContent = done;
      result.className = "";
    } catch (err) { result.textContent = err.message; result.className = "error"; }
    await Promise.all([showRecord(), showEffective()]);
  }
  document.getElementById("reinstall").addEventListener("click", () =>
    act("/reinstall", "POST", {}, "reinstall: install once, then the local disk"));
  document.getElementById("rescue").addEventListener("click", () => {
    const profile = document.getElementById("rescue-profile").value.trim();
    act("/rescue", "POST", { profile }, "one-shot: live " + profile + " at the next boot");
  });
  document.getElementById("rescue-cancel").addEventListener("click", () =>
    act("/rescue", "DELETE", {}, "one-shot boot cancelled"));

  let lastAttempt = null;
  function addEvent(e) {
    if (e.attempt && e.attempt !== lastAttempt) {  // a boot attempt begins (newest on top)
      lastAttempt = e.attempt;
      events.prepend(el("tr", { class: "attempt" }, el("td", { colspan: "5" },
        "boot attempt " + e.attempt)));
    }
    const when = new Date(e.ts * 1000);
    const gap = lastTs == null ? "" : "+" + (e.ts - lastTs).toFixed(3);
    lastTs = e.ts;
    const details = Object.entries(e.fields).map(([k, v]) => k + "=" + v).join(" ");
    events.prepend(el("tr", { "data-kind": e.kind }, el("td", {}, when.toLocaleTimeString()),
      el("td", {}, gap), el("td", {}, e.service), el("td", {}, e.kind), el("td", {}, details)));
  }

  for (const button of document.querySelectorAll("button[data-mode]")) {
    button.addEventListener("click", async () => {
      const result = document.getElementById("action-result");
      try {
        await api("/api/v1/hosts/" + mac, { method: "PATCH",
          body: JSON.stringify({ boot_mode: button.dataset.mode }) });
        result.textContent = "boot mode set to " + button.dataset.mode;
        result.className = "";
      } catch (err) { result.textContent = err.message; result.className = "error"; }
      await Promise.all([showRecord(), showEffective()]);
    });
  }
  // power control (docs/power.md): the same action as `bootyard power ACTION MAC`
  for (const button of document.querySelectorAll("button[data-power]")) {
    button.addEventListener("click", async () => {
      const result = document.getElementById("power-result");
      result.textContent = "power " + button.dataset.power + "…";
      result.className = "";
      try {
        const done = await api("/api/v1/hosts/" + mac + "/power", { method: "POST",
          body: JSON.stringify({ action: button.dataset.power }) });
        document.getElementById("power-state").textContent = done.state;
        result.textContent = done.action + ": " + done.outcome + " (" + done.method + ")"
          + (done.detail ? ": " + done.detail : "");
      } catch (err) { result.textContent = err.message; result.className = "error"; }
    });
  }
  await Promise.all([showState(), showRecord(), showEffective()]);
  for (const e of await api("/api/v1/events?count=200&host=" + mac)) addEvent(e);
  live((e) => { addEvent(e); showState(); }, mac);
  setInterval(showState, 10000);
}

// -- discovered machines (docs/discovery.md) ---------------------------------------------------
async function discovered() {
  const body = document.querySelector("#discovered tbody");
  const result = document.getElementById("adopt-result");
  const profiles = Object.keys(await api("/api/v1/profiles"));
  async function refresh() {
    const found = await api("/api/v1/discovered");
    body.replaceChildren();
    for (const [mac, fields] of Object.entries(found)) {
      let hw = {};
      try { hw = JSON.parse(fields.hw || "{}"); } catch (e) { hw = {}; }
      const dmi = hw.dmi || {};
      const profile = el("select", { "data-field": "profile" },
        ...profiles.map((p) => el("option", { value: p }, p)));
      const hostname = el("input", { "data-field": "hostname", size: "12",
        placeholder: "host name" });
      const adopt = el("button", { type: "button", "data-adopt": mac }, "Adopt");
      adopt.addEventListener("click", async () => {
        try {
          await api("/api/v1/discovered/" + mac + "/adopt", { method: "POST",
            body: JSON.stringify({ profile: profile.value,
              ...(hostname.value ? { hostname: hostname.value } : {}) }) });
          result.textContent = "adopted " + mac + " with profile " + profile.value;
          result.className = "";
          await refresh();
        } catch (err) { result.textContent = mac + ": " + err.message; result.className = "error"; }
      });
      body.append(el("tr", { "data-mac": mac }, el("td", {}, mac), el("td", {}, fields.ip),
        el("td", {}, dmi.vendor), el("td", {}, dmi.product), el("td", {}, dmi.serial),
        el("td", {}, hw.cpus), el("td", {}, bytes(hw.memory_bytes)),
        el("td", {}, (hw.disks || []).map((d) => d.name + " " + bytes(d.size_bytes)).join(", ")),
        el("td", {}, (hw.nics || []).map((n) => n.mac + " " + n.link).join(", ")),
        el("td", {}, hw.firmware), el("td", {}, ago(+fields.last_seen || null)),
        el("td", {}, profile, hostname, adopt)));
    }
  }
  await refresh();
  setInterval(refresh, 10000);
}

// -- mirrors and exports ----------------------------------------------------------------------
function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

async function storage() {
  async function show() {
    const data = await api("/api/v1/overview");
    const mirrors = document.querySelector("#mirrors tbody");
    mirrors.replaceChildren(...Object.entries(data.mirrors).map(([name, m]) => {
      const fresh = !m.enabled ? "disabled" : m.age == null ? "never published"
        : (m.fresh ? "fresh" : "stale") + " (" + seconds(m.age) + " old, limit "
          + seconds(m.stale_after) + ")";
      return el("tr", { "data-mirror": name, "data-fresh": String(m.fresh) },
        el("td", { class: "mac" }, name),
        el("td", {}, el("span", { class: "badge " + (m.state === "failed" ? "stuck"
          : m.state === "syncing" ? "progressing" : m.fresh ? "finished" : "idle") }, m.state)),
        el("td", { class: m.fresh || !m.enabled ? "" : "reason" }, fresh),
        el("td", {}, m.last_success ? new Date(m.last_success * 1000).toLocaleString() : ""),
        el("td", {}, bytes(m.size)), el("td", {}, m.files ?? ""), el("td", {}, m.source),
        el("td", { class: "reason" }, m.last_error
          ? m.last_error + (m.failures ? " (" + m.failures + " failed)" : "") : ""));
    }));
    const exports = document.querySelector("#exports tbody");
    exports.replaceChildren(...Object.entries(data.exports).map(([name, x]) => {
      const state = !x.served ? "not served" : x.up ? "up" : "down";
      return el("tr", { "data-export": name, "data-state": state },
        el("td", { class: "mac" }, name), el("td", {}, x.kind), el("td", {}, x.target || ""),
        el("td", {}, el("span", { class: "badge " + (state === "up" ? "finished"
          : state === "down" ? "stuck" : "idle") }, state),
          x.reason ? el("div", { class: "error" }, x.reason) : ""),
        el("td", {}, bytes(x.size)), el("td", { class: "overlays" },
          x.cow ? (x.overlays ?? "") : "no (not copy-on-write)"),
        el("td", {}, bytes(x.overlay_bytes)), el("td", {}, bytes(x.free_bytes)),
        el("td", { class: "sessions" },
          ...x.sessions.map((m) => el("a", { href: "/console/machines/" + m }, m)).flatMap(
            (a, i) => i ? [" ", a] : [a])),
        el("td", {}, x.backing));
    }));
    document.getElementById("count")?.remove();
  }
  await show();
  let timer = null;
  live((e) => {  // a sync or an attachment changed: read the overview again (at most 1/s)
    if (!e.kind.startsWith("mirror.") && !e.kind.startsWith("blockexport.")) return;
    if (!timer) timer = setTimeout(() => { timer = null; show(); }, 1000);
  });
  setInterval(show, 15000);
}

document.getElementById("logout")?.addEventListener("click", async () => {
  await api("/console/logout", { method: "POST", body: "{}" });
  location.href = "/console/login";
});
({ machines, machine, storage, discovered })[document.body.dataset.page]().catch((err) => {
  document.querySelector("main").prepend(el("p", { class: "error" }, err.message));
});
