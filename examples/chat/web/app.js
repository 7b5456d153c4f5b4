// The chat page: plain DOM, no framework, no build step. Everything users
// wrote is inserted as text (textContent), never as HTML; links become <a>
// elements built here, for http(s) addresses only.
import { connect } from "/rtkit.js";
import { currentSession, signIn, register, signOut, keepAlive } from "/session.js";
import { renderText } from "/text.js";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};

let me = null; // the session: {handle, name, role, noMail, ttl}
let rt = null;
let stopKeepAlive = () => {};
let current = ""; // the open topic
const convs = new Map(); // topic -> {title, kind: "room"|"dm", with, msgs: [], loaded, more, joined, unread, private}
let roomList = [];
let dmList = [];
const typing = new Map(); // user -> timeout, in the current topic

// ---- signing in ----------------------------------------------------------

function showTab(which) {
  const login = which === "login";
  $("tab-login").setAttribute("aria-selected", String(login));
  $("tab-register").setAttribute("aria-selected", String(!login));
  $("login-form").hidden = !login;
  $("register-form").hidden = login;
  (login ? $("login-handle") : $("reg-handle")).focus();
}
$("tab-login").addEventListener("click", () => showTab("login"));
$("tab-register").addEventListener("click", () => showTab("register"));
for (const tab of [$("tab-login"), $("tab-register")]) {
  tab.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") showTab(tab.id === "tab-login" ? "register" : "login");
  });
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const handle = $("login-handle").value.trim();
  const password = $("login-password").value;
  if (!handle || !password) {
    $("login-error").textContent = "Enter your handle and your password.";
    return;
  }
  try {
    start(await signIn(handle, password));
  } catch (err) {
    $("login-error").textContent = err.message;
    $("login-password").select();
  }
});

$("register-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const fields = ["handle", "name", "email", "password"];
  for (const f of fields) {
    $("reg-" + f + "-error").textContent = "";
    $("reg-" + f).removeAttribute("aria-invalid");
  }
  $("register-error").textContent = "";
  const body = Object.fromEntries(fields.map((f) => [f, $("reg-" + f).value]));
  try {
    start(await register(body));
  } catch (err) {
    if (fields.includes(err.field)) {
      $("reg-" + err.field + "-error").textContent = err.message;
      $("reg-" + err.field).setAttribute("aria-invalid", "true");
      $("reg-" + err.field).focus();
    } else {
      $("register-error").textContent = err.message;
    }
  }
});

function showAuth(note = "") {
  $("chat").hidden = true;
  $("auth").hidden = false;
  $("auth-note").textContent = note;
  showTab("login");
}

async function endSession(note) {
  stopKeepAlive();
  if (rt) rt.close();
  rt = null;
  me = null;
  convs.clear();
  current = "";
  showAuth(note);
}

$("logout").addEventListener("click", async () => {
  try {
    await signOut();
  } finally {
    endSession("You signed out.");
  }
});

// ---- the chat -------------------------------------------------------------

function start(session) {
  me = session;
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("me-name").textContent = me.name;
  $("me-handle").textContent = "@" + me.handle;
  $("me-role").textContent = me.role === "admin" ? "admin" : "";
  $("new-room").hidden = me.role !== "admin";
  $("outbox-link").hidden = me.role !== "admin";
  $("tasks-link").hidden = me.role !== "admin";
  $("mail-opt").checked = !me.noMail;
  stopKeepAlive = keepAlive(me, () => endSession("Your session expired. Sign in again."));
  openConnection();
}

