// rtkit.js: the browser client of the rtkit realtime hub. Dependency-free ES
// module; the protocol it speaks is realtime/PROTOCOL.md.
//
//   import { connect } from "/rtkit.js";
//   const rt = connect("/ws", { token });
//   rt.on("msg", (m) => console.log(m.room, m.from.user, m.data));
//   await rt.join("lobby", { history: 50 });
//   await rt.publish("lobby", { text: "hi" });
//
// The client reconnects with exponential backoff and jitter, rejoins its
// rooms after the last message it saw (so nothing is missed), and emits
// "gap" when the server's history no longer reaches back that far. It keeps
// each room's member list and count from the join reply's snapshot and the
// presence diffs that follow (PROTOCOL.md, "Keeping a member list"):
// rt.members(room) reads them, and a "presence" event follows every change. The
// backoff starts over only once a connection has stayed up for stableAfter
// ms (10 s), so a server that accepts and then drops connections is not
// hammered. A join or rejoin refused with a transient error (internal,
// rate_limited) is retried; a room the client gives up on is reported with
// a "joinfailed" event and forgotten.

/** An error reply from the server: code is stable, message is for humans. */
export class RealtimeError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "RealtimeError";
    this.code = code;
  }
}

// IDs are "<ms>-<seq>"; compare them as numbers.
function parseID(id) {
  if (!id) return null;
  const i = id.indexOf("-");
  return [Number(id.slice(0, i)), Number(id.slice(i + 1))];
}

export function compareIDs(a, b) {
  const x = parseID(a), y = parseID(b);
  if (!x) return y ? -1 : 0;
  if (!y) return 1;
  return x[0] - y[0] || x[1] - y[1];
}

/**
 * normalize fills in what a server may leave out of a msg or direct (see
 * PROTOCOL.md, compatibility): time is the id's milliseconds, from is {}
 * for a message the server published. It returns obj, changed in place.
 */
export function normalize(obj) {
  if (obj.time === undefined && obj.id) obj.time = parseID(obj.id)[0];
  if (!obj.from) obj.from = {};
  return obj;
}

/** The WebSocket subprotocol that asks for room messages as arrays
 * (PROTOCOL.md, "Compact frames"). */
export const compactSubprotocol = "rtkit.compact";

/**
 * fromCompact turns the array form of a room message into the object form
 * ({op: "msg", room, id or ephemeral and time, data, from}), or returns
 * null for an array that is not one: ["room", "id", data] from the server,
 * ["room", "id", data, "user", "conn"] with a sender, a number (the time in
 * Unix milliseconds) instead of the id for an ephemeral message. Elements
 * after the fifth are ignored.
 */
export function fromCompact(a) {
  if (a.length !== 3 && a.length < 5) return null;
  const [room, head, data] = a;
  if (typeof room !== "string") return null;
  const obj = { op: "msg", room };
  if (typeof head === "string") obj.id = head;
  else if (Number.isInteger(head)) Object.assign(obj, { ephemeral: true, time: head });
  else return null;
  obj.data = data;
  if (a.length >= 5) {
    if (typeof a[3] !== "string" || typeof a[4] !== "string") return null;
    obj.from = { user: a[3], conn: a[4] };
  }
  return obj;
}

function sortedMembers(members) {
  if (!members) return null;
  return [...members.values()].sort((a, b) =>
    a.user < b.user ? -1 : a.user > b.user ? 1 : a.conn < b.conn ? -1 : a.conn > b.conn ? 1 : 0);
}

// How often a join refused with a transient error is tried again.
const maxJoinRetries = 5;

function transient(err) {
  return err.code === "internal" || err.code === "rate_limited";
}

function absoluteWebSocketURL(url) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  return u;
}

/**
 * Connects to a hub and keeps the connection up until close().
 * options: token (sent as ?token=), minBackoff and maxBackoff in ms
 * (defaults 250 and 10000), stableAfter in ms (default 10000: how long a
 * connection must stay up before the backoff starts over), WebSocket (a
 * constructor, default the global; called as new WebSocket(url,
 * ["rtkit.compact"]), and the client reads the frames of a server that
 * answers without the subprotocol as well).
 */
export function connect(url, options = {}) {
  return new RealtimeClient(url, options);
}

