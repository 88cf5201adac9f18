// The console's Alarms view in a real browser (Debian's Chromium through
// playwright-core) against the real bridge configured with the alarm
// "plant" (filters plant/+/alarm/#, clear "0" and "OK", ack_topic
// acks/{topic}), with mosquitto_pub as the devices. web/e2e_test.go starts
// the bridge and runs:
//
//   node web/e2e/alarms.test.mjs <base URL> <mqtt port> <screenshot path>
//
// Without arguments (as under `node --test web/e2e/`) it is skipped.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { CHROMIUM, CHROMIUM_ARGS, waitFor } from "./helpers.mjs";

const [base, mqttPort, screenshot] = process.argv.slice(2);
const run = promisify(execFile);
const mosquittoPub = (...args) =>
  run("mosquitto_pub", ["-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", ...args], { timeout: 10000 });

test(
  "console: alarms raised by devices, acknowledged in the page and elsewhere, live",
  { skip: !screenshot && "usage: node alarms.test.mjs <base URL> <mqtt port> <screenshot path>", timeout: 80000 },
  async (t) => {
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20000 });
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(10000);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });

    // A device raised an alarm before the page opened: it is listed.
    await mosquittoPub("-t", "plant/1/alarm/temp", "-m", "81");
    await waitFor("the first alarm", async () => {
      const r = await (await fetch(new URL("/v1/alarms", base))).json();
      return r.alarms.length === 1;
    }, 10000);

    await page.goto(new URL("/", base).href);
    await page.waitForSelector('[data-testid="state"][data-state="open"]');
    // The tab says how many wait for a person, before anyone opens it.
    await page.waitForSelector('[data-testid="alarm-badge"].alert');
    assert.equal(await page.getByTestId("alarm-badge").textContent(), "1");
    await page.getByTestId("tab-alarms").click();
    const row = (topic) => page.locator(`[data-testid="alarm-row"][data-topic="${topic}"]`);
    const temp = row("plant/1/alarm/temp");
    await temp.waitFor();
    assert.equal(await temp.getAttribute("data-state"), "unacknowledged");
    assert.equal(await temp.getByTestId("alarm-value").textContent(), "81");
    assert.match(await temp.getByTestId("alarm-age").textContent(), /^\d+ s$/);
    assert.match(await temp.getByTestId("alarm-state").textContent(), /Unacknowledged.*active/);
    assert.match(await temp.evaluate((tr) => getComputedStyle(tr).fontWeight), /^(600|700|bold)$/, "unacknowledged alarms stand out");

    // Live: an update, and a new alarm; unacknowledged, newest first.
    await mosquittoPub("-t", "plant/1/alarm/temp", "-m", "85");
    await page.waitForFunction(() => document.querySelector('[data-topic="plant/1/alarm/temp"] [data-testid="alarm-count-cell"]')?.textContent === "2");
    assert.equal(await temp.getByTestId("alarm-value").textContent(), "85");
    await mosquittoPub("-t", "plant/2/alarm/level", "-m", "<b>low</b>");
    const level = row("plant/2/alarm/level");
    await level.waitFor();
    assert.equal(await level.getByTestId("alarm-value").textContent(), "<b>low</b>", "alarm values are text");
    assert.equal(await page.locator("#alarm-rows b").count(), 0);
    const order = () => page.locator('[data-testid="alarm-row"]').evaluateAll((trs) => trs.map((tr) => `${tr.dataset.topic} ${tr.dataset.state}`));
    assert.deepEqual(await order(), ["plant/2/alarm/level unacknowledged", "plant/1/alarm/temp unacknowledged"]);
    assert.match(await page.getByTestId("alarm-count").textContent(), /2 open, 2 unacknowledged/);

    // A person acknowledges in the page, with a comment: it moves below
    // the unacknowledged one and says who and what.
    await temp.getByTestId("alarm-comment").fill("valve closed");
    await temp.getByTestId("alarm-ack").click();
    await page.waitForSelector('[data-topic="plant/1/alarm/temp"][data-state="acknowledged"]');
    assert.match(await temp.getByTestId("alarm-acked").textContent(), /anonymous at .*valve closed/);
    assert.equal(await temp.getByTestId("alarm-ack").count(), 0, "no button on an acknowledged alarm");
    assert.deepEqual(await order(), ["plant/2/alarm/level unacknowledged", "plant/1/alarm/temp acknowledged"]);
    // The device learns of it on the ack topic (retained).
    const ack = await fetch(new URL("/v1/topics/acks/plant/1/alarm/temp", base), { headers: { Accept: "application/json" } });
    assert.equal(ack.status, 200);
    assert.equal(JSON.parse((await ack.json()).payload).comment, "valve closed");

    // Someone else acknowledges over the API: the page follows live.
    const id = await level.getAttribute("data-id");
    const r = await fetch(new URL(`/v1/alarms/${id}/ack`, base), { method: "POST" });
    assert.equal(r.status, 200);
    await page.waitForSelector('[data-topic="plant/2/alarm/level"][data-state="acknowledged"]');
    assert.match(await page.getByTestId("alarm-count").textContent(), /2 open, 0 unacknowledged/);
    assert.equal(await page.getByTestId("alarm-badge").textContent(), "0");
    assert.equal(await page.locator('[data-testid="alarm-badge"].alert').count(), 0);

    // Cleared and acknowledged: closed, gone from the view.
    await mosquittoPub("-t", "plant/1/alarm/temp", "-m", "OK");
    await temp.waitFor({ state: "detached" });

    // While the page is disconnected one alarm closes and another is
    // raised; after the reconnect the view shows what is open now.
    await page.evaluate(() => globalThis.mqttbridge._dropForTest());
    await mosquittoPub("-t", "plant/2/alarm/level", "-m", "0");
    await mosquittoPub("-t", "plant/3/alarm/door", "-m", "open");
    await level.waitFor({ state: "detached", timeout: 15000 });
    const door = row("plant/3/alarm/door");
    await door.waitFor({ timeout: 15000 });
    assert.equal(await door.getAttribute("data-state"), "unacknowledged");
    await page.waitForSelector('[data-testid="state"][data-state="open"]');

    // A clearing message before anyone acknowledged: still open, cleared.
    await mosquittoPub("-t", "plant/3/alarm/door", "-m", "", "-r");
    await page.waitForSelector('[data-topic="plant/3/alarm/door"][data-active="false"]');
    assert.match(await door.getByTestId("alarm-state").textContent(), /Unacknowledged.*cleared/);
    await mosquittoPub("-t", "plant/4/alarm/fan", "-m", "stalled");
    await row("plant/4/alarm/fan").waitFor();

    await page.evaluate(() => {
      document.activeElement?.blur();
      window.scrollTo(0, 0);
    });
    await page.screenshot({ path: screenshot, fullPage: true });

    // The Alarms view's own subscription fills neither State nor Messages,
    // and is not among the person's subscriptions.
    assert.equal(await page.locator('[data-testid="message-row"]').count(), 0);
    assert.equal(await page.locator('[data-testid="state-row"]').count(), 0);
    assert.equal(await page.locator('[data-testid="subscription"]').count(), 0);
    assert.deepEqual(problems, [], "no errors in the page");
  },
);
