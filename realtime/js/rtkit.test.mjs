// Tests of the browser client against a real hub, on Node's test runner and
// its WebSocket (node --experimental-websocket on Node 20). The Go test
// TestBrowserClient starts the hub and runs this file with RTKIT_URL set.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, compareIDs, fromCompact, normalize, RealtimeError } from "./rtkit.js";

const base = process.env.RTKIT_URL; // http://127.0.0.1:port
const ws = base.replace(/^http/, "ws") + "/ws";

function collector(rt, event) {
  const got = [];
  let waiters = [];
  rt.on(event, (e) => {
    got.push(e);
    waiters = waiters.filter((w) => !w());
  });
  got.until = (n, ms = 10000) =>
    new Promise((resolve, reject) => {
      const check = () => (got.length >= n ? (resolve(got), true) : false);
      if (check()) return;
      waiters.push(check);
      setTimeout(() => reject(new Error(`only ${got.length} of ${n} ${event} events`)), ms);
    });
  return got;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const once = (rt, event) => new Promise((resolve) => { const off = rt.on(event, (e) => { off(); resolve(e); }); });

test("ids compare as numbers", () => {
  assert.ok(compareIDs("10-0", "9-5") > 0);
  assert.ok(compareIDs("5-10", "5-9") > 0);
  assert.equal(compareIDs("", ""), 0);
  assert.ok(compareIDs("1-0", "") > 0);
});

test("a msg without time or from gets them from its id", () => {
  assert.deepEqual(normalize({ op: "msg", room: "r", id: "1732800000000-4", data: 1 }),
    { op: "msg", room: "r", id: "1732800000000-4", data: 1, time: 1732800000000, from: {} });
  const full = { op: "msg", room: "r", id: "1732800000000-4", time: 1732800000005, from: { user: "ada", conn: "c" }, data: 1 };
  assert.deepEqual(normalize({ ...full }), full, "fields that are present stay");
  assert.deepEqual(normalize({ op: "msg", room: "r", ephemeral: true, time: 7, data: 1 }).time, 7);
});

test("the array form of a msg reads as its object form", () => {
  assert.deepEqual(fromCompact(["r", "1732800000000-4", { a: 1 }]),
    { op: "msg", room: "r", id: "1732800000000-4", data: { a: 1 } });
  assert.deepEqual(fromCompact(["r", "1732800000000-4", "hi", "ada", "c1"]),
    { op: "msg", room: "r", id: "1732800000000-4", data: "hi", from: { user: "ada", conn: "c1" } });
  assert.deepEqual(fromCompact(["r", 1732800000001, null, "ada", "c1", "later"]),
    { op: "msg", room: "r", ephemeral: true, time: 1732800000001, data: null, from: { user: "ada", conn: "c1" } });
  for (const bad of [[], ["r"], ["r", "1-0"], ["r", "1-0", 1, "ada"], [1, "1-0", 1], ["r", 1.5, 1],
    ["r", null, 1], ["r", "1-0", 1, 2, "c"], ["r", "1-0", 1, "ada", null]]) {
    assert.equal(fromCompact(bad), null, JSON.stringify(bad));
  }
});

// recordingWebSocket returns a WebSocket constructor that keeps every text
// frame received in frames; with plain set it asks for no subprotocol, as
// clients before rtkit.compact did.
function recordingWebSocket(frames, plain) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, plain ? [] : protocols);
      this.addEventListener("message", (ev) => frames.push(String(ev.data)));
    }
  };
}

test("compact and plain clients in one room get the same messages", async () => {
  const compactFrames = [], plainFrames = [];
  const compact = connect(ws, { token: "jscompact", WebSocket: recordingWebSocket(compactFrames, false) });
  const plain = connect(ws, { token: "jsplain", WebSocket: recordingWebSocket(plainFrames, true) });
  try {
    const cm = collector(compact, "msg"), pm = collector(plain, "msg");
    await compact.join("jsmix");
    await plain.join("jsmix");
    assert.equal(compact.ws.protocol, "rtkit.compact");
    assert.equal(plain.ws.protocol, "");
    const res = await fetch(`${base}/publish?room=jsmix&n=7`, { method: "POST" });
    const serverID = await res.text();
    const memberID = await plain.publish("jsmix", { text: "hi" });
    await compact.publish("jsmix", "typing", { ephemeral: true });
    await cm.until(3);
    await pm.until(3);
    assert.deepEqual([...cm], [...pm]);
    assert.deepEqual(cm[0], { op: "msg", room: "jsmix", id: serverID, data: "7", from: {}, time: Number(serverID.split("-")[0]) });
    assert.deepEqual({ ...cm[1], time: 0 }, { op: "msg", room: "jsmix", id: memberID, data: { text: "hi" }, from: { user: "jsplain", conn: plain.conn }, time: 0 });
    assert.equal(cm[2].ephemeral, true);
    assert.equal(cm[2].from.user, "jscompact");
    assert.ok(cm[2].time > 0 && cm[2].id === undefined);
    const lines = (frames) => frames.flatMap((f) => f.split("\n")).filter((l) => l.includes("jsmix") && !l.includes('"op":"ok"') && !l.includes('"op":"presence"'));
    assert.deepEqual(lines(compactFrames), [
      `["jsmix","${serverID}","7"]`,
      `["jsmix","${memberID}",{"text":"hi"},"jsplain","${plain.conn}"]`,
      `["jsmix",${cm[2].time},"typing","jscompact","${compact.conn}"]`,
    ]);
    assert.ok(lines(plainFrames).every((l) => l.startsWith('{"op":"msg"')), lines(plainFrames).join("\n"));
  } finally {
    compact.close();
    plain.close();
  }
});

