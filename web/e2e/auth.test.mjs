// client.js and the console with authentication on: given a credential
// they get a one-time ticket (POST /v1/tickets) before every connection and
// reconnection, and the console opens on a sign-in page. web/e2e_test.go
// starts a bridge with API keys and HS256 JWTs (the console's files public,
// the default), and runs this with MQTTBRIDGE_URL,
// MQTTBRIDGE_API_KEY (may use auth/#), MQTTBRIDGE_JWT (subject "jwtuser",
// may use auth/jwtuser/#) and MQTTBRIDGE_MQTT_PORT; without them every test
// here is skipped. The console tests also need Chromium.

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

/** Chromium on the console at / of the bridge with authentication on, with
 * the ticket requests and WebSocket URLs it makes recorded. */
async function openConsole(t) {
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
  return { page, ticketPosts, wsURLs, pageErrors };
}

const storedCredential = (page) => page.evaluate(() => sessionStorage.getItem("mqttbridge.credential"));

const chromiumSkip = skip || (!existsSync(CHROMIUM) && `${CHROMIUM} is missing`);

test("console in Chromium: sign in with an API key, tickets on connect and reconnect, sign out forgets it", { skip: chromiumSkip, timeout: 60000 }, async (t) => {
  const { page, ticketPosts, wsURLs, pageErrors } = await openConsole(t);

  // With authentication on, / is the sign-in page (not a JSON 401), and
  // nothing connects before a credential is given.
  await page.getByTestId("signin").waitFor();
  assert.equal(await page.getByTestId("console").isHidden(), true);
  assert.equal(await page.getByRole("heading", { name: "Sign in" }).count(), 1);
  assert.equal(await page.evaluate(() => document.activeElement.id), "cred", "the field has the focus");
  assert.match(await page.getByTestId("state").textContent(), /Not signed in/);
  assert.equal(wsURLs.length + ticketPosts.length, 0);

  // An empty form says what to do.
  await page.getByTestId("signin-submit").click();
  assert.equal(await page.getByTestId("signin-error").textContent(), "Paste an API key or a JWT.");

  // Typed and sent with Enter, as a person would.
  await page.getByLabel("API key or JWT").fill(apiKey);
  await page.getByLabel("API key or JWT").press("Enter");
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  await page.getByTestId("console").waitFor();
  assert.equal(await page.getByTestId("signin").isHidden(), true);
  assert.equal(ticketPosts.length, 1);
  const sent = await ticketPosts[0];
  assert.equal(sent["x-api-key"], apiKey, "an API key goes as X-API-Key");
  assert.equal(sent.authorization, undefined);
  const opened = wsURLs.at(-1);
  assert.match(new URL(opened).searchParams.get("access_token"), /^mbt_/);
  assert.ok(!opened.includes(apiKey), "the API key is in no URL");
  assert.equal(await storedCredential(page), apiKey, "kept in the tab's sessionStorage");
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");

  // Subscribe and receive, as this identity.
  const topic = unique("console");
  await page.getByLabel("Topic filter").fill(topic);
  await page.getByTestId("subscribe-submit").click();
  await page.waitForSelector(`[data-testid="subscription"][data-filter="${topic}"]`);
  await mosquittoPub(topic, "hello");
  await page.locator(`#state-rows tr[data-topic="${topic}"]`).waitFor();

  // A dropped connection reconnects with a new ticket.
  await page.evaluate(() => globalThis.mqttbridge._dropForTest());
  await waitFor("a second ticket", () => ticketPosts.length === 2, 10000);
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  const again = new URL(wsURLs.at(-1)).searchParams.get("access_token");
  assert.match(again, /^mbt_/);
  assert.notEqual(again, new URL(opened).searchParams.get("access_token"));

  // A reload in the same tab signs in again from sessionStorage.
  await page.reload();
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  assert.equal(ticketPosts.length, 3);

  // Sign out: the credential is forgotten, the connection closed, and
  // nothing connects again, not even after a reload.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByTestId("signin").waitFor();
  assert.match(await page.getByTestId("signin-status").textContent(), /Signed out/);
  assert.equal(await storedCredential(page), null, "sessionStorage cleared");
  assert.equal(await page.getByLabel("API key or JWT").inputValue(), "");
  assert.equal(await page.evaluate(() => globalThis.mqttbridge), undefined);
  assert.equal(await page.locator("#state-rows tr, #message-rows tr, [data-testid=subscription]").count(), 0, "nothing of the identity's data left on the page");
  const posts = ticketPosts.length;
  const sockets = wsURLs.length;
  await new Promise((r) => setTimeout(r, 1500)); // longer than the first reconnect delay
  await page.reload();
  await page.getByTestId("signin").waitFor();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(ticketPosts.length, posts, "no ticket asked for after sign-out");
  assert.equal(wsURLs.length, sockets, "no connection after sign-out");
  assert.deepEqual(pageErrors, []);
});

test("console in Chromium: sign in with a JWT; a wrong credential is a clear error and is not kept", { skip: chromiumSkip, timeout: 60000 }, async (t) => {
  const { page, ticketPosts, wsURLs, pageErrors } = await openConsole(t);
  await page.getByTestId("signin").waitFor();

  await page.getByLabel("API key or JWT").fill("mbk_wrong");
  await page.getByTestId("signin-submit").click();
  await page.waitForSelector('[data-testid="signin-error"]:not([hidden])');
  const error = await page.getByTestId("signin-error").textContent();
  assert.match(error, /^The bridge did not accept this credential \(401 unauthorized: .+\)\. Check the API key or JWT, or get a new one\.$/);
  assert.equal(await page.getByTestId("console").isHidden(), true, "still on the sign-in page");
  assert.equal(await storedCredential(page), null, "a refused credential is not kept");
  assert.equal(wsURLs.length, 0, "no WebSocket without a ticket");
  const refused = ticketPosts.length;
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(ticketPosts.length, refused, "a refused credential is not tried again");

  // Editing clears the error; a JWT goes as a bearer token.
  await page.getByLabel("API key or JWT").fill(jwt);
  assert.equal(await page.getByTestId("signin-error").isHidden(), true);
  await page.getByTestId("signin-submit").click();
  await page.waitForSelector('[data-testid="state"][data-state="open"]');
  assert.equal((await ticketPosts.at(-1)).authorization, `Bearer ${jwt}`);
  assert.ok(!wsURLs.at(-1).includes(jwt), "the JWT is in no URL");
  // Its rules apply: its own topics, not another's.
  await page.getByLabel("Topic filter").fill("auth/jwtuser/#");
  await page.getByTestId("subscribe-submit").click();
  await page.waitForSelector('[data-testid="subscription"][data-filter="auth/jwtuser/#"]');
  await page.getByLabel("Topic filter").fill("auth/other/#");
  await page.getByTestId("subscribe-submit").click();
  await page.waitForSelector('[data-testid="subscribe-error"]:not([hidden])');
  assert.match(await page.getByTestId("subscribe-error").textContent(), /^forbidden: /);
  assert.deepEqual(pageErrors, []);
});
