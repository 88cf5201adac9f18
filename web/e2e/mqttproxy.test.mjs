// MQTT.js over the bridge's MQTT-over-WebSocket proxy (GET /mqtt) to a
// real Mosquitto, in MQTT 3.1.1 and 5. cmd/mqttbridge/mqttproxy_mqttjs_test.go
// starts Mosquitto and the bridge (with API keys for alice and bob, who may
// use users/<name>/#, public/#, and publish status/<client id>) and runs
// this with:
//
//   MQTTBRIDGE_PROXY_URL   ws://127.0.0.1:<port>/mqtt
//   MQTTBRIDGE_BROKER_URL  mqtt://127.0.0.1:<port> (Mosquitto itself)
//   MQTTBRIDGE_ALICE_KEY, MQTTBRIDGE_BOB_KEY
//   MQTTBRIDGE_CONTROL_URL an HTTP endpoint: POST /restart restarts Mosquitto
//
// Without them every test is skipped.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import mqtt from "mqtt";

const env = process.env;
const proxy = env.MQTTBRIDGE_PROXY_URL;
const broker = env.MQTTBRIDGE_BROKER_URL;
const skip = !proxy || !broker ? "MQTTBRIDGE_PROXY_URL is not set (cmd/mqttbridge/mqttproxy_mqttjs_test.go sets it)" : false;

let n = 0;
const unique = () => `${process.pid}-${Date.now()}-${++n}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Connects MQTT.js through the proxy as alice (the key in the URL, as a
 * browser sends it) or bob (the key in a header, as Node can). */
async function viaProxy(t, who, opts = {}) {
  const url = new URL(proxy);
  const o = { reconnectPeriod: 0, connectTimeout: 5000, ...opts };
  if (who === "alice") url.searchParams.set("access_token", env.MQTTBRIDGE_ALICE_KEY);
  else o.wsOptions = { headers: { "X-API-Key": env.MQTTBRIDGE_BOB_KEY } };
  const c = await mqtt.connectAsync(url.href, o);
  c.on("error", () => {}); // refusals are asserted where they matter
  t.after(() => c.endAsync(true));
  return c;
}

/** A client on Mosquitto itself, to see what reaches the broker. */
async function direct(t, filter) {
  const c = await mqtt.connectAsync(broker, { protocolVersion: 5, reconnectPeriod: 0 });
  t.after(() => c.endAsync(true));
  const got = [];
  c.on("message", (topic, payload, packet) => got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
  if (filter) await c.subscribeAsync(filter, { qos: 2 });
  return { c, got };
}

/** Resolves with the messages once there are at least count, or fails. */
async function until(what, list, count, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (list.length < count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(list)}`);
    await sleep(10);
  }
  return list;
}

