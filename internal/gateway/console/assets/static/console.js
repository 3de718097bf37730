// Persys console: plain JavaScript over the gateway's REST API (same
// origin). Every call carries the session's CSRF token when there is one;
// the gateway decides what the caller may do, the page only hides the
// buttons a role cannot use.
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const BODY = document.body.dataset;
const can = (what) => BODY[what] === "true";
const $ = (sel, root) => (root || document).querySelector(sel);

// el builds an element: el("td", {class: "x"}, "text", child...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

function banner(msg, ok) {
  const b = $("#banner");
  if (!b) return;
  b.hidden = !msg;
  b.textContent = msg || "";
  b.classList.toggle("ok", !!ok);
}

function toLogin() {
  if (BODY.page !== "login") location.assign("/ui/login?next=" + encodeURIComponent(location.pathname));
}

// api calls the REST API and returns the parsed JSON answer; an error
// answer throws an Error with status and body (the gateway's error shape).
async function api(method, url, body, contentType) {
  const headers = {};
  if (CSRF && method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const r = await fetch(url, { method, headers, body, credentials: "same-origin", cache: "no-store" });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) {
    if (r.status === 401) toLogin();
    const e = new Error((data && data.error && data.error.message) || text || r.statusText);
    e.status = r.status;
    e.body = data;
    throw e;
  }
  return data;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// follow reads an NDJSON watch stream (one JSON object per line) and
// hands each object to onItem. A stream starts with {type: "RESET"} and a
// full SNAPSHOT; once its BOOKMARK came, follow keeps the position of the
// last change or bookmark read, and a reconnect resumes there (since=,
// since_index=) with the changes missed, no RESET and no repeats. A
// position the scheduler no longer keeps (410 Gone) starts over with a
// RESET. While the server answers with a plain list instead (no
// application/x-ndjson), the list is fetched again every second and
// handed on as RESET, one SNAPSHOT per item (keyed itemKey) and a
// BOOKMARK.
async function follow(url, onItem, listKey, itemKey) {
  let pos = null;
  for (;;) {
    let wait = 1000;
    try {
      const r = await fetch(pos ? resumeURL(url, pos) : url, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { toLogin(); return; }
      if (r.status === 410 && pos) { pos = null; continue; } // too old: list again
      if (!r.ok) {
        const t = await r.text();
        throw new Error(r.status + " " + t.slice(0, 300));
      }
      const ct = r.headers.get("content-type") || "";
      if (ct.startsWith("application/x-ndjson")) {
        if (!pos) onItem({ type: "RESET" });
        let listed = pos !== null; // a resumed stream has no snapshot
        await readLines(r.body, (line) => {
          const ev = JSON.parse(line);
          if (ev.type === "BOOKMARK") {
            listed = true;
            pos = { revision: ev.revision };
          } else if (listed && (ev.type === "PUT" || ev.type === "DELETE")) {
            pos = { revision: ev.revision, index: ev.index };
          }
          onItem(ev);
        });
        wait = 500; // the stream ended: reconnect soon
      } else {
        const data = await r.json();
        onItem({ type: "RESET" });
        for (const x of (data && data[listKey]) || []) onItem({ type: "SNAPSHOT", [itemKey]: x });
        onItem({ type: "BOOKMARK" });
      }
      banner("");
    } catch (e) {
      banner("Live updates interrupted: " + e.message + " (retrying)");
      wait = 2000;
    }
    await sleep(wait);
  }
}

// resumeURL is url asking for the changes after pos.
function resumeURL(url, pos) {
  let q = "since=" + encodeURIComponent(pos.revision);
  if (pos.index !== undefined && pos.index !== null) q += "&since_index=" + encodeURIComponent(pos.index);
  return url + (url.includes("?") ? "&" : "?") + q;
}

// readLines splits a byte stream into lines, calling onLine for each
// non-empty one.
async function readLines(stream, onLine) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onLine(line);
    }
  }
  if (buf.trim()) onLine(buf.trim());
}

// followText shows a followed text stream (logs?follow=true) in pre.
// While the server answers with a one-shot tail, the tail is fetched
// again every 2 s and replaces the text.
async function followText(url, pre, note) {
  const max = 256 * 1024;
  for (;;) {
    try {
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { toLogin(); return; }
      if (!r.ok) {
        const t = await r.text();
        let m = t;
        try { m = JSON.parse(t).error.message; } catch (_) { /* plain text */ }
        note.textContent = "(" + m + ")";
      } else {
        note.textContent = r.headers.get("X-Persys-Node") ? "on node " + r.headers.get("X-Persys-Node") : "";
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text = (text + value).slice(-max);
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = text;
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
        if (!text) pre.textContent = "";
      }
    } catch (e) {
      note.textContent = "(log unavailable: " + e.message + ")";
    }
    await sleep(2000);
  }
}

