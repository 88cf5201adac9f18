// mqttbridge browser client: the JSON WebSocket protocol of GET /v1/ws
// (docs/websocket.md) as a small ES module without dependencies.
//
//   import { MqttBridge } from "/client.js";
//   const bridge = new MqttBridge();            // ws(s)://<where client.js came from>/v1/ws
//   bridge.on("state", (state, info) => console.log(state, info));
//   const sub = await bridge.subscribe("plant/+/temperature", msg => console.log(msg.topic, msg.text()), {snapshot: true});
//   await bridge.publish("plant/1/setpoint", "22", {qos: 1, retain: true});
//   await sub.unsubscribe();
//   bridge.close();
//
// It reconnects with exponential backoff and jitter and resumes its session
// (?session=…&last_id=…); when the server no longer has the session it
// subscribes again and asks for a replay from the last message id it saw;
// when that fails for the moment (store_unavailable, …) it tries again with
// the same backoff, when it is refused for good (forbidden, …) those
// subscriptions end with an "error" event. QoS 1 deliveries are acknowledged after the callbacks return. Messages are
// deduplicated per topic by id, so a replay never shows one twice.
//
// With authentication on, give it a credential and it gets a one-time
// ticket (POST /v1/tickets) before every connection and reconnection, so
// the API key or JWT never appears in a URL:
//
//   new MqttBridge({ apiKey: "mbk_…" });
//   new MqttBridge({ token: jwt });
//   new MqttBridge({ credentials: async () => ({ token: await freshJwt() }) });

const DEFAULTS = Object.freeze({
  reconnect: Object.freeze({ min: 250, max: 10000 }),
  requestTimeout: 10000,
  pingInterval: 20000,
  autoAck: true,
  catchUpOnGap: true,
  maxFrameSize: 64 * 1024,
});

// Server error codes that refuse a subscription for good: a re-subscription
// after a reconnect that fails with one of them ends its subscriptions.
// Every other code (store_unavailable, broker_unavailable, rate_limited,
// internal, timeout, slow_consumer, and codes this client does not know)
// is taken as transient: the re-subscription is tried again.
const PERMANENT = new Set(["forbidden", "unauthorized", "invalid_topic", "invalid_request", "topic_not_bridged", "payload_too_large"]);

/** An error with a machine-readable code: the server's (invalid_topic,
 * forbidden, broker_unavailable, …) or the client's (timeout,
 * connection_lost, closed, invalid_request, payload_too_large). */
export class MqttBridgeError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = "MqttBridgeError";
    this.code = code;
    for (const [k, v] of Object.entries(details)) {
      if (v !== undefined) this[k] = v;
    }
  }
}

// ---------------------------------------------------------------- ids ----

/** Parses a message id "<milliseconds>-<sequence>" into two numbers, or
 * returns null when it is not one. */
export function parseId(id) {
  if (typeof id !== "string") return null;
  const m = /^(\d{1,16})-(\d{1,16})$/.exec(id);
  if (!m) return null;
  return [Number(m[1]), Number(m[2])];
}

/** Compares two message ids as two numbers each (never as text):
 * negative when a is older, 0 when equal, positive when a is newer. An id
 * that does not parse sorts before every valid one. */
export function compareIds(a, b) {
  const pa = Array.isArray(a) ? a : parseId(a);
  const pb = Array.isArray(b) ? b : parseId(b);
  if (!pa || !pb) return (pa ? 1 : 0) - (pb ? 1 : 0);
  return pa[0] !== pb[0] ? Math.sign(pa[0] - pb[0]) : Math.sign(pa[1] - pb[1]);
}

// ------------------------------------------------------------- topics ----

/** Reports whether an MQTT topic name matches a filter: + is exactly one
 * level (possibly empty), # is the parent level and any number of child
 * levels, levels compare exactly, a first-level wildcard does not match a
 * topic starting with $, and a $share/{group}/ prefix is ignored. */