function collect(c) {
  const got = [];
  c.on("message", (topic, payload, packet) => got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
  return got;
}

for (const version of [4, 5]) {
  describe(`MQTT ${version === 4 ? "3.1.1" : "5"} through /mqtt`, { skip, timeout: 60000 }, () => {
    const opts = { protocolVersion: version };
    const refused = version === 5 ? 0x87 : 0x80;

    test("subscribe: allowed filters go through, refused ones fail in place", async (t) => {
      const id = unique();
      const c = await viaProxy(t, "alice", opts);
      // MQTT.js rejects a SUBACK with any failure, and gives the packet.
      const err = await c
        .subscribeAsync({ [`users/alice/${id}/#`]: { qos: 1 }, [`users/bob/${id}/#`]: { qos: 1 }, [`public/${id}/+`]: { qos: 2 } })
        .then(() => assert.fail("the subscription to bob's topics was granted"), (e) => e);
      assert.deepEqual(err.packet?.granted, [1, refused, 2], String(err));
      const got = collect(c);
      const d = await direct(t);
      await d.c.publishAsync(`users/bob/${id}/x`, "secret", { qos: 1 });
      await d.c.publishAsync(`public/${id}/a`, "open", { qos: 1 });
      await until("the public message", got, 1);
      await sleep(200);
      assert.deepEqual(got.map((m) => m.topic), [`public/${id}/a`]);
    });

    test("publish QoS 0, 1 and 2 reach the broker and come back", async (t) => {
      const id = unique();
      const d = await direct(t, `users/alice/${id}/#`);
      const c = await viaProxy(t, "alice", opts);
      await c.subscribeAsync(`users/alice/${id}/#`, { qos: 2 });
      const got = collect(c);
      for (const qos of [0, 1, 2]) await c.publishAsync(`users/alice/${id}/q${qos}`, `payload ${qos}`, { qos });
      await until("three messages at the broker", d.got, 3);
      await until("three messages back", got, 3);
      for (const list of [d.got, got]) {
        const byQoS = Object.fromEntries(list.map((m) => [m.topic.split("/").pop(), m]));
        for (const qos of [0, 1, 2]) {
          assert.equal(byQoS[`q${qos}`].payload, `payload ${qos}`);
          assert.equal(byQoS[`q${qos}`].qos, qos);
        }
      }
    });

    test("retained messages are kept and delivered on subscribe", async (t) => {
      const topic = `users/alice/${unique()}/kept`;
      const c = await viaProxy(t, "alice", opts);
      await c.publishAsync(topic, "21.5", { qos: 1, retain: true });
      const c2 = await viaProxy(t, "alice", opts);
      const got = collect(c2);
      await c2.subscribeAsync(topic, { qos: 1 });
      const [m] = await until("the retained message", got, 1);
      assert.equal(m.payload, "21.5");
      assert.equal(m.retain, true);
      await c.publishAsync(topic, "", { qos: 1, retain: true }); // clear it
    });

    test("a refused publish goes nowhere", async (t) => {
      const id = unique();
      const d = await direct(t, `users/bob/${id}/#`);
      const c = await viaProxy(t, "alice", opts);
      if (version === 5) {
        for (const qos of [1, 2]) {
          await assert.rejects(c.publishAsync(`users/bob/${id}/x`, "no", { qos }), (e) => e.code === 0x87);
        }
        await c.publishAsync(`users/bob/${id}/x`, "no", { qos: 0 });
        // The connection goes on.
        await c.publishAsync(`users/alice/${id}/ok`, "yes", { qos: 1 });
      } else {
        const closed = new Promise((r) => c.once("close", r));
        c.publish(`users/bob/${id}/x`, "no", { qos: 1 });
        await closed; // MQTT 3.1.1 cannot refuse a publish: the proxy closes
      }
      await sleep(300);
      assert.deepEqual(d.got, []);
    });

    test("the will message is published when the client vanishes", async (t) => {
      const clientId = `w${unique()}`;
      const d = await direct(t, `status/${clientId}`);
      // status/%c: alice may publish on her client id's status topic.
      const c = await viaProxy(t, "alice", { ...opts, clientId, will: { topic: `status/${clientId}`, payload: "offline", qos: 1, retain: false } });
      await c.publishAsync(`status/${clientId}`, "online", { qos: 1 });
      c.stream.destroy(); // no DISCONNECT
      await until("online and the will", d.got, 2);
      assert.deepEqual(d.got.map((m) => m.payload), ["online", "offline"]);

      // A will outside the rules is refused at CONNECT.
      await assert.rejects(
        viaProxy(t, "alice", { ...opts, clientId: `x${clientId}`, will: { topic: "users/bob/will", payload: "x" } }),
        (e) => e.code === (version === 5 ? 0x87 : 5),
      );
    });

    test("keep alive: MQTT.js pings through the proxy and stays connected", async (t) => {
      const c = await viaProxy(t, "alice", { ...opts, keepalive: 1 });
      let pongs = 0;
      c.on("packetreceive", (p) => p.cmd === "pingresp" && pongs++);
      let closed = false;
      c.on("close", () => (closed = true));
      await sleep(3500);
      assert.ok(pongs >= 2, `${pongs} PINGRESP in 3.5 s with a keep alive of 1 s`);
      assert.equal(closed, false);
    });

    test("client ids are per identity: alice and bob may both use one", async (t) => {
      const clientId = `same-${unique()}`;
      const a = await viaProxy(t, "alice", { ...opts, clientId });
      const b = await viaProxy(t, "bob", { ...opts, clientId });
      let aClosed = false;
      a.on("close", () => (aClosed = true));
      await sleep(300);
      assert.equal(aClosed, false, "bob's connection took over alice's session");
      await a.publishAsync(`users/alice/${clientId}`, "a", { qos: 1 });
      await b.publishAsync(`users/bob/${clientId}`, "b", { qos: 1 });
      // The same identity with the same client id takes its session over.
      await viaProxy(t, "alice", { ...opts, clientId });
      const deadline = Date.now() + 5000;
      while (!aClosed && Date.now() < deadline) await sleep(10);
      assert.equal(aClosed, true, "alice's second connection did not take over her first");
    });

    test("an upstream broker restart: MQTT.js reconnects and resubscribes", { skip: !env.MQTTBRIDGE_CONTROL_URL }, async (t) => {
      const id = unique();
      const c = await viaProxy(t, "alice", { ...opts, reconnectPeriod: 200 });
      await c.subscribeAsync(`users/alice/${id}/#`, { qos: 1 });
      const got = collect(c);
      let reconnects = 0;
      c.on("connect", () => reconnects++);
      const resp = await fetch(new URL("/restart", env.MQTTBRIDGE_CONTROL_URL), { method: "POST" });
      assert.equal(resp.status, 204);
      const deadline = Date.now() + 15000;
      while (reconnects === 0 && Date.now() < deadline) await sleep(20);
      assert.ok(reconnects > 0, "MQTT.js did not reconnect");
      await sleep(300); // the resubscription
      const d = await direct(t);
      await d.c.publishAsync(`users/alice/${id}/after`, "back", { qos: 1 });
      const [m] = await until("a message after the restart", got, 1, 10000);
      assert.equal(m.payload, "back");
    });
  });
}
