// Type declarations for client.js, the mqttbridge WebSocket client
// (protocol: docs/websocket.md).

/** MQTT v5 properties, as in the message envelope and POST /v1/publish. */
export interface MessageProperties {
  content_type?: string;
  payload_format?: 0 | 1;
  /** seconds left (received) or seconds to live (publish) */
  message_expiry?: number;
  response_topic?: string;
  correlation_data?: string;
  correlation_data_base64?: string;
  user_properties?: Array<{ key: string; value: string }>;
}

/** The answer to a publish, as the REST publish gives it. */
export interface PublishResult {
  topic: string;
  qos: 0 | 1 | 2;
  reason_code: number;
  reason: string;
}

/** An error with a machine-readable code: the server's (invalid_topic,
 * invalid_request, topic_not_bridged, forbidden, broker_unavailable,
 * timeout, payload_too_large, …) or the client's ("timeout": no answer
 * within the request timeout; "connection_lost": the connection closed
 * while a publish waited for its answer, so its outcome is unknown;
 * "closed": close() was called; "protocol": the server sent something
 * unreadable). */
export class MqttBridgeError extends Error {
  constructor(code: string, message?: string, details?: Record<string, unknown>);
  readonly code: string;
  /** the broker's MQTT reason code when it refused a publish */
  readonly reasonCode?: number;
  /** the request id the server answered */
  readonly ref?: string;
  /** for a failed re-subscription after a reconnect (or after a gap): its
   * filter. Refused for good (forbidden, unauthorized, invalid_topic,
   * invalid_request, topic_not_bridged, payload_too_large): the filter's
   * subscriptions have ended (active false). Any other code
   * (store_unavailable, broker_unavailable, rate_limited, internal,
   * timeout, …) is temporary: the subscriptions stay and the subscribe is
   * tried again after retryIn ms. */
  filter?: string;
  /** for a temporary failure of a re-subscription: ms until it is tried
   * again (the reconnect backoff: reconnect.min doubling to reconnect.max,
   * with jitter); absent when the subscriptions ended */
  retryIn?: number;
  /** for a failed POST /v1/tickets: its HTTP status */
  status?: number;
  /** for a failed POST /v1/tickets with Retry-After (a 429 or 503): ms the
   * client waits at least before it tries again */
  retryAfter?: number;
}

/** A received message. */
export class BridgeMessage {
  /** "<milliseconds>-<sequence>"; compare with compareIds, never as text */
  readonly id: string;
  readonly topic: string;
  /** the payload, when it is valid UTF-8 */
  readonly payload?: string;
  /** the payload in base64, when it is not valid UTF-8 */
  readonly payload_base64?: string;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly properties?: MessageProperties;
  /** RFC 3339 time the bridge received it */
  readonly received_at?: string;
  /** a current value sent because the subscription asked for a snapshot */
  readonly snapshot: boolean;
  /** the server waits for an acknowledgement (QoS 1 subscription) */
  readonly needsAck: boolean;
  /** whether the payload came as payload_base64 */
  readonly binary: boolean;
  /** the payload bytes (a fresh copy each call) */
  bytes(): Uint8Array;
  /** the payload as text (binary payloads decoded as UTF-8, lossy) */
  text(): string;
  /** the payload parsed as JSON; throws when it is not JSON */
  json<T = unknown>(): T;
  /** acknowledges a QoS 1 delivery (only needed with autoAck: false);
   * idempotent */
  ack(): void;
}

/** A callback may return a promise: with autoAck the acknowledgement is
 * sent once it settles. */
export type MessageCallback = (msg: BridgeMessage) => void | Promise<unknown>;

export interface SubscribeOptions {
  /** 0 (default) or 1: with 1, messages of QoS >= 1 need an acknowledgement */
  qos?: 0 | 1;
  /** first send the current value of every matching topic (default false) */
  snapshot?: boolean;
  /** acknowledge QoS 1 deliveries when the callback returns (default: the
   * client's autoAck, true). With false, call msg.ack(). */
  autoAck?: boolean;
}

/** One subscribe() call. */
export class Subscription {
  readonly filter: string;
  /** the QoS this subscription asked for */
  readonly qos: 0 | 1;
  /** the QoS the server delivers the filter with once confirmed (null
   * before, and once inactive): one per filter, the highest asked for */
  readonly grantedQos: 0 | 1 | null;
  readonly snapshot: boolean;
  readonly autoAck: boolean;
  readonly callback: MessageCallback;
  /** false once unsubscribed, or when the server refused it for good after
   * a reconnect (an "error" event with .filter says why); a temporary
   * failure (store_unavailable, …) keeps it active and is retried */
  readonly active: boolean;
  /** stops the callback at once; resolves when the server confirmed (at
   * once when another subscription still uses the same filter) */
  unsubscribe(): Promise<void>;
}

export interface PublishOptions {
  /** 0, 1 or 2 (server default 1) */
  qos?: 0 | 1 | 2;
  retain?: boolean;
  properties?: MessageProperties;
}

/** A credential to exchange for tickets: an API key (sent as X-API-Key) or
 * a bearer token (a JWT, or an API key; sent as Authorization: Bearer). */
export type Credential = { apiKey: string; token?: undefined } | { token: string; apiKey?: undefined };