function openConnection() {
  setStatus("connecting…");
  rt = connect("/ws");
  const client = rt;
  let failures = 0;
  client.on("connected", async () => {
    failures = 0;
    setStatus("live", "live");
    if (!convs.has("user:" + me.handle)) {
      convs.set("user:" + me.handle, { kind: "inbox", msgs: [] });
      convs.set("sys:lobby", { kind: "inbox", msgs: [] });
      await Promise.all([client.join("user:" + me.handle), client.join("sys:lobby")]).catch(() => {});
    }
    await refreshLists();
    if (!current) openInitial();
    else if (!convs.get(current)?.joined) openTopic(current); // a new client, after a kick
    else refreshOnline();
  });
  client.on("disconnected", async (ev) => {
    if (client !== rt) return;
    setStatus(navigator.onLine ? "reconnecting…" : "offline", navigator.onLine ? "" : "offline");
    failures++;
    // Kicked (4003): the client stops; so does an expired or revoked
    // session, which the hub refuses. Ask the server which it is.
    if (ev.code === 4003 || failures >= 3) {
      const s = await currentSession().catch(() => undefined);
      if (s === null) return endSession(ev.reason === "banned" ? "Your account was banned." : "Your session ended. Sign in again.");
      if (ev.code === 4003) {
        toast("Disconnected", ev.reason || "by the server");
        for (const c of convs.values()) c.joined = false;
        convs.delete("user:" + me.handle);
        setTimeout(() => client === rt && openConnection(), 1000);
      }
    }
  });
  client.on("msg", onMessage);
  // A presence event carries the room's member list after it (p.members,
  // null when the client has none) and the joins and leaves it brought.
  client.on("presence", (p) => {
    if (p.room === current) refreshOnline();
    if ((p.joins || p.leaves) && convs.get(p.room)?.kind === "room") scheduleListRefresh();
    // Everyone is in the lobby: its comings and goings are the admin's
    // list of users going on or off line (and new accounts).
    if ((p.joins || p.leaves) && p.room === "sys:lobby" && me.role === "admin") scheduleUsersRefresh();
  });
  client.on("gap", (g) => {
    const c = g.room && convs.get(g.room);
    if (c) {
      c.loaded = false;
      if (g.room === current) loadHistory(c, g.room, true);
    }
  });
}

addEventListener("offline", () => rt && setStatus("offline", "offline"));
addEventListener("online", () => rt && !rt.connected && setStatus("reconnecting…"));

function setStatus(text, cls = "") {
  $("status").textContent = text;
  $("status").className = "status " + cls;
}

let listTimer = 0;
function scheduleListRefresh() {
  clearTimeout(listTimer);
  listTimer = setTimeout(refreshLists, 250);
}

async function refreshLists() {
  if (!rt) return;
  try {
    const [rooms, dms, users] = await Promise.all([rt.call("rooms.list"), rt.call("dm.list"), rt.call("users.list")]);
    roomList = rooms;
    dmList = dms;
    $("users").replaceChildren(...users.filter((u) => u.handle !== me.handle).map((u) => el("option", { value: "@" + u.handle }, u.name)));
    for (const r of rooms) {
      const c = ensureConv(r.name, { kind: "room", title: "# " + r.name, private: r.private });
      if (r.name !== current) c.unread = r.unread;
    }
    for (const d of dms) {
      const c = ensureConv(d.room, { kind: "dm", title: d.name + " (@" + d.user + ")", with: d.user });
      if (d.room !== current) c.unread = d.unread;
    }
    renderLists();
  } catch (err) {
    console.warn("refreshing the lists", err);
  }
}

function ensureConv(topic, props) {
  let c = convs.get(topic);
  if (!c) {
    c = { msgs: [], loaded: false, more: false, joined: false, unread: 0 };
    convs.set(topic, c);
  }
  return Object.assign(c, props);
}

function renderLists() {
  $("rooms").replaceChildren(...roomList.map((r) => {
    const c = convs.get(r.name);
    const b = el("button", { type: "button", class: "item", "aria-current": String(r.name === current), onclick: () => openTopic(r.name) },
      el("span", { class: "label" }, "# " + r.name),
      r.private ? el("span", { class: "lock" }, "private") : null,
      r.joined ? null : el("span", { class: "joinable" }, "join"),
      c?.unread ? el("span", { class: "unread", "aria-label": c.unread + " unread" }, String(c.unread)) : null,
      el("span", { class: "count", title: "online", "aria-label": r.online + " online" }, r.online ? "● " + r.online : ""));
    b.dataset.room = r.name;
    return el("li", {}, b);
  }));
  $("dms").replaceChildren(...dmList.map((d) => {
    const c = convs.get(d.room);
    const b = el("button", { type: "button", class: "item", "aria-current": String(d.room === current), onclick: () => openTopic(d.room) },
      el("span", { class: "dot" + (d.online ? " on" : ""), "aria-label": d.online ? "online" : "offline" }),
      el("span", { class: "label" }, d.name),
      c?.unread ? el("span", { class: "unread", "aria-label": c.unread + " unread" }, String(c.unread)) : null);
    b.dataset.dm = d.user;
    return el("li", {}, b);
  }));
  if (!dmList.length) $("dms").append(el("li", { class: "note" }, "No conversations yet."));
}

