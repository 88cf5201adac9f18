// The console page: sign in (with authentication on), subscribe, publish,
// and watch the current value of every topic (State) and the traffic
// (Messages), on top of client.js. Message data only ever reaches the page
// as text nodes and attributes set through the DOM, never as HTML.

import { MqttBridge, compareIds, topicMatches } from "./client.js";

const MAX_ROWS = 500; // messages kept in the log
const MAX_TOPICS = 2000; // topics kept in the state table

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

const plural = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;

// ---------------------------------------------------------- sign-in ----

// With API keys or JWTs configured the server marks the page
// (<html data-auth="required">): the console asks for a credential first.
// The credential is kept in this tab's sessionStorage only (gone when the
// tab closes or on sign-out); client.js exchanges it for a one-time ticket
// before every connection, so it never appears in a URL.
const authRequired = document.documentElement.dataset.auth === "required";
const STORAGE_KEY = "mqttbridge.credential";

const signinView = $("signin");
const consoleView = $("console");
const signinForm = $("signin-form");
const credInput = $("cred");
const signinError = $("signin-error");
const signinStatus = $("signin-status");
const signoutButton = $("signout");

let credential = "";
let bridge = null;
let signingIn = false; // a credential was just given and has not connected yet

function stored() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return ""; // storage disabled: sign in again after a reload
  }
}

function store(value) {
  try {
    if (value) sessionStorage.setItem(STORAGE_KEY, value);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: the credential lives in this page only
  }
}

// A JWT is three base64url parts; anything else is taken as an API key.
const asCredential = (c) => (/^[\w-]+\.[\w-]+\.[\w-]*$/.test(c) ? { token: c } : { apiKey: c });

function showSignIn({ error = "", status = "" } = {}) {
  consoleView.hidden = true;
  signinView.hidden = false;
  signoutButton.hidden = true;
  sessionBox.hidden = true;
  clearInterval(countdown);
  stateBox.dataset.state = "closed";
  stateText.textContent = "Not signed in";
  show(notice, "");
  show(signinError, error);
  show(signinStatus, status, "pending");
  $("signin-submit").disabled = false;
  credInput.focus();
}

function showConsole() {
  signinView.hidden = true;
  consoleView.hidden = false;
  signoutButton.hidden = !credential;
  show(signinError, "");
  show(signinStatus, "");
}

signinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = credInput.value.trim();
  if (!value) {
    show(signinError, "Paste an API key or a JWT.");
    credInput.focus();
    return;
  }
  show(signinError, "");
  show(signinStatus, "Signing in…", "pending");
  $("signin-submit").disabled = true;
  signIn(value);
});
credInput.addEventListener("input", () => show(signinError, ""));

// signIn connects with a credential; the console shows once the connection
// is open, the sign-in page again with the server's answer if refused.
function signIn(value) {
  credential = value;
  signingIn = true;
  store(value);
  connect();
}

// signOut forgets the credential (this page and sessionStorage) and closes
// the connection: nothing connects again until someone signs in.
function signOut(why = {}) {
  credential = "";
  signingIn = false;
  store("");
  bridge?.close();
  bridge = null;
  globalThis.mqttbridge = undefined;
  resetViews();
  showSignIn(why);
}

signoutButton.addEventListener("click", () => {
  credInput.value = "";
  signOut({ status: "Signed out. The credential was removed from this tab." });
});

// ------------------------------------------------------ connection ----

// connect starts a client for the current credential, closing the last
// one (a new identity gets a session of its own).
function connect() {
  bridge?.close();
  const b = new MqttBridge(new URL("v1/ws", document.baseURI), {
    credentials: () => (credential ? asCredential(credential) : null),
  });
  bridge = b;
  // For debugging from the browser's console.
  globalThis.mqttbridge = b;
  // Events of a client that was replaced (sign-out, a new sign-in) are
  // ignored.
  b.on("state", (...a) => bridge === b && onState(...a));
  b.on("gap", (g) => bridge === b && onGap(g));
  b.on("error", (err) => bridge === b && onError(err));
  b.on("message", (m) => bridge === b && onMessage(m));
  renderSubs();
}

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
    if (signingIn) {
      signingIn = false;
      showConsole();
    }
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
  // A credential the server does not take (wrong, revoked, expired) is
  // forgotten: the person signs in again.
  if (credential && err.status === 401) {
    const what = err.message.replace(/^POST \S+: 401 /, "");
    signOut({ error: `The bridge did not accept this credential (401 ${err.code}: ${what}). Check the API key or JWT, or get a new one.` });
    return;
  }
  if (signingIn) {
    // Not a refusal (the bridge is unreachable, rate limited, …): show
    // the console, which keeps trying.
    signingIn = false;
    showConsole();
  }
  show(notice, `${err.code || "error"}: ${err.message}`, "error");
  if (err.filter) {
    // A subscription refused for good after a reconnect has ended.
    renderSubs();
    dropUnwatched();
  }
}

