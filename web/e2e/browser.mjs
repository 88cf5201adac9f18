// Shared helpers of the browser tests (console, alarms, MQTT.js): how to
// start Debian's Chromium, and the real MQTT command-line clients.

import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export const CHROMIUM = process.env.MQTTBRIDGE_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Runs mosquitto_pub (MQTT v5) against the broker on port. */
export function mosquittoPub(port, ...args) {
  return run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv5", ...args], { timeout: 10000 });
}
