// A small in-process server speaking the /v1/ws protocol of
// docs/websocket.md, for testing client.js where failures must be injected
// that the real server cannot produce on demand (dropped sockets, lost
// sessions, duplicates, silence). The real server is tested in live.test.mjs.

import http from "node:http";
import { WebSocketServer } from "ws";
import { topicMatches, compareIds } from "../client.js";

const FIELDS = {
  subscribe: ["type", "id", "filters", "qos", "snapshot", "last_id"],
  unsubscribe: ["type", "id", "filters"],
  publish: ["type", "id", "topic", "payload", "payload_base64", "payload_json", "qos", "retain", "properties"],
  ack: ["type", "id", "ids"],
  ping: ["type", "id"],
};

function validFilter(f) {
  if (typeof f !== "string" || f === "") return false;
  const levels = f.split("/");
  return levels.every((l, i) => (l.includes("+") || l.includes("#") ? l === "+" || (l === "#" && i === levels.length - 1) : true));
}

/**
 * Starts the fake server on 127.0.0.1 and a free port.
 * @param {{historySize?: number}} [opts]
 */
export async function startFakeServer(opts = {}) {
  const historySize = opts.historySize ?? 1000;
  let lastMs = 0;
  let seq = 0;
  const history = []; // every message, oldest first
  let trimmed = false; // history lost messages
  const lastValues = new Map(); // topic -> message
  let sessions = new Map(); // id -> {subs: Map filter->qos, pending: Map id->msg}
  const conns = new Set();
  const received = []; // every frame a client sent: {conn, frame}
  const connects = []; // the URL of every connection
  let mute = false;
  const refusals = []; // codes the next subscribe frames fail with, in order
  let sessionSeq = 0;

  function nextId() {
    const now = Date.now();
    if (now > lastMs) {
      lastMs = now;
      seq = 0;
    } else seq++;
    return `${lastMs}-${seq}`;
  }

  function newest() {
    return history.length ? history[history.length - 1].id : "0-0";
  }

  function store(msg) {
    history.push(msg);
    if (history.length > historySize) {
      history.shift();
      trimmed = true;
    }
    if (msg.retain && msg.payload === "" && msg.payload_base64 === undefined) lastValues.delete(msg.topic);
    else lastValues.set(msg.topic, msg);
  }

  function frameFor(msg, extra) {
    return JSON.stringify({ type: "message", ...msg, ...extra });
  }

  // deliver sends msg to c when one of its filters matches; needAck when a
  // matching filter has QoS 1 and the message QoS >= 1.
  function deliver(c, msg, filters, extra = {}) {
    let match = false;
    let ack = false;
    for (const [f, q] of filters) {
      if (topicMatches(f, msg.topic)) {
        match = true;
        if (q >= 1 && msg.qos >= 1) ack = true;
      }
    }
    if (!match) return;
    const e = { ...extra };
    if (ack) {
      e.ack = true;
      c.session.pending.set(msg.id, msg);
    }
    c.ws.send(frameFor(msg, e));
  }

  function inject(topic, payload, { qos = 0, retain = false, binary = false } = {}) {
    const msg = { id: nextId(), topic, qos, retain, received_at: new Date().toISOString() };
    if (binary) msg.payload_base64 = Buffer.from(payload).toString("base64");
    else msg.payload = payload;
    store(msg);
    for (const c of conns) deliver(c, msg, c.session.subs);
    return msg;
  }

  // replay sends the history after lastId matching filters; false when
  // the history no longer covers lastId.
  function replay(c, lastId, filters) {
    const covered = !trimmed || (history.length > 0 && compareIds(history[0].id, lastId) <= 0);
    for (const m of history) {
      if (compareIds(m.id, lastId) > 0) deliver(c, m, filters);
    }
    return covered;
  }

  function send(c, obj) {
    c.ws.send(JSON.stringify(obj));
  }

  function handle(c, raw) {
    let f;
    try {
      f = JSON.parse(raw);
    } catch {
      return send(c, { type: "error", code: "invalid_request", message: "malformed JSON" });
    }
    received.push({ conn: c.n, frame: f });
    if (mute) return;
    const ref = f.id;
    const fail = (code, message) => send(c, { type: "error", ...(ref ? { ref } : {}), code, message });
    const ok = (result) => ref && send(c, { type: "ok", ref, ...(result ? { result } : {}) });
    const allowed = FIELDS[f.type];
    if (!allowed) return fail("invalid_request", `unknown frame type ${f.type}`);
    for (const k of Object.keys(f)) if (!allowed.includes(k)) return fail("invalid_request", `unknown field ${k}`);
    if (ref !== undefined && (typeof ref !== "string" || ref === "" || ref.length > 64)) return fail("invalid_request", "bad id");
    switch (f.type) {
      case "subscribe": {
        const code = refusals.shift();
        if (code) return fail(code, `refused for the test (${code})`);
        if (!Array.isArray(f.filters) || f.filters.length === 0 || f.filters.length > 100) return fail("invalid_request", "filters");
        for (const flt of f.filters) if (!validFilter(flt)) return fail("invalid_topic", `invalid filter ${flt}`);
        const qos = f.qos ?? 0;
        if (qos !== 0 && qos !== 1) return fail("invalid_request", "qos");
        const added = new Map(f.filters.map((flt) => [flt, qos]));
        for (const [flt, q] of added) c.session.subs.set(flt, q);
        if (f.last_id) {
          if (!replay(c, f.last_id, added)) {
            send(c, { type: "gap", ...(ref ? { ref } : {}), last_id: f.last_id, message: "history window passed" });
          }
        } else if (f.snapshot) {
          for (const m of lastValues.values()) deliver(c, m, added, { snapshot: true });
        }
        return ok();
      }
      case "unsubscribe":
        for (const flt of f.filters || []) c.session.subs.delete(flt);
        return ok();
      case "publish": {
        if (typeof f.topic !== "string" || f.topic === "" || /[+#]/.test(f.topic)) return fail("invalid_topic", "invalid topic");
        const kinds = ["payload", "payload_base64", "payload_json"].filter((k) => f[k] !== undefined);
        if (kinds.length !== 1) return fail("invalid_request", "exactly one of payload, payload_base64, payload_json");
        const qos = f.qos ?? 1;
        let msg;
        if (f.payload_base64 !== undefined) {
          const buf = Buffer.from(f.payload_base64, "base64");
          const text = buf.toString("utf8");
          msg = Buffer.from(text, "utf8").equals(buf) ? { payload: text } : { payload_base64: f.payload_base64 };
        } else if (f.payload_json !== undefined) msg = { payload: JSON.stringify(f.payload_json) };
        else msg = { payload: f.payload };
        const m = inject(f.topic, msg.payload ?? Buffer.from(msg.payload_base64, "base64"), {
          qos,
          retain: !!f.retain,
          binary: msg.payload === undefined,
        });
        if (f.properties) m.properties = f.properties;
        return ok({ topic: f.topic, qos, reason_code: 0, reason: "success" });
      }
      case "ack":
        for (const id of f.ids || []) c.session.pending.delete(id);
        return ok();
      case "ping":
        return send(c, { type: "pong", ...(ref ? { ref } : {}) });
    }
  }

  const server = http.createServer((req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server, path: "/v1/ws" });
  let connSeq = 0;
  wss.on("connection", (ws, req) => {
    const u = new URL(req.url, "http://x");
    connects.push(u);
    const want = u.searchParams.get("session");
    const lastId = u.searchParams.get("last_id");
    let session = want ? sessions.get(want) : undefined;
    const resumed = !!session;
    if (!session) {
      session = { id: `s_${++sessionSeq}`, subs: new Map(), pending: new Map() };
      sessions.set(session.id, session);
    }
    const c = { n: ++connSeq, ws, session };
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      handle(c, data.toString());
    });
    ws.on("close", () => conns.delete(c));
    send(c, { type: "welcome", session: session.id, resumed, last_id: newest() });
    if (resumed) {
      for (const m of session.pending.values()) {
        if (lastId && compareIds(m.id, lastId) > 0) continue;
        c.ws.send(frameFor(m, { ack: true }));
      }
      if (lastId && !replay(c, lastId, session.subs)) {
        send(c, { type: "gap", last_id: lastId, message: "history window passed" });
      }
    }
    const urlFilters = u.searchParams.getAll("filter");
    if (urlFilters.length) {
      const q = Number(u.searchParams.get("qos") || 0);
      const added = new Map(urlFilters.map((f) => [f, q]));
      for (const [f, qq] of added) session.subs.set(f, qq);
      if (lastId) replay(c, lastId, added);
      else if (u.searchParams.get("snapshot") === "true") {
        for (const m of lastValues.values()) deliver(c, m, added, { snapshot: true });
      }
    }
    conns.add(c);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;

  return {
    url: `ws://127.0.0.1:${port}/v1/ws`,
    port,
    inject,
    history,
    received,
    connects,
    /** Frames clients sent of one type. */
    sent(type) {
      return received.filter((r) => r.frame.type === type).map((r) => r.frame);
    },
    /** How many connections are open. */
    get connections() {
      return conns.size;
    },
    /** Stop answering requests (they time out). */
    set mute(v) {
      mute = v;
    },
    /** Fail the next subscribe frames, one per code, with these error
     * codes (as the real server does when its store or broker is down, or
     * when permissions changed); a null lets that frame through. */
    refuseSubscribes(...codes) {
      refusals.push(...codes);
    },
    /** Resend a message (as a buggy replay would). */
    resend(msg) {
      for (const c of conns) deliver(c, msg, c.session.subs);
    },
    /** Cut every connection without a close frame (sessions stay). */
    dropAll() {
      for (const c of conns) c.ws.terminate();
    },
    /** Close every connection with a code (sessions stay). */
    closeAll(code = 1012, reason = "server shutting down") {
      for (const c of conns) c.ws.close(code, reason);
    },
    /** Forget every session, as a restart with the in-memory store does
     * (the history stays unless dropHistory). */
    restart({ dropHistory = false } = {}) {
      sessions = new Map();
      if (dropHistory) {
        history.length = 0;
        trimmed = true;
      }
      for (const c of conns) c.ws.close(1012, "server shutting down");
    },
    pending(sessionId) {
      return [...(sessions.get(sessionId)?.pending.keys() || [])];
    },
    async close() {
      for (const c of conns) c.ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