// Formatting.
const num = (v) => Number(v || 0);
function cpu(m) { m = num(m); return m >= 1000 ? (m / 1000).toFixed(m % 1000 ? 2 : 0) + " CPU" : m + "m"; }
function bytes(b) {
  b = num(b);
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + u[i];
}
function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}
function state(s) { return el("span", { class: "state " + (s || "") }, s || "PENDING"); }
function bar(used, total, fmt) {
  const u = num(used), t = num(total);
  const pct = t > 0 ? Math.min(100, Math.round((u * 100) / t)) : 0;
  const b = el("div", { class: "bar" + (pct >= 90 ? " high" : ""), title: pct + "%" }, el("span"));
  b.firstChild.style.width = pct + "%";
  return el("div", {}, b, el("div", { class: "bar-label" }, fmt(u) + " / " + fmt(t) + " (" + pct + "%)"));
}
function kv(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", {}, k), el("dd", {}, v));
  }
}
function wlName(v) { return (v.workload && v.workload.name) || (v.status && v.status.name) || ""; }
function wlState(v) {
  if (v.workload && v.workload.deleting) return "DELETING";
  return (v.status && v.status.state) || "PENDING";
}

// armed holds the confirm-first buttons clicked once ("act:name" → until
// when), so that a live re-render keeps them armed.
const armed = new Map();
const armWindow = 5000;
function isArmed(key) { return (armed.get(key) || 0) > Date.now(); }

function showArmed(b, label, on) {
  b.classList.toggle("armed", on);
  b.textContent = on ? "Confirm " + label.toLowerCase() : label;
}

// button makes an action button that calls the API and reports the answer;
// with confirm set, the first click arms it and the second acts.
function button(label, act, name, run, confirm) {
  const b = el("button", { type: "button", class: "action" + (confirm ? " danger" : ""), "data-act": act, "data-name": name }, label);
  if (confirm && isArmed(act + ":" + name)) showArmed(b, label, true);
  b.addEventListener("click", () => actionClick(b, label, run, confirm));
  return b;
}
async function actionClick(b, label, run, confirm) {
  const key = b.dataset.act + ":" + b.dataset.name;
  if (confirm && !isArmed(key)) {
    armed.set(key, Date.now() + armWindow);
    showArmed(b, label, true);
    setTimeout(() => {
      if (isArmed(key)) return; // armed again since
      armed.delete(key);
      const sel = 'button[data-act="' + CSS.escape(b.dataset.act) + '"][data-name="' + CSS.escape(b.dataset.name) + '"]';
      for (const x of document.querySelectorAll(sel)) showArmed(x, label, false);
    }, armWindow + 50);
    return;
  }
  armed.delete(key);
  b.disabled = true;
  showArmed(b, label, false);
  try {
    await run();
    banner(label + ": done", true);
  } catch (e) {
    banner(label + " refused: " + e.message);
  } finally {
    b.disabled = false;
  }
}
const enc = encodeURIComponent;
const wlAction = (act, name) => act === "delete"
  ? api("DELETE", "/v1/workloads/" + enc(name))
  : api("POST", "/v1/workloads/" + enc(name) + "/" + act);
const nodeAction = (act, id) => api("POST", "/v1/nodes/" + enc(id) + "/" + act);

// Pages.

async function summaryPage() {
  const box = $("#summary");
  for (;;) {
    try {
      const s = await api("GET", "/v1/cluster/summary");
      const cap = s.capacity || {}, al = s.allocated || {};
      const by = Object.entries(s.workloadsByState || {}).map(([k, v]) => el("div", {}, state(k), " ", v));
      box.replaceChildren(
        el("div", { class: "card" }, el("div", { class: "muted" }, "Nodes ready"), el("div", { class: "big" }, num(s.nodesReady) + " / " + num(s.nodesTotal))),
        el("div", { class: "card" }, el("div", { class: "muted" }, "Workloads"), el("div", { class: "big" }, num(s.workloadsTotal)), ...by),
        el("div", { class: "card" }, el("div", { class: "muted" }, "CPU allocated"), bar(al.cpuMillis, cap.cpuMillis, cpu)),
        el("div", { class: "card" }, el("div", { class: "muted" }, "Memory allocated"), bar(al.memoryBytes, cap.memoryBytes, bytes)),
        el("div", { class: "card" }, el("div", { class: "muted" }, "Scheduler leader"), el("div", {}, s.leader || "(none)")));
      banner("");
    } catch (e) {
      banner("Cluster summary unavailable: " + e.message);
    }
    await sleep(3000);
  }
}

