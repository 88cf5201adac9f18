// The console page: subscribe, publish, watch messages and alarms (and
// acknowledge them), on top of client.js.
// Message data only ever reaches the page as text nodes and attributes set
// through the DOM, never as HTML.

import { MqttBridge, topicMatches } from "./client.js";

const MAX_ROWS = 500;

const $ = (id) => document.getElementById(id);

/** el creates an element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) e.append(c);
  return e;
}

/** A topic as code that may wrap only after a "/". */
function topicCode(topic, cls) {
  const code = el("code", { class: cls });
  topic.split("/").forEach((level, i) => {
    if (i > 0) code.append("/", el("wbr"));
    code.append(level);
  });
  return code;
}

function show(node, text, kind) {
  node.textContent = text;
  node.hidden = !text;
  if (kind !== undefined) node.dataset.kind = kind;
}

const bridge = new MqttBridge(new URL("v1/ws", document.baseURI));
// For debugging from the browser's console.
globalThis.mqttbridge = bridge;

// ------------------------------------------------------------ state ----

const stateBox = $("state");
const stateText = $("state-text");
const sessionBox = $("session");
let countdown = null;

bridge.on("state", (state, info = {}) => {
  clearInterval(countdown);
  stateBox.dataset.state = state;
  if (state === "connecting") {
    stateText.textContent = info.attempt ? `Reconnecting… (attempt ${info.attempt + 1})` : "Connecting…";
  } else if (state === "open") {
    stateText.textContent = info.resumed ? "Connected (session resumed)" : "Connected";
    sessionBox.textContent = `session ${info.session}`;
    sessionBox.hidden = false;
  } else {
    const why = [info.code, info.reason].filter((x) => x !== undefined && x !== "").join(" ");
    if (info.final) {
      stateText.textContent = `Disconnected${why ? ` (${why})` : ""}`;
    } else {
      const until = Date.now() + (info.reconnectIn || 0);
      const tick = () => {
        const s = Math.max(0, (until - Date.now()) / 1000).toFixed(1);
        stateText.textContent = `Disconnected${why ? ` (${why})` : ""}, retrying in ${s} s`;
      };
      tick();
      countdown = setInterval(tick, 100);
    }
  }
});

const notice = $("notice");
bridge.on("gap", (g) => {
  show(notice, `Some messages may have been missed while disconnected (history no longer reaches ${g.last_id}); current values were re-read.`, "gap");
});
bridge.on("error", (err) => {
  show(notice, `${err.code || "error"}: ${err.message}`, "error");
});

// ---------------------------------------------------- subscriptions ----

const subForm = $("sub-form");
const subFilter = $("sub-filter");
const subError = $("sub-error");
const subList = $("subscriptions");
const subsEmpty = $("subs-empty");

/** The subscriptions the user made (not the Alarms view's). */
function userSubs() {
  return bridge.subscriptions.filter((sub) => sub !== alarmSub);
}

function renderSubs() {
  const subs = userSubs();
  subsEmpty.hidden = subs.length > 0;
  subList.replaceChildren(
    ...subs.map((sub) => {
      const btn = el("button", {
        type: "button",
        class: "secondary small",
        "data-testid": "unsubscribe",
        "aria-label": `Unsubscribe from ${sub.filter}`,
        text: "Unsubscribe",
      });
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          await sub.unsubscribe();
        } catch (err) {
          show(subError, `${err.code}: ${err.message}`);
        }
        renderSubs();
      });
      const meta = [`QoS ${sub.qos}`];
      if (sub.snapshot) meta.push("snapshot");
      return el(
        "li",
        { "data-testid": "subscription", "data-filter": sub.filter },
        topicCode(sub.filter, "filter"),
        el("span", { class: "meta", text: meta.join(" · ") }),
        btn,
      );
    }),
  );
}

subFilter.addEventListener("input", () => show(subError, ""));
$("pub-topic").addEventListener("input", () => show($("pub-result"), ""));

subForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const filter = subFilter.value.trim();
  show(subError, "");
  if (!filter) {
    show(subError, "Enter a topic filter.");
    subFilter.focus();
    return;
  }
  const button = $("sub-submit");
  button.disabled = true;
  try {
    await bridge.subscribe(filter, () => {}, {
      qos: $("sub-qos1").checked ? 1 : 0,
      snapshot: $("sub-snapshot").checked,
    });
    subFilter.value = "";
    $("msg-empty").hidden = true;
  } catch (err) {
    show(subError, `${err.code}: ${err.message}`);
  } finally {
    button.disabled = false;
    renderSubs();
  }
});

// ----------------------------------------------------------- publish ----

const pubForm = $("pub-form");
const pubResult = $("pub-result");

pubForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const topic = $("pub-topic").value.trim();
  if (!topic) {
    show(pubResult, "Enter a topic.", "error");
    $("pub-topic").focus();
    return;
  }
  const button = $("pub-submit");
  button.disabled = true;
  show(pubResult, "Publishing…", "pending");
  try {
    const r = await bridge.publish(topic, $("pub-payload").value, {
      qos: Number($("pub-qos").value),
      retain: $("pub-retain").checked,
    });
    show(pubResult, `Published to ${r.topic}: QoS ${r.qos}, reason ${r.reason_code} (${r.reason})`, "ok");
  } catch (err) {
    const rc = err.reasonCode !== undefined ? ` (reason code ${err.reasonCode})` : "";
    show(pubResult, `Not published: ${err.code}: ${err.message}${rc}`, "error");
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------- messages ----

const rows = $("message-rows");
const count = $("msg-count");
let total = 0;
let queue = [];
let scheduled = false;

function time(msg) {
  const d = msg.received_at ? new Date(msg.received_at) : new Date();
  const t = Number.isNaN(d.getTime()) ? new Date() : d;
  return t.toLocaleTimeString([], { hour12: false }) + "." + String(t.getMilliseconds()).padStart(3, "0");
}

function row(msg) {
  const text = msg.binary ? null : msg.text();
  const payload = msg.binary
    ? el("span", { class: "binary", text: `binary ${msg.bytes().length} bytes` })
    : el("span", { class: text === "" ? "empty-payload" : "text", text: text === "" ? "(empty)" : text });
  if (text && text.length > 80) payload.title = text.slice(0, 2000);
  const flags = el("td", { class: "c-flags" });
  if (msg.retain) flags.append(el("span", { class: "tag retain", "data-testid": "retain", text: "retain" }));
  if (msg.snapshot) flags.append(el("span", { class: "tag snapshot", "data-testid": "snapshot", text: "snapshot" }));
  return el(
    "tr",
    { "data-testid": "message-row", "data-topic": msg.topic, "data-id": msg.id },
    el("td", { class: "c-time", text: time(msg) }),
    el("td", { class: "c-topic" }, topicCode(msg.topic)),
    el("td", { class: "c-payload", "data-testid": "payload" }, payload),
    el("td", { class: "c-qos", text: String(msg.qos) }),
    flags,
    el("td", { class: "c-id" }, el("code", { text: msg.id })),
  );
}

function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  const frag = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) frag.append(row(batch[i]));
  rows.prepend(frag);
  while (rows.childElementCount > MAX_ROWS) rows.lastElementChild.remove();
  count.textContent = `${total} message${total === 1 ? "" : "s"}${total > MAX_ROWS ? ` (latest ${MAX_ROWS} shown)` : ""}`;
  $("msg-empty").hidden = rows.childElementCount > 0 || userSubs().length > 0;
}

bridge.on("message", (msg) => {
  // Only the user's subscriptions fill the table, not the Alarms view's.
  if (!userSubs().some((sub) => topicMatches(sub.filter, msg.topic))) return;
  total++;
  queue.push(msg);
  if (queue.length > MAX_ROWS) queue.splice(0, queue.length - MAX_ROWS);
  if (!scheduled) {
    scheduled = true;
    // Batched per frame; a hidden tab (no frames) still gets them soon.
    requestAnimationFrame(flush);
    setTimeout(() => scheduled && flush(), 250);
  }
});

$("msg-clear").addEventListener("click", () => {
  rows.replaceChildren();
  total = 0;
  count.textContent = "0 messages";
});

// ------------------------------------------------------------ alarms ----

