// client.js and the console with authentication on: given a credential
// they get a one-time ticket (POST /v1/tickets) before every connection and
// reconnection. web/e2e_test.go starts a bridge with API keys, HS256 JWTs
// and a public console, and runs this with MQTTBRIDGE_URL,
// MQTTBRIDGE_API_KEY (may use auth/#), MQTTBRIDGE_JWT (subject "jwtuser",
// may use auth/jwtuser/#) and MQTTBRIDGE_MQTT_PORT; without them every test
// here is skipped. The console test also needs Chromium.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { MqttBridge } from "../client.js";
import { spyWebSocket, waitFor, CHROMIUM, CHROMIUM_ARGS } from "./helpers.mjs";

const { MQTTBRIDGE_URL: base, MQTTBRIDGE_API_KEY: apiKey, MQTTBRIDGE_JWT: jwt, MQTTBRIDGE_MQTT_PORT: mqttPort } = process.env;
const skip = !base || !apiKey || !jwt || !mqttPort ? "MQTTBRIDGE_URL, _API_KEY, _JWT and _MQTT_PORT are not set (web/e2e_test.go sets them)" : false;
const run = promisify(execFile);

let n = 0;
const unique = (name) => `auth/${process.pid}/${Date.now()}/${++n}/${name}`;

async function mosquittoPub(topic, payload) {
  await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mqttPort), "-V", "mqttv5", "-t", topic, "-m", payload], { timeout: 10000 });
}

/** The access_token of every URL the spy connected to. */
const tickets = (spy) => spy.urls.map((u) => u.searchParams.get("access_token"));

describe("client.js with a credential", { skip, timeout: 60000 }, () => {
  function open(opts) {
    const spy = spyWebSocket();
    const bridge = new MqttBridge(new URL("/v1/ws", base), { WebSocket: spy.WebSocket, reconnect: { min: 100, max: 200 }, ...opts });
    return { bridge, spy };
  }

  test("apiKey: a fresh ticket for the first connection and for every reconnection; the key never in a URL", async (t) => {
    const { bridge, spy } = open({ apiKey });
    t.after(() => bridge.close());
    await bridge.whenOpen();
    const topic = unique("key");
    const got = [];
    await bridge.subscribe(topic, (m) => got.push(m.payload));
    await bridge.publish(topic, "one", { qos: 1 });
    await waitFor("one", () => got.length === 1, 10000);
    for (let i = 0; i < 2; i++) {
      bridge._dropForTest();
      await waitFor("reconnected", () => bridge.state === "open" && spy.urls.length === i + 2, 10000);
    }
    await mosquittoPub(topic, "two");
    await waitFor("two", () => got.length === 2, 10000);
    const used = tickets(spy);
    assert.equal(used.length, 3);
    assert.ok(used.every((tk) => /^mbt_/.test(tk)), `tickets: ${used}`);
    assert.equal(new Set(used).size, 3, "each connection had a ticket of its own");
    assert.ok(spy.urls.every((u) => !u.href.includes(apiKey)), "the API key is in no URL");
  });

  test("token: a JWT is exchanged the same way", async (t) => {
    const { bridge, spy } = open({ token: jwt });
    t.after(() => bridge.close());
    await bridge.whenOpen();
    await bridge.subscribe("auth/jwtuser/#");
    await assert.rejects(bridge.subscribe("auth/other/#"), (e) => e.code === "forbidden", "the JWT's rules apply");
    assert.match(tickets(spy)[0], /^mbt_/);
    assert.ok(!spy.urls[0].href.includes(jwt));
  });

  test("credentials: asked before every connection, so a refreshed credential is used", async (t) => {
    const asked = [];
    const { bridge, spy } = open({
      credentials: async () => {
        asked.push(Date.now());
        return asked.length % 2 ? { token: jwt } : { apiKey };
      },
    });
    t.after(() => bridge.close());
    await bridge.whenOpen();
    bridge._dropForTest();
    await waitFor("reconnected", () => bridge.state === "open" && spy.urls.length === 2, 10000);
    assert.equal(asked.length, 2);
    assert.equal(new Set(tickets(spy)).size, 2);
  });

  test("a bad credential: an unauthorized error, no socket opened, and it keeps trying", async (t) => {
    const { bridge, spy } = open({ apiKey: "mbk_wrong" });
    t.after(() => bridge.close());
    const errors = [];
    bridge.on("error", (e) => errors.push(e));
    await waitFor("two refusals", () => errors.length >= 2, 10000);
    assert.equal(errors[0].code, "unauthorized");
    assert.equal(errors[0].status, 401);
    assert.match(errors[0].message, /POST \/v1\/tickets: 401/);
    assert.equal(spy.urls.length, 0, "no WebSocket without a ticket");
    assert.notEqual(bridge.state, "open");
  });

  test("without a credential the server refuses the WebSocket", async (t) => {
    const { bridge, spy } = open({});
    t.after(() => bridge.close());
    await waitFor("a refused attempt", () => spy.urls.length >= 1 && bridge.state !== "open", 10000);
    await assert.rejects(bridge.whenOpen(500), (e) => e.code === "timeout");
    assert.equal(spy.urls[0].searchParams.get("access_token"), null);
  });
});

