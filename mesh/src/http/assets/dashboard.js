// The onoal dashboard: reads the node's API and its WebSocket feed. No dependencies.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const $ = (id) => document.getElementById(id);
const short = (id) => (id || "").slice(0, 8);
const text = (s) => document.createTextNode(s == null ? "" : String(s));

async function api(path) {
  const r = await fetch(path, { headers });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.appendChild(text(c));
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows) {
  const body = $(id);
  body.replaceChildren(...rows.map(row));
}

let lastSize = null, lastTime = null;

async function refresh() {
  try {
    const [status, replicas, peers, topology, discovery] = await Promise.all([
      api("/status"), api("/ledger/replicas"), api("/mesh/peers"), api("/mesh/topology"),
      api("/mesh/discovery"),
    ]);
    $("ledger-id").textContent = status.ledger_id;
    $("oid").textContent = status.oid;
    $("size").textContent = status.tree_size.toLocaleString();
    $("checkpoint").textContent = status.checkpoint_size == null ? "none" : status.checkpoint_size.toLocaleString();
    $("root").textContent = status.root;
    $("quic").textContent = status.quic_addr;
    $("uptime").textContent = Math.round(status.uptime_seconds) + " s";
    const now = performance.now();
    if (lastSize != null && now > lastTime) {
      const rate = (status.tree_size - lastSize) / ((now - lastTime) / 1000);
      $("rate").textContent = Math.max(0, Math.round(rate)).toLocaleString() + " entries/s";
    }
    lastSize = status.tree_size; lastTime = now;
    fill("replicas", replicas.replicas.map((r) => {
      const lag = r.checkpoint_size == null ? "" : Math.max(0, r.checkpoint_size - r.tree_size);
      return [short(r.ledger_id), r.kind, r.tree_size.toLocaleString(), r.checkpoint_size ?? "", lag, r.status ?? ""];
    }));
    fill("peers", peers.peers.map((p) => {
      const m = document.createElement("span");
      m.textContent = p.misbehaviour_count;
      m.className = p.misbehaviour_count > 0 ? "bad" : "ok";
      const seen = p.last_seen_ms ? new Date(p.last_seen_ms).toLocaleTimeString() : "never";
      return [short(p.ledger_id), p.oid ?? "", p.addresses[0] ?? "", seen, p.trust == null ? "" : p.trust.toFixed(2), m];
    }));
    fill("discovered", (peers.discovered || []).map((d) => [short(d.ledger_id), d.oid, d.quic ?? "", d.source]));
    $("discovery-counters").textContent =
      "DHT nodes " + discovery.dht_nodes + ", records held " + discovery.dht_records_held +
      ", messages accepted " + discovery.messages_accepted + ", dropped " + discovery.messages_dropped +
      ", records refused " + discovery.records_refused + ", rate-limited " + discovery.dht_rate_limited;
    const routed = discovery.routed || {};
    $("routed-counters").textContent =
      "Routed: originated " + (routed.originated ?? 0) + ", relayed " + (routed.relayed ?? 0) +
      ", answered " + (routed.answered ?? 0) + ", rejected " + (routed.rejected ?? 0) +
      ", unreachable " + (routed.unreachable ?? 0);
    drawTopology(topology);
    // Optional parts: a node may not witness or run transfers.
    const [witness, balances, transfers, assets] = await Promise.all([
      api("/witness").catch(() => null), api("/balance").catch(() => []), api("/transfers").catch(() => []),
      api("/assets").catch(() => []),
    ]);
    if (witness) {
      const own = witness.own;
      $("witness").textContent = "Witness " + witness.name + (own
        ? "; this ledger: quorum " + own.quorum + " of " + own.witnesses.length + ", published size " + (own.published_size ?? "none")
        : "; this ledger names no witnesses");
      fill("witnessed", witness.witnessed.map((w) => [w.origin, w.tree_size.toLocaleString(), new Date(w.cosigned_ms).toLocaleTimeString()]));
      $("evidence").textContent = witness.evidence.map((e) => "Split view of " + e.origin + (e.proven ? " (proven)" : " (not proven)") + ": " + e.reason).join("; ");
    }
    fill("balances", balances.map((b) => [b.asset, b.available, b.locked, b.incoming, b.received, b.sent]));
    fill("transfers", transfers.slice(0, 10).map((t) => [short(t.id), t.role, t.amount + " " + t.asset, t.phase]));
    fill("assets", assets.map((a) => [a.asset, a.registration ? "registered here, entry " + a.registration.seq : "received"]));
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = String(e);
  }
}

function drawTopology(t) {
  const svg = $("topology");
  const ns = "http://www.w3.org/2000/svg";
  const w = 420, h = 300, cx = w / 2, cy = h / 2, r = 110;
  const pos = {};
  const others = t.nodes.filter((n) => n.role !== "self");
  t.nodes.forEach((n) => {
    if (n.role === "self") pos[n.ledger_id] = [cx, cy];
  });
  others.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, others.length) - Math.PI / 2;
    pos[n.ledger_id] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  const parts = [];
  const colors = { pinned: "#9aa3b2", follows: "#1b7f3b", replica: "#3b6fd4" };
  const dashed = (kind) => kind.startsWith("discovered");
  t.edges.forEach((e, i) => {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) return;
    const line = document.createElementNS(ns, "line");
    const off = (i % 3) * 3;
    line.setAttribute("x1", a[0] + off); line.setAttribute("y1", a[1] + off);
    line.setAttribute("x2", b[0] + off); line.setAttribute("y2", b[1] + off);
    line.setAttribute("stroke", colors[e.kind] || "#999");
    line.setAttribute("stroke-width", "2");
    if (dashed(e.kind)) line.setAttribute("stroke-dasharray", "4 3");
    parts.push(line);
  });
  t.nodes.forEach((n) => {
    const [x, y] = pos[n.ledger_id];
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", n.role === "self" ? 16 : 11);
    c.setAttribute("fill", n.misbehaviour_count > 0 ? "#b3261e" : n.role === "self" ? "#1d2330" : n.role === "discovered" ? "#9aa3b2" : "#3b6fd4");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x + 14); label.setAttribute("y", y - 14);
    label.textContent = (n.oid || "") + " " + short(n.ledger_id);
    parts.push(c, label);
  });
  svg.replaceChildren(...parts);
}

function connectFeed() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = token ? "?access_token=" + encodeURIComponent(token) : "";
  const ws = new WebSocket(proto + "//" + location.host + "/ledger/watch" + q);
  const events = $("events");
  ws.onopen = () => { $("conn").textContent = "live"; };
  ws.onclose = () => { $("conn").textContent = "feed closed, retrying"; setTimeout(connectFeed, 2000); };
  ws.onmessage = (m) => {
    const e = JSON.parse(m.data);
    let what = e.type;
    if (e.type === "entry") what = "entry " + e.seq + " " + e.stream + "/" + e.entry_type;
    else if (e.type === "checkpoint") what = "checkpoint " + e.tree_size;
    else if (e.type === "replica") what = "replica " + short(e.ledger_id) + " " + e.from_size + " -> " + e.to_size;
    else if (e.type === "peer") what = "peer " + short(e.ledger_id) + " " + e.state;
    events.prepend(row([new Date().toLocaleTimeString(), what]));
    while (events.children.length > 20) events.lastChild.remove();
  };
}

refresh();
setInterval(refresh, 1000);
connectFeed();
