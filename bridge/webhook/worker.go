package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Stats are a webhook's counters on this instance.
type Stats struct {
	Delivered    uint64 // messages answered with 2xx, replays included
	Attempts     uint64 // requests sent
	Failures     uint64 // attempts that failed (not 2xx, no answer in time, no connection)
	DeadLettered uint64 // messages given up on
	Replayed     uint64 // dead letters delivered by a replay
	Skipped      uint64 // messages acknowledged without delivery: no filter matches, or expired
	Lost         uint64 // times messages left the history before the webhook read them
	Holding      bool   // this instance holds the webhook's lease: it delivers
}

const (
	maxHeld   = 1000                   // messages read and not yet finished, at most
	readBlock = 500 * time.Millisecond // how long one read waits for new messages
	readBatch = 100
)

type worker struct {
	m     *Manager
	cfg   Config
	key   []byte
	group string // the consumer group, and the lease's name
	log   *slog.Logger

	created bool // the group exists; Start, then run's goroutine alone

	holding                                                              atomic.Bool
	delivered, attempts, failures, deadLettered, replayed, skipped, lost atomic.Uint64
}

func newWorker(m *Manager, c Config, key []byte) *worker {
	return &worker{m: m, cfg: c, key: key, group: "webhook:" + c.Name, log: m.log.With("webhook", c.Name)}
}

func (w *worker) stats() Stats {
	return Stats{
		Delivered: w.delivered.Load(), Attempts: w.attempts.Load(), Failures: w.failures.Load(),
		DeadLettered: w.deadLettered.Load(), Replayed: w.replayed.Load(), Skipped: w.skipped.Load(),
		Lost: w.lost.Load(), Holding: w.holding.Load(),
	}
}

// ensureGroup creates the consumer group once; it reports whether it
// exists. Start calls it before it starts run, which calls it after, so it
// needs no lock (none is held across the store call).
func (w *worker) ensureGroup(ctx context.Context) bool {
	if w.created {
		return true
	}
	if err := w.m.cfg.Groups.CreateGroup(ctx, w.group); err != nil {
		w.log.Warn("webhook: creating the consumer group failed; will retry", "err", err)
		return false
	}
	w.created = true
	return true
}

// run takes the webhook's lease whenever it is free and delivers while it
// holds it, until ctx ends.
func (w *worker) run(ctx context.Context) {
	defer w.m.wg.Done()
	ttl := w.cfg.ClaimIdle
	retry := time.Second // after a failed group creation; doubles up to 10 s
	for ctx.Err() == nil {
		if !w.ensureGroup(ctx) {
			sleep(ctx, retry)
			retry = min(2*retry, 10*time.Second)
			continue
		}
		token, ok, err := w.m.cfg.Leases.Acquire(ctx, w.group, ttl)
		switch {
		case err != nil:
			w.log.Debug("webhook: taking the lease failed", "err", err)
		case ok:
			w.log.Info("webhook: delivering on this instance")
			w.hold(ctx, token)
			continue
		}
		sleep(ctx, ttl/3+rand.N(ttl/6+1))
	}
}

// hold delivers while token holds the lease.
func (w *worker) hold(ctx context.Context, token string) {
	w.holding.Store(true)
	defer w.holding.Store(false)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { w.renew(hctx, cancel, token) })
	w.deliver(hctx)
	cancel()
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	defer rcancel()
	_ = w.m.cfg.Leases.Release(rctx, w.group, token)
}

// renew keeps the lease and cancels delivery when it is lost, or when it
// could not be renewed for two thirds of its time (so that no two holders
// deliver at once).
func (w *worker) renew(ctx context.Context, stop context.CancelFunc, token string) {
	ttl := w.cfg.ClaimIdle
	renewed := time.Now()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := w.m.cfg.Leases.Renew(ctx, w.group, token, ttl)
		switch {
		case err == nil && ok:
			renewed = time.Now()
		case err == nil:
			w.log.Warn("webhook: the lease was lost; another instance delivers")
			stop()
			return
		case time.Since(renewed) > ttl*2/3:
			w.log.Warn("webhook: cannot renew the lease; stopping delivery", "err", err)
			stop()
			return
		}
	}
}