test("join, publish, presence, call, direct", async () => {
  const ada = connect(ws, { token: "ada" });
  const bob = connect(ws, { token: "bob" });
  try {
    const msgs = collector(ada, "msg");
    const directs = collector(bob, "direct");
    await ada.join("lobby");
    await bob.join("lobby");
    const id = await bob.publish("lobby", { text: "hi <b>" });
    const [m] = await msgs.until(1);
    assert.equal(m.id, id);
    assert.equal(m.from.user, "bob");
    assert.deepEqual(m.data, { text: "hi <b>" });
    const members = await ada.presence("lobby");
    assert.deepEqual(members.map((x) => x.user), ["ada", "bob"]);
    assert.equal(await ada.call("echo", [1, 2]), "[1,2]");
    await assert.rejects(ada.call("missing"), (err) => err instanceof RealtimeError && err.code === "not_found");
    await assert.rejects(ada.join("lobby"), RealtimeError);
    await ada.direct("bob", "psst");
    const [d] = await directs.until(1);
    assert.equal(d.data, "psst");
    assert.equal(await ada.publish("lobby", "typing", { ephemeral: true }), undefined);
  } finally {
    ada.close();
    bob.close();
  }
});

test("recovers every message across a dropped connection", async () => {
  const rt = connect(ws, { token: "sub", minBackoff: 20, maxBackoff: 100 });
  try {
    const msgs = collector(rt, "msg");
    const gaps = collector(rt, "gap");
    await rt.join("news");
    await rt.join("quiet");
    const want = [];
    for (let round = 0; round < 3; round++) {
      const reconnected = once(rt, "connected");
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${base}/publish?room=news&n=${round * 20 + i}`, { method: "POST" });
        want.push(await res.text());
        if (i === 10) await fetch(`${base}/drop`, { method: "POST" });
      }
      const res = await fetch(`${base}/publish?room=quiet&n=${round}`, { method: "POST" });
      want.push(await res.text());
      await reconnected;
    }
    await msgs.until(want.length);
    const news = msgs.filter((m) => m.room === "news").map((m) => m.id);
    const quiet = msgs.filter((m) => m.room === "quiet").map((m) => m.id);
    assert.deepEqual([...news, ...quiet].sort(compareIDs), [...want].sort(compareIDs));
    assert.equal(news.length + quiet.length, want.length, "no duplicates");
    assert.equal(gaps.length, 0);
  } finally {
    rt.close();
  }
});

test("refused without a token", async () => {
  const rt = connect(ws, { minBackoff: 10000 });
  const e = await once(rt, "disconnected");
  rt.close();
  assert.notEqual(e.code, 1000);
});

test("direct messages sent while disconnected are recovered", async () => {
  const ada = connect(ws, { token: "jsada", minBackoff: 1000, maxBackoff: 1000 });
  const bob = connect(ws, { token: "jsbob", minBackoff: 20, maxBackoff: 50 });
  try {
    const got = [];
    ada.on("direct", (d) => got.push(d.data));
    await ada.presence("none").catch(() => {}); // a round trip: ada is connected
    await bob.direct("jsada", "before");
    await sleep(100);
    const bobBack = once(bob, "connected");
    const adaBack = once(ada, "connected");
    await fetch(`${base}/drop`, { method: "POST" });
    await bobBack;
    await bob.direct("jsada", "while away");
    await adaBack;
    await sleep(200);
    assert.deepEqual(got, ["before", "while away"]);
  } finally {
    ada.close();
    bob.close();
  }
});

test("a room joined while reconnecting keeps delivering", async () => {
  const rt = connect(ws, { token: "jslate", minBackoff: 500, maxBackoff: 500 });
  try {
    await rt.join("jsfirst");
    const back = once(rt, "connected");
    const down = once(rt, "disconnected");
    await fetch(`${base}/drop`, { method: "POST" });
    await down;
    const joined = rt.join("jslate").then(() => "ok", (e) => "error: " + e.message);
    await back;
    assert.equal(await joined, "ok");
    const got = [];
    rt.on("msg", (m) => m.room === "jslate" && got.push(m.data));
    await fetch(`${base}/publish?room=jslate&n=1`, { method: "POST" });
    await sleep(300);
    assert.deepEqual(got, ["1"]);
  } finally {
    rt.close();
  }
});

test("the backoff starts over only after a connection that lasted", async () => {
  const rt = connect(ws, { token: "jsflap", minBackoff: 5, maxBackoff: 1000 });
  try {
    await once(rt, "connected");
    for (let i = 0; i < 3; i++) {
      const back = once(rt, "connected");
      await sleep(20);
      await fetch(`${base}/drop`, { method: "POST" });
      await back;
    }
    // Three connections dropped right after their welcome: three failed
    // attempts, not a fresh start each time.
    assert.ok(rt.attempt >= 3, `attempt ${rt.attempt}`);
  } finally {
    rt.close();
  }
});

test("a rejoin refused for a moment is retried; one refused for good is reported", async () => {
  const rt = connect(ws, { token: "jsrejoin", minBackoff: 10, maxBackoff: 50 });
  try {
    await rt.join("flaky-a"); // 1st join: allowed; the rejoin (2nd) is refused once
    await rt.join("jslocked");
    const failed = collector(rt, "joinfailed");
    const gaps = collector(rt, "gap");
    await fetch(`${base}/lock?room=jslocked`, { method: "POST" });
    const back = once(rt, "connected");
    await fetch(`${base}/drop`, { method: "POST" });
    await back;
    const [f] = await failed.until(1);
    assert.equal(f.room, "jslocked");
    assert.equal(f.error.code, "forbidden");
    assert.ok(!rt.rooms.has("jslocked"), "a room that could not be rejoined is not shown as joined");
    const got = [];
    rt.on("msg", (m) => m.room === "flaky-a" && got.push(m.data));
    for (let i = 0; i < 50 && got.length === 0; i++) {
      await fetch(`${base}/publish?room=flaky-a&n=${i}`, { method: "POST" });
      await sleep(50);
    }
    assert.ok(got.length > 0, "the retried rejoin delivers again");
    assert.equal(failed.length, 1);
    assert.equal(gaps.length, 0);
  } finally {
    rt.close();
  }
});

// waitFor resolves once pred() holds, checking after every event of rt.
function waitFor(rt, event, pred, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${what}`)); }, ms);
    const off = rt.on(event, () => {
      if (pred()) { clearTimeout(timer); off(); resolve(); }
    });
  });
}