// ---------------------------------------------------- subscriptions ----

const subForm = $("sub-form");
const subFilter = $("sub-filter");
const subError = $("sub-error");
const subList = $("subscriptions");
const subsEmpty = $("subs-empty");

function renderSubs() {
  const subs = bridge ? bridge.subscriptions : [];
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
        dropUnwatched();
      });
      // The QoS the server delivers with: one per filter, the highest
      // asked for, which may be more than this subscription asked.
      const qos = sub.grantedQos ?? sub.qos;
      const meta = [`QoS ${qos}`];
      if (sub.snapshot) meta.push("snapshot");
      return el(
        "li",
        { "data-testid": "subscription", "data-filter": sub.filter, "data-qos": qos },
        topicCode(sub.filter, "filter"),
        el("span", {
          class: "meta",
          "data-testid": "subscription-meta",
          title: qos !== sub.qos ? `Asked for QoS ${sub.qos}; the filter is delivered with QoS ${qos}` : null,
          text: meta.join(" · "),
        }),
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
  // Subscribing to a filter again replaces its entry in the list.
  const before = bridge.subscriptions.filter((s) => s.filter === filter);
  try {
    await bridge.subscribe(filter, () => {}, {
      qos: $("sub-qos1").checked ? 1 : 0,
      snapshot: $("sub-snapshot").checked,
    });
    for (const old of before) await old.unsubscribe();
    subFilter.value = "";
    $("msg-empty").hidden = true;
  } catch (err) {
    show(subError, `${err.code}: ${err.message}`);
  } finally {
    button.disabled = false;
    renderSubs();
    renderStateCount();
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
    // QoS 0 has no acknowledgement, so no reason code.
    const ack = r.reason_code === undefined ? "sent, no acknowledgement at QoS 0" : `reason ${r.reason_code} (${r.reason})`;
    show(pubResult, `Published to ${r.topic}: QoS ${r.qos}, ${ack}`, "ok");
  } catch (err) {
    const rc = err.reasonCode !== undefined ? ` (reason code ${err.reasonCode})` : "";
    show(pubResult, `Not published: ${err.code}: ${err.message}${rc}`, "error");
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------- views ----

// Tabs: the arrow keys, Home and End move between them (WAI-ARIA tabs).
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab, focus) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab, false));
  tab.addEventListener("keydown", (ev) => {
    const i = tabs.indexOf(tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    selectTab(tabs[(to + tabs.length) % tabs.length], true);
  });
}

function time(msg) {
  const d = msg.received_at ? new Date(msg.received_at) : new Date();
  const t = Number.isNaN(d.getTime()) ? new Date() : d;
  return t.toLocaleTimeString([], { hour12: false }) + "." + String(t.getMilliseconds()).padStart(3, "0");
}

function payloadCell(msg) {
  const text = msg.binary ? null : msg.text();
  const payload = msg.binary
    ? el("span", { class: "binary", text: `binary ${msg.bytes().length} bytes` })
    : el("span", { class: text === "" ? "empty-payload" : "text", text: text === "" ? "(empty)" : text });
  if (text && text.length > 80) payload.title = text.slice(0, 2000);
  return el("td", { class: "c-payload", "data-testid": "payload" }, payload);
}

const tag = (kind, text, title) => el("span", { class: `tag ${kind}`, "data-testid": kind, text, title });

// ---------------------------------------------------------- messages ----

const rows = $("message-rows");
const count = $("msg-count");
const msgBadge = $("msg-badge");
let total = 0;
let queue = [];
let scheduled = false;

function row(msg) {
  const flags = el("td", { class: "c-flags" });
  if (msg.retain) flags.append(tag("retain", "retained"));
  if (msg.snapshot) flags.append(tag("snapshot", "snapshot", "A current value sent on subscribe"));
  return el(
    "tr",
    { "data-testid": "message-row", "data-topic": msg.topic, "data-id": msg.id },
    el("td", { class: "c-time", text: time(msg) }),
    el("td", { class: "c-topic" }, topicCode(msg.topic)),
    payloadCell(msg),
    el("td", { class: "c-qos", "data-testid": "qos", text: String(msg.qos) }),
    flags,
    el("td", { class: "c-id" }, el("code", { text: msg.id })),
  );
}

// insertByID puts a row where its message id belongs, newest first:
// current values (snapshot) and live messages in one order, whenever they
// arrive. New rows are mostly the newest, so the search starts at the top.
function insertByID(tr) {
  let at = rows.firstElementChild;
  while (at && compareIds(at.dataset.id, tr.dataset.id) > 0) at = at.nextElementSibling;
  rows.insertBefore(tr, at);
}

function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  for (const msg of batch) {
    insertByID(row(msg));
    updateState(msg);
  }
  while (rows.childElementCount > MAX_ROWS) rows.lastElementChild.remove();
  renderCounts();
}

