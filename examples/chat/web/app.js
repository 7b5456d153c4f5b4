// The chat page: plain DOM, no framework, no build step. Everything the
// server sends is inserted with textContent, never as HTML.
import { connect } from "/rtkit.js";
import { login } from "/session.js";

const $ = (id) => document.getElementById(id);
let rt = null;
let me = "";
let current = "";
const rooms = new Map(); // name -> {messages: [], joined: bool}
const typing = new Map(); // user -> timeout

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const { name, token } = await login($("name").value);
    me = name;
    start(token);
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

function start(token) {
  $("login").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = me;
  rt = connect("/ws", { token });
  rt.on("connected", () => {
    setStatus("live", true);
    refreshRooms();
  });
  rt.on("disconnected", () => setStatus("reconnecting…", false));
  rt.on("msg", onMessage);
  rt.on("presence", (p) => {
    if (p.room === current) refreshOnline();
    refreshRooms();
  });
  rt.on("gap", (g) => g.room && notice(g.room, "Some messages could not be recovered."));
}

function setStatus(text, live) {
  $("status").textContent = text;
  $("status").classList.toggle("live", live);
}

async function refreshRooms() {
  const list = await rt.call("rooms.list");
  const ul = $("rooms");
  ul.replaceChildren();
  for (const r of list) {
    if (!rooms.has(r.name)) rooms.set(r.name, { messages: [], joined: false });
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.room = r.name;
    b.setAttribute("aria-current", String(r.name === current));
    const name = document.createElement("span");
    name.textContent = "# " + r.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = r.online ? String(r.online) : "";
    b.append(name, count);
    b.addEventListener("click", () => openRoom(r.name));
    li.append(b);
    ul.append(li);
  }
  if (!current && list.length) openRoom(list[0].name);
}

async function openRoom(name) {
  current = name;
  $("room-title").textContent = "# " + name;
  for (const b of $("rooms").querySelectorAll("button")) b.setAttribute("aria-current", String(b.dataset.room === name));
  const room = rooms.get(name);
  if (!room.joined) {
    room.joined = true;
    await rt.join(name, { history: 50 });
  }
  render();
  refreshOnline();
  $("text").focus();
}

function onMessage(m) {
  const room = rooms.get(m.room);
  if (!room) return;
  if (m.ephemeral) {
    if (m.data && m.data.typing && m.from.user !== me) showTyping(m.from.user);
    return;
  }
  clearTyping(m.from.user);
  room.messages.push(m);
  if (room.messages.length > 500) room.messages.shift();
  if (m.room === current) append(m);
}

function render() {
  $("messages").replaceChildren();
  for (const m of rooms.get(current).messages) append(m);
}

function append(m) {
  const li = document.createElement("li");
  if (m.notice) {
    li.className = "notice";
    li.textContent = m.notice;
  } else {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.from.user || "server";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = typeof m.data === "object" && m.data !== null ? m.data.text ?? JSON.stringify(m.data) : String(m.data);
    const when = document.createElement("time");
    when.className = "when";
    when.textContent = new Date(m.time).toLocaleTimeString();
    li.append(who, text, when);
  }
  const list = $("messages");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function notice(roomName, text) {
  const room = rooms.get(roomName);
  if (!room) return;
  room.messages.push({ notice: text });
  if (roomName === current) append({ notice: text });
}

async function refreshOnline() {
  if (!current) return;
  const members = await rt.presence(current);
  const users = [...new Set(members.map((m) => m.user))];
  const ul = $("online");
  ul.replaceChildren(...users.map((u) => {
    const li = document.createElement("li");
    li.textContent = u;
    return li;
  }));
}

function showTyping(user) {
  clearTimeout(typing.get(user));
  typing.set(user, setTimeout(() => clearTyping(user), 3000));
  renderTyping();
}

function clearTyping(user) {
  clearTimeout(typing.get(user));
  typing.delete(user);
  renderTyping();
}

function renderTyping() {
  const users = [...typing.keys()];
  $("typing").textContent = users.length ? `${users.join(", ")} ${users.length > 1 ? "are" : "is"} typing…` : "";
}

let lastTyping = 0;
$("text").addEventListener("input", () => {
  const now = Date.now();
  if (current && now - lastTyping > 1500) {
    lastTyping = now;
    rt.publish(current, { typing: true }, { ephemeral: true }).catch(() => {});
  }
});

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !current) return;
  $("text").value = "";
  lastTyping = 0;
  try {
    await rt.publish(current, { text });
  } catch (err) {
    notice(current, "Not sent: " + err.message);
  }
});

// Tests (and people) can tell the page is ready to use.
document.body.dataset.ready = "1";