export function topicMatches(filter, topic) {
  if (typeof filter !== "string" || typeof topic !== "string") return false;
  if (filter.startsWith("$share/")) {
    const i = filter.indexOf("/", 7);
    if (i < 0) return false;
    filter = filter.slice(i + 1);
  }
  const f = filter.split("/");
  const t = topic.split("/");
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return i === f.length - 1;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

// ------------------------------------------------------------ payloads ----

function bytesToBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function base64ToBytes(b64) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8");

// ------------------------------------------------------------ message ----

const ENVELOPE = ["id", "topic", "payload", "payload_base64", "qos", "retain", "properties", "received_at"];

/** A received message: the envelope fields, snapshot, needsAck, and
 * helpers for the payload. */
export class BridgeMessage {
  #ack;
  #acked = false;
  #bytes;

  constructor(frame, ack) {
    for (const k of ENVELOPE) {
      if (frame[k] !== undefined) this[k] = frame[k];
    }
    this.qos = this.qos ?? 0;
    this.retain = !!this.retain;
    /** true for a current value sent because the subscription asked for a snapshot */
    this.snapshot = !!frame.snapshot;
    /** true when the server waits for an acknowledgement (QoS 1 subscription) */
    this.needsAck = !!frame.ack;
    this.#ack = ack;
  }

  /** The payload as bytes (a fresh copy each call). */
  bytes() {
    if (!this.#bytes) {
      this.#bytes = this.payload_base64 !== undefined ? base64ToBytes(this.payload_base64) : encoder.encode(this.payload ?? "");
    }
    return this.#bytes.slice();
  }

  /** The payload as text (binary payloads are decoded as UTF-8 with U+FFFD
   * for invalid bytes). */
  text() {
    return this.payload !== undefined ? this.payload : decoder.decode(this.bytes());
  }

  /** The payload parsed as JSON (throws when it is not JSON). */
  json() {
    return JSON.parse(this.text());
  }

  /** Whether the payload came as payload_base64 (not valid UTF-8). */
  get binary() {
    return this.payload_base64 !== undefined;
  }

  /** Acknowledges a QoS 1 delivery; needed only for subscriptions with
   * autoAck: false. Calling it again, or for a message that needs no
   * acknowledgement, does nothing. */
  ack() {
    if (!this.needsAck || this.#acked) return;
    this.#acked = true;
    this.#ack(this.id);
  }
}

// ------------------------------------------------------- subscription ----

/** One subscribe() call: its filter, options and callback. */
export class Subscription {
  #bridge;
  constructor(bridge, filter, callback, opts) {
    this.#bridge = bridge;
    this.filter = filter;
    this.qos = opts.qos;
    this.snapshot = opts.snapshot;
    this.autoAck = opts.autoAck;
    this.callback = callback;
    /** false once unsubscribed, or when the server refused the subscription */
    this.active = true;
    // While a snapshot is being sent: topic -> newest id delivered here.
    this._seen = null;
  }

  /** The QoS the server delivers this filter's messages with, once it
   * confirmed (null before, and once inactive): the server keeps one QoS
   * per filter, the highest that subscriptions to it asked for, so it may
   * be more than this one's qos. */
  get grantedQos() {
    return this.active ? this.#bridge._grantedQos(this.filter) : null;
  }

  /** Stops the callback at once; resolves when the server has confirmed
   * (at once when another subscription still uses the same filter). */
  unsubscribe() {
    return this.#bridge._unsubscribe(this);
  }
}

// ------------------------------------------------------------- bridge ----

function defaultURL() {
  try {
    const u = new URL("v1/ws", import.meta.url);
    if (u.protocol === "http:" || u.protocol === "https:") return u.href;
  } catch {
    // import.meta.url is not a URL we can use: fall through.
  }
  if (globalThis.location && /^https?:$/.test(globalThis.location.protocol)) {
    return new URL("/v1/ws", globalThis.location.href).href;
  }
  throw new MqttBridgeError("invalid_request", "mqttbridge: no URL given and none can be derived; pass the ws:// URL of /v1/ws");
}

function wsURL(url) {
  const base = globalThis.location && /^https?:$/.test(globalThis.location.protocol) ? globalThis.location.href : undefined;
  const u = new URL(String(url), base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new MqttBridgeError("invalid_request", `mqttbridge: not a WebSocket URL: ${u.href}`);
  }
  return u;
}

// The URL of POST /v1/tickets: given, or beside the WebSocket URL's
// /v1/ws, over http(s).
function ticketURL(ws, given) {
  const u = given ? new URL(String(given), ws) : new URL("tickets", ws);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  if (!given) u.search = "";
  return u;
}

/** The WebSocket client of mqttbridge. */
export class MqttBridge {
  #url;
  #opts;
  #WS;
  #ws = null;
  #state = "closed";
  #closed = false; // close() was called
  #open = false; // welcome received on the current socket
  #listeners = new Map();

  #session = null;
  #cursor = null; // newest message id seen (or the first welcome's last_id), as text
  #cursorParsed = null;
  #topicLast = new Map(); // topic -> parsed id of the newest message delivered
  #filters = new Map(); // filter -> {qos, snapshot, confirmed, subs: Set, retries, retryTimer}
  #subs = new Set();

  #requests = new Map(); // ref -> {frame, kind, resolve, reject, timer, sent}
  #nextRef = 0;
  #acks = new Set();
  #ackTimer = null;
  #heldByUser = new Set(); // ids delivered to autoAck:false subscriptions, not yet acknowledged

  #attempt = 0;
  #reconnectTimer = null;
  #welcomeTimer = null;
  #pingTimer = null;
  #catchUpTimer = null;
  #onOnline = null;
  #connects = 0; // #connect calls: a ticket that arrives after a newer one started is dropped
  #ticketURL = null; // POST /v1/tickets, when a credential is configured

  /**
   * @param {string|URL} [url] ws://, wss://, http(s):// or a path; default:
   *   v1/ws next to where client.js was loaded from (else on location).
   * @param {object} [options] see client.d.ts
   */
  constructor(url, options) {
    if (url !== undefined && url !== null && typeof url === "object" && !(url instanceof URL)) {
      options = url;
      url = undefined;
    }
    const o = options || {};
    this.#opts = {
      ...DEFAULTS,
      ...o,
      reconnect: o.reconnect === false ? false : { ...DEFAULTS.reconnect, ...(o.reconnect || {}) },
    };
    this.#url = wsURL(url ?? defaultURL());
    if (o.apiKey || o.token || o.credentials) {
      if (o.credentials !== undefined && typeof o.credentials !== "function") {
        throw new MqttBridgeError("invalid_request", "mqttbridge: options.credentials must be a function returning {apiKey} or {token}");
      }
      this.#ticketURL = ticketURL(this.#url, o.ticketURL);
    }
    this.#WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this.#WS !== "function") {
      throw new MqttBridgeError("invalid_request", "mqttbridge: no WebSocket implementation; pass options.WebSocket");
    }
    if (o.session) this.#session = String(o.session);
    if (o.lastId && parseId(o.lastId)) this.#setCursor(o.lastId);
    if (typeof globalThis.addEventListener === "function") {
      this.#onOnline = () => {
        if (this.#reconnectTimer) this.#reconnectNow();
      };
      globalThis.addEventListener("online", this.#onOnline);
    }
    // Connect after the caller had a chance to add listeners.
    queueMicrotask(() => this.#connect());
  }

  /** "connecting", "open" (welcome received) or "closed". */
  get state() {
    return this.#state;
  }
  /** The session id from the last welcome (null before). */
  get session() {
    return this.#session;
  }
  /** The id resumption starts after: the newest message id seen. */
  get lastId() {
    return this.#cursor;
  }
  /** The active subscriptions, in the order they were made. */
  get subscriptions() {
    return [...this.#subs];
  }

  /** Adds a listener; returns a function that removes it. Events: "state"
   * (state, info), "welcome" (frame), "message" (msg), "gap" (frame),
   * "error" (error). */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /** Resolves once the connection is open (welcome received); rejects
   * after timeout ms (default: the request timeout) or on close(). */
  whenOpen(timeout = this.#opts.requestTimeout) {
    if (this.#open) return Promise.resolve();
    if (this.#closed) return Promise.reject(new MqttBridgeError("closed", "the client was closed"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new MqttBridgeError("timeout", `not connected within ${timeout} ms`));
      }, timeout);
      const off = this.on("state", (s, info) => {
        if (s === "open" || (s === "closed" && info?.final)) {
          clearTimeout(timer);
          off();
          if (s === "open") resolve();
          else reject(new MqttBridgeError("closed", "the client was closed"));
        }
      });
    });
  }

  /**
   * Subscribes callback to an MQTT filter. Resolves with a Subscription
   * once the server confirmed; rejects with an MqttBridgeError (.code).
   */
  subscribe(filter, callback, options = {}) {
    if (typeof callback !== "function") {
      if (callback && typeof callback === "object") options = callback;
      callback = () => {};
    }
    if (this.#closed) return Promise.reject(new MqttBridgeError("closed", "the client was closed"));
    if (typeof filter !== "string" || filter === "") {
      return Promise.reject(new MqttBridgeError("invalid_topic", "the filter must be a non-empty string"));
    }
    const qos = options.qos ?? 0;
    if (qos !== 0 && qos !== 1) {
      return Promise.reject(new MqttBridgeError("invalid_request", "qos must be 0 or 1"));
    }
    const sub = new Subscription(this, filter, callback, {
      qos,
      snapshot: !!options.snapshot,
      autoAck: options.autoAck ?? this.#opts.autoAck,
    });
    this.#subs.add(sub);
    let entry = this.#filters.get(filter);
    if (!entry) {
      entry = { qos, snapshot: false, confirmed: false, subs: new Set(), retries: 0, retryTimer: null };
      this.#filters.set(filter, entry);
    }
    entry.subs.add(sub);
    entry.snapshot ||= sub.snapshot;
    if (entry.confirmed && qos <= entry.qos && !sub.snapshot) return Promise.resolve(sub);

    const sendQos = Math.max(qos, entry.qos);
    if (sub.snapshot) sub._seen = new Map();
    const frame = { type: "subscribe", filters: [filter], qos: sendQos };
    if (sub.snapshot) frame.snapshot = true;
    return this.#request(frame, "subscribe").then(
      () => {
        sub._seen = null;
        if (this.#filters.get(filter) === entry) {
          entry.confirmed = true;
          entry.qos = Math.max(entry.qos, sendQos);
        }
        return sub;
      },
      (err) => {
        sub._seen = null;
        this.#dropSub(sub, err.code === "timeout");
        throw err;
      },
    );
  }

  /** Internal: Subscription.grantedQos. */
  _grantedQos(filter) {
    const entry = this.#filters.get(filter);
    return entry?.confirmed ? entry.qos : null;
  }

  /** Internal: Subscription.unsubscribe(). */
  _unsubscribe(sub) {
    if (!sub.active) return Promise.resolve();
    const filter = this.#dropSub(sub, false);
    if (!filter || this.#closed) return Promise.resolve();
    return this.#request({ type: "unsubscribe", filters: [filter] }, "unsubscribe").then(() => undefined);
  }

  // Removes sub; returns its filter when no other subscription uses it
  // (the caller then unsubscribes on the server), else null.
  #dropSub(sub, unsubscribeOnServer) {
    sub.active = false;
    this.#subs.delete(sub);
    const entry = this.#filters.get(sub.filter);
    if (!entry || !entry.subs.delete(sub) || entry.subs.size > 0) return null;
    this.#filters.delete(sub.filter);
    if (unsubscribeOnServer && !this.#closed) {
      this.#request({ type: "unsubscribe", filters: [sub.filter] }, "unsubscribe").catch(() => {});
    }
    return sub.filter;
  }

  /**
   * Publishes like POST /v1/publish. payload: a string (payload), bytes
   * (Uint8Array, ArrayBuffer, any typed array, Blob: payload_base64) or any
   * other JSON value (payload_json). Resolves with the result (topic, qos,
   * reason_code, reason) after the broker's acknowledgement for QoS 1/2.
   */
  async publish(topic, payload, options = {}) {
    if (this.#closed) throw new MqttBridgeError("closed", "the client was closed");
    const frame = { type: "publish", topic };
    if (typeof payload === "string") frame.payload = payload;
    else if (payload === undefined || payload === null) frame.payload = "";
    else if (payload instanceof Uint8Array) frame.payload_base64 = bytesToBase64(payload);
    else if (payload instanceof ArrayBuffer) frame.payload_base64 = bytesToBase64(new Uint8Array(payload));
    else if (ArrayBuffer.isView(payload)) {
      frame.payload_base64 = bytesToBase64(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
    } else if (typeof Blob !== "undefined" && payload instanceof Blob) {
      frame.payload_base64 = bytesToBase64(new Uint8Array(await payload.arrayBuffer()));
    } else frame.payload_json = payload;
    if (options.qos !== undefined) frame.qos = options.qos;
    if (options.retain !== undefined) frame.retain = !!options.retain;
    if (options.properties !== undefined) frame.properties = options.properties;
    const max = this.#opts.maxFrameSize;
    if (max > 0) {
      const size = encoder.encode(JSON.stringify({ ...frame, id: "0000000000" })).length;
      if (size > max) {
        throw new MqttBridgeError("payload_too_large", `the publish frame would be ${size} bytes, over the ${max}-byte limit of the connection`);
      }
    }
    const ok = await this.#request(frame, "publish");
    return ok.result;
  }

  /** Closes the connection for good: no reconnect; pending requests reject
   * with code "closed". Acknowledgements still queued are sent first. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#flushAcks();
    this.#clearTimers();
    if (this.#onOnline) globalThis.removeEventListener("online", this.#onOnline);
    const ws = this.#ws;
    this.#ws = null;
    this.#open = false;
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    for (const r of [...this.#requests.values()]) {
      this.#settle(r);
      r.reject(new MqttBridgeError("closed", "the client was closed"));
    }
    for (const sub of this.#subs) sub.active = false;
    this.#subs.clear();
    this.#filters.clear();
    this.#setState("closed", { code: 1000, reason: "client closed", final: true });
  }

  /** Test hook: drops the socket as a network failure would (the client
   * reconnects and resumes). Not part of the API. */
  _dropForTest() {
    this.#drop(4000, "dropped for test");
  }

  // ------------------------------------------------------- connection ----

  #connect() {
    this.#reconnectTimer = null;
    if (this.#closed) return;
    const url = new URL(this.#url.href);
    if (this.#session) url.searchParams.set("session", this.#session);
    if (this.#cursor) url.searchParams.set("last_id", this.#cursor);
    this.#setState("connecting", { attempt: this.#attempt, url: url.href });
    if (!this.#ticketURL) {
      this.#openSocket(url);
      return;
    }
    // A fresh ticket for every connection: each works once, for seconds.
    const n = ++this.#connects;
    this.#fetchTicket().then(
      (ticket) => {
        if (this.#closed || n !== this.#connects) return;
        if (ticket) url.searchParams.set("access_token", ticket);
        this.#openSocket(url);
      },
      (err) => {
        if (this.#closed || n !== this.#connects) return;
        this.#emit("error", err);
        this.#closedSocket(1006, err.message, false, err.retryAfter);
      },
    );
  }

  // Exchanges the credential (options.apiKey, options.token, or what
  // options.credentials returns) for a ticket; null when there is no
  // credential (then the socket opens without one). Rejects with an
  // MqttBridgeError: the server's code (unauthorized, rate_limited with
  // retryAfter ms, …), "timeout", or "connection_lost" (no answer).
  async #fetchTicket() {
    const o = this.#opts;
    const cred = o.credentials ? await o.credentials() : { apiKey: o.apiKey, token: o.token };
    if (!cred || (!cred.apiKey && !cred.token)) return null;
    const headers = cred.token ? { Authorization: `Bearer ${cred.token}` } : { "X-API-Key": String(cred.apiKey) };
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), o.requestTimeout);
    let res, body;
    try {
      res = await fetch(this.#ticketURL, { method: "POST", headers, cache: "no-store", signal: abort.signal });
      body = await res.json().catch(() => ({}));
    } catch (err) {
      throw abort.signal.aborted
        ? new MqttBridgeError("timeout", `POST ${this.#ticketURL.pathname}: no answer within ${o.requestTimeout} ms`)
        : new MqttBridgeError("connection_lost", `POST ${this.#ticketURL.pathname}: ${err?.message || err}`);
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 201 && typeof body?.ticket === "string") return body.ticket;
    const e = body?.error || {};
    const secs = Number(res.headers.get("Retry-After"));
    throw new MqttBridgeError(e.code || "protocol", `POST ${this.#ticketURL.pathname}: ${res.status} ${e.message || res.statusText}`, {
      status: res.status,
      retryAfter: secs > 0 ? secs * 1000 : undefined,
    });
  }

  #openSocket(url) {
    let ws;
    try {
      ws = new this.#WS(url.href);
    } catch (err) {
      this.#closedSocket(1006, String(err?.message || err), false);
      return;
    }
    this.#ws = ws;
    ws.addEventListener("message", (ev) => {
      if (this.#ws === ws) this.#onData(ev.data);
    });
    ws.addEventListener("close", (ev) => {
      if (this.#ws === ws) this.#closedSocket(ev.code, ev.reason, ev.wasClean);
    });
    ws.addEventListener("error", () => {
      // A close event follows; it carries what there is to know.
    });
    this.#welcomeTimer = setTimeout(() => {
      if (this.#ws === ws) this.#drop(4000, "no welcome in time");
    }, this.#opts.requestTimeout);
  }

  // Gives up on the current socket at once, without waiting for a closing
  // handshake that a dead network would never finish.
  #drop(code, reason) {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this.#closedSocket(code, reason, false);
  }

  // minDelay (ms, optional) holds off the next attempt: a Retry-After.
  #closedSocket(code, reason, wasClean, minDelay = 0) {
    this.#ws = null;
    this.#open = false;
    clearTimeout(this.#welcomeTimer);
    clearInterval(this.#pingTimer);
    this.#welcomeTimer = this.#pingTimer = null;
    // Requests on the wire: subscriptions are sent again; a publish has an
    // unknown outcome; pings no longer matter.
    for (const r of [...this.#requests.values()]) {
      if (!r.sent) continue;
      if (r.kind === "publish") {
        this.#settle(r);
        const tooLarge = code === 1009;
        r.reject(
          new MqttBridgeError(
            tooLarge ? "payload_too_large" : "connection_lost",
            tooLarge
              ? "the server closed the connection: a frame exceeded its read limit"
              : `the connection closed (${code}${reason ? " " + reason : ""}) before the answer: the message may or may not have been published`,
          ),
        );
      } else if (r.kind === "ping") {
        this.#settle(r);
        r.resolve(null);
      } else {
        r.sent = false;
      }
    }
    if (this.#closed) return;
    if (this.#opts.reconnect === false) {
      this.#closed = true;
      for (const r of [...this.#requests.values()]) {
        this.#settle(r);
        r.reject(new MqttBridgeError("closed", "the connection closed and reconnect is off"));
      }
      this.#setState("closed", { code, reason, wasClean, final: true });
      return;
    }
    const delay = Math.max(this.#backoff(this.#attempt), minDelay);
    this.#attempt++;
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
    this.#setState("closed", { code, reason, wasClean, reconnectIn: delay, final: false });
  }

  // The delay before retry number attempt (from 0): doubling from the
  // reconnect option's min to its max (the defaults when reconnect is
  // off), the upper half of it at random.
  #backoff(attempt) {
    const { min, max } = this.#opts.reconnect || DEFAULTS.reconnect;
    const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
    return Math.round(base / 2 + (Math.random() * base) / 2);
  }

  #reconnectNow() {
    clearTimeout(this.#reconnectTimer);
    this.#connect();
  }

  #clearTimers() {
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#welcomeTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#ackTimer);
    clearTimeout(this.#catchUpTimer);
    this.#reconnectTimer = this.#welcomeTimer = this.#pingTimer = this.#ackTimer = this.#catchUpTimer = null;
    for (const entry of this.#filters.values()) {
      clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
    }
  }

  // ----------------------------------------------------------- frames ----

  #onData(data) {
    if (typeof data !== "string") {
      this.#report(new MqttBridgeError("protocol", "unexpected binary frame from the server"));
      return;
    }
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      this.#report(new MqttBridgeError("protocol", "a frame from the server is not JSON"));
      return;
    }
    switch (f?.type) {
      case "welcome":
        this.#onWelcome(f);
        break;
      case "message":
        this.#onMessage(f);
        break;
      case "ok":
      case "pong": {
        const r = this.#requests.get(f.ref);
        if (r) {
          this.#settle(r);
          r.resolve(f);
        }
        break;
      }
      case "error": {
        const err = new MqttBridgeError(f.code || "error", f.message, { reasonCode: f.reason_code, ref: f.ref });
        const r = f.ref !== undefined ? this.#requests.get(f.ref) : undefined;
        if (r) {
          this.#settle(r);
          r.reject(err);
        } else this.#report(err);
        break;
      }
      case "gap":
        this.#emit("gap", f);
        if (this.#opts.catchUpOnGap) this.#scheduleCatchUp();
        break;
      default:
      // Unknown frame types are ignored: the server may add some.
    }
  }

  #onWelcome(f) {
    clearTimeout(this.#welcomeTimer);
    this.#welcomeTimer = null;
    const resumed = !!f.resumed;
    this.#session = f.session ?? null;
    // Before any message, the server's newest id is where a later replay
    // must start: nothing after it has been seen.
    if (!this.#cursor && parseId(f.last_id) && f.last_id !== "0-0") this.#setCursor(f.last_id);
    this.#open = true;
    this.#attempt = 0;
    this.#setState("open", { session: this.#session, resumed });
    this.#emit("welcome", f);
    if (!this.#open) return; // a listener closed or dropped it

    if (!resumed) {
      // The server has none of our subscriptions and nothing pending: send
      // the confirmed subscriptions again, replaying from the cursor.
      this.#acks.clear();
      for (const r of [...this.#requests.values()]) {
        if (!r.sent && r.kind === "resubscribe") {
          this.#settle(r);
          r.resolve(null);
        }
      }
      for (const [filter, entry] of this.#filters) {
        if (entry.confirmed) this.#resubscribe(filter, entry, false);
      }
    }
    for (const r of this.#requests.values()) {
      if (!r.sent) this.#transmit(r);
    }
    this.#flushAcks();
    if (this.#opts.pingInterval > 0) {
      this.#pingTimer = setInterval(() => this.#ping(), this.#opts.pingInterval);
    }
  }

  // Subscribes a confirmed filter again (after a lost session, or with a
  // snapshot after a gap). A transient failure (see PERMANENT) is reported
  // and retried after the reconnect backoff, from the cursor of then; a
  // permanent one ends the filter's subscriptions and is reported.
  #resubscribe(filter, entry, snapshot) {
    clearTimeout(entry.retryTimer);
    entry.retryTimer = null;
    const frame = { type: "subscribe", filters: [filter], qos: entry.qos };
    if (snapshot) frame.snapshot = true;
    else if (this.#cursor) frame.last_id = this.#cursor;
    else if (entry.snapshot) frame.snapshot = true;
    this.#request(frame, "resubscribe").then(
      (ok) => {
        if (ok) entry.retries = 0; // null: superseded by a new session
      },
      (err) => {
        if (err.code === "closed" || this.#closed || this.#filters.get(filter) !== entry) return;
        err.filter = filter;
        if (err.code === "connection_lost") {
          this.#report(err);
          return;
        }
        if (!PERMANENT.has(err.code)) {
          // Not refused, only not done now (store or broker unavailable,
          // rate limited, an internal error, no answer in time): again
          // later, unless a new connection subscribes it first.
          const delay = this.#backoff(entry.retries || 0);
          entry.retries = (entry.retries || 0) + 1;
          err.retryIn = delay;
          entry.retryTimer = setTimeout(() => {
            entry.retryTimer = null;
            if (!this.#closed && this.#filters.get(filter) === entry) this.#resubscribe(filter, entry, snapshot);
          }, delay);
          this.#report(err);
          return;
        }
        // Refused for good (permissions changed, no longer bridged): those
        // subscriptions end.
        this.#filters.delete(filter);
        for (const sub of entry.subs) {
          sub.active = false;
          this.#subs.delete(sub);
        }
        this.#report(err);
      },
    );
  }

  #scheduleCatchUp() {
    if (this.#catchUpTimer) return;
    this.#catchUpTimer = setTimeout(() => {
      this.#catchUpTimer = null;
      if (this.#closed) return;
      for (const [filter, entry] of this.#filters) {
        if (entry.confirmed) this.#resubscribe(filter, entry, true);
      }
    }, 50);
  }

  #ping() {
    if (!this.#open) return;
    this.#request({ type: "ping" }, "ping").catch((err) => {
      if (err.code === "timeout") this.#drop(4000, "no pong in time");
    });
  }

  #onMessage(f) {
    const msg = new BridgeMessage(f, (id) => {
      this.#heldByUser.delete(id);
      this.#queueAck(id);
    });
    const id = parseId(msg.id);
    const prev = this.#topicLast.get(msg.topic);
    const newer = !id || !prev || compareIds(id, prev) > 0;
    const targets = [];
    if (newer || msg.snapshot) {
      for (const sub of this.#subs) {
        if (!topicMatches(sub.filter, msg.topic)) continue;
        if (!newer) {
          // An older current value: only for a subscription still receiving
          // its snapshot that has not had this topic yet.
          if (!sub._seen) continue;
          const seen = sub._seen.get(msg.topic);
          if (seen && compareIds(id, seen) <= 0) continue;
        }
        targets.push(sub);
      }
    }
    if (!newer && targets.length === 0) {
      // A duplicate (a replay overlapping what arrived live, or a resent
      // pending message): acknowledge it unless the application holds it.
      if (msg.needsAck && !this.#heldByUser.has(msg.id)) this.#queueAck(msg.id);
      return;
    }
    if (id) {
      if (newer) this.#topicLast.set(msg.topic, id);
      // Snapshot values do not move the resume point: a live message on
      // another topic with an older id may still be on its way.
      if (!msg.snapshot && (!this.#cursorParsed || compareIds(id, this.#cursorParsed) > 0)) this.#setCursor(msg.id);
      for (const sub of targets) sub._seen?.set(msg.topic, id);
    }

    this.#emit("message", msg);
    const manual = targets.some((s) => !s.autoAck);
    if (msg.needsAck && manual) this.#heldByUser.add(msg.id);
    const waits = [];
    for (const sub of targets) {
      try {
        const r = sub.callback(msg);
        if (r && typeof r.then === "function") waits.push(r);
      } catch (err) {
        this.#report(err);
      }
    }
    if (msg.needsAck && !manual) {
      if (waits.length === 0) this.#queueAck(msg.id);
      else {
        Promise.allSettled(waits).then((results) => {
          for (const r of results) if (r.status === "rejected") this.#report(r.reason);
          this.#queueAck(msg.id);
        });
      }
    } else if (waits.length) {
      Promise.allSettled(waits).then((results) => {
        for (const r of results) if (r.status === "rejected") this.#report(r.reason);
      });
    }
  }

  #setCursor(id) {
    this.#cursor = id;
    this.#cursorParsed = parseId(id);
  }

  // -------------------------------------------------------------- acks ----

  #queueAck(id) {
    if (this.#closed) return;
    this.#acks.add(id);
    if (!this.#ackTimer) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = null;
        this.#flushAcks();
      }, 0);
    }
  }

  #flushAcks() {
    if (!this.#open || this.#acks.size === 0) return;
    const ids = [...this.#acks];
    this.#acks.clear();
    for (let i = 0; i < ids.length; i += 500) {
      this.#sendFrame({ type: "ack", ids: ids.slice(i, i + 500) });
    }
  }

  // ---------------------------------------------------------- requests ----

  #request(frame, kind) {
    return new Promise((resolve, reject) => {
      const ref = String(++this.#nextRef);
      const r = { ref, kind, frame: { ...frame, id: ref }, resolve, reject, sent: false, timer: null };
      r.timer = setTimeout(() => {
        this.#settle(r);
        reject(new MqttBridgeError("timeout", `no answer to ${frame.type} within ${this.#opts.requestTimeout} ms`));
      }, this.#opts.requestTimeout);
      this.#requests.set(ref, r);
      if (this.#open) this.#transmit(r);
    });
  }

  #settle(r) {
    clearTimeout(r.timer);
    this.#requests.delete(r.ref);
  }

  #transmit(r) {
    r.sent = this.#sendFrame(r.frame);
  }

  #sendFrame(frame) {
    const ws = this.#ws;
    if (!ws || !this.#open) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false; // closing: the close event resends what must be
    }
  }

  // ------------------------------------------------------------ events ----

  #setState(state, info) {
    this.#state = state;
    this.#emit("state", state, info);
  }

  #emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (event === "error") console.error("mqttbridge: error listener failed:", err);
        else this.#report(err);
      }
    }
  }

  #report(err) {
    if (this.#listeners.get("error")?.size) this.#emit("error", err);
    else console.error("mqttbridge:", err);
  }
}

export default MqttBridge;
