// The console page in a real browser (Debian's Chromium through
// playwright-core) against the real bridge, with real MQTT clients on the
// other side. web/e2e_test.go starts the bridge and runs:
//
//   node web/e2e/console.test.mjs <base URL> <mqtt port> <screenshot path>
//
// The screenshot is of the State view; with MQTTBRIDGE_SCREENSHOT set it is
// also written to docs/img/console-state.png (the README shows it).
// Without arguments (as under `node --test web/e2e/`) it is skipped.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { promisify } from "node:util";
import { copyFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM, CHROMIUM_ARGS, waitFor } from "./helpers.mjs";

const [base, mqttPort, screenshot] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);


function mosquittoPub(...args) {
  return run("mosquitto_pub", ["-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", ...args], { timeout: 10000 });
}

/** Publishes with mosquitto_pub and waits until the bridge has it. */
async function pubSeen(topic, ...args) {
  const before = await last(topic);
  await mosquittoPub("-t", topic, ...args);
  await waitFor(`the bridge has ${topic}`, async () => (await last(topic)) !== before, 10000);
}
async function last(topic) {
  const r = await fetch(new URL(`/v1/topics/${topic}`, base), { headers: { Accept: "application/json" } });
  return r.status === 200 ? (await r.json()).id : null;
}

/** Starts mosquitto_sub for one message on topic; resolves once it is
 * subscribed (its debug output shows the SUBACK). .message resolves with
 * the "topic payload" line it printed. */
function mosquittoSub(topic, ...args) {
  // stdbuf: mosquitto_sub buffers its (debug) output when it is a pipe.
  const p = spawn("stdbuf", ["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-t", topic, "-C", "1", "-W", "10", "-v", "-d", ...args]);
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
  return { ready, message, output: () => out, kill: () => p.kill() };
}


/** The data-<attr> of the rows of a table body, top to bottom. */
const column = (page, tbody, attr) => page.locator(`#${tbody} tr`).evaluateAll((trs, a) => trs.map((tr) => tr.dataset[a]), attr);