export class RealtimeClient {
  constructor(url, options = {}) {
    this.url = absoluteWebSocketURL(url);
    if (options.token) this.url.searchParams.set("token", options.token);
    this.minBackoff = options.minBackoff ?? 250;
    this.maxBackoff = options.maxBackoff ?? 10000;
    this.stableAfter = options.stableAfter ?? 10000;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.listeners = new Map();
    // room -> {last: ID seen ("" if none), joined: confirmed, and presence:
    // noPresence, count, members (Map conn -> member, null: not known),
    // syncing (a snapshot is awaited; presence events wait in buf), gen}
    this.rooms = new Map();
    this.pending = new Map(); // request id -> {resolve, reject}
    this.nextID = 1;
    this.inbox = null; // last direct message ID; null before the first welcome
    this.queue = []; // requests waiting for a connection
    this.closed = false;
    this.connected = false;
    this.attempt = 0; // failed or short-lived connections in a row
    this.upSince = 0; // when the current connection got its welcome
    this.conn = "";
    this.user = "";
    this.open();
  }

  /** Registers fn for an event; returns a function that unregisters it.
   * Events: msg, direct, presence ({room, count, joins, leaves, members}:
   * members is the client's list after the change, sorted by user then
   * conn, or null while not known; joins and leaves are the diff received,
   * absent for a count event or a snapshot), gap, connected, disconnected, and
   * joinfailed ({room, error}: a rejoin after a reconnect was refused, or
   * kept failing; the room is no longer joined). */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, detail) {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        fn(detail);
      } catch (err) {
        console.error("rtkit: listener failed", err);
      }
    }
  }

  open() {
    const u = new URL(this.url);
    if (this.inbox !== null) u.searchParams.set("inbox_since", this.inbox || "0-0");
    // Room messages come as arrays when the server agrees; onFrame reads
    // both forms.
    const ws = new this.WebSocket(u.toString(), [compactSubprotocol]);
    this.ws = ws;
    let ended = false;
    const end = (ev) => {
      if (ended) return;
      ended = true;
      this.onClose(ev);
    };
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => end(ev);
    // Browsers follow an error with close; some runtimes (Node 20) do not
    // when the handshake is refused.
    ws.onerror = () => setTimeout(() => end({ code: 1006, reason: "connection failed" }), 0);
  }

  onFrame(frame) {
    for (const line of String(frame).split("\n")) {
      if (!line.trim()) continue;
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        continue;
      }
      if (Array.isArray(obj)) obj = fromCompact(obj);
      if (obj) this.onObject(obj);
    }
  }

  onObject(obj) {
    switch (obj.op) {
      case "welcome": {
        const rejoin = this.inbox !== null;
        this.conn = obj.conn;
        this.user = obj.user;
        // Only the first welcome sets the inbox position; on a reconnect
        // the directs missed meanwhile follow the welcome.
        if (this.inbox === null) this.inbox = obj.inbox || "";
        this.connected = true;
        this.upSince = Date.now();
        if (rejoin && obj.recovered === false) this.emit("gap", { inbox: true });
        this.afterWelcome(rejoin);
        break;
      }
      case "ok":
      case "error": {
        const p = this.pending.get(obj.id);
        if (!p) break;
        this.pending.delete(obj.id);
        // A snapshot is applied before anything after its reply.
        if (obj.op === "ok" && p.onOK) p.onOK(obj);
        if (obj.op === "ok") p.resolve(obj);
        else p.reject(new RealtimeError(obj.code, obj.message));
        break;
      }
      case "msg": {
        normalize(obj);
        if (obj.id) {
          const r = this.rooms.get(obj.room);
          if (!r) break;
          if (compareIDs(obj.id, r.last) <= 0) break; // seen
          r.last = obj.id;
        }
        this.emit("msg", obj);
        break;
      }
      case "direct": {
        normalize(obj);
        if (obj.id) {
          if (compareIDs(obj.id, this.inbox) <= 0) break;
          this.inbox = obj.id;
        }
        this.emit("direct", obj);
        break;
      }
      case "presence": {
        const r = this.rooms.get(obj.room);
        if (!r) break;
        if (r.syncing) r.buf.push(obj);
        else this.applyPresence(obj.room, r, obj);
        break;
      }
      case "gap":
        this.emit("gap", obj);
        break;
    }
  }

  /** What the client knows of a room's members: {count, members}, members
   * an array sorted by user then conn, or null when not known (room above
   * the server's presence limit, joined with presence: false, disconnected,
   * or a fresh list on its way). Undefined for a room not joined. */
  members(room) {
    const r = this.rooms.get(room);
    if (!r) return undefined;
    return { count: r.count, members: sortedMembers(r.members) };
  }

  // applyPresence applies one presence event (PROTOCOL.md, "Keeping a
  // member list") and emits it.
  applyPresence(room, r, ev) {
    r.count = ev.count;
    const diff = ev.joins !== undefined || ev.leaves !== undefined;
    if (ev.resync || (diff && !r.members)) {
      // Events were missed, or the room is small again: fetch the list;
      // this event's change is in it.
      r.members = null;
      this.fetchMembers(room, r);
    } else if (diff) {
      for (const m of ev.joins ?? []) r.members.set(m.conn, m);
      for (const m of ev.leaves ?? []) r.members.delete(m.conn);
    } else {
      r.members = null;
    }
    const out = { room, count: ev.count, members: sortedMembers(r.members) };
    if (diff) Object.assign(out, { joins: ev.joins ?? [], leaves: ev.leaves ?? [] });
    this.emit("presence", out);
  }

  startSync(r) {
    r.gen = (r.gen ?? 0) + 1;
    r.syncing = true;
    r.buf = [];
    return r.gen;
  }

  // installSnapshot applies a join or presence reply's snapshot, then the
  // presence events that arrived since the request was sent.
  installSnapshot(room, r, gen, ok) {
    if (this.rooms.get(room) !== r) return;
    if (r.noPresence) {
      if (ok.count !== undefined) r.count = ok.count;
      return;
    }
    if (!r.syncing || r.gen !== gen) return; // a wait a reconnect ended
    if (ok.count !== undefined) r.count = ok.count;
    r.members = ok.members ? new Map(ok.members.map((m) => [m.conn, m])) : null;
    r.syncing = false;
    this.emit("presence", { room, count: r.count, members: sortedMembers(r.members) });
    const buf = r.buf;
    r.buf = [];
    for (let i = 0; i < buf.length; i++) {
      if (r.syncing) {
        r.buf.push(...buf.slice(i)); // another snapshot was asked for
        break;
      }
      this.applyPresence(room, r, buf[i]);
    }
  }

  fetchMembers(room, r) {
    const gen = this.startSync(r);
    this.send({ op: "presence", room }, false, (ok) => this.installSnapshot(room, r, gen, ok)).catch(() => {
      // Refused or lost: the list stays unknown; the next diff asks again.
      if (r.syncing && r.gen === gen) {
        for (const ev of r.buf) r.count = ev.count;
        r.syncing = false;
        r.buf = [];
      }
    });
  }

  async afterWelcome(rejoin) {
    if (rejoin) {
      for (const [room, r] of this.rooms) {
        if (!r.joined) continue; // a join still waiting goes out below
        await this.rejoin(room, r, this.ws, 0);
      }
    }
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.write(q);
    this.emit("connected", { conn: this.conn, user: this.user });
  }

  // rejoin joins a room again after a reconnect, from the last message
  // seen. A transient refusal is retried (on the same connection, with
  // backoff); a lasting one drops the room and emits joinfailed. A dropped
  // connection leaves the room to the next welcome's rejoin.
  async rejoin(room, r, ws, attempt) {
    try {
      const obj = { op: "join", room, since: r.last || "0-0" };
      if (r.noPresence) obj.presence = false;
      const gen = this.startSync(r);
      if (r.noPresence) r.syncing = false;
      const ok = await this.send(obj, true, (ok) => this.installSnapshot(room, r, gen, ok));
      if (ok.recovered === false) this.emit("gap", { room });
    } catch (err) {
      if (this.rooms.get(room) !== r || this.ws !== ws || this.closed) return;
      if (err.code === "disconnected") return;
      if (transient(err) && attempt < maxJoinRetries) {
        const delay = this.backoff(attempt);
        setTimeout(() => this.ws === ws && this.rooms.get(room) === r && this.rejoin(room, r, ws, attempt + 1), delay);
        return;
      }
      console.warn("rtkit: rejoin failed", room, err);
      this.rooms.delete(room);
      this.emit("joinfailed", { room, error: err });
    }
  }

  backoff(attempt) {
    const delay = Math.min(this.maxBackoff, this.minBackoff * 2 ** attempt);
    return delay / 2 + Math.random() * delay / 2;
  }

  onClose(ev) {
    this.connected = false;
    // The backoff starts over only after a connection that lasted: one
    // dropped right after its welcome (a server closing every connection
    // at once, say) counts as a failed attempt.
    if (this.upSince && Date.now() - this.upSince >= this.stableAfter) this.attempt = 0;
    this.upSince = 0;
    for (const [, p] of this.pending) p.reject(new RealtimeError("disconnected", "connection lost"));
    this.pending.clear();
    for (const [, r] of this.rooms) {
      // Unknown until the rejoin's snapshot.
      r.members = null;
      r.syncing = false;
      r.buf = [];
    }
    this.emit("disconnected", { code: ev.code, reason: ev.reason });
    if (this.closed || ev.code === 4003) {
      this.closed = true;
      return;
    }
    this.timer = setTimeout(() => !this.closed && this.open(), this.backoff(this.attempt++));
  }

  write(q) {
    const id = this.nextID++;
    this.pending.set(id, q);
    this.ws.send(JSON.stringify({ ...q.obj, id }));
  }

  // send sends a request and resolves with the ok reply. Before the first
  // welcome (or while reconnecting) requests wait; rejoins go first.
  // onOK, if given, runs with the ok reply before anything after it is
  // handled.
  send(obj, now = false, onOK = undefined) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new RealtimeError("closed", "client closed"));
      const q = { obj, resolve, reject, onOK };
      if (this.connected || (now && this.ws.readyState === 1)) this.write(q);
      else this.queue.push(q);
    });
  }

  /** Joins a room. options: history (recent messages first), since (an ID),
   * presence (false: no presence events for this room; the reply's count
   * stays available). Resolves with {recovered, position, count, members}
   * (members: the snapshot, or undefined above the server's presence limit
   * or with presence false).
   * A transient refusal (internal, rate_limited) or a connection lost before
   * the reply is retried, up to 5 times with backoff; the promise rejects
   * when the client gives up. */
  async join(room, options = {}) {
    if (this.rooms.has(room)) throw new RealtimeError("bad_request", `already joined (or joining) ${room}`);
    const noPresence = options.presence === false;
    const r = { last: options.since ?? "", joined: false, noPresence, count: 0, members: null, syncing: false, buf: [], gen: 0 };
    this.rooms.set(room, r);
    const obj = { op: "join", room };
    if (options.since) obj.since = options.since;
    else if (options.history) obj.history = options.history;
    if (noPresence) obj.presence = false;
    try {
      let ok;
      for (let attempt = 0; ; attempt++) {
        try {
          const gen = this.startSync(r);
          if (noPresence) r.syncing = false;
          ok = await this.send(obj, false, (ok) => this.installSnapshot(room, r, gen, ok));
          break;
        } catch (err) {
          if (!(transient(err) || err.code === "disconnected") || attempt >= maxJoinRetries || this.rooms.get(room) !== r) throw err;
          await new Promise((resolve) => setTimeout(resolve, this.backoff(attempt)));
        }
      }
      r.joined = true;
      // A live-only join resumes from the room's position (replayed
      // messages advance last by themselves).
      if (!options.since && !options.history && compareIDs(ok.position, r.last) > 0) r.last = ok.position;
      return { recovered: ok.recovered, position: ok.position, count: ok.count, members: ok.members };
    } catch (err) {
      if (this.rooms.get(room) === r) this.rooms.delete(room);
      throw err;
    }
  }

  async leave(room) {
    this.rooms.delete(room);
    await this.send({ op: "leave", room });
  }

  /** Publishes data to a room; resolves with the message ID (none if ephemeral). */
  async publish(room, data, options = {}) {
    const ok = await this.send({ op: "pub", room, data, ephemeral: !!options.ephemeral });
    return ok.msg;
  }

  async direct(user, data) {
    return (await this.send({ op: "direct", to: user, data })).msg;
  }

  async call(method, data) {
    return (await this.send({ op: "call", method, data })).data;
  }

  /** Asks the server for a room's members (sorted by user, then conn);
   * undefined for a room above the server's presence limit (members(room)
   * has its count). */
  async presence(room) {
    return (await this.send({ op: "presence", room })).members;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    for (const q of this.queue) q.reject(new RealtimeError("closed", "client closed"));
    this.queue = [];
    this.ws.close(1000);
  }
}
