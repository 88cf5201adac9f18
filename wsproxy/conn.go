package wsproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

const (
	maxFilters = 100 // per subscribe request
	maxIDLen   = 64  // of a request id
)

// conn is one WebSocket connection: the reader runs in the HTTP handler's
// goroutine, the writer in its own, and they share the feed and the pending
// QoS 1 messages.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	id      bridge.Identity
	feed    *bridge.Feed
	session string

	ctrl       chan []byte     // ok, error, pong and gap frames
	closeCh    chan closeFrame // the first close request wins
	writerDone chan struct{}
	readerDone chan struct{}

	pending pendingSet

	ckpt      sync.Mutex // guards ended and ckptTimer
	ended     bool       // the connection ended and saved its session
	ckptTimer *time.Timer
	reqs      requests // requests waiting for replies (request.go)
}

type closeFrame struct {
	code   int
	reason string
}

func newConn(s *Server, ws *websocket.Conn, id bridge.Identity) *conn {
	return &conn{
		s: s, ws: ws, id: id,
		feed:       s.cfg.Bridge.NewFeed(id, bridge.FeedConfig{Queue: s.cfg.QueueMessages, QueueBytes: s.cfg.QueueBytes, Kind: "ws"}),
		ctrl:       make(chan []byte, 64),
		closeCh:    make(chan closeFrame, 1),
		writerDone: make(chan struct{}),
		readerDone: make(chan struct{}),
		pending:    newPendingSet(),
	}
}

// closeWith asks the writer to send a close frame and end the connection.
func (c *conn) closeWith(code int, reason string) {
	select {
	case c.closeCh <- closeFrame{code, reason}:
	default:
	}
}

func (c *conn) run(ctx context.Context, p connectParams) {
	defer c.ws.Close()
	c.ws.SetReadLimit(c.s.cfg.ReadLimit)
	c.extendRead()
	c.ws.SetPongHandler(func(string) error { c.extendRead(); return nil })

	resumed := false
	var sess bridge.Session
	if p.session != "" {
		var err error
		sess, err = c.s.cfg.Sessions.Take(ctx, p.session)
		resumed = err == nil
	}
	c.session = sess.ID
	if !resumed {
		c.session = newSessionID()
	}
	lastID, err := c.s.cfg.Bridge.LastID(ctx)
	if err != nil {
		lastID = "0-0"
	}
	if c.write(mustJSON(welcomeFrame{Type: "welcome", Session: c.session, Resumed: resumed, LastID: lastID})) != nil {
		c.feed.Close()
		return
	}
	// Unacknowledged messages the client may have lost come first: those
	// this identity may read (a session id is no credential).
	for _, m := range sess.Pending {
		if p.lastID != "" && compareIDs(m.ID, p.lastID) > 0 {
			continue // replayed from the history below
		}
		if c.s.cfg.Bridge.CheckSubscribe(ctx, c.id, m.Topic) != nil {
			continue
		}
		c.pending.add(m)
		if c.write(encodeDelivery(bridge.Delivery{Event: bridge.NewEvent(m), Ack: true})) != nil {
			c.feed.Close()
			return
		}
	}

	go c.writeLoop(ctx)
	c.restore(ctx, sess, p)
	c.readLoop(ctx)
	c.reqs.stop()
	close(c.readerDone)
	c.closeWith(websocket.CloseNormalClosure, "")
	<-c.writerDone
	subs := c.feed.Subscriptions()
	c.feed.Close()
	c.ckpt.Lock()
	c.ended = true
	if c.ckptTimer != nil {
		c.ckptTimer.Stop()
	}
	c.ckpt.Unlock()
	c.saveSession(subs)
}

// touch notes that the session changed (subscriptions, pending messages):
// it is saved within half a second, so that a client can resume it even
// if this instance dies without closing the connection.
func (c *conn) touch() {
	c.ckpt.Lock()
	defer c.ckpt.Unlock()
	if c.ended || c.ckptTimer != nil {
		return
	}
	c.ckptTimer = time.AfterFunc(500*time.Millisecond, func() {
		c.ckpt.Lock()
		defer c.ckpt.Unlock()
		c.ckptTimer = nil
		if !c.ended {
			c.saveSession(c.feed.Subscriptions())
		}
	})
}

