// client.js against the real bridge. web/e2e_test.go starts the bridge and
// runs this with MQTTBRIDGE_URL (its HTTP base URL) and
// MQTTBRIDGE_MQTT_PORT (its embedded broker); without them every test here
// is skipped.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { MqttBridge } from "../client.js";
import { spyWebSocket, waitFor, sleep, states } from "./helpers.mjs";

const base = process.env.MQTTBRIDGE_URL;
const mqttPort = process.env.MQTTBRIDGE_MQTT_PORT;
const skip = !base || !mqttPort ? "MQTTBRIDGE_URL and MQTTBRIDGE_MQTT_PORT are not set (web/e2e_test.go sets them)" : false;
const run = promisify(execFile);

/** Publishes with the real mosquitto_pub, as a device would. */
async function mosquittoPub(topic, payload, ...args) {
  await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mqttPort), "-V", "mqttv5", "-t", topic, "-m", payload, ...args], {
    timeout: 10000,
  });
}

let n = 0;
const unique = (name) => `live/${process.pid}/${Date.now()}/${++n}/${name}`;

describe("against the real bridge", { skip, timeout: 60000 }, () => {
  function open(opts = {}) {
    const spy = spyWebSocket();
    const bridge = new MqttBridge(new URL("/v1/ws", base), { WebSocket: spy.WebSocket, ...opts });
    return { bridge, spy };
  }

  test("subscribe, publish from the client and from mosquitto_pub, every payload kind", async (t) => {
    const { bridge } = open();
    t.after(() => bridge.close());
    const root = unique("rt");
    const got = [];
    await bridge.subscribe(`${root}/+`, (m) => got.push(m));
    const res = await bridge.publish(`${root}/a`, "21.5", { qos: 1 });
    assert.equal(res.topic, `${root}/a`);
    assert.equal(res.qos, 1);
    assert.equal(res.reason_code, 0);
    await bridge.publish(`${root}/b`, new Uint8Array([0, 255, 1]), { qos: 1 });
    await bridge.publish(`${root}/c`, { on: true }, { qos: 1 });
    await mosquittoPub(`${root}/d`, "from mqtt");
    await waitFor("four messages", () => got.length === 4, 10000);
    const by = Object.fromEntries(got.map((m) => [m.topic.split("/").pop(), m]));
    assert.equal(by.a.text(), "21.5");
    assert.equal(by.b.binary, true);
    assert.deepEqual([...by.b.bytes()], [0, 255, 1]);
    assert.deepEqual(by.c.json(), { on: true });
    assert.equal(by.d.payload, "from mqtt");
  });

  test("server errors carry their code", async (t) => {
    const { bridge } = open();
    t.after(() => bridge.close());
    await assert.rejects(bridge.subscribe("a/#/b", () => {}), (e) => e.code === "invalid_topic");
    await assert.rejects(bridge.publish("a/+", "x"), (e) => e.code === "invalid_topic");
  });

  test("snapshot: the retained value first, marked", async (t) => {
    const topic = unique("snap");
    await mosquittoPub(topic, "retained", "-r", "-q", "1");
    const { bridge } = open();
    t.after(() => bridge.close());
    const got = [];
    await waitFor(
      "the bridge to have the value",
      async () => (await fetch(new URL(`/v1/topics/${topic}`, base))).status === 200,
      10000,
    );
    await bridge.subscribe(topic, (m) => got.push(m), { snapshot: true });
    assert.equal(got.length, 1);
    assert.equal(got[0].snapshot, true);
    assert.equal(got[0].payload, "retained");
  });

  test("QoS 1: the client acknowledges, so a resumed session re-sends nothing", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 100, max: 100 } });
    t.after(() => bridge.close());
    const topic = unique("ack");
    const got = [];
    await bridge.subscribe(topic, (m) => got.push(m.id), { qos: 1 });
    await mosquittoPub(topic, "x", "-q", "1");
    await waitFor("delivery", () => got.length === 1, 10000);
    assert.equal(spy.got("message").at(-1).ack, true);
    await waitFor("ack frame", () => spy.of("ack").some((f) => f.ids.includes(got[0])));
    await sleep(100); // let the server apply it
    const before = spy.got("message").length;
    bridge._dropForTest();
    await waitFor("resumed", () => bridge.state === "open", 10000);
    await sleep(300);
    assert.equal(spy.got("message").length, before, "nothing re-sent after the ack");
    assert.deepEqual(got.length, 1);
  });

  test("QoS 1 without ack: the server re-sends on resume; the client shows it once and acks it", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 100, max: 100 } });
    t.after(() => bridge.close());
    const topic = unique("noack");
    const held = [];
    await bridge.subscribe(topic, (m) => held.push(m), { qos: 1, autoAck: false });
    await mosquittoPub(topic, "x", "-q", "1");
    await waitFor("delivery", () => held.length === 1, 10000);
    bridge._dropForTest();
    await waitFor("resumed", () => bridge.state === "open", 10000);
    await waitFor("re-sent", () => spy.got("message").filter((m) => m.id === held[0].id).length === 2, 10000);
    assert.equal(held.length, 1, "not shown twice");
    held[0].ack();
    await waitFor("ack", () => spy.of("ack").some((f) => f.ids.includes(held[0].id)));
  });

  test("reconnect and resume: a message published while away arrives once", async (t) => {
    const { bridge, spy } = open({ reconnect: { min: 1500, max: 1500 } });
    t.after(() => bridge.close());
    const st = states(bridge);
    const root = unique("resume");
    const got = [];
    await bridge.subscribe(`${root}/#`, (m) => got.push(m.payload), { qos: 1 });
    await mosquittoPub(`${root}/a`, "before", "-q", "1");
    await waitFor("first", () => got.length === 1, 10000);
    const session = bridge.session;
    const last = bridge.lastId;
    bridge._dropForTest();
    await mosquittoPub(`${root}/a`, "while away", "-q", "1");
    await mosquittoPub(`${root}/b`, "also away", "-q", "1");
    await waitFor("resumed", () => bridge.state === "open", 10000);
    await mosquittoPub(`${root}/a`, "after", "-q", "1");
    await waitFor("all", () => got.length === 4, 10000);
    await sleep(200);
    assert.deepEqual(got, ["before", "while away", "also away", "after"]);
    const url = spy.urls.at(-1);
    assert.equal(url.searchParams.get("session"), session);
    assert.equal(url.searchParams.get("last_id"), last);
    assert.equal(st.at(-1).resumed, true);
    assert.equal(spy.of("subscribe").length, 1, "the resumed session kept the subscription");
  });

  test("a session the server lost: subscribe again with last_id and get the replay", async (t) => {
    // The second connection asks for a session the server never issued, as
    // after a restart of a bridge with the in-memory store.
    const spy = spyWebSocket({
      rewrite: (u, i) => {
        if (i === 1) u.searchParams.set("session", "s_forgotten");
      },
    });
    const bridge = new MqttBridge(new URL("/v1/ws", base), { WebSocket: spy.WebSocket, reconnect: { min: 1500, max: 1500 } });
    t.after(() => bridge.close());
    const root = unique("lost");
    const got = [];
    await bridge.subscribe(`${root}/#`, (m) => got.push(m.payload), { qos: 1, snapshot: true });
    await mosquittoPub(`${root}/a`, "before", "-q", "1");
    await waitFor("first", () => got.length === 1, 10000);
    const last = bridge.lastId;
    bridge._dropForTest();
    await mosquittoPub(`${root}/a`, "while away", "-q", "1");
    await waitFor("reopened", () => bridge.state === "open", 10000);
    assert.equal(spy.got("welcome")[1].resumed, false);
    const resub = spy.of("subscribe")[1];
    assert.deepEqual(resub.filters, [`${root}/#`]);
    assert.equal(resub.qos, 1);
    assert.equal(resub.last_id, last);
    assert.equal(resub.snapshot, undefined, "a replay, not a snapshot");
    await waitFor("replayed", () => got.length === 2, 10000);
    await mosquittoPub(`${root}/a`, "after", "-q", "1");
    await waitFor("live", () => got.length === 3, 10000);
    await sleep(200);
    assert.deepEqual(got, ["before", "while away", "after"]);
  });
});
