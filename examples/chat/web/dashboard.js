// The dashboard: it starts from the last hour (GET /api/dashboard: the
// replicas' stats, the latest public messages and, for admins, task
// events), then goes live over one EventSource, which carries the session
// cookie like any request. Charts are uPlot's (vendored, global uPlot).
import { currentSession } from "/session.js";

const $ = (id) => document.getElementById(id);
const nodes = new Map(); // node -> latest stats
const points = []; // {t (s), total, conns}: one per stats event, the last hour
const charts = {};

const session = await currentSession().catch(() => null);
if (!session) {
  $("signin").hidden = false;
} else {
  $("dash").hidden = false;
  const admin = session.role === "admin";
  $("outbox-link").hidden = !admin;
  $("tasks-link").hidden = !admin;
  $("tasks-note").hidden = admin;
  $("feed-note").hidden = admin;
  // Admins see the feeds; an empty one says so rather than stay blank.
  $("feed-empty").hidden = !admin;
  $("task-feed-empty").hidden = !admin;
  makeCharts();
  stream(await loadHistory());
}

// loadHistory shows the recent past and returns its position in the
// stream ("" when unknown: the stream then starts live).
async function loadHistory() {
  try {
    const res = await fetch("/api/dashboard");
    if (!res.ok) return "";
    const h = await res.json();
    for (const s of h.stats) onStats(s, false);
    redraw();
    for (const a of h.activity) feed([["feed-room", "#" + a.room], ["", ` ${a.user}: ${clip(a.text)}`]], a.at);
    for (const e of h.tasks) onTaskEvent(e);
    return h.since;
  } catch (err) {
    console.warn("dashboard history", err);
    return "";
  }
}

// stream goes live from since, the history's position: what was published
// while the history loaded comes first, nothing twice. (EventSource sends
// its own Last-Event-ID when it reconnects.)
function stream(since) {
  const es = new EventSource("/events" + (since ? "?last_event_id=" + encodeURIComponent(since) : ""));
  es.onopen = () => setStatus("live", "live");
  es.onerror = () => setStatus(navigator.onLine ? "reconnecting…" : "offline", navigator.onLine ? "" : "offline");
  // Untyped events: a replica's stats, or a task feed line.
  es.addEventListener("message", (e) => {
    const d = JSON.parse(e.data);
    if (d.node) {
      onStats(d, true);
    } else if (d.task) onTaskEvent(d);
  });
  // Room messages: only the server's "msg" events are messages (typing
  // signals, edits and deletions are not activity).
  es.addEventListener("msg", (e) => {
    const m = JSON.parse(e.data);
    const d = m.data;
    if (m.from?.user || !d || d.kind !== "msg" || !d.text) return;
    feed([["feed-room", "#" + m.room], ["", ` ${d.user}: ${clip(d.text)}`]], d.at);
  });
  // A room's presence changes come batched: joins and leaves since the
  // last event (a count only, in a room above the hub's limit).
  es.addEventListener("presence", (e) => {
    const p = JSON.parse(e.data);
    for (const m of p.joins ?? []) feed([["", `${m.meta?.name || m.user} joined `], ["feed-room", "#" + p.room]]);
    for (const m of p.leaves ?? []) feed([["", `${m.user} left `], ["feed-room", "#" + p.room]]);
  });
  es.addEventListener("rtkit-reset", () => feed([["", "Some history was lost (a restart?): the counters start over."]]));
  // Leaving the page closes the stream (a browser may keep a page it left
  // in its back/forward cache, stream open, counted as a dashboard open);
  // coming back reloads it.
  addEventListener("pagehide", () => es.close());
  addEventListener("pageshow", (ev) => ev.persisted && location.reload());
}

function setStatus(text, cls = "") {
  $("status").textContent = text;
  $("status").className = "status " + cls;
}

