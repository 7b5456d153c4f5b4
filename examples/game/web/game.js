// game.js: the page of the snake example. No build step: an ES module that
// imports the hub's browser client.
//
// The server is authoritative: this page sends turns (inputs) and draws
// what the server says. To look smooth and feel instant it does two things:
//   - interpolation: other snakes are drawn a little in the past, between
//     two snapshots it already has, so they glide at any frame rate;
//   - prediction: the player's own snake is drawn a little ahead, from the
//     newest snapshot plus the turns the server has not acknowledged yet,
//     and corrected by every snapshot (reconciliation).
import { connect } from "/rtkit.js";

const TICK_MS = 1000 / 30;
const INTERP_TICKS = 3; // others are drawn this far in the past (100 ms)
const MAX_PREDICT_TICKS = 8;
const COLORS = ["#7ee787", "#79c0ff", "#ffa657", "#ff7b72", "#d2a8ff", "#f2cc60", "#56d4dd", "#ff9bce"];
const STEPS = [[0, -1], [1, 0], [0, 1], [-1, 0]];
const CHAR_DIR = { u: 0, r: 1, d: 2, l: 3 };

const $ = (s) => document.querySelector(s);
const canvas = $("#board");
const g2d = canvas.getContext("2d");
const params = new URLSearchParams(location.search);
const spectating = params.has("watch");

// One player per tab: the token lives in sessionStorage, so a reload
// resumes the same player and a second tab is a second player.
let token = sessionStorage.getItem("snake-token");
if (!token) {
  token = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("snake-token", token);
}
const NAMES = ["ada", "alan", "grace", "linus", "ken", "rob", "barbara", "edsger", "margaret", "dennis"];
const myName = params.get("name") || sessionStorage.getItem("snake-name") || NAMES[parseInt(token.slice(0, 4), 16) % NAMES.length];
sessionStorage.setItem("snake-name", myName);

const st = {
  match: null, slot: -1, user: "", viewerJoined: false, matchRoom: null,
  held: new Map(), // tick → {tick, ents: Map(id → value)}
  newest: 0, recvAt: 0,
  rtt: null, seq: 0, pending: [], // inputs not acknowledged yet: {seq, dir}
  status: "connecting",
};

const rt = connect("/ws", { token });

function setStatus(s) {
  st.status = s;
  const el = $("#status");
  el.textContent = s;
  el.className = s;
}

rt.on("connected", async ({ user }) => {
  st.user = user;
  try {
    if (!st.viewerJoined) {
      st.viewerJoined = true;
      await rt.join("v:" + user); // rejoined by the client after a reconnect
    }
    const seat = await rt.call("game.join", spectating ? { spectate: true } : { name: myName });
    if (seat.match !== st.match) {
      st.held.clear();
      st.newest = 0;
      st.pending = [];
    }
    st.match = seat.match;
    st.slot = seat.slot;
    if (st.matchRoom !== seat.match) {
      if (st.matchRoom) rt.leave("game:" + st.matchRoom).catch(() => {});
      st.matchRoom = seat.match;
      rt.join("game:" + seat.match, { history: 1 }).catch(() => {});
    }
    setStatus("live");
    ack();
  } catch (err) {
    console.warn("join failed", err);
    $("#role").textContent = "could not join: " + err.message;
  }
});
rt.on("disconnected", () => {
  setStatus("reconnecting");
  st.pending = []; // their calls failed: nothing to predict from them
});
rt.on("msg", (m) => {
  if (m.room === "v:" + st.user) onDelta(m.data);
  else if (m.room === "game:" + st.match && m.data && m.data.result) showResult(m.data.result);
});

// onDelta rebuilds the snapshot of tick d.t from the one it is based on
// (d.b, which this page acknowledged; 0 for a full snapshot).
function onDelta(data) {
  if (!data || data.m !== st.match) return;
  const d = data.d;
  if (d.b === 0 && d.t < st.newest) {
    // The match restarted (its node went away and another took it over).
    st.held.clear();
    st.newest = 0;
    st.pending = [];
    st.seq = 0;
  }
  let ents;
  if (d.b === 0) ents = new Map();
  else {
    const base = st.held.get(d.b);
    if (!base) return; // not ours to apply: the next acknowledgement fixes it
    ents = new Map(base.ents);
  }
  for (const [id, v] of Object.entries(d.s || {})) ents.set(id, v);
  for (const id of d.x || []) ents.delete(id);
  const snap = { tick: d.t, ents };
  st.held.set(d.t, snap);
  for (const t of st.held.keys()) if (t < d.t - 90) st.held.delete(t);
  if (d.t > st.newest) {
    st.newest = d.t;
    st.recvAt = performance.now();
    reconcile(snap);
  }
}

