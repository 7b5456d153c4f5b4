// The dashboard: one plain EventSource over the replicas' stats, the task
// runners' events and the chat rooms. EventSource reconnects by itself and resumes with
// Last-Event-ID; an "rtkit-reset" event means history was lost, so the
// page starts its counters over.
import { login, savedToken } from "/session.js";

const $ = (id) => document.getElementById(id);
const nodes = new Map(); // node -> latest stats
let samples = []; // {t, total}: total messages over time
const rates = []; // messages per minute, one point per stats event

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await login($("name").value);
    start();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

if (savedToken()) start();
else $("login").hidden = false;

function start() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("outbox-link").href = "/outbox?token=" + encodeURIComponent(savedToken());
  const es = new EventSource("/events?token=" + encodeURIComponent(savedToken()));
  es.onopen = () => setStatus("live", true);
  es.onerror = () => setStatus("reconnecting…", false);
  es.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
  es.addEventListener("msg", (e) => onRoomEvent(JSON.parse(e.data)));
  es.addEventListener("presence", (e) => onRoomEvent(JSON.parse(e.data)));
  es.addEventListener("message", (e) => onTaskEvent(JSON.parse(e.data))); // task events have no type
  es.addEventListener("rtkit-reset", () => {
    nodes.clear();
    samples = [];
    rates.length = 0;
    feed("History was lost (a restart?): counters start over.");
  });
}

function setStatus(text, live) {
  $("status").textContent = text;
  $("status").classList.toggle("live", live);
}

function onStats(s) {
  nodes.set(s.node, s);
  const now = s.time;
  for (const [name, n] of nodes) if (now - n.time > 15000) nodes.delete(name); // gone
  let connections = 0, rooms = 0, messages = 0, streams = 0, hits = 0, misses = 0;
  for (const n of nodes.values()) {
    connections += n.connections;
    rooms = Math.max(rooms, n.rooms);
    messages += n.published;
    streams += n.streams;
    hits += n.cacheHits || 0;
    misses += n.cacheMisses || 0;
  }
  $("cache").textContent = hits + misses ? Math.round((100 * hits) / (hits + misses)) + "%" : "–";
  $("connections").textContent = connections;
  $("rooms").textContent = rooms;
  $("messages").textContent = messages;
  $("streams").textContent = streams;
  $("nodes").textContent = nodes.size;
  // Task counts are the store's: with Redis every replica reports the
  // same, so the latest report stands.
  if (s.tasks) for (const [state, n] of Object.entries(s.tasks)) {
    const cell = $("tasks-" + state);
    if (cell) cell.textContent = n;
  }

  // Messages in the last minute (or since the page started, if sooner).
  samples.push({ t: now, total: messages });
  samples = samples.filter((x) => now - x.t <= 60000);
  const rate = Math.max(0, messages - samples[0].total);
  $("rate").textContent = rate;
  rates.push(rate);
  if (rates.length > 120) rates.shift();
  drawChart();
}

function drawChart() {
  const max = Math.max(1, ...rates);
  const step = 600 / Math.max(1, rates.length - 1);
  $("line").setAttribute("points", rates.map((r, i) => `${(i * step).toFixed(1)},${(115 - (r / max) * 110).toFixed(1)}`).join(" "));
}

function onRoomEvent(e) {
  const room = e.room || "";
  if (e.op === "presence") {
    feed(`${e.member.user} ${e.event === "join" ? "joined" : "left"} #${room}`, e.time);
  } else if (e.op === "msg" && !e.ephemeral) {
    const text = String(e.data && typeof e.data === "object" ? e.data.text ?? "" : e.data);
    feed(`${e.from.user || "server"} in #${room}: ${text.slice(0, 80)}`, e.time);
  }
}

// onTaskEvent shows one task event: "email.send 0193ab12 retrying
// (attempt 1/…): dial tcp …".
function onTaskEvent(e) {
  if (!e || typeof e.kind !== "string" || typeof e.task_id !== "string") return;
  let text = `${e.type} ${e.task_id.slice(-8)} ${e.kind}`;
  if (e.attempt) text += ` (attempt ${e.attempt})`;
  if (e.error) text += `: ${String(e.error).slice(0, 120)}`;
  const li = feed(text, Date.parse(e.time) || Date.now(), "task-feed");
  li.className = "kind-" + e.kind.replace(/[^a-z]/g, "");
}

function feed(text, time, list = "feed") {
  time = time ?? Date.now();
  const li = document.createElement("li");
  const t = document.createElement("time");
  t.textContent = new Date(time).toLocaleTimeString();
  li.append(t, document.createTextNode(text));
  $(list).prepend(li);
  while ($(list).children.length > 50) $(list).lastChild.remove();
  return li;
}

// Tests (and people) can tell the page is ready to use.
document.body.dataset.ready = "1";