async function openInitial() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("dm")) return openDM(hash.get("dm"));
  const wanted = hash.get("room") || localStorage.getItem("rtkit-chat-room");
  const pick = roomList.find((r) => r.name === wanted) || roomList.find((r) => r.joined) || roomList[0];
  if (!pick) return;
  await openTopic(pick.name);
  if (hash.get("room") && pick.name !== hash.get("room")) {
    showNote(`#${hash.get("room")} is not open to you: it is private (an admin must add you) or does not exist.`);
  }
}

// Links into the chat (from mails, say) name a room or a conversation.
addEventListener("hashchange", () => me && rt && openInitial());

async function openDM(handle) {
  try {
    const dm = await rt.call("dm.open", { user: handle.replace(/^@/, "").toLowerCase() });
    ensureConv(dm.room, { kind: "dm", title: dm.name + " (@" + dm.user + ")", with: dm.user });
    if (!dmList.some((d) => d.room === dm.room)) dmList.unshift({ room: dm.room, user: dm.user, name: dm.name, unread: 0 });
    await openTopic(dm.room);
  } catch (err) {
    $("nav-error").textContent = err.message;
  }
}

async function openTopic(topic) {
  const c = convs.get(topic);
  if (!c) return;
  $("nav-error").textContent = "";
  current = topic;
  c.unread = 0;
  typing.clear();
  renderTyping();
  $("room-title").textContent = c.title;
  $("room-note").hidden = true;
  closeDrawers();
  renderLists();
  renderMessages();
  if (c.kind === "room") localStorage.setItem("rtkit-chat-room", topic);
  history.replaceState(null, "", c.kind === "dm" ? "#dm=" + c.with : "#room=" + topic);
  try {
    if (!c.joined) {
      if (c.kind === "room") await rt.call("room.join", { room: topic });
      await rt.join(topic).catch((err) => {
        if (!/already joined/.test(err.message)) throw err;
      });
      c.joined = true;
      if (c.kind === "room") scheduleListRefresh();
    }
    if (!c.loaded) await loadHistory(c, topic, true);
  } catch (err) {
    if (current === topic) showNote(err.message);
    return;
  }
  markRead(c, topic);
  refreshOnline();
  renderAdmin();
  if (matchMedia("(min-width: 821px)").matches) $("text").focus();
}

function showNote(text) {
  $("room-note").textContent = text;
  $("room-note").hidden = false;
}

async function loadHistory(c, topic, fresh) {
  if (c.loading) return;
  c.loading = true;
  try {
    const before = fresh ? "" : c.msgs[0]?.id || "";
    const page = await rt.call("history", { room: topic, before, limit: 50 });
    if (fresh) {
      const live = c.msgs.filter((m) => !page.messages.some((p) => p.id === m.id) && (!page.messages.length || cmp(m.id, page.messages.at(-1).id) > 0));
      c.msgs = [...page.messages, ...live];
      c.loaded = true;
    } else {
      c.msgs = [...page.messages, ...c.msgs];
    }
    c.more = page.more;
    if (topic === current) renderMessages(!fresh);
  } finally {
    c.loading = false;
  }
}