// reconcile drops the inputs the server has processed; the rest are
// replayed on top of the server's state when the own snake is drawn.
function reconcile(snap) {
  if (st.slot < 0) return;
  const acked = (snap.ents.get("~acks") || {})[st.slot] || 0;
  if (acked > st.seq) st.seq = acked; // a reloaded page continues the sequence
  st.pending = st.pending.filter((p) => p.seq > acked);
}

// ack tells the server which snapshot this page holds (the base of its
// next deltas) and measures the round trip.
function ack() {
  if (!st.match || !rt.connected) return;
  const t0 = performance.now();
  rt.call("game.ack", { m: st.match, t: st.newest }).then(() => {
    const rtt = performance.now() - t0;
    st.rtt = st.rtt === null ? rtt : st.rtt * 0.8 + rtt * 0.2;
    $("#latency").textContent = Math.round(st.rtt) + " ms";
  }, () => {});
}
setInterval(ack, 100);

// serverTick estimates the server's clock from the newest snapshot.
function serverTick() {
  if (!st.newest) return 0;
  return st.newest + Math.min((performance.now() - st.recvAt) / TICK_MS, 10);
}

// predictedTick is where the own snake is drawn: the server's clock plus
// half a round trip (when this input would reach the server).
function predictedTick() {
  return serverTick() + Math.min((st.rtt || 0) / 2 / TICK_MS, MAX_PREDICT_TICKS);
}

function turn(dir) {
  if (st.slot < 0 || !st.match || !rt.connected) return;
  const me = snakeAt(st.held.get(st.newest), st.slot);
  if (me) {
    const q = queuedTurns(me);
    const last = q.length ? q[q.length - 1] : me.d;
    if (dir === last || dir === (last + 2) % 4 || q.length >= 2) return; // no effect: don't send
  }
  st.seq++;
  st.pending.push({ seq: st.seq, dir });
  // Stamped with the tick the prediction shows it at (see frame).
  rt.call("game.input", { m: st.match, p: st.slot, s: st.seq, t: Math.round(predictedTick()), d: dir })
    .catch((err) => console.warn("input refused", err.code));
}

function queuedTurns(s) {
  const q = [...(s.q || "")].map(Number);
  for (const p of st.pending) q.push(p.dir);
  return q.slice(0, 2);
}

// snakeAt decodes a player's entity: body cells from the head, direction.
function snakeAt(snap, slot) {
  const p = snap && snap.ents.get("p" + slot);
  if (!p) return null;
  const e = { ...p, ...snap.ents.get("s" + slot), a: !!p.h };
  const body = [];
  if (e.h) {
    let [x, y] = e.h;
    body.push([x, y]);
    for (const c of e.b || "") {
      const [dx, dy] = STEPS[CHAR_DIR[c]];
      x += dx;
      y += dy;
      body.push([x, y]);
    }
  }
  return { ...e, body, slot };
}

function meta(snap) {
  return (snap && snap.ents.get("m")) || { p: "wait", e: 0, w: 40, h: 28, v: 3 };
}

// snapAtOrBefore returns the newest held snapshot at or before tick.
function snapAtOrBefore(tick) {
  let best = null;
  for (const [t, s] of st.held) if (t <= tick && (!best || t > best.tick)) best = s;
  return best;
}

function moving(phase) {
  return phase === "play" || phase === "wait";
}

// predict replays the own snake from the newest snapshot to tick with the
// unacknowledged turns; it returns the body before and after the last
// move, and the progress between them.
function predict(snap, m, tick) {
  const me = snakeAt(snap, st.slot);
  if (!me || !me.a) return null;
  let body = me.body, dir = me.d, prev = null;
  const turns = queuedTurns(me);
  let k = Math.floor(snap.tick / m.v) * m.v; // last move the snapshot includes
  if (moving(meta(snap).p)) {
    for (let t = k + m.v; t <= tick; t += m.v) {
      const next = turns.shift();
      if (next !== undefined && next !== (dir + 2) % 4) dir = next;
      const [dx, dy] = STEPS[dir];
      prev = body;
      body = [[body[0][0] + dx, body[0][1] + dy], ...body.slice(0, -1)];
      k = t;
    }
  }
  return { body, prev: prev || shiftedBack(body), frac: moving(meta(snap).p) ? Math.min((tick - k) / m.v, 1) : 1 };
}

// shiftedBack is where a body was one move earlier (each cell where the
// next one is now).
function shiftedBack(body) {
  return body.map((_, i) => body[Math.min(i + 1, body.length - 1)]);
}