function renderCounts() {
  count.textContent = `${plural(total, "message")}${total > MAX_ROWS ? ` (latest ${MAX_ROWS} shown)` : ""}`;
  msgBadge.textContent = String(total);
  const subscribed = bridge?.subscriptions.length > 0;
  $("msg-empty").hidden = rows.childElementCount > 0 || subscribed;
  renderStateCount();
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
  renderCounts();
});

// ------------------------------------------------------------- state ----

// The current value of every topic seen under the subscriptions, one row
// per topic, sorted by topic, updated in place by newer messages.
const stateRows = $("state-rows");
const stateCount = $("state-count");
const current = new Map(); // topic -> {msg, tr}
let topicsDropped = 0;

/** A duration in seconds, rounded down to the unit that reads best. */
function duration(s) {
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

const expiresAt = (msg) => {
  const secs = msg.properties?.message_expiry;
  const at = Date.parse(msg.received_at);
  return secs === undefined || Number.isNaN(at) ? null : at + secs * 1000;
};

// renderAge fills the Updated and Flags cells that change with time.
function renderAge(entry, now) {
  const { msg, tr } = entry;
  const at = Date.parse(msg.received_at);
  tr.cells[2].firstChild.textContent = Number.isNaN(at) ? "" : `${duration(Math.max(0, Math.floor((now - at) / 1000)))} ago`;
  const exp = expiresAt(msg);
  const badge = tr.cells[3].querySelector('[data-testid="expiry"]');
  if (exp !== null && badge) {
    const left = Math.ceil((exp - now) / 1000);
    badge.textContent = left > 0 ? `expires in ${duration(left)}` : "expired";
    badge.classList.toggle("expired", left <= 0);
  }
}

function fillStateRow(entry) {
  const { msg, tr } = entry;
  const flags = el("td", { class: "c-flags" });
  if (msg.retain) flags.append(tag("retain", "retained", "The broker keeps this value for new subscribers"));
  if (expiresAt(msg) !== null) {
    flags.append(tag("expiry", "", `Message expiry ${msg.properties.message_expiry} s after it was received`));
  }
  tr.dataset.id = msg.id;
  tr.replaceChildren(
    el("td", { class: "c-topic" }, topicCode(msg.topic)),
    payloadCell(msg),
    el("td", { class: "c-age", "data-testid": "age" }, el("span", {}), el("span", { class: "when", text: ` · ${time(msg)}` })),
    flags,
  );
  renderAge(entry, Date.now());
}

function updateState(msg) {
  const entry = current.get(msg.topic);
  if (entry) {
    if (compareIds(msg.id, entry.msg.id) <= 0) return; // an older value
    entry.msg = msg;
    fillStateRow(entry);
    // Restart the highlight of a changed value.
    entry.tr.classList.remove("changed");
    void entry.tr.offsetWidth;
    entry.tr.classList.add("changed");
    return;
  }
  if (current.size >= MAX_TOPICS) {
    topicsDropped++;
    return;
  }
  const tr = el("tr", { "data-testid": "state-row", "data-topic": msg.topic });
  const added = { msg, tr };
  fillStateRow(added);
  current.set(msg.topic, added);
  let at = stateRows.firstElementChild;
  while (at && at.dataset.topic < msg.topic) at = at.nextElementSibling;
  stateRows.insertBefore(tr, at);
}

// dropUnwatched removes the topics no subscription matches any more.
function dropUnwatched() {
  const filters = bridge ? bridge.subscriptions.map((s) => s.filter) : [];
  for (const [topic, entry] of current) {
    if (!filters.some((f) => topicMatches(f, topic))) {
      entry.tr.remove();
      current.delete(topic);
    }
  }
  topicsDropped = 0;
  renderStateCount();
}

function renderStateCount() {
  stateCount.textContent = String(current.size);
  const more = topicsDropped ? ` (${MAX_TOPICS} shown, more not kept)` : "";
  stateCount.title = `${plural(current.size, "topic")}${more}`;
  $("state-empty").hidden = current.size > 0;
}

setInterval(() => {
  const now = Date.now();
  for (const entry of current.values()) renderAge(entry, now);
}, 1000);

function resetViews() {
  queue = [];
  rows.replaceChildren();
  total = 0;
  current.clear();
  stateRows.replaceChildren();
  topicsDropped = 0;
  renderSubs();
  renderCounts();
  show(subError, "");
  show($("pub-result"), "");
}

// ------------------------------------------------------------- start ----

if (!authRequired) {
  showConsole();
  connect();
} else if (stored()) {
  // Signed in before in this tab: connect again; a credential the server
  // no longer takes brings the sign-in page back.
  showSignIn({ status: "Signing in…" });
  signIn(stored());
} else {
  showSignIn();
}