test(
  "console: state at a glance, messages in one order, granted QoS, publish to MQTT",
  { skip: !screenshot && "usage: node console.test.mjs <base URL> <mqtt port> <screenshot path>", timeout: 90000 },
  async (t) => {
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000 });
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    page.setDefaultTimeout(10000);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

    await page.goto(new URL("/", base).href);
    assert.equal(await page.title(), "mqttbridge console");
    assert.equal(await page.getByTestId("signin").isHidden(), true, "no sign-in without authentication");
    assert.equal(await page.getByTestId("signout").isHidden(), true);
    const state = page.getByTestId("state");
    await page.waitForSelector('[data-testid="state"][data-state="open"]');
    assert.match(await state.textContent(), /Connected/);
    const stateTab = page.getByRole("tab", { name: /State/ });
    const messagesTab = page.getByRole("tab", { name: /Messages/ });
    assert.equal(await stateTab.getAttribute("aria-selected"), "true", "the State view first");

    // A plant: retained values, one with a message expiry, published
    // before anyone looks (b before a: the snapshot's topic order is not
    // its time order).
    await pubSeen("plant/2/temperature", "-m", "19.0", "-r", "-q", "1");
    await pubSeen("plant/1/temperature", "-m", "21.5", "-r", "-q", "1");
    await pubSeen("plant/1/pressure", "-m", "1.02", "-r", "-q", "1", "-D", "publish", "message-expiry-interval", "3600");
    await pubSeen("plant/pump/state", "-m", "running", "-r", "-q", "1");

    // Subscribe through the form: current values first.
    await page.getByLabel("Topic filter").fill("plant/#");
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="plant/#"]');
    await waitFor("four topics in the state table", async () => (await page.locator("#state-rows tr").count()) === 4);
    assert.deepEqual(await column(page, "state-rows", "topic"), ["plant/1/pressure", "plant/1/temperature", "plant/2/temperature", "plant/pump/state"], "sorted by topic");
    const t1 = page.locator('#state-rows tr[data-topic="plant/1/temperature"]');
    assert.equal(await t1.getByTestId("payload").textContent(), "21.5");
    assert.equal(await t1.getByTestId("retain").textContent(), "retained");
    assert.match(await t1.getByTestId("age").textContent(), /^\d+ s ago · \d\d:\d\d:\d\d\.\d{3}$/);
    assert.equal(await t1.getByTestId("expiry").count(), 0);
    const p1 = page.locator('#state-rows tr[data-topic="plant/1/pressure"]');
    assert.match(await p1.getByTestId("expiry").textContent(), /^expires in (60|59) min$/);

    // Live values update the row in place: the same element, a new value.
    await page.evaluate(() => {
      document.querySelector('#state-rows tr[data-topic="plant/1/temperature"]').dataset.marked = "yes";
    });
    await mosquittoPub("-t", "plant/1/temperature", "-m", "22.5");
    await waitFor("22.5 in the state table", async () => (await t1.getByTestId("payload").textContent()) === "22.5", 10000);
    assert.equal(await t1.getAttribute("data-marked"), "yes", "updated in place, not a new row");
    assert.equal(await page.locator('#state-rows tr[data-topic="plant/1/temperature"]').count(), 1);
    assert.equal(await t1.getByTestId("retain").count(), 0, "a live, not retained, value");
    await mosquittoPub("-t", "plant/3/temperature", "-m", "18.25");
    await page.waitForSelector('#state-rows tr[data-topic="plant/3/temperature"]');
    assert.equal(await page.getByTestId("state-count").textContent(), "5");
    // Ages move on by themselves.
    const age = await t1.getByTestId("age").textContent();
    await waitFor("the age to move on", async () => (await t1.getByTestId("age").textContent()) !== age, 5000);

    await page.evaluate(() => {
      document.activeElement?.blur();
      window.scrollTo(0, 0);
    });
    await page.screenshot({ path: screenshot });
    if (process.env.MQTTBRIDGE_SCREENSHOT) await copyFile(screenshot, path.join(here, "..", "..", "docs", "img", "console-state.png"));

    // A value with a short expiry says when it expired.
    await mosquittoPub("-t", "plant/flash", "-m", "on", "-D", "publish", "message-expiry-interval", "2");
    const flash = page.locator('#state-rows tr[data-topic="plant/flash"]');
    await flash.waitFor();
    assert.match(await flash.getByTestId("expiry").textContent(), /^expires in [12] s$/);
    await waitFor("expired", async () => (await flash.getByTestId("expiry").textContent()) === "expired", 5000);

    // The message log: snapshot rows (older ids, arrived later) and live
    // rows in one order, newest first by message id.
    await pubSeen("e2e/r/b", "-m", "older", "-r", "-q", "1");
    await pubSeen("e2e/r/a", "-m", "newer", "-r", "-q", "1");
    await page.getByLabel("Topic filter").fill("e2e/+/temp");
    await page.getByTestId("subscribe-snapshot").uncheck(); // live messages only
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/+/temp"]');
    await mosquittoPub("-t", "e2e/1/temp", "-m", "21.5");
    await messagesTab.click();
    assert.equal(await page.getByTestId("view-state").isHidden(), true);
    const row = page.locator('#message-rows tr[data-topic="e2e/1/temp"]');
    await row.waitFor();
    assert.equal(await row.getByTestId("payload").textContent(), "21.5");
    assert.match(await row.locator(".c-id").textContent(), /^\d+-\d+$/);

    await page.getByLabel("Topic filter").fill("e2e/r/#");
    await page.getByTestId("subscribe-qos1").check();
    await page.getByTestId("subscribe-snapshot").check();
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/r/#"]');
    const snap = page.locator('#message-rows tr[data-topic="e2e/r/a"]');
    await snap.waitFor();
    await page.locator('#message-rows tr[data-topic="e2e/r/b"]').waitFor();
    assert.equal(await snap.getByTestId("payload").textContent(), "newer");
    assert.equal(await snap.getByTestId("snapshot").count(), 1, "marked as snapshot");
    assert.equal(await snap.getByTestId("retain").count(), 1, "marked as retained");
    const e2eTopics = async () => (await column(page, "message-rows", "topic")).filter((x) => x.startsWith("e2e/"));
    assert.deepEqual(await e2eTopics(), ["e2e/1/temp", "e2e/r/a", "e2e/r/b"], "the live message is the newest, the snapshot values below it in their own order");
    const ids = await column(page, "message-rows", "id");
    const sorted = [...ids].sort((a, b) => {
      const [am, as] = a.split("-").map(Number);
      const [bm, bs] = b.split("-").map(Number);
      return bm - am || bs - as;
    });
    assert.deepEqual(ids, sorted, "every row in id order, newest first");

    // The subscription list shows the QoS the server delivers with:
    // subscribing again with QoS 0 keeps the filter's QoS 1.
    const rsub = page.locator('[data-testid="subscription"][data-filter="e2e/r/#"]');
    assert.match(await rsub.getByTestId("subscription-meta").textContent(), /^QoS 1 · snapshot$/);
    await page.getByLabel("Topic filter").fill("e2e/r/#");
    await page.getByTestId("subscribe-qos1").uncheck();
    await page.getByTestId("subscribe-snapshot").uncheck();
    await page.getByTestId("subscribe-submit").click();
    await page.waitForFunction(() => !document.querySelector('[data-filter="e2e/r/#"] [data-testid="subscription-meta"]')?.textContent.includes("snapshot"));
    assert.equal(await rsub.count(), 1, "one entry per filter");
    assert.equal(await rsub.getAttribute("data-qos"), "1");
    assert.equal(await rsub.getByTestId("subscription-meta").textContent(), "QoS 1");
    assert.equal(
      await page.evaluate(() => globalThis.mqttbridge.subscriptions.find((s) => s.filter === "e2e/r/#").grantedQos),
      1,
    );

    // An invalid filter shows the server's error.
    await page.getByLabel("Topic filter").fill("e2e/#/x");
    await page.getByTestId("subscribe-submit").click();
    await page.waitForSelector('[data-testid="subscribe-error"]:not([hidden])');
    assert.match(await page.getByTestId("subscribe-error").textContent(), /invalid_topic/);
    await page.getByLabel("Topic filter").fill("");
    assert.equal(await page.getByTestId("subscribe-error").isHidden(), true, "editing clears the error");

    // Message data is text, never markup.
    const evil = `<img src=x onerror="document.title='owned'"><b>bold</b>`;
    await mosquittoPub("-t", "e2e/2/temp", "-m", evil);
    const evilRow = page.locator('#message-rows tr[data-topic="e2e/2/temp"]');
    await evilRow.waitFor();
    assert.equal(await evilRow.getByTestId("payload").textContent(), evil);
    assert.equal(await page.locator("#message-rows img, #message-rows b, #state-rows img, #state-rows b").count(), 0);

    // Binary payloads are summarised.
    const dir = await mkdtemp(path.join(tmpdir(), "mqttbridge-e2e-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, "bin"), Buffer.from([0xff, 0x00, 0xfe]));
    await mosquittoPub("-t", "e2e/3/temp", "-f", path.join(dir, "bin"));
    const binRow = page.locator('#message-rows tr[data-topic="e2e/3/temp"]');
    await binRow.waitFor();
    assert.equal(await binRow.getByTestId("payload").textContent(), "binary 3 bytes");
    assert.deepEqual((await e2eTopics()).slice(0, 3), ["e2e/3/temp", "e2e/2/temp", "e2e/1/temp"], "live messages newest first");

    // A refused publish shows the error.
    await page.getByLabel("Topic", { exact: true }).fill("e2e/+/bad");
    await page.getByTestId("publish-submit").click();
    await page.waitForSelector('[data-testid="publish-result"][data-kind="error"]');
    assert.match(await page.getByTestId("publish-result").textContent(), /invalid_topic/);

    // The page publishes with QoS 2; a real MQTT subscriber at QoS 2 gets
    // it at QoS 2, and the page says QoS 2.
    const sub = mosquittoSub("e2e/cmd", "-q", "2");
    t.after(() => sub.kill());
    await sub.ready;
    await page.getByLabel("Topic", { exact: true }).fill("e2e/cmd");
    await page.getByLabel("Payload").fill("on");
    await page.getByLabel("QoS", { exact: true }).selectOption("2");
    await page.getByTestId("publish-submit").click();
    await page.waitForSelector('[data-testid="publish-result"][data-kind="ok"]');
    assert.equal(await page.getByTestId("publish-result").textContent(), "Published to e2e/cmd: QoS 2, reason 0 (success)");
    assert.equal(await sub.message, "e2e/cmd on");
    assert.match(sub.output(), /received PUBLISH \(d0, q2,/, "delivered at QoS 2");

    // QoS 0 has no acknowledgement and says so.
    await page.getByLabel("QoS", { exact: true }).selectOption("0");
    await page.getByTestId("publish-submit").click();
    await page.waitForSelector('[data-testid="publish-result"][data-kind="ok"]:text("QoS 0")');
    assert.equal(await page.getByTestId("publish-result").textContent(), "Published to e2e/cmd: QoS 0, sent, no acknowledgement at QoS 0");

    // Tabs work from the keyboard.
    await messagesTab.focus();
    await page.keyboard.press("ArrowLeft");
    assert.equal(await stateTab.getAttribute("aria-selected"), "true");
    assert.equal(await page.evaluate(() => document.activeElement.id), "tab-state");
    assert.equal(await page.getByTestId("view-messages").isHidden(), true);
    await page.keyboard.press("End");
    assert.equal(await messagesTab.getAttribute("aria-selected"), "true");

    // Unsubscribe removes it from the list, its messages stop, and its
    // topics leave the state table.
    await page.locator('[data-filter="e2e/+/temp"] [data-testid="unsubscribe"]').click();
    await page.waitForSelector('[data-testid="subscription"][data-filter="e2e/+/temp"]', { state: "detached" });
    await mosquittoPub("-t", "e2e/4/temp", "-m", "unseen");
    await mosquittoPub("-t", "e2e/r/2", "-m", "seen");
    await page.locator('#message-rows tr[data-topic="e2e/r/2"]').waitFor();
    assert.equal(await page.locator('tr[data-topic="e2e/4/temp"]').count(), 0);
    assert.equal(await page.locator('#state-rows tr[data-topic="e2e/1/temp"]').count(), 0);
    assert.equal(await page.locator('#state-rows tr[data-topic="e2e/r/2"]').count(), 1);

    assert.equal(await page.title(), "mqttbridge console", "no script ran from message data");
    assert.deepEqual(problems, [], "no errors in the page");
  },
);