test("console in Chromium: the credential field, tickets on connect and reconnect", { skip: skip || (!existsSync(CHROMIUM) && `${CHROMIUM} is missing`), timeout: 60000 }, async (t) => {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000 });
  t.after(() => browser.close());
  const page = await browser.newPage();
  page.setDefaultTimeout(10000);
  const ticketPosts = [];
  const wsURLs = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/tickets") ticketPosts.push(r.allHeaders());
  });
  page.on("websocket", (ws) => wsURLs.push(ws.url()));
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));

  await page.goto(new URL("/", base).href);
  // Without a credential the console cannot connect.
  await waitFor("a refused attempt", () => wsURLs.length >= 1, 10000);
  assert.notEqual(await page.getByTestId("state").getAttribute("data-state"), "open");
  assert.equal(new URL(wsURLs[0]).searchParams.get("access_token"), null);

  await page.getByLabel("Credential").fill(apiKey);
  await page.getByTestId("credential-submit").click();
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  assert.equal(ticketPosts.length, 1);
  assert.equal((await ticketPosts[0]).authorization, `Bearer ${apiKey}`);
  const opened = wsURLs.at(-1);
  assert.match(new URL(opened).searchParams.get("access_token"), /^mbt_/);
  assert.ok(!opened.includes(apiKey), "the API key is in no URL");

  // Subscribe and receive, as this identity.
  const topic = unique("console");
  await page.getByLabel("Topic filter").fill(topic);
  await page.getByTestId("subscribe-submit").click();
  await page.waitForSelector(`[data-testid="subscription"][data-filter="${topic}"]`);
  await mosquittoPub(topic, "hello");
  await page.locator(`tr[data-topic="${topic}"]`).waitFor();

  // A dropped connection reconnects with a new ticket.
  await page.evaluate(() => globalThis.mqttbridge._dropForTest());
  await waitFor("a second ticket", () => ticketPosts.length === 2, 10000);
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  const again = new URL(wsURLs.at(-1)).searchParams.get("access_token");
  assert.match(again, /^mbt_/);
  assert.notEqual(again, new URL(opened).searchParams.get("access_token"));

  // A wrong credential shows the server's refusal.
  await page.getByLabel("Credential").fill("mbk_wrong");
  await page.getByTestId("credential-submit").click();
  await page.waitForSelector('[data-testid="notice"]:not([hidden])');
  assert.match(await page.getByTestId("notice").textContent(), /unauthorized: POST \/v1\/tickets: 401/);
  assert.deepEqual(pageErrors, []);
});
