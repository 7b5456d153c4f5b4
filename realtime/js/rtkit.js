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
// "gap" when the server's history no longer reaches back that far.

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
 * (defaults 250 and 10000), WebSocket (a constructor, default the global).
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
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.listeners = new Map();
    this.rooms = new Map(); // room -> {last: ID seen ("" if none), joined: confirmed}
    this.pending = new Map(); // request id -> {resolve, reject}
    this.nextID = 1;
    this.inbox = null; // last direct message ID; null before the first welcome
    this.queue = []; // requests waiting for a connection
    this.closed = false;
    this.connected = false;
    this.attempt = 0;
    this.conn = "";
    this.user = "";
    this.open();
  }

  /** Registers fn for an event; returns a function that unregisters it.
   * Events: msg, direct, presence, gap, connected, disconnected. */
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
    const ws = new this.WebSocket(u.toString());
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
      this.onObject(obj);
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
        this.attempt = 0;
        if (rejoin && obj.recovered === false) this.emit("gap", { inbox: true });
        this.afterWelcome(rejoin);
        break;
      }
      case "ok":
      case "error": {
        const p = this.pending.get(obj.id);
        if (!p) break;
        this.pending.delete(obj.id);
        if (obj.op === "ok") p.resolve(obj);
        else p.reject(new RealtimeError(obj.code, obj.message));
        break;
      }
      case "msg": {
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
        if (obj.id) {
          if (compareIDs(obj.id, this.inbox) <= 0) break;
          this.inbox = obj.id;
        }
        this.emit("direct", obj);
        break;
      }
      case "presence":
        this.emit("presence", obj);
        break;
      case "gap":
        this.emit("gap", obj);
        break;
    }
  }

  async afterWelcome(rejoin) {
    if (rejoin) {
      for (const [room, r] of this.rooms) {
        if (!r.joined) continue; // a join still waiting goes out below
        try {
          const ok = await this.send({ op: "join", room, since: r.last || "0-0" }, true);
          if (ok.recovered === false) this.emit("gap", { room });
        } catch (err) {
          console.warn("rtkit: rejoin failed", room, err);
          this.emit("gap", { room }); // its messages are missed until joined again
        }
      }
    }
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.write(q);
    this.emit("connected", { conn: this.conn, user: this.user });
  }

  onClose(ev) {
    this.connected = false;
    for (const [, p] of this.pending) p.reject(new RealtimeError("disconnected", "connection lost"));
    this.pending.clear();
    this.emit("disconnected", { code: ev.code, reason: ev.reason });
    if (this.closed || ev.code === 4003) {
      this.closed = true;
      return;
    }
    const delay = Math.min(this.maxBackoff, this.minBackoff * 2 ** this.attempt++);
    this.timer = setTimeout(() => !this.closed && this.open(), delay / 2 + Math.random() * delay / 2);
  }

  write(q) {
    const id = this.nextID++;
    this.pending.set(id, q);
    this.ws.send(JSON.stringify({ ...q.obj, id }));
  }

  // send sends a request and resolves with the ok reply. Before the first
  // welcome (or while reconnecting) requests wait; rejoins go first.
  send(obj, now = false) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new RealtimeError("closed", "client closed"));
      const q = { obj, resolve, reject };
      if (this.connected || (now && this.ws.readyState === 1)) this.write(q);
      else this.queue.push(q);
    });
  }

  /** Joins a room. options: history (recent messages first), since (an ID). */
  async join(room, options = {}) {
    if (this.rooms.has(room)) throw new RealtimeError("bad_request", `already joined (or joining) ${room}`);
    const r = { last: options.since ?? "", joined: false };
    this.rooms.set(room, r);
    const obj = { op: "join", room };
    if (options.since) obj.since = options.since;
    else if (options.history) obj.history = options.history;
    try {
      const ok = await this.send(obj);
      r.joined = true;
      // A live-only join resumes from the room's position (replayed
      // messages advance last by themselves).
      if (!options.since && !options.history && compareIDs(ok.position, r.last) > 0) r.last = ok.position;
      return { recovered: ok.recovered, position: ok.position };
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