export interface MqttBridgeOptions {
  /** an API key: before every connection and reconnection the client
   * exchanges it for a one-time ticket (POST /v1/tickets) and connects
   * with ?access_token=<ticket>, so the key never appears in a URL */
  apiKey?: string;
  /** a JWT (or an API key) for Authorization: Bearer, exchanged for a
   * ticket like apiKey */
  token?: string;
  /** called before every connection and reconnection for the credential
   * to exchange for a ticket (e.g. a JWT refreshed when it nears expiry);
   * null or undefined: connect without one. A failure to get a ticket
   * (the server's unauthorized, rate_limited, store_unavailable, …, or
   * "connection_lost", "timeout") is an "error" event, and the client
   * tries again with the reconnect backoff, never before a Retry-After. */
  credentials?: () => Credential | null | undefined | Promise<Credential | null | undefined>;
  /** where to POST for tickets; default: tickets beside the WebSocket
   * URL's /v1/ws, over http(s) */
  ticketURL?: string | URL;
  /** reconnect delays in ms (doubling from min to max, with jitter); false:
   * never reconnect. Default {min: 250, max: 10000}. */
  reconnect?: { min?: number; max?: number } | false;
  /** ms to wait for an answer (and for the welcome); default 10000 */
  requestTimeout?: number;
  /** ms between pings (no pong within requestTimeout: reconnect); 0 turns
   * pings off; default 20000 */
  pingInterval?: number;
  /** default for SubscribeOptions.autoAck; default true */
  autoAck?: boolean;
  /** after a gap, re-subscribe every filter with a snapshot so current
   * values catch up; default true */
  catchUpOnGap?: boolean;
  /** refuse, without sending, a publish whose frame is larger than this
   * many bytes (the server closes the connection for it); 0: no check;
   * default 65536 (the server's ws.read_limit default) */
  maxFrameSize?: number;
  /** a session id to resume (from a previous client's .session) */
  session?: string;
  /** the last message id processed, to resume after (from .lastId) */
  lastId?: string;
  /** the WebSocket class; default globalThis.WebSocket */
  WebSocket?: new (url: string) => WebSocket;
}

export type ConnectionState = "connecting" | "open" | "closed";

export interface StateInfo {
  /** "connecting": how many attempts failed before this one */
  attempt?: number;
  /** "connecting": the URL, with session and last_id */
  url?: string;
  /** "open": the session and whether the server resumed it */
  session?: string | null;
  resumed?: boolean;
  /** "closed": the close code and reason */
  code?: number;
  reason?: string;
  wasClean?: boolean;
  /** "closed": ms until the next attempt (absent when final) */
  reconnectIn?: number;
  /** "closed": true when the client will not reconnect (close() was called) */
  final?: boolean;
}

export interface WelcomeFrame {
  type: "welcome";
  session: string;
  resumed: boolean;
  last_id: string;
}

export interface GapFrame {
  type: "gap";
  /** the request that asked for the replay, when a subscribe did */
  ref?: string;
  /** the id the replay was asked from */
  last_id: string;
  message: string;
}

export interface MqttBridgeEvents {
  state: (state: ConnectionState, info: StateInfo) => void;
  welcome: (frame: WelcomeFrame) => void;
  /** every message delivered (once, even when several subscriptions match) */
  message: (msg: BridgeMessage) => void;
  /** the history no longer covers the resume point: messages may be lost */
  gap: (frame: GapFrame) => void;
  /** errors that belong to no request (among them failed re-subscriptions,
   * with .filter, and .retryIn when tried again), and exceptions thrown by
   * callbacks */
  error: (err: Error) => void;
}

export class MqttBridge {
  /**
   * @param url ws://, wss://, http(s):// URL or path of /v1/ws; default: v1/ws
   *   beside client.js (else on location)
   */
  constructor(url?: string | URL, options?: MqttBridgeOptions);
  constructor(options: MqttBridgeOptions);

  readonly state: ConnectionState;
  /** the session id of the last welcome */
  readonly session: string | null;
  /** the newest message id seen: where a resume starts */
  readonly lastId: string | null;
  readonly subscriptions: Subscription[];

  on<E extends keyof MqttBridgeEvents>(event: E, listener: MqttBridgeEvents[E]): () => void;
  off<E extends keyof MqttBridgeEvents>(event: E, listener: MqttBridgeEvents[E]): void;

  /** resolves once connected (welcome received) */
  whenOpen(timeoutMs?: number): Promise<void>;

  subscribe(filter: string, callback?: MessageCallback, options?: SubscribeOptions): Promise<Subscription>;
  subscribe(filter: string, options: SubscribeOptions): Promise<Subscription>;

  /** string: payload; bytes (Uint8Array, ArrayBuffer, typed arrays, Blob):
   * payload_base64; anything else: payload_json */
  publish(
    topic: string,
    payload: string | Uint8Array | ArrayBuffer | ArrayBufferView | Blob | unknown,
    options?: PublishOptions,
  ): Promise<PublishResult>;

  /** closes for good; queued acknowledgements are sent first */
  close(): void;

  /** test hook: drops the socket as a network failure would */
  _dropForTest(): void;
}

/** Whether topic matches the MQTT filter (+, #, the $ rule, $share/). */
export function topicMatches(filter: string, topic: string): boolean;
/** Compares ids "<ms>-<seq>" numerically: <0, 0 or >0. */
export function compareIds(a: string, b: string): number;
/** Parses an id into [ms, seq], or null. */
export function parseId(id: string): [number, number] | null;

export default MqttBridge;