function cmp(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

function markRead(c, topic) {
  const last = c.msgs.at(-1);
  if (last) rt.call("read", { room: topic, id: last.id }).catch(() => {});
}

$("messages").addEventListener("scroll", () => {
  const c = convs.get(current);
  if (c && c.more && !c.loading && $("messages").scrollTop < 60) loadHistory(c, current, false);
});

// ---- messages -------------------------------------------------------------

function onMessage(m) {
  const c = convs.get(m.room);
  if (!c) return;
  const d = m.data || {};
  if (m.from && m.from.user) {
    if (d.typing && m.from.user !== me.handle && m.room === current) showTyping(m.from.user);
    return; // only the server's messages say who wrote what
  }
  if (c.kind === "inbox") return onNotice(d);
  switch (d.kind) {
    case "msg": {
      if (c.msgs.some((x) => x.id === m.id)) return;
      c.msgs.push({ ...d, id: m.id });
      clearTyping(d.user);
      if (m.room === current) {
        appendMessage(c.msgs.at(-1), true);
        if (document.visibilityState === "visible") markRead(c, m.room);
      } else if (d.user !== me.handle) {
        c.unread = (c.unread || 0) + 1;
        renderLists();
      }
      break;
    }
    case "edit": {
      const x = c.msgs.find((x) => x.id === d.id);
      if (x) {
        x.text = d.text;
        x.edited = true;
        if (m.room === current) replaceMessage(x);
      }
      break;
    }
    case "delete": {
      c.msgs = c.msgs.filter((x) => x.id !== d.id);
      if (m.room === current) document.querySelector(`#messages li[data-id="${CSS.escape(d.id)}"]`)?.remove();
      break;
    }
    case "archived":
      if (m.room === current) showNote("An admin archived this room.");
      scheduleListRefresh();
      break;
  }
}

function onNotice(d) {
  switch (d.kind) {
    case "rooms":
      scheduleListRefresh();
      break;
    case "mention":
      if (d.room !== current) toast(`${d.name} mentioned you in #${d.room}`, d.text, () => openTopic(d.room));
      break;
    case "dm":
      if (d.room !== current) {
        ensureConv(d.room, { kind: "dm", title: d.name + " (@" + d.user + ")", with: d.user });
        toast(`${d.name} sent you a message`, d.text, () => openTopic(d.room));
      }
      scheduleListRefresh();
      break;
  }
}

function renderMessages(keepScroll = false) {
  const list = $("messages");
  const c = convs.get(current);
  const fromBottom = list.scrollHeight - list.scrollTop;
  list.replaceChildren();
  if (!c) return;
  if (c.loaded && !c.more) list.append(el("li", { class: "notice" }, c.msgs.length ? "The beginning of the conversation." : "No messages yet. Say hello!"));
  for (const m of c.msgs) list.append(messageItem(m));
  list.scrollTop = keepScroll ? list.scrollHeight - fromBottom : list.scrollHeight;
}

function appendMessage(m, scroll) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.querySelector(".notice:last-child:only-child")?.remove();
  list.append(messageItem(m));
  if (scroll && (atBottom || m.user === me.handle)) list.scrollTop = list.scrollHeight;
}

function replaceMessage(m) {
  document.querySelector(`#messages li[data-id="${CSS.escape(m.id)}"]`)?.replaceWith(messageItem(m));
}

function messageItem(m) {
  const mine = m.user === me.handle;
  const mentioned = !mine && new RegExp(`(^|[^A-Za-z0-9_@.+-])@${me.handle}(?![a-z0-9_-])`, "i").test(m.text);
  const li = el("li", { class: (mine ? "mine " : "") + (mentioned ? "mentioned" : "") });
  li.dataset.id = m.id;
  const actions = el("span", { class: "actions" });
  if (mine) actions.append(el("button", { type: "button", onclick: () => editMessage(li, m), "aria-label": "Edit your message" }, "Edit"));
  if (mine || me.role === "admin") actions.append(el("button", { type: "button", onclick: () => deleteMessage(m), "aria-label": "Delete this message" }, "Delete"));
  li.append(
    el("div", { class: "meta" },
      el("span", { class: "who" }, m.name || m.user),
      el("span", { class: "handle" }, "@" + m.user),
      el("time", { class: "when", datetime: new Date(m.at).toISOString() }, new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      m.edited ? el("span", { class: "edited" }, "(edited)") : null,
      actions),
    renderText(m.text, me.handle));
  return li;
}

function editMessage(li, m) {
  const input = el("input", { value: m.text, "aria-label": "Edit message", maxlength: "4000" });
  const form = el("form", { class: "edit-form" }, input, el("button", { type: "submit" }, "Save"),
    el("button", { type: "button", class: "secondary", onclick: () => replaceMessage(m) }, "Cancel"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await rt.call("msg.edit", { room: current, id: m.id, text: input.value });
    } catch (err) {
      toast("Not edited", err.message);
    }
  });
  input.addEventListener("keydown", (ev) => ev.key === "Escape" && replaceMessage(m));
  li.querySelector(".text").replaceWith(form);
  input.focus();
}