function onStats(s, live) {
  nodes.set(s.node, s);
  for (const [name, n] of nodes) if (s.time - n.time > 15000) nodes.delete(name); // gone
  let connections = 0, rooms = 0, total = 0, streams = 0, hits = 0, misses = 0;
  for (const n of nodes.values()) {
    connections += n.connections;
    rooms = Math.max(rooms, n.rooms);
    total += n.published;
    streams += n.streams;
    hits += n.cacheHits || 0;
    misses += n.cacheMisses || 0;
  }
  const t = s.time / 1000;
  points.push({ t, total, conns: connections });
  while (points.length && t - points[0].t > 3600) points.shift();
  $("connections").textContent = connections;
  $("rooms").textContent = rooms;
  $("messages").textContent = total;
  $("streams").textContent = streams;
  $("nodes").textContent = nodes.size;
  $("cache").textContent = hits + misses ? Math.round((100 * hits) / (hits + misses)) + "%" : "–";
  $("rate").textContent = rateAt(points.length - 1);
  // Task counts are the store's: with Redis every replica reports the same.
  if (s.tasks) for (const [state, n] of Object.entries(s.tasks)) {
    const cell = $("tasks-" + state);
    if (cell) cell.textContent = n;
  }
  if (live) redraw();
}

// rateAt is the messages of the minute before points[i] (a counter that
// went down, after a restart, counts from zero).
function rateAt(i) {
  if (i < 0) return 0;
  const p = points[i];
  let j = i;
  while (j > 0 && p.t - points[j - 1].t <= 60) j--;
  return Math.max(0, p.total - points[j].total);
}

function makeCharts() {
  const opts = (label, color) => ({
    width: 400,
    height: 200,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(5, max)] } },
    series: [{}, { label, stroke: color, width: 2, fill: color + "22" }],
    // The y axis's width leaves room for the x axis's first date label
    // ("12/24/26 1:25pm"), centred under the plot's left edge.
    axes: [{}, { size: 56 }],
    legend: { show: false },
  });
  charts.rate = new uPlot(opts("messages / min", "#2f6fed"), [[], []], $("chart-rate"));
  charts.conns = new uPlot(opts("connections", "#1a7f37"), [[], []], $("chart-conns"));
  const fit = () => {
    for (const [id, c] of [["chart-rate", charts.rate], ["chart-conns", charts.conns]]) {
      c.setSize({ width: Math.max(200, $(id).clientWidth), height: 200 });
    }
  };
  addEventListener("resize", fit);
  fit();
}

function redraw() {
  const ts = points.map((p) => p.t);
  charts.rate.setData([ts, points.map((_, i) => rateAt(i))]);
  charts.conns.setData([ts, points.map((p) => p.conns)]);
}

// onTaskEvent shows one task event: "12:01:02 mail to ana: mention in
// #general — retrying (attempt 2): the mail server refused the connection".
function onTaskEvent(e) {
  let text = ` ${e.label} — ${e.kind}`;
  if (e.attempt && e.kind !== "enqueued") text += ` (attempt ${e.attempt})`;
  if (e.error) text += `: ${e.error}`;
  const li = feed([["", text]], Date.parse(e.time) || Date.now(), "task-feed");
  li.className = "kind-" + e.kind.replace(/[^a-z]/g, "");
}

// clip shortens a message to 120 characters (code points: an emoji is
// never cut in half), saying that it did.
function clip(text) {
  const chars = [...text];
  return chars.length > 120 ? chars.slice(0, 119).join("") + "…" : text;
}

function feed(parts, time, list = "feed") {
  const li = document.createElement("li");
  const t = document.createElement("time");
  t.textContent = new Date(time ?? Date.now()).toLocaleTimeString();
  li.append(t);
  for (const [cls, text] of parts) {
    const s = document.createElement("span");
    if (cls) s.className = cls;
    s.textContent = text;
    li.append(s);
  }
  $(list).prepend(li);
  $(list + "-empty").hidden = true;
  while ($(list).children.length > 60) $(list).lastChild.remove();
  return li;
}

// Tests (and people) can tell the page is ready to use.
document.body.dataset.ready = "1";