function nodeRow(n) {
  const caps = n.capabilities || {};
  const total = caps.allocatable || caps.capacity || {};
  const al = n.allocated || {};
  let st = n.state || "UNKNOWN";
  const flags = [n.cordoned ? "cordoned" : "", n.draining ? "draining" : ""].filter(Boolean).join(", ");
  const tr = el("tr", { "data-node": n.id },
    el("td", {}, n.id, caps.hostname ? el("div", { class: "muted" }, caps.hostname) : null),
    el("td", {}, state(st), flags ? el("div", { class: "muted" }, flags) : null),
    el("td", {}, n.address || ""),
    el("td", {}, bar(al.cpuMillis, total.cpuMillis, cpu)),
    el("td", {}, bar(al.memoryBytes, total.memoryBytes, bytes)),
    el("td", {}, when(n.lastHeartbeat)));
  if (can("writeNodes")) {
    tr.append(el("td", { class: "actions" },
      n.cordoned
        ? button("Uncordon", "uncordon", n.id, () => nodeAction("uncordon", n.id).then(refreshNodes))
        : button("Cordon", "cordon", n.id, () => nodeAction("cordon", n.id).then(refreshNodes)),
      button("Drain", "drain", n.id, () => nodeAction("drain", n.id).then(refreshNodes), true)));
  }
  return tr;
}
async function refreshNodes() {
  const list = await api("GET", "/v1/nodes");
  const nodes = (list && list.nodes) || [];
  const tb = $("#nodes tbody");
  tb.replaceChildren(...nodes.map(nodeRow));
  if (!nodes.length) tb.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No nodes registered.")));
}
async function nodesPage() {
  for (;;) {
    try { await refreshNodes(); banner(""); } catch (e) { banner("Nodes unavailable: " + e.message); }
    await sleep(3000);
  }
}

// watchWorkloads keeps a name → WorkloadView map in step with the watch
// stream and calls render after each change.
function watchWorkloads(render) {
  let items = new Map(), next = null, pending = false, last = "";
  // Unchanged data is not drawn again (the list fallback answers every
  // second), so the page stays still under the pointer.
  const flush = () => {
    pending = false;
    const sig = JSON.stringify([...items.entries()]);
    if (sig === last) return;
    last = sig;
    render(items);
  };
  follow("/v1/workloads?watch=true", (ev) => {
    switch (ev.type) {
      case "RESET": next = new Map(); return;
      case "SNAPSHOT": (next || items).set(wlName(ev.workload), ev.workload); return;
      case "BOOKMARK": if (next) { items = next; next = null; } break;
      case "PUT": if (next) { items = next; next = null; } items.set(wlName(ev.workload), ev.workload); break;
      case "DELETE": if (next) { items = next; next = null; } items.delete(wlName(ev.workload)); break;
      case "ERROR": banner("Watch error: " + ((ev.error && ev.error.message) || JSON.stringify(ev))); return;
      default: return;
    }
    if (!pending) { pending = true; setTimeout(flush, 0); }
  }, "workloads", "workload");
}

function workloadRow(v) {
  const name = wlName(v);
  const w = v.workload || {}, s = v.status || {}, a = v.assignment || {};
  const fail = [s.reason && s.reason !== "NONE" ? s.reason : "", s.message || ""].filter(Boolean).join(": ");
  const tr = el("tr", { "data-name": name },
    el("td", {}, el("a", { href: "/ui/workloads/" + enc(name) }, name)),
    el("td", {}, (w.spec && w.spec.type) || ""),
    el("td", { class: "state-cell" }, state(wlState(v))),
    el("td", {}, s.nodeId || a.nodeId || ""),
    el("td", {}, w.revision || ""),
    el("td", { class: "error" }, fail));
  if (can("writeWorkloads")) {
    tr.append(el("td", { class: "actions" },
      button("Retry", "retry", name, () => wlAction("retry", name)),
      button("Delete", "delete", name, () => wlAction("delete", name), true)));
  }
  return tr;
}

