// client.js: pure unit tests (filter matching, ids) and protocol tests
// against the fake server, where drops, lost sessions, duplicates and
// silence can be injected. Run: node --test web/e2e/
// (after `make web-deps`).

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { MqttBridge, topicMatches, compareIds, parseId, MqttBridgeError } from "../client.js";
import DefaultExport from "../client.js";
import { startFakeServer } from "./fakeserver.mjs";
import { spyWebSocket, waitFor, sleep, states } from "./helpers.mjs";

describe("topicMatches", () => {
  const cases = [
    // filter, topic, want
    ["a/b", "a/b", true],
    ["a/b", "a/c", false],
    ["a/b", "a/b/c", false],
    ["a/b/c", "a/b", false],
    ["A/b", "a/b", false],
    ["a/+", "a/b", true],
    ["a/+", "a/", true],
    ["a/+", "a", false],
    ["a/+", "a/b/c", false],
    ["+/+", "/x", true],
    ["+", "/x", false],
    ["/+", "/x", true],
    ["a//b", "a//b", true],
    ["a/+/b", "a//b", true],
    ["a/#", "a", true],
    ["a/#", "a/b/c", true],
    ["a/#", "ab", false],
    ["a/#", "b/a", false],
    ["#", "a/b", true],
    ["#", "/", true],
    ["#", "$SYS/x", false],
    ["+/x", "$SYS/x", false],
    ["+/#", "$a", false],
    ["$SYS/#", "$SYS/x", true],
    ["$SYS/+", "$SYS/x", true],
    ["a/$x", "a/$x", true],
    ["+/$x", "a/$x", true],
    ["$share/g/a/+", "a/b", true],
    ["$share/g/#", "$x/b", false],
    ["$share/g/#", "a", true],
    ["plant/+/temperature", "plant/1/temperature", true],
    ["plant/+/temperature", "plant/1/humidity", false],
  ];
  for (const [filter, topic, want] of cases) {
    test(`${filter} ${want ? "matches" : "does not match"} ${JSON.stringify(topic)}`, () => {
      assert.equal(topicMatches(filter, topic), want);
    });
  }
});

describe("message ids", () => {
  test("compare as two numbers, not as text", () => {
    assert.ok(compareIds("999-0", "1000-0") < 0, "999 ms before 1000 ms");
    assert.ok(compareIds("1000-2", "1000-10") < 0, "seq 2 before seq 10");
    assert.ok(compareIds("1764162000000-9", "1764162000001-0") < 0);
    assert.equal(compareIds("5-5", "5-5"), 0);
    assert.ok(compareIds("1000-10", "1000-2") > 0);
    assert.ok(compareIds("garbage", "1-0") < 0, "invalid sorts first");
  });
  test("parse", () => {
    assert.deepEqual(parseId("1764162000000-3"), [1764162000000, 3]);
    assert.equal(parseId("1-2-3"), null);
    assert.equal(parseId("x-1"), null);
    assert.equal(parseId(undefined), null);
  });
  test("default export is the class", () => {
    assert.equal(DefaultExport, MqttBridge);
  });
});