async function deleteMessage(m) {
  if (!confirm("Delete this message for everyone?")) return;
  try {
    await rt.call("msg.delete", { room: current, id: m.id });
  } catch (err) {
    toast("Not deleted", err.message);
  }
}

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !current || !rt) return;
  $("text").value = "";
  lastTyping = 0;
  try {
    await rt.call("send", { room: current, text });
  } catch (err) {
    $("text").value = text; // nothing is lost
    toast("Not sent", err.message);
  }
});

let lastTyping = 0;
$("text").addEventListener("input", () => {
  const now = Date.now();
  if (current && rt && now - lastTyping > 1500) {
    lastTyping = now;
    rt.publish(current, { typing: true }, { ephemeral: true }).catch(() => {});
  }
});

function showTyping(user) {
  clearTimeout(typing.get(user));
  typing.set(user, setTimeout(() => clearTyping(user), 3000));
  renderTyping();
}

function clearTyping(user) {
  if (!typing.has(user)) return;
  clearTimeout(typing.get(user));
  typing.delete(user);
  renderTyping();
}

function renderTyping() {
  const users = [...typing.keys()].map((u) => "@" + u);
  $("typing").textContent = users.length ? `${users.join(", ")} ${users.length > 1 ? "are" : "is"} typing…` : "";
}

// ---- people, rooms, admin -------------------------------------------------

async function refreshOnline() {
  const topic = current;
  // The client keeps the list from the join's snapshot and the presence
  // diffs; ask only when it has none (a room above the server's limit has
  // no list: then nobody is shown).
  let members = rt.members(topic)?.members;
  if (!members) {
    try {
      members = await rt.presence(topic);
    } catch {
      return;
    }
  }
  if (topic !== current) return;
  const users = new Map();
  for (const m of members ?? []) users.set(m.user, m.meta?.name || m.user);
  $("online").replaceChildren(...[...users].map(([handle, name]) => {
    const li = el("li", {}, el("span", { class: "dot on" }), el("span", { class: "who-name" }, name + " "), el("span", { class: "handle" }, "@" + handle));
    if (handle !== me.handle) {
      li.append(el("button", { type: "button", class: "mini secondary", onclick: () => openDM(handle), "aria-label": "Message @" + handle }, "Message"));
      if (me.role === "admin") {
        li.append(el("button", { type: "button", class: "mini danger", onclick: () => adminCall("admin.disconnect", { user: handle }, "Disconnected @" + handle), "aria-label": "Disconnect @" + handle }, "Disconnect"));
        li.append(el("button", { type: "button", class: "mini danger", onclick: () => confirm("Ban @" + handle + "?") && adminCall("admin.ban", { user: handle, banned: true }, "Banned @" + handle), "aria-label": "Ban @" + handle }, "Ban"));
      }
    }
    return li;
  }));
}

async function adminCall(method, data, done) {
  try {
    await rt.call(method, data);
    if (done) toast(done, "");
    renderAdmin();
  } catch (err) {
    toast("Refused", err.message);
  }
}

let usersTimer;
function scheduleUsersRefresh() {
  clearTimeout(usersTimer);
  usersTimer = setTimeout(renderUsers, 250);
}

async function renderUsers() {
  const users = await rt.call("admin.users").catch(() => []);
  $("all-users").replaceChildren(...users.map((u) => {
    const li = el("li", {}, el("span", { class: "dot" + (u.online ? " on" : "") }),
      el("span", { class: "who-name" }, u.name + " "), el("span", { class: "handle" }, "@" + u.handle + (u.role === "admin" ? " · admin" : "") + (u.banned ? " · banned" : "")));
    if (u.handle !== me.handle) {
      li.append(el("button", { type: "button", class: "mini danger", onclick: () => adminCall("admin.ban", { user: u.handle, banned: !u.banned }, (u.banned ? "Unbanned @" : "Banned @") + u.handle),
        "aria-label": (u.banned ? "Unban @" : "Ban @") + u.handle }, u.banned ? "Unban" : "Ban"));
    }
    return li;
  }));
}