// deliver takes over what others left pending, then reads and delivers
// new messages and replays until ctx ends; it waits for the deliveries it
// started.
func (w *worker) deliver(ctx context.Context) {
	s := newSched(w, ctx)
	defer s.wg.Wait()
	ttl := w.cfg.ClaimIdle

	// A previous holder's unfinished messages go first, so that the order
	// per topic holds; they become claimable once idle for ClaimIdle.
	for ctx.Err() == nil {
		w.claim(ctx, s)
		n, err := w.m.cfg.Groups.Pending(ctx, w.group)
		if err == nil && n <= s.heldCount() {
			break
		}
		sleep(ctx, min(ttl/4, time.Second))
	}

	swept, pause := time.Now(), 100*time.Millisecond
	for ctx.Err() == nil {
		if time.Since(swept) >= ttl {
			// Orphans: messages whose acknowledgement failed.
			w.claim(ctx, s)
			swept = time.Now()
		}
		w.replays(ctx, s)
		room := maxHeld - s.heldCount()
		if room <= 0 {
			s.waitRoom(ctx, readBlock)
			continue
		}
		msgs, lost, err := w.m.cfg.Groups.ReadGroup(ctx, w.group, w.m.cfg.Consumer, min(room, readBatch), readBlock)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("webhook: reading the history failed", "err", err)
				sleep(ctx, pause)
				pause = min(2*pause, 5*time.Second)
			}
			continue
		}
		pause = 100 * time.Millisecond
		if lost {
			w.lost.Add(1)
			w.log.Warn("webhook: messages left the history window before they were delivered; raise history.size or history.age")
		}
		w.take(ctx, s, msgs)
	}
}

// take schedules the messages that match, and acknowledges the others.
func (w *worker) take(ctx context.Context, s *sched, msgs []bridge.Message) {
	var skip []string
	now := time.Now()
	for _, m := range msgs {
		if s.holds(m.ID) {
			continue
		}
		if !w.matches(m.Topic) || m.Expired(now) {
			skip = append(skip, m.ID)
			continue
		}
		s.add(item{msg: m})
	}
	if len(skip) > 0 {
		w.skipped.Add(uint64(len(skip)))
		if err := w.m.cfg.Groups.Ack(ctx, w.group, skip...); err != nil {
			w.log.Debug("webhook: acknowledging skipped messages failed; they come back later", "err", err)
		}
	}
}

// claim takes the pending messages idle for ClaimIdle.
func (w *worker) claim(ctx context.Context, s *sched) {
	for ctx.Err() == nil {
		msgs, gone, err := w.m.cfg.Groups.Claim(ctx, w.group, w.m.cfg.Consumer, w.cfg.ClaimIdle, maxHeld)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("webhook: claiming pending messages failed", "err", err)
			}
			return
		}
		if gone > 0 {
			w.lost.Add(1)
			w.log.Warn("webhook: pending messages left the history window before they were delivered", "count", gone)
		}
		w.take(ctx, s, msgs)
		if len(msgs) < maxHeld {
			return
		}
	}
}

// replays schedules the queued replays not under way yet.
func (w *worker) replays(ctx context.Context, s *sched) {
	dls, err := w.m.cfg.Groups.Replays(ctx, w.group, 100)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Debug("webhook: reading the replay queue failed", "err", err)
		}
		return
	}
	for _, dl := range dls {
		if !s.holdsReplay(dl.ID) {
			s.add(item{msg: dl.Message, replayID: dl.ID, attempts: dl.Attempts})
		}
	}
}