// The open alarms of the watched filter: loaded with GET /v1/alarms at
// every (re)connect, then kept up to date by the alarm frames of a
// subscription to the filter. Of two copies of an alarm the higher rev
// wins, so a late answer never undoes a newer frame.

const alarmRows = $("alarm-rows");
const alarmCount = $("alarm-count");
const alarmNotice = $("alarm-notice");
const alarmFilter = $("alarm-filter");
/** id → { alarm, tr, comment (input) } */
const alarms = new Map();
let alarmSub = null;
let watched = "";
let loads = 0; // numbers the loads: only the newest one applies

const isOpen = (a) => a.active || !a.acknowledged;

function age(iso) {
  const s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString([], { hour12: false });
}

function value(msg) {
  if (msg.payload !== undefined) return el("span", { class: msg.payload === "" ? "empty-payload" : "text", text: msg.payload === "" ? "(empty)" : msg.payload });
  return el("span", { class: "binary", text: "binary" });
}

let noticeTimer = null;

/** Shows a notice of the Alarms view; a success fades after a while. */
function alarmSay(text, kind) {
  clearTimeout(noticeTimer);
  show(alarmNotice, text, kind);
  if (text && (kind === "ok" || kind === "info")) noticeTimer = setTimeout(() => show(alarmNotice, ""), 8000);
}