function workloadsPage() {
  const tb = $("#workloads tbody");
  watchWorkloads((items) => {
    const rows = [...items.values()].sort((a, b) => wlName(a).localeCompare(wlName(b))).map(workloadRow);
    tb.replaceChildren(...rows);
    if (!rows.length) tb.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No workloads.")));
  });
  const btn = $("#apply-btn");
  if (btn) btn.addEventListener("click", applyManifest);
}

// applyManifest posts the textarea to /v1/manifests and shows the
// field-named validation errors beside it.
async function applyManifest() {
  const ta = $("#manifest"), out = $("#apply-result"), errs = $("#apply-errors");
  out.textContent = "";
  errs.replaceChildren();
  ta.classList.remove("invalid");
  if (!ta.value.trim()) {
    ta.classList.add("invalid");
    errs.append(el("li", { "data-field": "manifest" }, el("code", {}, "manifest"), ": paste a workload manifest (YAML) first"));
    return;
  }
  try {
    const res = await api("POST", "/v1/manifests", ta.value, "application/yaml");
    const lines = [];
    for (const it of (res && res.results) || []) {
      if (it.errorMessage) errs.append(el("li", { "data-field": it.name }, el("code", {}, it.name), ": " + it.errorMessage));
      else lines.push(it.name + " " + (it.result || "applied"));
    }
    out.textContent = lines.join(", ");
  } catch (e) {
    ta.classList.add("invalid");
    const fields = (e.body && e.body.error && e.body.error.fields) || [];
    out.textContent = e.message;
    out.className = "error";
    for (const f of fields) errs.append(el("li", { "data-field": f.field }, el("code", {}, f.field), ": " + f.reason));
    return;
  }
  out.className = "";
}

function eventRow(ev, withWorkload) {
  const reason = ev.reason && ev.reason !== "NONE" ? ev.reason : "";
  const who = ev.actor ? " (by " + ev.actor + ")" : "";
  return el("tr", {},
    el("td", {}, when(ev.time)),
    el("td", {}, ev.type || ""),
    withWorkload ? el("td", {}, ev.workload ? el("a", { href: "/ui/workloads/" + enc(ev.workload) }, ev.workload) : "") : null,
    el("td", {}, ev.nodeId || ""),
    el("td", {}, reason),
    el("td", {}, (ev.message || ev.action || "") + who));
}

// followEvents shows the newest events of url in tbody, newest first,
// at most 500.
function followEvents(url, tbody, withWorkload) {
  let items = [], next = null, pending = false;
  const render = () => {
    pending = false;
    const sorted = items.slice().sort((a, b) => String(b.time || "").localeCompare(String(a.time || ""))).slice(0, 500);
    tbody.replaceChildren(...sorted.map((e) => eventRow(e, withWorkload)));
    if (!sorted.length) tbody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No events.")));
  };
  follow(url, (ev) => {
    if (ev.type === "RESET") { next = []; return; }
    if (ev.type === "ERROR") { banner("Event stream error: " + ((ev.error && ev.error.message) || "")); return; }
    if (ev.type === "BOOKMARK") { if (next) { items = next; next = null; } }
    else if (ev.event) {
      if (next && ev.type === "SNAPSHOT") { next.push(ev.event); return; }
      if (next) { items = next; next = null; }
      items.push(ev.event);
      if (items.length > 1000) items = items.slice(-500);
    }
    if (!pending) { pending = true; setTimeout(render, 0); }
  }, "events", "event");
}

function eventsPage() { followEvents("/v1/events?follow=true&limit=500", $("#events tbody"), true); }

function workloadPage() {
  const name = BODY.name;
  watchWorkloads((items) => {
    const v = items.get(name);
    const st = $("#state");
    if (!v) {
      st.replaceWith(Object.assign(state("DELETED"), { id: "state" }));
      kv($("#status"), [["state", "not found: deleted, or not applied yet"]]);
      return;
    }
    st.replaceWith(Object.assign(state(wlState(v)), { id: "state" }));
    showWorkload(v);
  });
  for (const b of document.querySelectorAll("#wl-actions button")) {
    const act = b.dataset.act, label = b.textContent;
    b.addEventListener("click", () => actionClick(b, label, () => wlAction(act, name), act === "delete"));
  }
  const pre = $("#logs");
  if (pre) followText("/v1/workloads/" + enc(name) + "/logs?follow=true&tail=65536", pre, $("#logs-note"));
  followEvents("/v1/events?follow=true&limit=200&workload=" + enc(name), $("#events tbody"), false);
}