describe("against the fake server", () => {
  let fake;
  before(async () => {
    fake = await startFakeServer({ historySize: 50 });
  });
  after(async () => {
    await fake.close();
  });

  function open(opts = {}) {
    const spy = spyWebSocket();
    const bridge = new MqttBridge(fake.url, { WebSocket: spy.WebSocket, reconnect: { min: 20, max: 100 }, ...opts });
    bridge.on("error", (e) => bridge.errors.push(e));
    bridge.errors = [];
    return { bridge, spy };
  }

  test("publish and subscribe round trip, with every payload kind", async (t) => {
    const { bridge } = open();
    t.after(() => bridge.close());
    const got = [];
    const sub = await bridge.subscribe("rt/+/x", (m) => got.push(m));
    assert.equal(sub.filter, "rt/+/x");
    const res = await bridge.publish("rt/1/x", "21.5", { qos: 1, retain: true });
    assert.deepEqual(res, { topic: "rt/1/x", qos: 1, reason_code: 0, reason: "success" });
    await bridge.publish("rt/2/x", new Uint8Array([0, 1, 2, 255]));
    await bridge.publish("rt/3/x", { mode: "eco" });
    await waitFor("three messages", () => got.length === 3);
    assert.equal(got[0].text(), "21.5");
    assert.equal(got[0].payload, "21.5");
    assert.equal(got[0].retain, true);
    assert.deepEqual([...got[0].bytes()], [50, 49, 46, 53]);
    assert.equal(got[1].binary, true);
    assert.deepEqual([...got[1].bytes()], [0, 1, 2, 255]);
    assert.deepEqual(got[2].json(), { mode: "eco" });
    const frames = fake.sent("publish").slice(-3);
    assert.equal(frames[0].payload, "21.5");
    assert.equal(frames[1].payload_base64, "AAEC/w==");
    assert.deepEqual(frames[2].payload_json, { mode: "eco" });
  });

  test("errors carry the server's code", async (t) => {
    const { bridge } = open();
    t.after(() => bridge.close());
    await assert.rejects(bridge.subscribe("a/#/b", () => {}), (e) => e instanceof MqttBridgeError && e.code === "invalid_topic");
    await assert.rejects(bridge.publish("a/+", "x"), (e) => e.code === "invalid_topic");
    assert.equal(bridge.subscriptions.length, 0, "a refused subscription is not kept");
  });

  test("requests time out with code timeout", async (t) => {
    const { bridge } = open({ requestTimeout: 300, pingInterval: 0 });
    t.after(() => {
      fake.mute = false;
      bridge.close();
    });
    await bridge.whenOpen();
    fake.mute = true;
    const started = Date.now();
    await assert.rejects(bridge.publish("t/x", "1"), (e) => e.code === "timeout");
    assert.ok(Date.now() - started >= 250, "not before the timeout");
  });

  test("a publish too large for the server's read limit is refused without sending", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    await bridge.whenOpen();
    await assert.rejects(bridge.publish("big/x", "x".repeat(70000)), (e) => e.code === "payload_too_large");
    assert.equal(spy.of("publish").length, 0);
  });

  test("overlapping filters: each matching callback once, one message event", async (t) => {
    const { bridge } = open();
    t.after(() => bridge.close());
    const a = [];
    const b = [];
    const c = [];
    const all = [];
    bridge.on("message", (m) => all.push(m.topic));
    await bridge.subscribe("ov/+", (m) => a.push(m.topic));
    await bridge.subscribe("ov/#", (m) => b.push(m.topic));
    await bridge.subscribe("other/#", (m) => c.push(m.topic));
    fake.inject("ov/1", "x");
    fake.inject("ov/1/2", "y");
    await waitFor("deliveries", () => b.length === 2);
    await sleep(30);
    assert.deepEqual(a, ["ov/1"]);
    assert.deepEqual(b, ["ov/1", "ov/1/2"]);
    assert.deepEqual(c, []);
    assert.deepEqual(all, ["ov/1", "ov/1/2"]);
  });

  test("unsubscribe stops the callback; a filter shared by two subscriptions stays until both leave", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    const a = [];
    const b = [];
    const s1 = await bridge.subscribe("us/x", (m) => a.push(m.payload));
    const s2 = await bridge.subscribe("us/x", (m) => b.push(m.payload));
    fake.inject("us/x", "1");
    await waitFor("both", () => a.length === 1 && b.length === 1);
    await s1.unsubscribe();
    assert.equal(spy.of("unsubscribe").length, 0, "still used by s2");
    fake.inject("us/x", "2");
    await waitFor("b", () => b.length === 2);
    assert.deepEqual(a, ["1"]);
    await s2.unsubscribe();
    assert.deepEqual(spy.of("unsubscribe").map((f) => f.filters), [["us/x"]]);
    fake.inject("us/x", "3");
    await sleep(50);
    assert.deepEqual(b, ["1", "2"]);
  });

  test("QoS 1: acknowledged after the callback, batched in one frame", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    let inCallback = 0;
    await bridge.subscribe(
      "ack/#",
      () => {
        inCallback++;
        assert.equal(spy.of("ack").length, 0, "no ack before the callback returned");
      },
      { qos: 1 },
    );
    const ms = [fake.inject("ack/1", "a", { qos: 1 }), fake.inject("ack/2", "b", { qos: 1 }), fake.inject("ack/3", "c", { qos: 1 })];
    await waitFor("ack frame", () => spy.of("ack").length > 0);
    await sleep(30);
    assert.equal(inCallback, 3);
    const acks = spy.of("ack");
    assert.equal(acks.length, 1, "one ack frame for a burst");
    assert.deepEqual(acks[0].ids, ms.map((m) => m.id));
    assert.equal(acks[0].id, undefined, "acks carry no request id");
    assert.deepEqual(fake.pending(bridge.session), []);
    // QoS 0 messages on a QoS 1 subscription need no ack.
    fake.inject("ack/4", "d", { qos: 0 });
    await sleep(50);
    assert.equal(spy.of("ack").length, 1);
  });

  test("QoS 1 with autoAck false: only msg.ack() acknowledges", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    const held = [];
    await bridge.subscribe("man/#", (m) => held.push(m), { qos: 1, autoAck: false });
    fake.inject("man/1", "a", { qos: 1 });
    await waitFor("delivery", () => held.length === 1);
    await sleep(50);
    assert.equal(spy.of("ack").length, 0);
    assert.equal(held[0].needsAck, true);
    held[0].ack();
    held[0].ack();
    await waitFor("ack", () => spy.of("ack").length === 1);
    await sleep(30);
    assert.deepEqual(spy.of("ack")[0].ids, [held[0].id]);
    assert.equal(spy.of("ack").length, 1, "ack() twice sends once");
  });

  test("async callbacks are acknowledged when their promise settles", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    let release;
    const gate = new Promise((r) => (release = r));
    await bridge.subscribe("async/#", () => gate, { qos: 1 });
    fake.inject("async/1", "a", { qos: 1 });
    await sleep(80);
    assert.equal(spy.of("ack").length, 0);
    release();
    await waitFor("ack", () => spy.of("ack").length === 1);
  });

  test("snapshot: current values first, marked, and counted for resume", async (t) => {
    const retained = fake.inject("snap/1", "old", { retain: true });
    const { bridge } = open();
    t.after(() => bridge.close());
    const got = [];
    await bridge.subscribe("snap/#", (m) => got.push(m), { snapshot: true });
    assert.equal(got.length, 1, "the snapshot arrives before the subscribe resolves");
    assert.equal(got[0].snapshot, true);
    assert.equal(got[0].id, retained.id);
    assert.ok(compareIds(bridge.lastId, retained.id) >= 0);
    // A second subscription asking for a snapshot of an already seen topic
    // still gets it; the first does not see it twice.
    const second = [];
    await bridge.subscribe("snap/+", (m) => second.push(m), { snapshot: true });
    assert.deepEqual(second.map((m) => m.payload), ["old"]);
    assert.equal(got.length, 1);
  });

  test("duplicates (same or older id on a topic) are dropped, and still acknowledged", async (t) => {
    const { bridge, spy } = open();
    t.after(() => bridge.close());
    const got = [];
    await bridge.subscribe("dup/#", (m) => got.push(m.id), { qos: 1 });
    const m1 = fake.inject("dup/a", "1", { qos: 1 });
    const m2 = fake.inject("dup/a", "2", { qos: 1 });
    await waitFor("two", () => got.length === 2);
    fake.resend(m1);
    fake.resend(m2);
    const m3 = fake.inject("dup/b", "3", { qos: 1 });
    fake.resend(m1); // older than dup/a's last, though newer topics came since
    await waitFor("third", () => got.length === 3);
    await sleep(50);
    assert.deepEqual(got, [m1.id, m2.id, m3.id]);
    const acked = spy.of("ack").flatMap((f) => f.ids);
    for (const m of [m1, m2, m3]) assert.ok(acked.includes(m.id), `acked ${m.id}`);
    assert.deepEqual(fake.pending(bridge.session), []);
  });

  test("reconnect and resume: session and last_id in the URL, nothing lost, nothing twice", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 150, max: 150 } });
    t.after(() => bridge.close());
    const st = states(bridge);
    const got = [];
    await bridge.subscribe("rs/#", (m) => got.push(m.payload), { qos: 1 });
    fake.inject("rs/a", "1", { qos: 1 });
    await waitFor("first", () => got.length === 1);
    const session = bridge.session;
    const last = bridge.lastId;
    const subscribes = spy.of("subscribe").length;

    bridge._dropForTest();
    assert.equal(bridge.state, "closed");
    fake.inject("rs/a", "2", { qos: 1 }); // while away
    fake.inject("rs/b", "3", { qos: 0 });
    await waitFor("resumed", () => bridge.state === "open");
    await waitFor("missed ones", () => got.length === 3);
    await sleep(50);
    assert.deepEqual(got, ["1", "2", "3"]);
    const url = fake.connects.at(-1);
    assert.equal(url.searchParams.get("session"), session);
    assert.equal(url.searchParams.get("last_id"), last);
    assert.equal(spy.of("subscribe").length, subscribes, "a resumed session needs no subscribe");
    const closed = st.find((s) => s.s === "closed");
    assert.equal(closed.final, false);
    assert.ok(closed.reconnectIn >= 75 && closed.reconnectIn <= 150, `jittered delay ${closed.reconnectIn}`);
    assert.deepEqual(
      st.map((s) => s.s),
      ["connecting", "open", "closed", "connecting", "open"],
    );
    assert.equal(st.at(-1).resumed, true);
  });

  test("resume re-sends unacknowledged messages; the client acks them without showing them again", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 100, max: 100 } });
    t.after(() => bridge.close());
    const got = [];
    await bridge.subscribe("unack/#", (m) => got.push(m.payload), { qos: 1 });
    await bridge.whenOpen();
    // Drop in the same tick as the delivery, before the batched ack goes.
    const seen = new Promise((resolve) => bridge.on("message", (m) => m.topic === "unack/a" && resolve()));
    fake.inject("unack/a", "1", { qos: 1 });
    await seen;
    bridge._dropForTest();
    assert.equal(spy.of("ack").length, 0, "the ack had not gone out");
    await waitFor("resumed", () => bridge.state === "open");
    await waitFor("ack after resume", () => spy.of("ack").length > 0);
    await sleep(50);
    assert.deepEqual(got, ["1"]);
    assert.deepEqual(fake.pending(bridge.session), []);
  });

  test("lost session (server restart): subscriptions sent again with last_id, missed messages replayed", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 200, max: 200 } });
    t.after(() => bridge.close());
    const got = [];
    await bridge.subscribe("lost/+", (m) => got.push(m.payload), { qos: 1, snapshot: true });
    await bridge.subscribe("lost2/#", () => {});
    fake.inject("lost/a", "1");
    await waitFor("first", () => got.length === 1);
    const last = bridge.lastId;
    const oldSession = bridge.session;
    fake.restart(); // closes with 1012 and forgets sessions
    await waitFor("closed", () => bridge.state === "closed");
    fake.inject("lost/a", "2"); // while restarting
    await waitFor("reopened", () => bridge.state === "open");
    await waitFor("replayed", () => got.length === 2);
    assert.notEqual(bridge.session, oldSession);
    const resub = spy.of("subscribe").slice(-2);
    assert.deepEqual(
      resub.map((f) => ({ filters: f.filters, qos: f.qos, last_id: f.last_id, snapshot: f.snapshot })),
      [
        { filters: ["lost/+"], qos: 1, last_id: last, snapshot: undefined },
        { filters: ["lost2/#"], qos: 0, last_id: last, snapshot: undefined },
      ],
    );
    fake.inject("lost/b", "3");
    await waitFor("live again", () => got.length === 3);
    assert.deepEqual(got, ["1", "2", "3"]);
  });

  test("lost session before anything arrived: the first welcome's last_id is the resume point", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 100, max: 100 } });
    t.after(() => bridge.close());
    fake.inject("early/other", "x"); // so the server has a newest id
    const got = [];
    await bridge.subscribe("early/a", (m) => got.push(m.payload), { snapshot: true });
    assert.ok(bridge.lastId, "cursor from welcome");
    fake.restart();
    await waitFor("closed", () => bridge.state === "closed");
    fake.inject("early/a", "while away");
    await waitFor("reopened", () => bridge.state === "open");
    await waitFor("replayed", () => got.length === 1);
    assert.deepEqual(got, ["while away"]);
    assert.ok(spy.of("subscribe").at(-1).last_id);
  });

  // The real server refuses a subscribe with store_unavailable,
  // broker_unavailable, rate_limited or internal only while its store or
  // broker fails, which it cannot be made to do on demand: the fake server
  // refuses instead. Before, any refusal ended the subscription for good.
  // A fake server of their own, so that refusals never reach other tests.
  async function openOwn(t) {
    const own = await startFakeServer();
    t.after(() => own.close());
    const spy = spyWebSocket();
    const bridge = new MqttBridge(own.url, { WebSocket: spy.WebSocket, reconnect: { min: 40, max: 80 } });
    t.after(() => bridge.close());
    bridge.errors = [];
    bridge.on("error", (e) => bridge.errors.push(e));
    return { own, bridge, spy };
  }

  test("a re-subscription refused for the moment (store_unavailable, …) is tried again with backoff; the subscription stays", async (t) => {
    const { own: fake, bridge, spy } = await openOwn(t);
    const got = [];
    const sub = await bridge.subscribe("transient/+", (m) => got.push(m.payload), { qos: 1 });
    fake.inject("transient/a", "1", { qos: 1 });
    await waitFor("first", () => got.length === 1);
    const before = spy.of("subscribe").length;
    const codes = ["store_unavailable", "broker_unavailable", "rate_limited", "internal"];
    fake.refuseSubscribes(...codes);
    fake.restart(); // the session is lost: the client subscribes again
    await waitFor("closed", () => bridge.state === "closed");
    fake.inject("transient/a", "2", { qos: 1 }); // while away
    await waitFor("subscribed again after each refusal", () => spy.of("subscribe").length === before + codes.length + 1);
    await waitFor("replayed", () => got.length === 2);
    assert.equal(sub.active, true);
    assert.deepEqual(bridge.subscriptions, [sub]);
    const refused = bridge.errors.filter((e) => e.filter === "transient/+");
    assert.deepEqual(
      refused.map((e) => e.code),
      codes,
    );
    for (const e of refused) assert.ok(e.retryIn > 0, `${e.code}: retryIn ${e.retryIn}`);
    for (const f of spy.of("subscribe").slice(before)) {
      assert.deepEqual([f.filters, f.qos, typeof f.last_id], [["transient/+"], 1, "string"]);
    }
    fake.inject("transient/b", "3", { qos: 1 });
    await waitFor("live again", () => got.length === 3);
    assert.deepEqual(got, ["1", "2", "3"]);
  });

  test("a re-subscription refused for good (forbidden) ends that filter's subscriptions with an error", async (t) => {
    const { own: fake, bridge, spy } = await openOwn(t);
    const kept = await bridge.subscribe("kept/#", () => {});
    const gone = await bridge.subscribe("gone/#", () => {});
    fake.refuseSubscribes(null, "forbidden");
    fake.restart();
    await waitFor("refused", () => bridge.errors.some((e) => e.filter === "gone/#"));
    const err = bridge.errors.find((e) => e.filter === "gone/#");
    assert.equal(err.code, "forbidden");
    assert.equal(err.retryIn, undefined);
    assert.equal(gone.active, false);
    assert.equal(kept.active, true);
    assert.deepEqual(bridge.subscriptions, [kept]);
    // Not subscribed again, neither later nor on the next lost session.
    const n = spy.of("subscribe").length;
    fake.restart();
    await waitFor("kept subscribed again", () => spy.of("subscribe").length > n);
    await waitFor("open", () => bridge.state === "open");
    assert.deepEqual(
      spy.of("subscribe").slice(n).map((f) => f.filters[0]),
      ["kept/#"],
    );
  });

  test("a gap is reported and current values are re-read with a snapshot", async (t) => {
    const small = await startFakeServer({ historySize: 3 });
    t.after(() => small.close());
    const spy = spyWebSocket();
    const bridge = new MqttBridge(small.url, { WebSocket: spy.WebSocket, reconnect: { min: 100, max: 100 } });
    t.after(() => bridge.close());
    const got = [];
    const gaps = [];
    bridge.on("gap", (g) => gaps.push(g));
    await bridge.subscribe("gap/+", (m) => got.push(m.payload));
    small.inject("gap/a", "1", { retain: true });
    await waitFor("first", () => got.length === 1);
    const last = bridge.lastId;
    bridge._dropForTest();
    for (let i = 2; i <= 6; i++) small.inject(`gap/${i % 2 ? "a" : "b"}`, String(i), { retain: true });
    await waitFor("gap", () => gaps.length === 1);
    assert.equal(gaps[0].last_id, last);
    await waitFor("catch-up snapshot", () => spy.of("subscribe").some((f) => f.snapshot));
    await waitFor("current values", () => got.includes("5") && got.includes("6"));
    await sleep(50);
    assert.equal(new Set(got).size, got.length, `no duplicates: ${got}`);
  });

  test("ping every interval; no pong means reconnect", async (t) => {
    const { bridge, spy } = open({ pingInterval: 50, requestTimeout: 150, reconnect: { min: 50, max: 50 } });
    t.after(() => {
      fake.mute = false;
      bridge.close();
    });
    const st = states(bridge);
    await bridge.whenOpen();
    await waitFor("pings", () => spy.of("ping").length >= 2);
    fake.mute = true;
    await waitFor("dropped for no pong", () => st.some((s) => s.s === "closed" && s.reason === "no pong in time"), 3000);
    fake.mute = false;
    await waitFor("back", () => bridge.state === "open");
  });

  test("a publish in flight when the connection drops rejects with connection_lost; queued ones go after reconnect", async (t) => {
    const { bridge } = open({ reconnect: { min: 100, max: 100 } });
    t.after(() => {
      fake.mute = false;
      bridge.close();
    });
    await bridge.whenOpen();
    fake.mute = true;
    const inflight = bridge.publish("fl/x", "1");
    await sleep(30);
    bridge._dropForTest();
    fake.mute = false;
    await assert.rejects(inflight, (e) => e.code === "connection_lost");
    const queued = await bridge.publish("fl/x", "2"); // sent once open again
    assert.equal(queued.reason, "success");
  });

  test("reconnect delays double from min to max, with jitter", async (t) => {
    const spy = spyWebSocket();
    // Nothing listens on port 9 of 127.0.0.1: every attempt fails at once.
    const bridge = new MqttBridge("ws://127.0.0.1:9/v1/ws", { WebSocket: spy.WebSocket, reconnect: { min: 20, max: 160 } });
    t.after(() => bridge.close());
    const st = states(bridge);
    await waitFor("seven attempts", () => st.filter((s) => s.s === "closed").length >= 7, 10000);
    const delays = st.filter((s) => s.s === "closed").map((s) => s.reconnectIn);
    delays.forEach((d, i) => {
      const base = Math.min(160, 20 * 2 ** i);
      assert.ok(d >= base / 2 && d <= base, `attempt ${i}: ${d} ms not in [${base / 2}, ${base}] (${delays})`);
    });
  });

  test("close() is final: no reconnect, pending requests reject with closed", async (t) => {
    const { bridge } = open();
    const st = states(bridge);
    await bridge.whenOpen();
    fake.mute = true;
    t.after(() => (fake.mute = false));
    const p = bridge.publish("cl/x", "1");
    bridge.close();
    await assert.rejects(p, (e) => e.code === "closed");
    await sleep(100);
    assert.equal(bridge.state, "closed");
    assert.equal(st.at(-1).final, true);
    assert.equal(st.filter((s) => s.s === "connecting").length, 1);
    await assert.rejects(bridge.subscribe("x", () => {}), (e) => e.code === "closed");
  });

  test("the URL may be http(s) and derives ws(s); a non-WebSocket URL is refused", () => {
    const spy = spyWebSocket();
    assert.throws(() => new MqttBridge("ftp://x/v1/ws", { WebSocket: spy.WebSocket }), (e) => e.code === "invalid_request");
    const b = new MqttBridge(fake.url.replace("ws:", "http:"), { WebSocket: spy.WebSocket });
    b.close();
  });
});
