// The console page in a real browser (Debian's Chromium through
// playwright-core) against the real bridge, with real MQTT clients on the
// other side. web/e2e_test.go starts the bridge and runs:
//
//   node web/e2e/console.test.mjs <base URL> <mqtt port> <screenshot path>
//
// With MQTTBRIDGE_SCREENSHOT set it also writes web/e2e/console.png.
// Without arguments (as under `node --test web/e2e/`) it is skipped.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM, CHROMIUM_ARGS, mosquittoPub as pub } from "./browser.mjs";

const [base, mqttPort, screenshot] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const mosquittoPub = (...args) => pub(mqttPort, ...args);

/** Starts mosquitto_sub for one message on topic; resolves once it is
 * subscribed (its debug output shows the SUBACK). .message resolves with
 * the "topic payload" line it printed. */
function mosquittoSub(topic) {
  // stdbuf: mosquitto_sub buffers its (debug) output when it is a pipe.
  const p = spawn("stdbuf", ["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-t", topic, "-C", "1", "-W", "10", "-v", "-d"]);
  let out = "";
  let subscribed;
  const ready = new Promise((resolve, reject) => {
    subscribed = resolve;
    setTimeout(() => reject(new Error(`mosquitto_sub not subscribed within 10 s: ${out}`)), 10000).unref();
  });
  const message = new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(topic + " "));
      if (line) resolve(line);
      else reject(new Error(`mosquitto_sub exited ${code} without a message: ${out}`));
    });
  });
  p.stdout.on("data", (d) => {
    out += d;
    if (/received SUBACK/.test(out)) subscribed();
  });
  p.stderr.on("data", (d) => (out += d));
  return { ready, message, kill: () => p.kill() };
}

test(
  "console: connect, subscribe, receive from MQTT, publish to MQTT",
  { skip: !screenshot && "usage: node console.test.mjs <base URL> <mqtt port> <screenshot path>", timeout: 60000 },
  async (t) => {
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000 });
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    page.setDefaultTimeout(10000);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

    await page.goto(new URL("/", base).href);
    assert.equal(await page.title(), "mqttbridge console");
    const state = page.getByTestId("state");
    await page.waitForSelector('[data-testid="state"][data-state="open"]');
    assert.match(await state.textContent(), /Connected/);

    // A retained value, so the snapshot has something to show.
    await mosquittoPub("-t", "e2e/r/1", "-m", "kept", "-r", "-q", "1");
    for (let i = 0; ; i++) {
      const r = await fetch(new URL("/v1/topics/e2e/r/1", base));
      if (r.status === 200) break;
      assert.ok(i < 100, "the bridge never saw the retained value");
      await new Promise((r) => setTimeout(r, 50));
    }

    // Subscribe through the form.
    await page.getByLabel("Topic filter").fill("e2e/+/temp");
    await page.getByTestId("subscribe-snapshot").uncheck(); // live messages only
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/+/temp"]');
    await page.getByLabel("Topic filter").fill("e2e/r/#");
    await page.getByTestId("subscribe-qos1").check();
    await page.getByTestId("subscribe-snapshot").check();
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/r/#"]');
    const snap = page.locator('tr[data-topic="e2e/r/1"]');
    await snap.waitFor();
    assert.equal(await snap.getByTestId("payload").textContent(), "kept");
    assert.equal(await snap.getByTestId("snapshot").count(), 1, "marked as snapshot");
    assert.equal(await snap.getByTestId("retain").count(), 1, "marked as retained");

    // An invalid filter shows the server's error.
    await page.getByLabel("Topic filter").fill("e2e/#/x");
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscribe-error"]:not([hidden])');
    assert.match(await page.getByTestId("subscribe-error").textContent(), /invalid_topic/);
    await page.getByLabel("Topic filter").fill("");
    assert.equal(await page.getByTestId("subscribe-error").isHidden(), true, "editing clears the error");

    // A device publishes with a real MQTT client; the page shows it.
    await mosquittoPub("-t", "e2e/1/temp", "-m", "21.5");
    const row = page.locator('tr[data-topic="e2e/1/temp"]');
    await row.waitFor();
    assert.equal(await row.getByTestId("payload").textContent(), "21.5");
    assert.match(await row.locator(".c-id").textContent(), /^\d+-\d+$/);

    // Message data is text, never markup.
    const evil = `<img src=x onerror="document.title='owned'"><b>bold</b>`;
    await mosquittoPub("-t", "e2e/2/temp", "-m", evil);
    const evilRow = page.locator('tr[data-topic="e2e/2/temp"]');
    await evilRow.waitFor();
    assert.equal(await evilRow.getByTestId("payload").textContent(), evil);
    assert.equal(await page.locator("#message-rows img, #message-rows b").count(), 0);

    // Binary payloads are summarised.
    const dir = await mkdtemp(path.join(tmpdir(), "mqttbridge-e2e-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, "bin"), Buffer.from([0xff, 0x00, 0xfe]));
    await mosquittoPub("-t", "e2e/3/temp", "-f", path.join(dir, "bin"));
    const binRow = page.locator('tr[data-topic="e2e/3/temp"]');
    await binRow.waitFor();
    assert.equal(await binRow.getByTestId("payload").textContent(), "binary 3 bytes");

    // Newest first.
    const topics = await page.locator("#message-rows tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.topic));
    assert.deepEqual(topics, ["e2e/3/temp", "e2e/2/temp", "e2e/1/temp", "e2e/r/1"]);

    // A refused publish shows the error.
    await page.getByLabel("Topic", { exact: true }).fill("e2e/+/bad");
    await page.getByTestId("publish-submit").click();
    await page.waitForSelector('[data-testid="publish-result"][data-kind="error"]');
    assert.match(await page.getByTestId("publish-result").textContent(), /invalid_topic/);

    // The page publishes; a real MQTT subscriber receives it.
    const sub = mosquittoSub("e2e/cmd");
    t.after(() => sub.kill());
    await sub.ready;
    await page.getByLabel("Topic", { exact: true }).fill("e2e/cmd");
    await page.getByLabel("Payload").fill("on");
    await page.getByLabel("QoS", { exact: true }).selectOption("1");
    await page.getByTestId("publish-submit").click();
    await page.waitForSelector('[data-testid="publish-result"][data-kind="ok"]');
    assert.match(await page.getByTestId("publish-result").textContent(), /Published to e2e\/cmd: QoS 1, reason 0/);
    assert.equal(await sub.message, "e2e/cmd on");

    await page.evaluate(() => {
      document.activeElement?.blur();
      window.scrollTo(0, 0);
    });
    await page.screenshot({ path: screenshot, fullPage: true });
    if (process.env.MQTTBRIDGE_SCREENSHOT) await copyFile(screenshot, path.join(here, "console.png"));

    // Unsubscribe removes it from the list, and its messages stop.
    await page.locator('[data-filter="e2e/+/temp"] [data-testid="unsubscribe"]').click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/+/temp"]', { state: "detached" });
    await mosquittoPub("-t", "e2e/4/temp", "-m", "unseen");
    await mosquittoPub("-t", "e2e/r/2", "-m", "seen");
    await page.locator('tr[data-topic="e2e/r/2"]').waitFor();
    assert.equal(await page.locator('tr[data-topic="e2e/4/temp"]').count(), 0);

    assert.equal(await page.title(), "mqttbridge console", "no script ran from message data");
    assert.deepEqual(problems, [], "no errors in the page");
  },
);
