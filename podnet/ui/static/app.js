// podnet lab ui: renders the server's state document (podnet/ui/model.py)
// on every "state" event, keeps the last FEED_MAX flows, draws flows and a
// trace's path as SVG over the picture. No library: the DOM is small.
"use strict";

const FEED_MAX = 200;     // flows kept in the list (the server's feed is bounded too)
const EDGES_MAX = 12;     // newest flows drawn as edges on the picture
let state = null;
let flows = [];           // newest last
let lastTrace = null;     // the last trace document, redrawn after each render
let pick = { from: null, to: null };
let stateText = "";       // the last state event's text, to skip identical ones
let renders = 0;          // bumps on every render: the overlay must follow the boxes
let overlayKey = "";      // what the overlay was last drawn from
let traceSeq = 0;         // #trace-result's data-seq: one more per answer (tests wait on it)

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// ---- the picture ------------------------------------------------------------

function podBox(p) {
  const cls = ["pod", p.ready ? "ready" : "notready"];
  if (p.deleting) cls.push("deleting");
  if (pick.from === p.key) cls.push("sel-from");
  if (pick.to === p.key) cls.push("sel-to");
  const box = el("div", { class: cls.join(" "), "data-pod": p.key, "data-ip": p.ip || "", title: p.phase },
    el("div", {}, el("span", { class: "name" }, p.namespace === "default" ? p.name : p.key), " ",
      el("span", { class: "badge " + (p.ready ? "ready" : "notready") }, p.ready ? "ready" : p.phase.toLowerCase())),
    el("div", { class: "ip" }, p.ip || "no IP yet"));
  if (p.policies.length) {
    const b = el("div", { class: "badges" });
    for (const pol of p.policies) b.append(el("span", { class: "badge policy", "data-policy": pol, title: "NetworkPolicy " + pol }, pol.split("/").pop()));
    box.append(b);
  }
  box.addEventListener("click", () => choose(p.key));
  return box;
}

function nodeBox(n) {
  const head = el("div", { class: "node-head", "data-where": "node " + n.name, "data-ip": n.ip || "" },
    el("span", { class: "name" }, n.name), " ", el("span", { class: "ip" }, n.ip || ""),
    el("div", { class: "muted" }, "pods " + (n.podCIDR || "?") + " \u00b7 " + (n.backend || "routing ?")));
  if (n.bgp.length) {
    const b = el("div", { class: "bgp" }, "BGP: ");
    for (const s of n.bgp) b.append(el("span", { class: "session " + s.state, "data-peer": s.peer }, (s.peer ? s.peer + " " : "") + s.state), " ");
    head.append(b);
  }
  const box = el("div", { class: "node" + (n.ready ? "" : " notready"), id: "node-" + n.name, "data-node": n.name }, head);
  for (const p of n.pods) box.append(podBox(p));
  return box;
}

function render() {
  const s = state;
  $("#lab-name").textContent = s.lab;
  $("#routing").textContent = "routing: " + s.routing;
  $("#encryption").textContent = "encryption: " + s.encryption;
  $("#cidr").textContent = "pods " + (s.clusterCIDR || "");
  $("#external .ip").textContent = s.external.ip || "";
  $("#external").setAttribute("data-ip", s.external.ip || "");
  $("#underlay .ip").textContent = s.underlay || "";
  $("#nodes").replaceChildren(...s.nodes.map(nodeBox));
  const un = s.unscheduled.map(podBox);
  $("#unscheduled").replaceChildren(...(un.length ? [el("h3", {}, "not scheduled yet"), ...un] : []));
  $("#services").replaceChildren(...s.services.map((v) => el("div", { class: "service", "data-service": v.key },
    el("b", {}, v.key), " ", el("span", { class: "muted" }, v.type + " " + (v.clusterIP || "") + " " +
      v.ports.map((p) => p.port + "/" + p.protocol + (p.nodePort ? ":" + p.nodePort : "")).join(",") +
      (v.loadBalancer.length ? " LB " + v.loadBalancer.join(",") : "")),
    ...(v.endpoints.length ? v.endpoints.map((e) => el("div", { class: "endpoint" + (e.ready ? "" : " notready"), "data-ip": e.ip },
      e.ip + (e.pod ? " " + e.pod : "") + (e.node ? " on " + e.node : "") + (e.ready ? "" : " (not ready)")))
      : [el("div", { class: "endpoint notready" }, "no endpoints")]))));
  $("#policies").replaceChildren(...(s.policies.length ? s.policies.map((p) => el("div", { class: "policy", "data-policy": p.key },
    el("span", { class: "badge policy" }, p.key), " " + p.types.join("+") + " \u2192 " + (p.pods.join(", ") || "no pods")))
    : [el("div", { class: "muted" }, "none")]));
  fillPickers();
  drawOverlay();
}

