package wsproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

const (
	maxFilters = 100 // per subscribe request
	maxIDLen   = 64  // of a request id
	maxAnswers = 64  // answers waiting for the writer
)

// conn is one WebSocket connection: the reader runs in the HTTP handler's
// goroutine; the writer runs in a goroutine of its own only while there is
// something to write (kick), so that an idle connection has one goroutine.
// They share the feed and the pending QoS 1 messages. Subscribing, which
// may wait for acks (a replay), runs beside the reader (ops), so that the
// reader goes on reading acks.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	bc      *batchConn // under ws: the writer batches its frames
	id      bridge.Identity
	feed    *bridge.Feed
	session string

	wstate     atomic.Int32 // wIdle, wRunning, wDirty or wDone
	wmu        sync.Mutex   // guards ctrl, closeReq, pingDue, pingT and timersOff
	ctrl       [][]byte     // ok, error, pong and gap frames
	closeReq   *closeFrame  // the first close request wins
	pingDue    bool
	pingT      *time.Timer
	stopCtx    func() // stops the other timers
	timersOff  bool
	writerDone chan struct{} // the writer ended the connection
	readerDone chan struct{}

	pending pendingSet
	// stalled are deliveries the writer took but holds back until acks
	// make room under MaxPending (writer only); waitAck tells the reader
	// that an ack should kick the writer.
	stalled []bridge.Delivery
	waitAck atomic.Bool
	ops     serial // frames that keep their order (subscribe and after)

	// Session checkpoints: ckpt is taken by the writer and the ack path
	// (touch), so it is never held across I/O; saving serializes the
	// Saves, which take it alone.
	ckpt      sync.Mutex // guards ended and ckptTimer
	ended     bool       // the connection ended and saved its session
	ckptTimer *time.Timer
	saving    sync.Mutex // one Save at a time, in order
	reqs      requests   // requests waiting for replies (request.go)
}

type closeFrame struct {
	code   int
	reason string
}

func newConn(s *Server, ws *websocket.Conn, bc *batchConn, id bridge.Identity) *conn {
	c := &conn{
		s: s, ws: ws, bc: bc, id: id,
		writerDone: make(chan struct{}),
		readerDone: make(chan struct{}),
		pending:    newPendingSet(),
	}
	// run writes first, as the writer: kicks wait for its release.
	c.wstate.Store(wRunning)
	c.feed = s.cfg.Bridge.NewFeed(id, bridge.FeedConfig{Queue: s.cfg.QueueMessages, QueueBytes: s.cfg.QueueBytes, Kind: "ws", Notify: c.kick})
	return c
}

// closeWith asks the writer to send a close frame and end the connection.
func (c *conn) closeWith(code int, reason string) {
	c.wmu.Lock()
	if c.closeReq == nil {
		c.closeReq = &closeFrame{code, reason}
	}
	c.wmu.Unlock()
	c.kick()
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
		sess, err = c.s.cfg.Bridge.Resume(ctx, p.session)
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
	if c.writeFirst(ctx, sess, p, lastID, resumed) != nil {
		c.wstate.Store(wDone)
		c.feed.Close()
		return
	}

	c.startTimers(ctx)
	c.release()
	if len(sess.Subscriptions) > 0 || len(p.filters) > 0 {
		// Before any frame of the client, but beside the reader: a replay
		// waits for acks.
		c.ops.do(true, func() { c.restore(ctx, sess, p, lastID) })
	}
	c.readLoop(ctx)
	c.reqs.stop()
	close(c.readerDone)
	c.closeWith(websocket.CloseNormalClosure, "")
	<-c.writerDone
	c.stopTimers()
	c.ops.close()
	subs := c.feed.Subscriptions()
	c.feed.Close() // ends a replay that waits
	c.ops.wait()
	c.ckpt.Lock()
	c.ended = true
	if c.ckptTimer != nil {
		c.ckptTimer.Stop()
	}
	c.ckpt.Unlock()
	c.saving.Lock() // after a checkpoint under way, which is older
	c.saveSession(subs)
	c.saving.Unlock()
}

// writeFirst writes the welcome and then the unacknowledged messages the
// client may have lost, in one batch, before the writer starts.
func (c *conn) writeFirst(ctx context.Context, sess bridge.Session, p connectParams, lastID string, resumed bool) error {
	c.bc.begin()
	err := c.write(mustJSON(welcomeFrame{Type: "welcome", Session: c.session, Resumed: resumed, LastID: lastID}))
	// Unacknowledged messages the client may have lost come next: those
	// this identity may read (a session id is no credential).
	for _, m := range sess.Pending {
		if err != nil {
			break
		}
		if p.lastID != "" && compareIDs(m.ID, p.lastID) > 0 {
			continue // replayed from the history below
		}
		if c.s.cfg.Bridge.CheckSubscribe(ctx, c.id, m.Topic) != nil {
			continue
		}
		c.pending.add(m)
		err = c.write(encodeDelivery(bridge.Delivery{Event: bridge.NewEvent(m), Ack: true}))
	}
	if e := c.bc.end(); err == nil {
		err = e
	}
	return err
}