// restore re-subscribes a resumed session and the filters in the URL,
// replaying the history after last_id.
func (c *conn) restore(ctx context.Context, sess bridge.Session, p connectParams) {
	byQoS := [2][]string{}
	for f, q := range sess.Subscriptions {
		byQoS[q&1] = append(byQoS[q&1], f)
	}
	for q, filters := range byQoS {
		if len(filters) > 0 {
			c.subscribe(ctx, "", filters, bridge.SubscribeOptions{QoS: byte(q), After: p.lastID})
		}
	}
	if len(p.filters) > 0 {
		c.subscribe(ctx, "", p.filters, bridge.SubscribeOptions{QoS: p.qos, Snapshot: p.snapshot && p.lastID == "", After: p.lastID})
	}
}

func (c *conn) saveSession(subs map[string]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := bridge.Session{ID: c.session, Subscriptions: subs, Pending: c.pending.list()}
	if err := c.s.cfg.Sessions.Save(ctx, s, c.s.cfg.SessionTTL); err != nil {
		c.s.log.Warn("saving a WebSocket session failed", "err", err)
	}
}

func (c *conn) extendRead() { _ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongTimeout)) }

// write writes one text frame; only the writer (or run before the writer
// starts) calls it.
func (c *conn) write(b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *conn) writeLoop(ctx context.Context) {
	defer close(c.writerDone)
	ping := time.NewTicker(c.s.cfg.PingInterval)
	defer ping.Stop()
	var expired <-chan time.Time
	if !c.id.Expires.IsZero() {
		t := time.NewTimer(time.Until(c.id.Expires))
		defer t.Stop()
		expired = t.C
	}
	feedC := c.feed.C()
	for {
		// A failed feed ends the connection before anything else is sent.
		select {
		case <-c.feed.Done():
			c.endFeed()
			return
		default:
		}
		select {
		case d := <-feedC:
			if err := c.writeDelivery(d); err != nil {
				c.abort(err)
				return
			}
		case b := <-c.ctrl:
			// Answers follow the messages queued before them (a
			// subscribe's snapshot comes before its ok).
			for n := len(feedC); n > 0; n-- {
				if err := c.writeDelivery(<-feedC); err != nil {
					c.abort(err)
					return
				}
			}
			if err := c.write(b); err != nil {
				c.abort(err)
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteTimeout)); err != nil {
				c.abort(err)
				return
			}
		case <-c.feed.Done():
			c.endFeed()
			return
		case cf := <-c.closeCh:
			c.sendClose(cf.code, cf.reason)
			return
		case <-expired:
			c.sendClose(CloseTokenExpired, "token expired")
			return
		case <-ctx.Done():
			c.sendClose(CloseServiceRestart, "server shutting down")
			return
		}
	}
}

// endFeed closes the connection of a failed feed, saying why.
func (c *conn) endFeed() {
	if bridge.ErrorCode(c.feed.Err()) == bridge.ECodeSlowConsumer {
		c.s.slowClosed.Add(1)
		c.s.cfg.Bridge.Metrics().SlowClosed("ws")
		c.s.log.Info("closing a slow WebSocket client", "session", c.session)
		c.sendClose(CloseSlowConsumer, "slow consumer: outgoing queue full")
		return
	}
	c.sendClose(websocket.CloseNormalClosure, "")
}

// abort ends a connection whose writes fail: the reader sees the closed
// socket and returns.
func (c *conn) abort(error) { _ = c.ws.NetConn().Close() }

// sendClose sends a close frame, waits briefly for the client's reply (the
// reader sees it), and closes the socket.
func (c *conn) sendClose(code int, reason string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(c.s.cfg.WriteTimeout))
	select {
	case <-c.readerDone:
	case <-time.After(time.Second):
	}
	_ = c.ws.NetConn().Close()
}

type frameKey struct{ ack bool }

// writeDelivery writes a message frame, encoded once per message and
// variant for every connection.
func (c *conn) writeDelivery(d bridge.Delivery) error {
	c.feed.Took(d)
	if d.Ack {
		c.touch()
		if c.pending.add(d.Event.Message) > c.s.cfg.MaxPending {
			c.closeWith(CloseTooManyUnack, "too many unacknowledged messages")
		}
	}
	if d.Snapshot {
		return c.write(encodeDelivery(d))
	}
	pm := d.Event.Encoded(frameKey{d.Ack}, func(*bridge.Message) any {
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, encodeDelivery(d))
		if err != nil {
			return err
		}
		return pm
	})
	switch v := pm.(type) {
	case *websocket.PreparedMessage:
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		return c.ws.WritePreparedMessage(v)
	case error:
		return v
	}
	return nil
}

func (c *conn) readLoop(ctx context.Context) {
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		c.extendRead()
		if typ != websocket.TextMessage {
			c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "frames must be text frames holding one JSON object")))
			continue
		}
		c.handle(ctx, data)
	}
}