async function acknowledge(entry, button) {
  const a = entry.alarm;
  button.disabled = true;
  alarmSay("");
  const comment = entry.comment.value.trim();
  try {
    const r = await fetch(new URL(`v1/alarms/${encodeURIComponent(a.id)}/ack`, document.baseURI), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(comment ? { comment } : {}),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      upsertAlarm(body);
      alarmSay(`Acknowledged ${a.topic}.`, "ok");
    } else if (r.status === 409 && body.alarm) {
      upsertAlarm(body.alarm);
      alarmSay(`${a.topic}: already acknowledged by ${body.alarm.acked_by} at ${clock(body.alarm.acked_at)}.`, "info");
    } else {
      alarmSay(`Not acknowledged: ${body.error?.code || r.status}: ${body.error?.message || r.statusText}`, "error");
    }
  } catch (err) {
    alarmSay(`Not acknowledged: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

/** renderAlarm fills the row of entry from its alarm; the comment input is
 * kept, so that what a person is typing survives live updates. */
function renderAlarm(entry) {
  const a = entry.alarm;
  const unacked = !a.acknowledged;
  const tr = entry.tr;
  tr.className = `alarm ${unacked ? "unacked" : "acked"}`;
  tr.dataset.state = unacked ? "unacknowledged" : "acknowledged";
  tr.dataset.active = String(a.active);
  const state = el("td", { class: "c-state", "data-testid": "alarm-state" },
    el("span", { class: `tag ${unacked ? "unacked" : "acked"}`, text: unacked ? "Unacknowledged" : "Acknowledged" }),
    el("span", { class: `tag ${a.active ? "active" : "cleared"}`, text: a.active ? "active" : "cleared" }));
  const acked = el("td", { class: "c-acked", "data-testid": "alarm-acked" });
  if (a.acknowledged) {
    acked.append(`${a.acked_by} at ${clock(a.acked_at)}`);
    if (a.comment) acked.append(el("br"), el("q", { text: a.comment }));
  } else acked.append("—");
  const action = el("td", { class: "c-ack" });
  if (unacked) {
    const button = el("button", { type: "button", class: "small", "data-testid": "alarm-ack", text: "Acknowledge", "aria-label": `Acknowledge the alarm of ${a.topic}` });
    button.addEventListener("click", () => acknowledge(entry, button));
    action.append(entry.comment, button);
  }
  const raised = el("td", { class: "c-age", "data-testid": "alarm-age", "data-raised": a.raised_at, title: `raised ${clock(a.raised_at)}`, text: age(a.raised_at) });
  tr.replaceChildren(
    state,
    el("td", { class: "c-topic" }, topicCode(a.topic)),
    el("td", { class: "c-value", "data-testid": "alarm-value" }, value(a.message)),
    raised,
    el("td", { class: "c-count", "data-testid": "alarm-count-cell", text: String(a.count) }),
    acked,
    action,
  );
}

/** Puts the rows in order: unacknowledged first, then newest first. */
function orderAlarms() {
  const sorted = [...alarms.values()].sort((x, y) =>
    (x.alarm.acknowledged - y.alarm.acknowledged) || y.alarm.raised_at.localeCompare(x.alarm.raised_at) || y.alarm.id.localeCompare(x.alarm.id));
  const current = [...alarmRows.children];
  if (sorted.length !== current.length || sorted.some((e, i) => e.tr !== current[i])) {
    alarmRows.replaceChildren(...sorted.map((e) => e.tr));
  }
  const unacked = sorted.filter((e) => !e.alarm.acknowledged).length;
  alarmCount.textContent = sorted.length === 0 ? "No open alarms" : `${sorted.length} open, ${unacked} unacknowledged`;
  alarmCount.dataset.unacknowledged = String(unacked);
  $("alarm-empty").hidden = sorted.length > 0;
}

function upsertAlarm(a, order = true) {
  if (!a || typeof a.id !== "string" || !topicMatches(watched, a.topic)) return;
  const entry = alarms.get(a.id);
  if (entry && entry.alarm.rev > a.rev) return; // older than what is shown
  if (!isOpen(a)) {
    if (entry) {
      alarms.delete(a.id);
      entry.tr.remove();
    }
  } else if (entry) {
    entry.alarm = a;
    renderAlarm(entry);
  } else {
    const tr = el("tr", { "data-testid": "alarm-row", "data-id": a.id, "data-topic": a.topic });
    const comment = el("input", { type: "text", "data-testid": "alarm-comment", placeholder: "comment", maxlength: 1024, "aria-label": `Comment for the alarm of ${a.topic}` });
    const e = { alarm: a, tr, comment };
    alarms.set(a.id, e);
    renderAlarm(e);
  }
  if (order) orderAlarms();
}

/** Loads the open alarms of the watched filter (every page) and drops the
 * rows of alarms that closed meanwhile. */
async function loadAlarms() {
  const n = ++loads;
  const filter = watched;
  const found = [];
  let cursor = "";
  try {
    for (let page = 0; page < 20; page++) {
      const u = new URL("v1/alarms", document.baseURI);
      if (filter !== "#") u.searchParams.set("filter", filter);
      u.searchParams.set("limit", "1000");
      if (cursor) u.searchParams.set("cursor", cursor);
      const r = await fetch(u);
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(`${body.error?.code || r.status}: ${body.error?.message || r.statusText}`);
      found.push(...body.alarms);
      if (!body.next_cursor) break;
      cursor = body.next_cursor;
    }
  } catch (err) {
    if (n === loads) alarmSay(`Alarms not loaded: ${err.message}`, "error");
    return;
  }
  if (n !== loads) return;
  const ids = new Set(found.map((a) => a.id));
  for (const [id, e] of alarms) {
    if (!ids.has(id)) {
      alarms.delete(id);
      e.tr.remove();
    }
  }
  for (const a of found) upsertAlarm(a, false);
  orderAlarms();
}

async function watchAlarms(filter) {
  alarmSay("");
  const old = alarmSub;
  alarmSub = null;
  watched = filter;
  for (const e of alarms.values()) e.tr.remove();
  alarms.clear();
  orderAlarms();
  try {
    alarmSub = await bridge.subscribe(filter, () => {}, { qos: 0 });
  } catch (err) {
    alarmSay(`Alarms not watched: ${err.code}: ${err.message}`, "error");
  }
  if (old && old !== alarmSub) await old.unsubscribe().catch(() => {});
  renderSubs();
  await loadAlarms();
}

bridge.on("alarm", (a) => upsertAlarm(a));
bridge.on("state", (state) => {
  if (state === "open" && watched) loadAlarms();
});
$("alarm-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const filter = alarmFilter.value.trim();
  if (!filter) {
    alarmSay("Enter a topic filter.", "error");
    alarmFilter.focus();
    return;
  }
  watchAlarms(filter);
});
setInterval(() => {
  for (const e of alarms.values()) {
    const cell = e.tr.querySelector(".c-age");
    if (cell) cell.textContent = age(e.alarm.raised_at);
  }
}, 1000);

renderSubs();
watchAlarms(alarmFilter.value.trim() || "#");