// touch notes that the session changed (subscriptions, pending messages):
// it is saved within half a second (or, while Redis is slow, after the
// Save under way), so that a client can resume it even if this instance
// dies without closing the connection. The writer and the ack path call
// it; it never waits for Redis.
func (c *conn) touch() {
	c.ckpt.Lock()
	defer c.ckpt.Unlock()
	if c.ended || c.ckptTimer != nil {
		return
	}
	c.ckptTimer = time.AfterFunc(500*time.Millisecond, c.checkpoint)
}

// checkpoint saves the session as it is now. Changes made while it waits
// for the Save under way, or while it saves, are saved by the next one:
// the timer is cleared only once this one's turn came, so touches
// meanwhile make no second timer, and the state is copied after that.
func (c *conn) checkpoint() {
	c.saving.Lock()
	defer c.saving.Unlock()
	c.ckpt.Lock()
	c.ckptTimer = nil
	ended := c.ended
	c.ckpt.Unlock()
	if !ended {
		c.saveSession(c.feed.Subscriptions())
	}
}

// restore re-subscribes a resumed session and the filters in the URL,
// replaying the history after last_id.
func (c *conn) restore(ctx context.Context, sess bridge.Session, p connectParams, welcomeLastID string) {
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
		opts := bridge.SubscribeOptions{QoS: p.qos, Snapshot: p.snapshot && p.lastID == "", After: p.lastID}
		if !opts.Snapshot && opts.After == "" {
			// From the welcome's last_id: the subscription goes live after
			// the welcome, and nothing recorded in between may be missed.
			opts.After = welcomeLastID
		}
		c.subscribe(ctx, "", p.filters, opts)
	}
}

// saveSession saves subs and a copy of the pending messages; the caller
// holds c.saving.
func (c *conn) saveSession(subs map[string]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := bridge.Session{ID: c.session, Subscriptions: subs, Pending: c.pending.list()}
	if err := c.s.cfg.Bridge.Checkpoint(ctx, s, c.s.cfg.SessionTTL); err != nil {
		c.s.log.Warn("saving a WebSocket session failed", "err", err)
	}
}

func (c *conn) extendRead() { _ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongTimeout)) }

// The writer's states. Kicks move it from idle to running (starting a
// writer goroutine) or from running to dirty (the writer looks again
// before it stops); only the writer leaves running, dirty and done.
const (
	wIdle    = iota // nothing to write, no writer goroutine
	wRunning        // a writer is writing
	wDirty          // a writer is writing, and more came meanwhile
	wDone           // the connection ended: no more writes
)

// kick makes sure that a writer will write what was just queued. It never
// blocks: the feed calls it with its lock held.
func (c *conn) kick() {
	for {
		switch c.wstate.Load() {
		case wIdle:
			if c.wstate.CompareAndSwap(wIdle, wRunning) {
				go c.writer()
				return
			}
		case wRunning:
			if c.wstate.CompareAndSwap(wRunning, wDirty) {
				return
			}
		default:
			return
		}
	}
}

// release ends run's turn as the writer (see newConn).
func (c *conn) release() {
	if !c.wstate.CompareAndSwap(wRunning, wIdle) {
		go c.writer()
	}
}

// writer writes until nothing is queued, or until the connection ends.
func (c *conn) writer() {
	for {
		c.wstate.Store(wRunning)
		if !c.writeQueued() {
			c.wstate.Store(wDone)
			close(c.writerDone)
			return
		}
		if c.wstate.CompareAndSwap(wRunning, wIdle) {
			return
		}
	}
}

// writeQueued writes everything queued, a batch at a time; false when the
// connection ended.
func (c *conn) writeQueued() bool {
	for {
		// A failed feed ends the connection before anything else is sent.
		select {
		case <-c.feed.Done():
			c.endFeed()
			return false
		default:
		}
		// While messages wait for acks, so do the answers: they keep
		// their order.
		blocked := c.blocked()
		var ctrl [][]byte
		c.wmu.Lock()
		cf, ping := c.closeReq, c.pingDue
		if !blocked {
			ctrl, c.ctrl = c.ctrl, nil
		}
		c.pingDue = false
		c.wmu.Unlock()
		if cf != nil {
			c.sendClose(cf.code, cf.reason)
			return false
		}
		n := c.feed.Len()
		if blocked {
			n = 0 // nothing more goes before the stalled ones
		}
		if n == 0 && (blocked || len(c.stalled) == 0) && len(ctrl) == 0 && !ping {
			return true
		}
		c.bc.begin()
		err := c.writeBatch(n, ctrl, ping)
		if e := c.bc.end(); err == nil {
			err = e
		}
		if err != nil {
			c.abort(err)
			return false
		}
	}
}

