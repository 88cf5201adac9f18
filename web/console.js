// The console page: subscribe, publish and watch, on top of client.js.
// Message data only ever reaches the page as text nodes and attributes set
// through the DOM, never as HTML.

import { MqttBridge } from "./client.js";

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

// ------------------------------------------------------ connection ----

// The credential (API key or JWT) from the form, kept in this page only:
// client.js exchanges it for a one-time ticket before every connection.
let credential = "";
let bridge;

// connect starts a client for the current credential, closing the last
// one (a new identity gets a session of its own).
function connect() {
  bridge?.close();
  bridge = new MqttBridge(new URL("v1/ws", document.baseURI), {
    credentials: () => (credential ? { token: credential } : null),
  });
  // For debugging from the browser's console.
  globalThis.mqttbridge = bridge;
  bridge.on("state", onState);
  bridge.on("gap", onGap);
  bridge.on("error", onError);
  bridge.on("message", onMessage);
  renderSubs();
}

$("cred-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  credential = $("cred").value.trim();
  show(notice, "");
  connect();
});

// ------------------------------------------------------------ state ----

const stateBox = $("state");
const stateText = $("state-text");
const sessionBox = $("session");
let countdown = null;

function onState(state, info = {}) {
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
}

const notice = $("notice");
function onGap(g) {
  show(notice, `Some messages may have been missed while disconnected (history no longer reaches ${g.last_id}); current values were re-read.`, "gap");
}
function onError(err) {
  show(notice, `${err.code || "error"}: ${err.message}`, "error");
}

// ---------------------------------------------------- subscriptions ----

const subForm = $("sub-form");
const subFilter = $("sub-filter");
const subError = $("sub-error");
const subList = $("subscriptions");
const subsEmpty = $("subs-empty");

function renderSubs() {
  const subs = bridge.subscriptions;
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
  $("msg-empty").hidden = rows.childElementCount > 0 || bridge.subscriptions.length > 0;
}

function onMessage(msg) {
  total++;
  queue.push(msg);
  if (queue.length > MAX_ROWS) queue.splice(0, queue.length - MAX_ROWS);
  if (!scheduled) {
    scheduled = true;
    // Batched per frame; a hidden tab (no frames) still gets them soon.
    requestAnimationFrame(flush);
    setTimeout(() => scheduled && flush(), 250);
  }
}

$("msg-clear").addEventListener("click", () => {
  rows.replaceChildren();
  total = 0;
  count.textContent = "0 messages";
});

connect();