function lerpBody(prev, body, f) {
  return body.map((c, i) => {
    const p = prev[Math.min(i, prev.length - 1)] || c;
    if (Math.abs(p[0] - c[0]) + Math.abs(p[1] - c[1]) > 1) return c; // a respawn: no sliding
    return [p[0] + (c[0] - p[0]) * f, p[1] + (c[1] - p[1]) * f];
  });
}

// ---- drawing ----

let cell = 16, ox = 0, oy = 0;

function resize(m) {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(r.width * dpr) || canvas.height !== Math.round(r.height * dpr)) {
    canvas.width = Math.round(r.width * dpr);
    canvas.height = Math.round(r.height * dpr);
  }
  cell = Math.max(2, Math.floor(Math.min(canvas.width / m.w, canvas.height / m.h)));
  ox = Math.floor((canvas.width - cell * m.w) / 2);
  oy = Math.floor((canvas.height - cell * m.h) / 2);
}

function drawSnake(body, color, opts) {
  if (!body.length) return;
  const px = (c) => [ox + (c[0] + 0.5) * cell, oy + (c[1] + 0.5) * cell];
  g2d.globalAlpha = opts.away ? 0.35 : 1;
  g2d.lineCap = g2d.lineJoin = "round";
  if (opts.me) {
    g2d.strokeStyle = "#ffffff";
    g2d.lineWidth = cell * 0.95;
    strokePath(body.map(px));
  }
  g2d.strokeStyle = color;
  g2d.lineWidth = cell * 0.75;
  strokePath(body.map(px));
  const [hx, hy] = px(body[0]);
  g2d.fillStyle = "#0f1420";
  g2d.beginPath();
  g2d.arc(hx, hy, cell * 0.14, 0, Math.PI * 2);
  g2d.fill();
  g2d.globalAlpha = 1;
  g2d.fillStyle = "#dfe6f3";
  g2d.font = `${Math.max(10, cell * 0.7)}px system-ui`;
  g2d.textAlign = "center";
  g2d.fillText(opts.name + (opts.away ? " (away)" : ""), hx, hy - cell * 0.8);
}

function strokePath(pts) {
  g2d.beginPath();
  g2d.moveTo(pts[0][0], pts[0][1]);
  for (const p of pts.slice(1)) g2d.lineTo(p[0], p[1]);
  if (pts.length === 1) g2d.lineTo(pts[0][0] + 0.01, pts[0][1]);
  g2d.stroke();
}

function frame() {
  requestAnimationFrame(frame);
  const newest = st.held.get(st.newest);
  const m = meta(newest);
  resize(m);
  g2d.clearRect(0, 0, canvas.width, canvas.height);
  g2d.fillStyle = "#131a29";
  g2d.fillRect(ox, oy, cell * m.w, cell * m.h);
  g2d.strokeStyle = "#1c2538";
  g2d.lineWidth = 1;
  g2d.beginPath();
  for (let x = 0; x <= m.w; x++) { g2d.moveTo(ox + x * cell + 0.5, oy); g2d.lineTo(ox + x * cell + 0.5, oy + m.h * cell); }
  for (let y = 0; y <= m.h; y++) { g2d.moveTo(ox, oy + y * cell + 0.5); g2d.lineTo(ox + m.w * cell, oy + y * cell + 0.5); }
  g2d.stroke();
  g2d.strokeStyle = "#3b4766";
  g2d.lineWidth = 2;
  g2d.strokeRect(ox, oy, cell * m.w, cell * m.h);
  if (!newest) return;

  const now = serverTick();
  // Others: between the snapshots of the two moves around now - INTERP.
  const rtick = Math.max(now - INTERP_TICKS, 1);
  const k0 = Math.floor(rtick / m.v) * m.v;
  const s0 = snapAtOrBefore(k0) || newest;
  const s1 = snapAtOrBefore(k0 + m.v) || s0;
  const frac = moving(m.p) ? Math.min((rtick - k0) / m.v, 1) : 1;

  const pulse = 0.3 + 0.05 * Math.sin(performance.now() / 150);
  g2d.fillStyle = "#ff7b72";
  for (const id of s1.ents.keys()) {
    if (id[0] !== "f") continue;
    const c = Number(id.slice(1));
    g2d.beginPath();
    g2d.arc(ox + (c % m.w + 0.5) * cell, oy + (Math.floor(c / m.w) + 0.5) * cell, cell * pulse, 0, Math.PI * 2);
    g2d.fill();
  }
  for (let slot = 0; slot < 8; slot++) {
    if (slot === st.slot) continue;
    const a = snakeAt(s1, slot);
    if (!a || !a.a) continue;
    const b = snakeAt(s0, slot);
    const prev = b && b.a && s0 !== s1 ? b.body : shiftedBack(a.body);
    drawSnake(lerpBody(prev, a.body, s0 !== s1 ? frac : 1), COLORS[slot], { name: a.n, away: a.w });
  }
  if (st.slot >= 0) {
    const p = predict(newest, m, predictedTick());
    const me = snakeAt(newest, st.slot);
    if (p && me) drawSnake(lerpBody(p.prev, p.body, p.frac), COLORS[st.slot], { name: me.n + " (you)", me: true });
  }
  hud(newest, m, now);
}