// deliveryBufs hold the deliveries a writer took from its feed.
var deliveryBufs = sync.Pool{New: func() any { b := make([]bridge.Delivery, 0, 64); return &b }}

// blocked reports whether the writer holds deliveries back until an ack
// makes room under MaxPending; the reader kicks it after acks meanwhile.
func (c *conn) blocked() bool {
	if len(c.stalled) == 0 {
		c.waitAck.Store(false)
		return false
	}
	// Set before looking, so that an ack after the look sees it.
	c.waitAck.Store(true)
	if c.pending.len() >= c.s.cfg.MaxPending {
		return true
	}
	c.waitAck.Store(false)
	return false
}

// writeBatch writes the stalled deliveries and then n queued ones, as far
// as MaxPending lets the ones that need an ack go, then the answers and a
// ping, into the batch. The answers follow the messages queued before them
// (a subscribe's snapshot comes before its ok): those are among the n, or
// stalled.
func (c *conn) writeBatch(n int, ctrl [][]byte, ping bool) error {
	if err := c.writeStalled(); err != nil {
		return err
	}
	buf := deliveryBufs.Get().(*[]bridge.Delivery)
	defer deliveryBufs.Put(buf)
	for n > 0 && len(c.stalled) == 0 {
		ds := c.feed.Take((*buf)[:0], min(n, cap(*buf)))
		if len(ds) == 0 {
			break // the feed failed
		}
		n -= len(ds)
		for i, d := range ds {
			if d.Ack && c.pending.len() >= c.s.cfg.MaxPending {
				c.stalled = append(c.stalled, ds[i:]...)
				break
			}
			if err := c.writeDelivery(d); err != nil {
				clear(ds)
				return err
			}
		}
		clear(ds) // the events may go
	}
	if len(c.stalled) > 0 && len(ctrl) > 0 {
		// Messages before them wait for acks: the answers wait too.
		c.wmu.Lock()
		c.ctrl = append(ctrl, c.ctrl...)
		c.wmu.Unlock()
		ctrl = nil
	}
	for _, b := range ctrl {
		if err := c.write(b); err != nil {
			return err
		}
	}
	if ping {
		return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteTimeout))
	}
	return nil
}

// writeStalled writes the stalled deliveries while MaxPending lets them go.
func (c *conn) writeStalled() error {
	for len(c.stalled) > 0 {
		d := c.stalled[0]
		if d.Ack && c.pending.len() >= c.s.cfg.MaxPending {
			return nil
		}
		c.stalled[0] = bridge.Delivery{}
		c.stalled = c.stalled[1:]
		if err := c.writeDelivery(d); err != nil {
			return err
		}
	}
	c.stalled = nil
	return nil
}

// write adds a text frame to the batch; only the writer (or run before it
// releases the writer) calls it, inside a batch, whose flush bounds the
// time.
func (c *conn) write(b []byte) error { return c.bc.writeText(b) }

// reply queues an answer for the writer. A client that floods requests
// without reading the answers is disconnected.
func (c *conn) reply(b []byte) {
	c.wmu.Lock()
	full := len(c.ctrl) >= maxAnswers
	if !full {
		c.ctrl = append(c.ctrl, b)
	}
	c.wmu.Unlock()
	if full {
		c.closeWith(CloseSlowConsumer, "slow consumer: too many unread answers")
		return
	}
	c.kick()
}

// startTimers starts the pings, the end of the credentials and the end of
// ctx (1012), which kick the writer. Timers hold no goroutine while they
// wait.
func (c *conn) startTimers(ctx context.Context) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.pingT = time.AfterFunc(c.s.cfg.PingInterval, c.pingTick)
	stopCtx := context.AfterFunc(ctx, func() { c.closeWith(CloseServiceRestart, "server shutting down") })
	c.stopCtx = func() { stopCtx() }
	if !c.id.Expires.IsZero() {
		t := time.AfterFunc(time.Until(c.id.Expires), func() { c.closeWith(CloseTokenExpired, "token expired") })
		c.stopCtx = func() { stopCtx(); t.Stop() }
	}
}

func (c *conn) pingTick() {
	c.wmu.Lock()
	if c.timersOff {
		c.wmu.Unlock()
		return
	}
	c.pingDue = true
	c.pingT.Reset(c.s.cfg.PingInterval)
	c.wmu.Unlock()
	c.kick()
}

func (c *conn) stopTimers() {
	c.wmu.Lock()
	c.timersOff = true
	c.pingT.Stop()
	stop := c.stopCtx
	c.wmu.Unlock()
	stop()
}