async function renderAdmin() {
  if (me.role === "admin") {
    $("admin-users").hidden = false;
    renderUsers();
  }
  const c = convs.get(current);
  $("room-actions").hidden = !c || c.kind !== "room";
  const admin = me.role === "admin" && c?.kind === "room";
  $("admin-room").hidden = !admin;
  if (!admin) return;
  $("members-box").hidden = !c.private;
  if (c.private) {
    const members = await rt.call("room.members", { room: current }).catch(() => []);
    $("members").replaceChildren(...members.map((h) => el("li", {}, el("span", { class: "who-name" }, "@" + h),
      h === me.handle ? null : el("button", { type: "button", class: "mini danger", onclick: () => adminCall("room.member", { room: current, user: h, member: false }, "Removed @" + h) }, "Remove"))));
  }
}

$("add-member").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = $("add-member-user").value.trim().replace(/^@/, "").toLowerCase();
  if (user) adminCall("room.member", { room: current, user, member: true }, "Added @" + user);
  $("add-member-user").value = "";
});

$("archive-room").addEventListener("click", () => {
  if (confirm(`Archive #${current}? Nobody will be able to read or write it.`)) adminCall("room.archive", { room: current }, "Archived #" + current);
});

$("leave-room").addEventListener("click", async () => {
  const topic = current;
  try {
    await rt.call("room.leave", { room: topic });
    await rt.leave(topic);
  } catch (err) {
    return toast("Could not leave", err.message);
  }
  const c = convs.get(topic);
  c.joined = false;
  c.loaded = false;
  c.msgs = [];
  current = "";
  await refreshLists();
  const next = roomList.find((r) => r.joined && r.name !== topic) || roomList.find((r) => r.name !== topic);
  if (next) openTopic(next.name);
});

$("new-room").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await rt.call("room.create", { name: $("new-room-name").value, private: $("new-room-private").checked });
    $("new-room-name").value = "";
    await refreshLists();
    openTopic(r.name);
  } catch (err) {
    $("nav-error").textContent = err.message;
  }
});

$("new-dm").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = $("new-dm-user").value.trim();
  if (user) openDM(user);
  $("new-dm-user").value = "";
});

$("mail-opt").addEventListener("change", async () => {
  try {
    const s = await rt.call("settings", { noMail: !$("mail-opt").checked });
    me.noMail = s.noMail;
    toast(s.noMail ? "Email notifications off" : "Email notifications on", "");
  } catch (err) {
    $("mail-opt").checked = !me.noMail;
    toast("Not saved", err.message);
  }
});

// ---- drawers and toasts ---------------------------------------------------

function toggleDrawer(id, open) {
  const d = $(id);
  const btn = $(id === "nav" ? "open-nav" : "open-people");
  d.classList.toggle("open", open);
  btn.setAttribute("aria-expanded", String(open));
  $("scrim").hidden = !$("nav").classList.contains("open") && !$("people").classList.contains("open");
  if (open) d.querySelector("button, input, a")?.focus();
}

function closeDrawers() {
  toggleDrawer("nav", false);
  toggleDrawer("people", false);
}

$("open-nav").addEventListener("click", () => toggleDrawer("nav", !$("nav").classList.contains("open")));
$("open-people").addEventListener("click", () => {
  const open = !$("people").classList.contains("open");
  if (open && me.role === "admin") renderUsers();
  toggleDrawer("people", open);
});
$("scrim").addEventListener("click", closeDrawers);
addEventListener("keydown", (ev) => ev.key === "Escape" && closeDrawers());

function toast(title, text, onclick) {
  const t = el("button", { type: "button", class: "toast" }, el("strong", {}, title), text ? String(text).slice(0, 140) : null);
  t.addEventListener("click", () => {
    t.remove();
    if (onclick) onclick();
  });
  $("toasts").append(t);
  setTimeout(() => t.remove(), 6000);
}

document.addEventListener("visibilitychange", () => {
  const c = convs.get(current);
  if (c && document.visibilityState === "visible") markRead(c, current);
});

// ---- start ----------------------------------------------------------------

const session = await currentSession().catch(() => null);
if (session) start(session);
else showAuth();

// Tests (and people) can tell the page is ready to use.
document.body.dataset.ready = "1";