func (w *worker) matches(name string) bool {
	for _, f := range w.cfg.Filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// item is a message to deliver: from the history, or a replay.
type item struct {
	msg      bridge.Message
	replayID string // the replay queue id, for a replay
	attempts int    // attempts made before (a replay's)
}

// send delivers one item: up to Attempts tries with backoff; then it
// acknowledges, or dead-letters. When ctx ends between tries it gives up
// silently: the message stays pending (or queued for replay) for the next
// holder.
func (w *worker) send(ctx context.Context, it item) {
	var lastErr error
	for n := 1; ; n++ {
		if ctx.Err() != nil {
			return
		}
		err := w.attempt(it.msg)
		w.attempts.Add(1)
		if err == nil {
			w.delivered.Add(1)
			if it.replayID != "" {
				w.replayed.Add(1)
			}
			w.finish(it, nil)
			return
		}
		w.failures.Add(1)
		lastErr = err
		if n >= w.cfg.Attempts {
			break
		}
		d := w.backoff(n)
		w.log.Debug("webhook: attempt failed; retrying", "message", it.msg.ID, "topic", it.msg.Topic, "attempt", n, "retry_in", d, "err", err)
		sleep(ctx, d)
	}
	dl := bridge.DeadLetter{Message: it.msg, Attempts: it.attempts + w.cfg.Attempts, Error: lastErr.Error(), FailedAt: time.Now()}
	w.deadLettered.Add(1)
	w.log.Warn("webhook: giving up on a message; it is in the dead letters", "message", it.msg.ID, "topic", it.msg.Topic, "attempts", dl.Attempts, "err", lastErr)
	w.finish(it, &dl)
}

// finish records the outcome in the store, retrying briefly: an
// acknowledgement that fails leaves the message pending, to be delivered
// again.
func (w *worker) finish(it item, dead *bridge.DeadLetter) {
	for try := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		switch {
		case it.replayID != "":
			err = w.m.cfg.Groups.ReplayDone(ctx, w.group, it.replayID, dead, w.cfg.MaxDeadLetters)
		case dead != nil:
			_, err = w.m.cfg.Groups.DeadLetter(ctx, w.group, *dead, w.cfg.MaxDeadLetters)
		default:
			err = w.m.cfg.Groups.Ack(ctx, w.group, it.msg.ID)
		}
		cancel()
		if err == nil {
			return
		}
		if try == 2 {
			w.log.Warn("webhook: recording a delivery outcome failed; the message will be delivered again", "message", it.msg.ID, "err", err)
			return
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
}

// backoff is the wait after the n-th failed attempt: BackoffMin doubled
// n-1 times, at most BackoffMax, minus up to half at random.
func (w *worker) backoff(n int) time.Duration {
	d := w.cfg.BackoffMin
	for i := 1; i < n && d < w.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.BackoffMax)
	return d - rand.N(d/2+1)
}

// attempt sends one request for message m and reports why it failed.
func (w *worker) attempt(m bridge.Message) error {
	body, ctype, meta := w.render(&m)
	return w.post(w.m.hard, m.ID, body, ctype, meta)
}

// post sends one signed request, within the webhook's timeout and ctx,
// and reports why it failed: the webhook-id header is id.
func (w *worker) post(parent context.Context, id string, body []byte, ctype string, meta http.Header) error {
	ctx, cancel := context.WithTimeout(parent, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	for k, v := range w.cfg.Headers {
		h.Set(k, v)
	}
	for k, v := range meta {
		h[k] = v
	}
	h.Set("Content-Type", ctype)
	h.Set("User-Agent", "mqttbridge-webhook")
	now := time.Now()
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	if w.key != nil {
		h.Set(HeaderSignature, Sign(w.key, id, now, body))
	}
	resp, err := w.m.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil && parent.Err() == nil {
			return fmt.Errorf("no answer within %s", w.cfg.Timeout)
		}
		// Not the url.Error: it quotes the URL, which may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("request failed: %v", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if s := bytes.TrimSpace(snippet); len(s) > 0 && utf8.Valid(s) {
			msg += ": " + string(s)
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// render builds the body, its content type and, for raw bodies, the MQTT-*
// headers that carry what the body does not.
func (w *worker) render(m *bridge.Message) ([]byte, string, http.Header) {
	if w.cfg.Body == BodyEnvelope {
		b, err := json.Marshal(wire.NewEnvelope(m, time.Now()))
		if err != nil { // cannot happen: the envelope is plain data
			b = []byte("{}")
		}
		return b, "application/json", nil
	}
	meta := http.Header{}
	meta.Set("MQTT-Message-Id", m.ID)
	meta.Set("MQTT-Topic", wire.HeaderEscape(m.Topic))
	meta.Set("MQTT-QoS", strconv.Itoa(int(m.QoS)))
	meta.Set("MQTT-Retain", strconv.FormatBool(m.Retain))
	for _, up := range m.Properties.UserProperties {
		meta.Add("MQTT-User-Property", wire.HeaderEscape(up.Key)+"="+wire.HeaderEscape(up.Value))
	}
	ctype := m.Properties.ContentType
	switch {
	case ctype != "":
	case utf8.Valid(m.Payload):
		ctype = "text/plain; charset=utf-8"
	default:
		ctype = "application/octet-stream"
	}
	return m.Payload, ctype, meta
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