function showWorkload(v) {
  const w = v.workload || {}, sp = w.spec || {}, s = v.status || {}, a = v.assignment || {};
  const c = sp.container || {}, res = sp.resources || {};
  const labels = Object.entries(w.labels || {}).map(([k, x]) => k + "=" + x).join(", ");
  kv($("#spec"), [
    ["type", sp.type], ["image", c.image], ["command", (c.command || []).concat(c.args || []).join(" ")],
    ["cpu", res.cpuMillis ? cpu(res.cpuMillis) : ""], ["memory", res.memoryBytes ? bytes(res.memoryBytes) : ""],
    ["desired", sp.desiredState], ["revision", w.revision], ["labels", labels],
    ["applied by", w.appliedBy ? w.appliedBy + " (" + (w.appliedRole || "") + ")" : ""], ["created", when(w.createdAt)]]);
  kv($("#status"), [
    ["state", wlState(v)], ["node", s.nodeId || a.nodeId], ["revision", s.revision],
    ["reason", s.reason && s.reason !== "NONE" ? s.reason : ""], ["message", s.message],
    ["restarts", s.restartCount], ["exit code", s.exitCode], ["addresses", (s.addresses || []).join(", ")],
    ["updated", when(s.updatedAt)]]);
}

async function servicesPage() {
  const tb = $("#services tbody");
  for (;;) {
    try {
      const list = await api("GET", "/v1/services");
      const rows = ((list && list.services) || []).map((v) => {
        const s = v.service || {}, p = v.progress || {};
        return el("tr", { "data-name": s.name },
          el("td", {}, el("a", { href: "/ui/services/" + enc(s.name) }, s.name)),
          el("td", {}, num(p.replicas)), el("td", {}, num(p.ready)), el("td", {}, num(p.updated)),
          el("td", {}, num(p.available)), el("td", {}, state(p.phase)), el("td", {}, p.revision || ""),
          el("td", {}, p.message || ""));
      });
      tb.replaceChildren(...rows);
      if (!rows.length) tb.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No services.")));
      banner("");
    } catch (e) {
      banner("Services unavailable: " + e.message);
    }
    await sleep(2000);
  }
}

async function servicePage() {
  const name = BODY.name;
  for (;;) {
    try {
      const v = await api("GET", "/v1/services/" + enc(name) + "?events=true");
      const s = v.service || {}, p = v.progress || {}, sp = s.spec || {};
      $("#phase").replaceWith(Object.assign(state(p.phase), { id: "phase" }));
      kv($("#spec"), [["replicas", sp.replicas], ["generation", s.generation], ["created", when(s.createdAt)],
        ["applied by", s.appliedBy]]);
      kv($("#progress"), [["revision", p.revision], ["replicas", p.replicas], ["ready", p.ready], ["updated", p.updated],
        ["available", p.available], ["message", p.message]]);
      $("#replicas").replaceChildren(...(v.replicas || []).map((r) => el("li", {}, el("a", { href: "/ui/workloads/" + enc(r) }, r))));
      $("#events tbody").replaceChildren(...(v.events || []).slice(-200).reverse().map((e) => eventRow(e, true)));
      banner("");
    } catch (e) {
      banner("Service unavailable: " + e.message);
    }
    await sleep(2000);
  }
}

function loginPage() {
  const form = $("#login-form"), out = $("#login-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.textContent = "";
    const tok = $("#token").value.trim();
    if (!tok) { out.textContent = "token: paste an API token (psy_…)"; return; }
    try {
      const r = await fetch("/ui/login", { method: "POST", credentials: "same-origin", headers: { Authorization: "Bearer " + tok } });
      const body = await r.json().catch(() => null);
      if (!r.ok) { out.textContent = (body && body.error && body.error.message) || ("login refused (" + r.status + ")"); return; }
      const next = new URLSearchParams(location.search).get("next") || "/ui/";
      location.assign(next.startsWith("/ui/") ? next : "/ui/");
    } catch (err) {
      out.textContent = "login failed: " + err.message;
    }
  });
  $("#login-btn").disabled = false;
}

function wireLogout() {
  const b = $("#logout");
  if (!b) return;
  b.addEventListener("click", async () => {
    try { await api("POST", "/ui/logout"); } catch (e) { /* gone already */ }
    location.assign("/ui/login");
  });
}

const pages = {
  summary: summaryPage, nodes: nodesPage, workloads: workloadsPage, workload: workloadPage,
  events: eventsPage, services: servicesPage, service: servicePage, login: loginPage,
};
wireLogout();
(pages[BODY.page] || (() => {}))();
// Handlers are wired: what a click does now is what the page means.
BODY.ready = "true";