// ---- trace ------------------------------------------------------------------

function allPods() {
  return state ? state.nodes.flatMap((n) => n.pods).concat(state.unscheduled) : [];
}

function fillPickers() {
  const pods = allPods().map((p) => p.key);
  const from = ["", ...pods, ...state.nodes.map((n) => n.name), "external"];
  const to = ["", ...pods, ...state.services.map((v) => "svc/" + v.key), ...state.nodes.map((n) => n.name), "external"];
  for (const [id, opts, cur] of [["#trace-from", from, pick.from], ["#trace-to", to, pick.to]]) {
    const sel = $(id);
    sel.replaceChildren(...opts.map((o) => el("option", { value: o }, o || "(choose)")));
    sel.value = opts.includes(cur) ? cur : "";
  }
}

function choose(key) {
  if (!pick.from || (pick.from && pick.to)) pick = { from: key, to: null };
  else if (key !== pick.from) pick.to = key;
  render();
}

function traceTarget(to, port, proto) {
  // a pod or node: TO:PORT; a Service: svc/NAME:its first port (the trace's namespace is FROM's)
  if (to.startsWith("svc/")) {
    const svc = state.services.find((s) => "svc/" + s.key === to);
    const p = svc && svc.ports.length ? svc.ports[0].port : port;
    return "svc/" + to.split("/").pop() + (proto === "icmp" ? "" : ":" + p);
  }
  return proto === "icmp" ? to : to + ":" + port;
}

async function runTrace() {
  const from = $("#trace-from").value, to = $("#trace-to").value;
  const proto = $("#trace-proto").value, port = $("#trace-port").value || "8080";
  const out = $("#trace-result");
  if (!from || !to) { out.textContent = "choose FROM and TO"; return; }
  const ns = from.includes("/") ? from.split("/")[0] : "default";
  out.className = ""; out.textContent = "tracing " + from + " \u2192 " + to + " \u2026";
  $("#trace-run").disabled = true;
  try {
    const r = await fetch("/api/trace", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ from: from, to: traceTarget(to, port, proto), protocol: proto, namespace: ns }) });
    const doc = await r.json();
    if (!r.ok) { traceFailed(doc.error || ("HTTP " + r.status)); }
    else showTrace(doc);
  } catch (e) {
    traceFailed("trace: " + e);
  } finally {
    $("#trace-run").disabled = false;
    out.setAttribute("data-seq", String(++traceSeq));
  }
  drawOverlay();
}

function traceFailed(text) {
  const out = $("#trace-result");
  lastTrace = null;
  out.className = "failed"; out.textContent = text; out.setAttribute("data-verdict", "error");
  $("#trace-hops").replaceChildren();
}

function showTrace(doc) {
  lastTrace = doc;
  const out = $("#trace-result");
  out.className = doc.verdict === "delivered" ? "delivered" : "failed";
  out.setAttribute("data-verdict", doc.verdict);
  out.textContent = doc.verdict.toUpperCase() + ": " + doc.reason + (doc.endpoint ? " (endpoint " + doc.endpoint + ")" : "");
  $("#trace-hops").replaceChildren(...doc.hops.map((h, i) => el("li", { class: "hop verdict-" + h.verdict, "data-where": h.where, "data-step": h.step },
    el("b", {}, h.where), ": " + h.what + (h.verdict === "continue" ? "" : " [" + h.verdict + "]"),
    h.object ? el("span", { class: "obj" }, h.object) : null)));
}