test("keeps a room's member list from the join snapshot and presence diffs", async () => {
  const ada = connect(ws, { token: "ada" });
  const bob = connect(ws, { token: "bob" });
  const quiet = connect(ws, { token: "quiet" });
  try {
    const got = await ada.join("plist");
    assert.equal(got.count, 1);
    assert.deepEqual(got.members.map((m) => m.user), ["ada"]);
    assert.deepEqual(ada.members("plist").members.map((m) => m.user), ["ada"]);
    const events = collector(ada, "presence");
    await bob.join("plist");
    const q = await quiet.join("plist", { presence: false });
    assert.equal(q.count, 3, "a join without presence still gets the count");
    assert.equal(q.members, undefined);
    const users = () => (ada.members("plist").members ?? []).map((m) => m.user).join(",");
    await waitFor(ada, "presence", () => users() === "ada,bob,quiet", "bob and quiet in ada's list");
    assert.equal(ada.members("plist").count, 3);
    const last = events[events.length - 1];
    assert.deepEqual(last.members.map((m) => m.user), ["ada", "bob", "quiet"], "the event carries the list after it");
    await bob.leave("plist");
    await waitFor(ada, "presence", () => users() === "ada,quiet", "bob's leave");
    assert.equal(ada.members("plist").count, 2);
    const quietEvents = collector(quiet, "presence");
    const quietMsg = once(quiet, "msg");
    await ada.publish("plist", "after"); // quiet opted out: no presence event reaches it
    await quietMsg;
    assert.equal(quietEvents.length, 0);
    assert.equal(quiet.members("plist").members, null);
  } finally {
    ada.close();
    bob.close();
    quiet.close();
  }
});
