// MQTT.js inside Chromium, through the bridge's /mqtt, to its embedded
// broker. web/e2e_test.go starts the bridge and runs:
//
//   node web/e2e/mqttjs-browser.test.mjs <base URL> <mqtt port>
//
// Without arguments (as under `node --test web/e2e/`) it is skipped.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers.mjs";

const [base, mqttPort] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

test("MQTT.js in Chromium: connect, subscribe, receive, publish through /mqtt", { skip: !base && "no bridge URL given", timeout: 60000 }, async (t) => {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000 });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A web app on another origin (http://localhost:<port>, which the bridge
  // admits like ws.allowed_origins would) loads MQTT.js's browser bundle
  // from npm.
  const bundle = await readFile(path.join(here, "node_modules", "mqtt", "dist", "mqtt.min.js"));
  const app = createServer((req, res) => {
    if (req.url === "/mqtt.min.js") {
      res.writeHead(200, { "Content-Type": "text/javascript" }).end(bundle);
    } else {
      res.writeHead(200, { "Content-Type": "text/html" }).end('<!doctype html><script src="/mqtt.min.js"></script>');
    }
  });
  await new Promise((r) => app.listen(0, "127.0.0.1", r));
  t.after(() => app.close());
  await page.goto(`http://localhost:${app.address().port}/`);
  await page.waitForFunction(() => typeof window.mqtt?.connectAsync === "function");
  const topic = `browser/${Date.now()}`;
  const wsURL = new URL("/mqtt", base).href.replace(/^http/, "ws");

  // The browser subscribes, then a device publishes with mosquitto_pub.
  await page.evaluate(
    async ({ wsURL, topic }) => {
      const client = await mqtt.connectAsync(wsURL, { protocolVersion: 5, clientId: "in-chromium", reconnectPeriod: 0 });
      window.received = [];
      client.on("message", (t, payload) => window.received.push([t, payload.toString()]));
      await client.subscribeAsync(`${topic}/#`, { qos: 1 });
      window.client = client;
    },
    { wsURL, topic },
  );
  await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-q", "1", "-t", `${topic}/device`, "-m", "21.5"], { timeout: 10000 });
  await page.waitForFunction(() => window.received.length > 0, null, { timeout: 10000 });
  assert.deepEqual(await page.evaluate(() => window.received), [[`${topic}/device`, "21.5"]]);

  // The browser publishes retained with QoS 1; the bridge records it, so
  // HTTP reads it.
  const res = await page.evaluate(
    async ({ topic }) => {
      const r = await window.client.publishAsync(`${topic}/setpoint`, "22", { qos: 1, retain: true });
      await window.client.endAsync();
      return r?.reasonCode ?? 0;
    },
    { topic },
  );
  assert.equal(res, 0);
  let body = "";
  for (let i = 0; i < 100 && body !== "22"; i++) {
    const r = await fetch(new URL(`/v1/topics/${topic}/setpoint`, base));
    body = r.status === 200 ? await r.text() : "";
    if (body !== "22") await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(body, "22");
  await fetch(new URL(`/v1/topics/${topic}/setpoint`, base), { method: "DELETE" });
  assert.deepEqual(errors, []);
});