// ---- drawing over the picture -------------------------------------------------

function boxOf(where) {  // a hop's "where" or a flow end -> the element on the picture
  if (!where) return null;
  if (where === "external") return $("#external");
  if (where.startsWith("pod ")) return document.querySelector('[data-pod="' + CSS.escape(where.slice(4)) + '"]');
  if (where.startsWith("node ")) return document.querySelector('[data-where="' + CSS.escape(where) + '"]');
  return document.querySelector('[data-pod="' + CSS.escape(where) + '"]') ||
    document.querySelector('#picture [data-ip="' + CSS.escape(where) + '"]');
}

function center(e) {
  const p = $("#picture").getBoundingClientRect(), r = e.getBoundingClientRect();
  return [r.left - p.left + r.width / 2, r.top - p.top + r.height / 2];
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function flowEnd(end) {
  return end ? (boxOf(end.name ? (end.kind === "node" ? "node " + end.name : end.name) : null) || boxOf(end.ip)) : null;
}

function drawOverlay() {
  const shownFlows = flows.filter(shown).slice(-EDGES_MAX);
  const key = [renders, traceSeq, window.innerWidth, window.innerHeight, $("#show-probes").checked,
    ...shownFlows.map((f) => f.seq)].join(",");
  if (key === overlayKey) return;  // nothing moved: keep the elements (and whoever looks at them)
  overlayKey = key;
  const g = $("#edges");
  g.replaceChildren();
  document.querySelectorAll(".on-path").forEach((e) => e.classList.remove("on-path"));
  // the underlay: every node's (and the external host's) link to the shared bridge
  const pic = $("#picture").getBoundingClientRect(), u = $("#underlay").getBoundingClientRect();
  for (const h of document.querySelectorAll(".node-head, #external")) {
    const r = h.getBoundingClientRect();
    const x = Math.min(Math.max(r.left + r.width / 2, u.left + 8), u.right - 8) - pic.left;
    const top = h.id === "external" ? r.top : r.top - 8;
    if (h.id === "external") {
      g.append(svg("line", { x1: r.right - pic.left, y1: r.top + r.height / 2 - pic.top, x2: u.left - pic.left,
        y2: u.top + u.height / 2 - pic.top, class: "wire" }));
    } else {
      g.append(svg("line", { x1: x, y1: u.bottom - pic.top, x2: x, y2: top - pic.top, class: "wire" }));
    }
  }
  for (const f of shownFlows) {
    const a = flowEnd(f.src), b = flowEnd(f.endpoint || f.dst);
    if (!a || !b || a === b) continue;
    const [x1, y1] = center(a), [x2, y2] = center(b);
    const line = svg("line", { x1, y1, x2, y2, class: "edge " + f.verdict, "data-seq": f.seq });
    line.append(svg("title", {}));
    line.firstChild.textContent = f.verdict + (f.reason ? ": " + f.reason : "");
    g.append(line);
    if (f.verdict !== "forwarded") {  // the mark near the end whose node dropped it
      const k = f.dropAt === "dst" ? 0.8 : 0.2;
      const m = svg("text", { x: x1 + (x2 - x1) * k, y: y1 + (y2 - y1) * k, class: "drop-mark", "data-seq": f.seq });
      m.textContent = "\u2715";
      g.append(m);
    }
  }
  if (!lastTrace) return;
  const pts = [];
  lastTrace.hops.forEach((h, i) => {
    const e = boxOf(h.where);
    if (!e) return;
    e.classList.add("on-path");
    const c = center(e);
    const prev = pts[pts.length - 1];
    if (prev && prev.e === e) { prev.n.push(i + 1); if (h.verdict !== "continue") prev.v = h.verdict; return; }
    pts.push({ e, c, n: [i + 1], v: h.verdict });
  });
  if (pts.length > 1) {
    g.append(svg("polyline", { points: pts.map((p) => p.c.join(",")).join(" "),
      class: "trace-path" + (lastTrace.verdict === "delivered" ? "" : " failed") }));
  }
  pts.forEach((p, i) => {
    const m = svg("g", { class: "hop-mark" + (p.v === "drop" || p.v === "reject" ? " drop" : ""), "data-hop": i + 1 });
    m.append(svg("circle", { cx: p.c[0] + 12 * (i % 2 ? 1 : -1), cy: p.c[1], r: 10 }));
    const t = svg("text", { x: p.c[0] + 12 * (i % 2 ? 1 : -1), y: p.c[1] });
    t.textContent = String(i + 1);
    m.append(t);
    g.append(m);
  });
}

let overlayPending = false;
function scheduleOverlay() {  // a burst of flows: one redraw
  if (overlayPending) return;
  overlayPending = true;
  setTimeout(() => { overlayPending = false; if (state) drawOverlay(); }, 200);
}

function fromNode(f) {  // kubelet's probes: from a node, or from its address on the pods' bridge
  return !!f.src && (f.src.kind === "node" || (!!state && state.nodes.some((n) => n.gateway === f.src.ip)));
}

function shown(f) {  // a node's own connections are hidden unless asked for; drops never
  return $("#show-probes").checked || f.verdict !== "forwarded" || !fromNode(f);
}

// ---- flows ------------------------------------------------------------------

function endText(e) {
  if (!e) return "?";
  return (e.name || e.ip || "?") + (e.port ? ":" + e.port : "");
}

function flowText(f) {
  return (f.time ? f.time.slice(11, 19) + " " : "") + (f.protocol || "") + " " + endText(f.src) + " \u2192 " + endText(f.dst) +
    (f.endpoint ? " (\u2192 " + endText(f.endpoint) + ")" : "") + " " + f.verdict.toUpperCase() +
    (f.reason ? ": " + f.reason : "") + (f.node ? " on " + f.node : "") + (f.via ? " via " + f.via : "") +
    (f.bytes !== null && f.bytes !== undefined ? " \u00b7 " + f.packets + " pkts " + f.bytes + " B" : "");
}

function addFlow(f) {
  if (flows.length && f.seq <= flows[flows.length - 1].seq) return;  // already shown (a reconnect replays the feed)
  const feed = $("#flow-feed");
  const i = flows.findIndex((o) => o.id === f.id);  // the same connection again, now ended
  if (i >= 0) {
    flows.splice(i, 1);
    const old = feed.querySelector('[data-id="' + CSS.escape(f.id) + '"]');
    if (old) old.remove();
  }
  flows.push(f);
  if (flows.length > FEED_MAX) flows.shift();
  feed.prepend(el("li", { class: "flow " + f.verdict + (shown(f) ? "" : " probe"), "data-seq": f.seq, "data-id": f.id, "data-verdict": f.verdict,
    title: f.policies.length ? "NetworkPolicy " + f.policies.join(", ") : "" }, flowText(f)));
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

// ---- live -------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { $("#live").className = "live on"; $("#live").textContent = "live"; });
  es.addEventListener("error", () => { $("#live").className = "live off"; $("#live").textContent = "reconnecting"; });
  es.addEventListener("state", (ev) => {
    if (ev.data === stateText) return;  // a change the picture does not show (a heartbeat): nothing to redo
    stateText = ev.data;
    state = JSON.parse(ev.data);
    renders++;
    render();
  });
  es.addEventListener("flow", (ev) => { addFlow(JSON.parse(ev.data)); scheduleOverlay(); });
}

$("#trace-run").addEventListener("click", runTrace);
$("#trace-from").addEventListener("change", (e) => { pick.from = e.target.value || null; render(); });
$("#trace-to").addEventListener("change", (e) => { pick.to = e.target.value || null; render(); });
$("#show-probes").addEventListener("change", (e) => {
  $("#flow-feed").classList.toggle("with-probes", e.target.checked);
  scheduleOverlay();
});
window.addEventListener("resize", () => { if (state) drawOverlay(); });
connect();
