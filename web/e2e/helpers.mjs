// Shared helpers of the client.js tests.

import WebSocket from "ws";

/** A WebSocket (the ws package's, which has the browser API) that records
 * every frame the client sends (frames) and receives (incoming), parsed,
 * and every URL it connects to (urls), after rewrite(url, index) changed it
 * if given. */
export function spyWebSocket({ rewrite } = {}) {
  const frames = [];
  const incoming = [];
  const urls = [];
  class Spy extends WebSocket {
    constructor(url, ...rest) {
      const u = new URL(url);
      if (rewrite) rewrite(u, urls.length);
      super(u.href, ...rest);
      urls.push(u);
      this.addEventListener("message", (ev) => {
        try {
          incoming.push(JSON.parse(ev.data));
        } catch {
          incoming.push(ev.data);
        }
      });
    }
    send(data, ...rest) {
      try {
        frames.push(JSON.parse(data));
      } catch {
        frames.push(data);
      }
      return super.send(data, ...rest);
    }
  }
  return {
    WebSocket: Spy,
    frames,
    incoming,
    urls,
    of: (type) => frames.filter((f) => f.type === type),
    got: (type) => incoming.filter((f) => f.type === type),
  };
}

/** Polls check until it returns a truthy value, or fails after timeout ms. */
export async function waitFor(what, check, timeout = 5000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Collects the state changes of a bridge. */
export function states(bridge) {
  const list = [];
  bridge.on("state", (s, info) => list.push({ s, ...info }));
  return list;
}

/** Debian's Chromium and the flags the browser tests launch it with. */
export const CHROMIUM = process.env.MQTTBRIDGE_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