// reply queues an answer for the writer. A client that floods requests
// without reading the answers is disconnected.
func (c *conn) reply(b []byte) {
	select {
	case c.ctrl <- b:
	default:
		c.closeWith(CloseSlowConsumer, "slow consumer: too many unread answers")
	}
}

func (c *conn) handle(ctx context.Context, data []byte) {
	var head struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "malformed JSON: %v", err)))
		return
	}
	var ref string
	if len(head.ID) > 0 && string(head.ID) != "null" {
		if json.Unmarshal(head.ID, &ref) != nil || ref == "" || len(ref) > maxIDLen {
			c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "id must be a string of 1 to %d characters", maxIDLen)))
			return
		}
	}
	var err error
	switch head.Type {
	case "subscribe":
		var f subscribeFrame
		if err = decodeStrict(data, &f); err == nil {
			err = c.handleSubscribe(ctx, ref, f)
		}
	case "unsubscribe":
		var f unsubscribeFrame
		if err = decodeStrict(data, &f); err == nil {
			c.feed.Unsubscribe(f.Filters)
			c.touch()
			c.ok(ref, nil)
		}
	case "publish":
		var f publishFrame
		if err = decodeStrict(data, &f); err == nil {
			err = c.handlePublish(ctx, ref, f)
		}
	case "ack":
		var f ackFrame
		if err = decodeStrict(data, &f); err == nil {
			c.pending.ack(f.IDs)
			c.touch()
			c.ok(ref, nil)
		}
	case "request":
		var f requestFrame
		if err = decodeStrict(data, &f); err == nil {
			err = c.handleRequest(ctx, ref, f)
		}
	case "ping":
		var f pingFrame
		if err = decodeStrict(data, &f); err == nil {
			c.reply(mustJSON(pongFrame{Type: "pong", Ref: ref}))
		}
	case "":
		err = bridge.Errorf(bridge.ECodeInvalidRequest, "the frame has no type")
	default:
		err = bridge.Errorf(bridge.ECodeInvalidRequest, "unknown frame type %q (known: subscribe, unsubscribe, publish, request, ack, ping)", head.Type)
	}
	if err != nil {
		c.reply(errorFrameFor(ref, err))
	}
}

func (c *conn) ok(ref string, result any) {
	if ref != "" {
		c.reply(mustJSON(okFrame{Type: "ok", Ref: ref, Result: result}))
	}
}

func (c *conn) handleSubscribe(ctx context.Context, ref string, f subscribeFrame) error {
	if len(f.Filters) == 0 || len(f.Filters) > maxFilters {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "filters must hold 1 to %d filters", maxFilters)
	}
	var qos byte
	if f.QoS != nil {
		qos = *f.QoS
	}
	opts := bridge.SubscribeOptions{QoS: qos, Snapshot: f.Snapshot && f.LastID == "", After: f.LastID}
	if c.subscribe(ctx, ref, f.Filters, opts) {
		c.ok(ref, nil)
	}
	return nil
}

// subscribe subscribes and reports failures as error or gap frames. It
// reports whether the subscriptions are active.
func (c *conn) subscribe(ctx context.Context, ref string, filters []string, opts bridge.SubscribeOptions) bool {
	err := c.feed.Subscribe(ctx, filters, opts)
	c.touch()
	switch {
	case err == nil:
		return true
	case bridge.ErrorCode(err) == bridge.ECodeGap:
		c.reply(mustJSON(gapFrame{Type: "gap", Ref: ref, LastID: opts.After,
			Message: "messages after last_id have left the history window; re-read current values with a snapshot"}))
		return true
	default:
		c.reply(errorFrameFor(ref, err))
		return false
	}
}

func (c *conn) handlePublish(ctx context.Context, ref string, f publishFrame) error {
	msg, err := f.PublishRequest.Message()
	if err != nil {
		return err
	}
	res, err := c.s.cfg.Bridge.Publish(ctx, c.id, msg)
	if err != nil {
		return err
	}
	c.ok(ref, wire.NewPublishResponse(&msg, res))
	return nil
}

// decodeStrict decodes one JSON object, refusing unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "invalid frame: %v", err)
	}
	return nil
}

func errorFrameFor(ref string, err error) []byte {
	d, _ := wire.Detail(err)
	return mustJSON(errorFrame{Type: "error", Ref: ref, ErrorDetail: d})
}

func compareIDs(a, b string) int {
	c, _ := bridge.CompareIDs(a, b)
	return c
}