let lastHUD = "";
function hud(snap, m, now) {
  const players = [];
  for (let slot = 0; slot < 8; slot++) {
    const s = snakeAt(snap, slot);
    if (s) players.push(s);
  }
  const left = m.e ? Math.max(0, Math.ceil((m.e - now) / 30)) : 0;
  const me = players.find((p) => p.slot === st.slot);
  let over = "", big = false, timer = "";
  if (m.p === "wait") over = players.length < 2 ? "Waiting for another player…<br><small>open this page in a second tab</small>" : "";
  else if (m.p === "count") { over = String(left || "go"); big = true; }
  else if (m.p === "play") timer = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  else if (m.p === "end") {
    const best = [...players].sort((a, b) => b.s - a.s)[0];
    over = best ? `Round over — ${escapeHTML(best.n)} wins with ${best.s}` : "Round over";
  }
  if (me && !me.a && moving(m.p)) over = over || "…respawning";
  const key = JSON.stringify([players.map((p) => [p.slot, p.n, p.s, p.k, p.w]), over, big, timer, st.slot, st.match]);
  if (key === lastHUD) return;
  lastHUD = key;
  const ov = $("#overlay");
  ov.hidden = !over;
  ov.className = big ? "big" : "";
  ov.innerHTML = over;
  $("#timer").textContent = timer;
  $("#role").textContent = st.slot >= 0 ? `You are ${myName} in match ${st.match}` : `Watching match ${st.match}`;
  const ol = $("#scores");
  ol.replaceChildren(...players.sort((a, b) => b.s - a.s || a.slot - b.slot).map((p) => {
    const li = document.createElement("li");
    li.className = (p.slot === st.slot ? "me " : "") + (p.w ? "away" : "");
    li.innerHTML = `<span class="sw"></span><span class="nm"></span><span class="sc"></span>`;
    li.querySelector(".sw").style.background = COLORS[p.slot];
    li.querySelector(".nm").textContent = p.n;
    li.querySelector(".sc").textContent = `${p.s} · ${p.k}✕`;
    return li;
  }));
}

function showResult(r) {
  const best = r.players && r.players[0];
  $("#last").textContent = best ? `Last round: ${best.name} won with ${best.score}.` : "";
}

function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---- controls: keys, swipes, the touch pad ----

const KEYS = { ArrowUp: 0, KeyW: 0, ArrowRight: 1, KeyD: 1, ArrowDown: 2, KeyS: 2, ArrowLeft: 3, KeyA: 3 };
addEventListener("keydown", (e) => {
  if (e.code in KEYS) {
    e.preventDefault();
    turn(KEYS[e.code]);
  }
});
let touchStart = null;
canvas.addEventListener("pointerdown", (e) => { touchStart = [e.clientX, e.clientY]; });
canvas.addEventListener("pointermove", (e) => {
  if (!touchStart) return;
  const dx = e.clientX - touchStart[0], dy = e.clientY - touchStart[1];
  if (Math.max(Math.abs(dx), Math.abs(dy)) < 24) return;
  turn(Math.abs(dx) > Math.abs(dy) ? (dx > 0 ? 1 : 3) : (dy > 0 ? 2 : 0));
  touchStart = [e.clientX, e.clientY];
});
addEventListener("pointerup", () => { touchStart = null; });
for (const b of document.querySelectorAll("#pad button")) {
  b.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    turn(Number(b.dataset.dir));
  });
}

// For tests and the curious: the newest state as the page sees it.
window.snakeGame = {
  state: st,
  phase: () => meta(st.held.get(st.newest)).p,
  snakes: () => {
    const out = {};
    for (let slot = 0; slot < 8; slot++) {
      const s = snakeAt(st.held.get(st.newest), slot);
      if (s) out[slot] = { name: s.n, alive: s.a, dir: s.d, head: s.body[0] || null, away: s.w, score: s.s };
    }
    return out;
  },
  turn,
};

requestAnimationFrame(frame);
document.body.dataset.ready = "1";