// endFeed closes the connection of a failed feed, saying why: a queue that
// filled while the writer waited for acks is the client's missing acks
// (4002), otherwise the client reads too slowly (4001).
func (c *conn) endFeed() {
	if bridge.ErrorCode(c.feed.Err()) == bridge.ECodeSlowConsumer && c.pending.len() >= c.s.cfg.MaxPending {
		c.s.log.Info("closing a WebSocket client that does not acknowledge", "session", c.session)
		c.sendClose(CloseTooManyUnack, "too many unacknowledged messages")
		return
	}
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

// writeDelivery writes a message frame, built once per message and
// variant for every connection.
func (c *conn) writeDelivery(d bridge.Delivery) error {
	c.feed.Took(d)
	if d.Ack {
		c.pending.add(d.Event.Message) // the writer keeps to MaxPending (writeBatch)
		c.touch()                      // after the change, so that a checkpoint has it
	}
	if d.Snapshot || d.Gap != nil {
		return c.write(encodeDelivery(d))
	}
	frame := d.Event.Encoded(frameKey{d.Ack}, func(*bridge.Message) any { return textFrame(encodeDelivery(d)) })
	return c.bc.writeFrame(frame.([]byte))
}

func (c *conn) readLoop(ctx context.Context) {
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		c.extendRead()
		if typ != websocket.TextMessage {
			c.inOrder(false, func() {
				c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "frames must be text frames holding one JSON object")))
			})
			continue
		}
		c.handle(ctx, data)
	}
}

// inOrder runs fn after the frames before it (see serial.do); a client
// whose frames pile up behind a replay that waits for its acks is
// disconnected.
func (c *conn) inOrder(async bool, fn func()) {
	if !c.ops.do(async, fn) {
		c.closeWith(CloseSlowConsumer, "slow consumer: too many requests waiting")
	}
}

// handle handles a frame: an ack at once, the others in order, a subscribe
// beside the reader (a replay may wait for acks).
func (c *conn) handle(ctx context.Context, data []byte) {
	var head struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		c.inOrder(false, func() {
			c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "malformed JSON: %v", err)))
		})
		return
	}
	var ref string
	if len(head.ID) > 0 && string(head.ID) != "null" {
		if json.Unmarshal(head.ID, &ref) != nil || ref == "" || len(ref) > maxIDLen {
			c.inOrder(false, func() {
				c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "id must be a string of 1 to %d characters", maxIDLen)))
			})
			return
		}
	}
	if head.Type == "ack" {
		// At once, even while a replay waits for it.
		var f ackFrame
		if err := decodeStrict(data, &f); err != nil {
			c.reply(errorFrameFor(ref, err))
			return
		}
		c.pending.ack(f.IDs)
		if c.waitAck.Load() {
			c.kick()
		}
		c.touch()
		c.ok(ref, nil)
		return
	}
	c.inOrder(head.Type == "subscribe", func() { c.handleFrame(ctx, head.Type, ref, data) })
}

// handleFrame handles any frame but an ack.
func (c *conn) handleFrame(ctx context.Context, typ, ref string, data []byte) {
	var err error
	switch typ {
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
		err = bridge.Errorf(bridge.ECodeInvalidRequest, "unknown frame type %q (known: subscribe, unsubscribe, publish, request, ack, ping)", typ)
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

// maxWaiting bounds the frames that wait behind a subscribe under way.
const maxWaiting = 64

// serial runs a connection's frames in order, in the reader's goroutine or,
// from a subscribe on (which may wait for acks the reader must go on
// reading) until the queue is empty, in a goroutine of its own. The zero
// value is ready; only the reader calls do.
type serial struct {
	mu      sync.Mutex
	q       []func()
	busy    bool // the goroutine runs
	stopped bool
	wg      sync.WaitGroup
}

// do runs fn after the functions given before it: at once when none waits
// and async is false, else in the goroutine. It reports false when too
// many wait.
func (s *serial) do(async bool, fn func()) bool {
	s.mu.Lock()
	switch {
	case s.stopped:
		s.mu.Unlock()
		return true
	case !s.busy && !async:
		s.mu.Unlock()
		fn()
		return true
	case len(s.q) >= maxWaiting:
		s.mu.Unlock()
		return false
	}
	s.q = append(s.q, fn)
	if !s.busy {
		s.busy = true
		s.wg.Add(1)
		go s.loop()
	}
	s.mu.Unlock()
	return true
}

func (s *serial) loop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.q) == 0 || s.stopped {
			s.q, s.busy = nil, false
			s.mu.Unlock()
			return
		}
		fn := s.q[0]
		s.q[0] = nil
		s.q = s.q[1:]
		s.mu.Unlock()
		fn()
	}
}

// close drops what waits: the connection ended, nobody reads the answers.
// The function under way goes on; wait waits for it.
func (s *serial) close() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

func (s *serial) wait() { s.wg.Wait() }
