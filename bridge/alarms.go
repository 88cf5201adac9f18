package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// The alarm service: one instance of the fleet at a time holds the lease
// "alarms" and applies the recorded messages to the alarms, in history
// order, each message once for the fleet (the store records the newest
// applied id in the same step as the transition), and sends the
// escalations. Any instance lists, reads and acknowledges.

const alarmLease = "alarms"

// alarmState is what the Bridge keeps of its alarms.
type alarmState struct {
	cfgs  []AlarmConfig
	store AlarmStore
	esc   Escalator
	tail  AlarmTailer   // the store, when it is shared; nil: transitions go to the feeds here
	wake  chan struct{} // a message was recorded
	ready atomic.Bool   // the applied position is known
	err   atomic.Pointer[string]

	errs atomic.Uint64 // failed applications, for log sampling
}

// newAlarmState checks the alarm configuration of cfg.
func newAlarmState(cfg *Config) (*alarmState, error) {
	st := &alarmState{cfgs: cfg.Alarms, store: cfg.AlarmStore, esc: cfg.Escalator, wake: make(chan struct{}, 1)}
	if len(cfg.Alarms) == 0 {
		return st, nil
	}
	for i, err := range CheckAlarms(cfg.Alarms) {
		return nil, fmt.Errorf("bridge: alarm %q: %w", cfg.Alarms[i].Name, err)
	}
	if st.store == nil {
		st.store, _ = cfg.Store.(AlarmStore)
		if st.store == nil {
			return nil, fmt.Errorf("bridge: alarms are configured, but there is no AlarmStore")
		}
	}
	st.tail, _ = st.store.(AlarmTailer)
	for _, c := range cfg.Alarms {
		if c.EscalateAfter > 0 && st.esc == nil {
			return nil, fmt.Errorf("bridge: alarm %q escalates, but there is no Escalator", c.Name)
		}
	}
	return st, nil
}

// updateAlarm is AlarmStore.UpdateAlarm that counts the alarm's
// revisions and hands the alarm it wrote to the local feeds; with a shared
// store, the alarm tail of every instance does (runAlarmTail).
func (b *Bridge) updateAlarm(ctx context.Context, key AlarmKey, fn func(*Alarm) (*Alarm, error)) (Alarm, bool, error) {
	a, wrote, err := b.al.store.UpdateAlarm(ctx, key, func(cur *Alarm) (*Alarm, error) {
		next, err := fn(cur)
		if next != nil {
			next.Rev++
		}
		return next, err
	})
	if wrote && b.al.tail == nil {
		b.hub.publishAlarm(NewAlarmEvent(a))
	}
	return a, wrote, err
}

// runAlarmTail hands every alarm written on any instance to the local
// feeds, until ctx ends.
func (b *Bridge) runAlarmTail(ctx context.Context) {
	defer b.wg.Done()
	_ = b.al.tail.TailAlarms(ctx, func(as []Alarm) {
		for _, a := range as {
			b.hub.publishAlarm(NewAlarmEvent(a))
		}
	})
}

// wakeAlarms tells the applier that a message was recorded; it never
// waits.
func (b *Bridge) wakeAlarms() {
	select {
	case b.al.wake <- struct{}{}:
	default:
	}
}

// alarmConfig is the configuration of an alarm's name, or nil.
func (b *Bridge) alarmConfig(name string) *AlarmConfig {
	for i := range b.al.cfgs {
		if b.al.cfgs[i].Name == name {
			return &b.al.cfgs[i]
		}
	}
	return nil
}

// alarmFor is the alarm configuration whose filters match name, or nil;
// nil also for every acknowledgment topic.
func (b *Bridge) alarmFor(name string) *AlarmConfig {
	var found *AlarmConfig
	for i := range b.al.cfgs {
		c := &b.al.cfgs[i]
		if c.AckTopic != "" && c.isAckTopic(name) {
			return nil
		}
		if found == nil && c.matches(name) {
			found = c
		}
	}
	return found
}

// alarmProblems is why the alarms do not work yet.
func (b *Bridge) alarmProblems() []string {
	if len(b.al.cfgs) == 0 || b.al.ready.Load() {
		return nil
	}
	msg := "alarms: the position in the history is not known yet"
	if e := b.al.err.Load(); e != nil {
		msg += ": " + *e
	}
	return []string{msg}
}

// runAlarms makes the applied position known, then takes the alarm lease
// whenever it is free and applies and escalates while holding it.
func (b *Bridge) runAlarms(ctx context.Context) {
	defer b.wg.Done()
	for pause := 100 * time.Millisecond; ctx.Err() == nil; pause = min(2*pause, 2*time.Second) {
		err := b.initAlarms(ctx)
		if err == nil {
			b.al.ready.Store(true)
			break
		}
		s := err.Error()
		b.al.err.Store(&s)
		sleep(ctx, pause)
	}
	ttl := b.cfg.LeaseTTL
	for ctx.Err() == nil {
		token, ok, err := b.leases.Acquire(ctx, alarmLease, ttl)
		switch {
		case err != nil:
			b.log.Debug("alarms: taking the lease failed", "err", err)
		case ok:
			b.log.Info("alarms: applying messages and escalating on this instance")
			b.holdAlarms(ctx, token)
			continue
		}
		sleep(ctx, ttl/3+time.Duration(rand.Int64N(int64(ttl/6)+1)))
	}
}

// initAlarms sets the applied position to the end of the history the
// first time a fleet runs alarms: messages recorded before are not
// applied.
func (b *Bridge) initAlarms(ctx context.Context) error {
	applied, err := b.al.store.AlarmsApplied(ctx)
	if err != nil || applied != "" {
		return err
	}
	last, err := b.cfg.Store.LastID(ctx)
	if err != nil {
		return err
	}
	return b.al.store.SetAlarmsApplied(ctx, last)
}

// holdAlarms applies and escalates while token holds the lease.
func (b *Bridge) holdAlarms(ctx context.Context, token string) {
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		switch err := keepLease(hctx, b.leases, alarmLease, token, b.cfg.LeaseTTL); {
		case errors.Is(err, errLeaseLost):
			b.log.Warn("alarms: the lease was lost; another instance applies")
		case err != nil:
			b.log.Warn("alarms: cannot renew the lease; stopping", "err", err)
		}
	})
	wg.Go(func() { b.escalateLoop(hctx) })
	b.applyLoop(hctx)
	cancel()
	wg.Wait()
	b.release(alarmLease, token)
}

const alarmBatch = 500

// applyLoop applies the recorded messages after the applied position, in
// order, until ctx ends.
func (b *Bridge) applyLoop(ctx context.Context) {
	pause := 100 * time.Millisecond
	retry := func(what string, err error) {
		if b.al.errs.Add(1)%50 == 1 {
			b.log.Warn("alarms: "+what+" failed; retrying", "err", err)
		}
		sleep(ctx, pause)
		pause = min(2*pause, 2*time.Second)
	}
	pos, err := b.al.store.AlarmsApplied(ctx)
	for err != nil && ctx.Err() == nil {
		retry("reading the applied position", err)
		pos, err = b.al.store.AlarmsApplied(ctx)
	}
	for ctx.Err() == nil {
		msgs, err := b.cfg.Store.After(ctx, pos, alarmBatch)
		switch {
		case ErrorCode(err) == ECodeGap:
			last, lerr := b.cfg.Store.LastID(ctx)
			if lerr != nil {
				retry("reading the end of the history", lerr)
				continue
			}
			b.log.Warn("alarms: messages left the history window before they were applied; raise history.size or history.age", "after", pos)
			if err := b.al.store.SetAlarmsApplied(ctx, last); err != nil {
				retry("recording the applied position", err)
				continue
			}
			pos = last
			continue
		case err != nil:
			retry("reading the history", err)
			continue
		}
		pause = 100 * time.Millisecond
		for i := 0; i < len(msgs) && ctx.Err() == nil; {
			err := b.applyAlarm(ctx, &msgs[i])
			switch {
			case ErrorCode(err) == ECodeStoreUnavailable:
				retry("applying a message", err) // and again, in order
				continue
			case err != nil: // no retry can help (a corrupt alarm): skip it
				b.log.Error("alarms: a message cannot be applied; skipping it", "id", msgs[i].ID, "topic", msgs[i].Topic, "err", err)
			}
			pos = msgs[i].ID
			i++
		}
		if len(msgs) > 0 && ctx.Err() == nil {
			// Messages that raise nothing move the position too, so that
			// the next holder does not read them again.
			if err := b.al.store.SetAlarmsApplied(ctx, pos); err != nil {
				b.log.Debug("alarms: recording the applied position failed", "err", err)
			}
		}
		if len(msgs) < alarmBatch {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-b.al.wake:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// applyAlarm applies one recorded message: it raises, updates or clears
// the alarm of its topic, or does nothing.
func (b *Bridge) applyAlarm(ctx context.Context, m *Message) error {
	c := b.alarmFor(m.Topic)
	if c == nil {
		return nil
	}
	clears := c.clears(m)
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
	defer cancel()
	a, wrote, err := b.updateAlarm(sctx, AlarmKey{Topic: m.Topic, Applied: m.ID}, func(cur *Alarm) (*Alarm, error) {
		return transition(c, cur, m, clears), nil
	})
	switch {
	case ErrorCode(err) == ECodeRateLimited:
		b.log.Warn("alarms: too many open alarms; a raising message is not applied", "alarm", c.Name, "topic", m.Topic, "max", MaxOpenAlarms)
		return nil
	case err != nil:
		return err
	case wrote:
		b.log.Debug("alarm transition", "alarm", a.Name, "id", a.ID, "kind", a.History[len(a.History)-1].Kind)
	}
	return nil
}

// transition is what message m (clearing when clears) makes of cur, the
// open alarm of its topic (nil when none); nil when nothing changes.
func transition(c *AlarmConfig, cur *Alarm, m *Message, clears bool) *Alarm {
	at := m.ReceivedAt
	if at.IsZero() {
		at = time.Now()
	}
	switch {
	case clears && (cur == nil || !cur.Active):
		return nil // nothing to clear
	case clears:
		cur.Active, cur.ClearedAt, cur.Message = false, at, *m
		cur.record(AlarmTransition{Kind: AlarmCleared, At: at, MessageID: m.ID})
		return cur
	case cur == nil:
		a := &Alarm{ID: m.ID, Name: c.Name, Topic: m.Topic, Active: true, Count: 1, RaisedAt: at, Message: *m}
		a.record(AlarmTransition{Kind: AlarmRaised, At: at, MessageID: m.ID})
		return a
	}
	cur.Active, cur.ClearedAt, cur.Message = true, time.Time{}, *m
	cur.Count++
	cur.record(AlarmTransition{Kind: AlarmUpdated, At: at, MessageID: m.ID})
	return cur
}

// escalateLoop sends, about every second, the alarms that stayed
// unacknowledged for their escalate_after, each once.
func (b *Bridge) escalateLoop(ctx context.Context) {
	escalates := false
	for _, c := range b.al.cfgs {
		escalates = escalates || c.EscalateAfter > 0
	}
	if !escalates {
		return
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inFlight = map[string]bool{}
	)
	defer wg.Wait()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		err := b.eachOpenAlarm(ctx, func(a *Alarm) error {
			c := b.alarmConfig(a.Name)
			if c == nil || c.EscalateAfter <= 0 || a.Acknowledged || !a.EscalatedAt.IsZero() || now.Sub(a.RaisedAt) < c.EscalateAfter {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			if inFlight[a.ID] {
				return nil
			}
			inFlight[a.ID] = true
			wg.Go(func() {
				b.escalate(ctx, c, *a)
				mu.Lock()
				delete(inFlight, a.ID)
				mu.Unlock()
			})
			return nil
		})
		if err != nil && ctx.Err() == nil {
			b.log.Debug("alarms: reading the open alarms failed", "err", err)
		}
	}
}

// escalate sends a to the webhook and records it in its history. A
// takeover while it is under way may send it again (the webhook-id is the
// same, so the receiver can tell).
func (b *Bridge) escalate(ctx context.Context, c *AlarmConfig, a Alarm) {
	if err := b.al.esc.Escalate(ctx, c.EscalateWebhook, a); err != nil {
		if ctx.Err() == nil {
			b.log.Warn("alarms: escalating failed", "alarm", a.Name, "id", a.ID, "webhook", c.EscalateWebhook, "err", err)
		}
		return
	}
	now := time.Now()
	for try := 0; ; try++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.StoreTimeout)
		_, _, err := b.updateAlarm(sctx, AlarmKey{ID: a.ID}, func(cur *Alarm) (*Alarm, error) {
			if cur == nil || !cur.EscalatedAt.IsZero() {
				return nil, nil
			}
			cur.EscalatedAt = now
			cur.record(AlarmTransition{Kind: AlarmEscalated, At: now, Webhook: c.EscalateWebhook})
			return cur, nil
		})
		cancel()
		if err == nil {
			b.log.Info("alarm escalated", "alarm", a.Name, "id", a.ID, "webhook", c.EscalateWebhook)
			return
		}
		if try == 5 {
			b.log.Warn("alarms: recording an escalation failed; it may be sent again", "id", a.ID, "err", err)
			return
		}
		sleep(ctx, time.Duration(try+1)*200*time.Millisecond)
	}
}

// eachOpenAlarm calls fn with every open alarm, newest first, until fn
// returns an error, which it returns.
func (b *Bridge) eachOpenAlarm(ctx context.Context, fn func(*Alarm) error) error {
	before := ""
	for n := 0; n < MaxOpenAlarms; {
		page, err := b.al.store.OpenAlarms(ctx, before, 1000)
		if err != nil {
			return err
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		n += len(page)
		if len(page) < 1000 {
			return nil
		}
		before = page[len(page)-1].ID
	}
	return nil
}

// ListAlarms returns a page of the open alarms that q selects and id may
// see (subscribe on the alarm's topic), newest first, and the cursor of
// the next page ("" at the end). A filter that reaches nothing id may
// see is refused. Cursors are sealed as List's are (cursors): opaque, and
// good only for the same identity, filter and state. Each call takes a
// read from the identity's budget (Limiter, ActionSubscribe).
func (b *Bridge) ListAlarms(ctx context.Context, id Identity, q AlarmQuery) ([]Alarm, string, error) {
	if q.Filter != "" {
		if err := b.validateFilter(q.Filter); err != nil {
			return nil, "", err
		}
	}
	switch q.State {
	case "", AlarmStateUnacknowledged, AlarmStateAcknowledged, AlarmStateActive, AlarmStateCleared:
	default:
		return nil, "", Errorf(ECodeInvalidRequest, "state must be one of unacknowledged, acknowledged, active, cleared, not %q", truncate(q.State))
	}
	switch {
	case q.Limit <= 0:
		q.Limit = 100
	case q.Limit > 1000:
		q.Limit = 1000
	}
	scope := "alarms\x00" + q.Filter + "\x00" + q.State // no filter holds U+0000: never a List cursor
	before := ""
	if q.Cursor != "" {
		var err error
		if before, err = b.cursors.open(ctx, b.cfg.Store, id, scope, q.Cursor); err != nil {
			return nil, "", err
		}
	}
	all := false // id may see every alarm the filter selects
	if q.Filter != "" {
		err := b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, q.Filter)
		all = err == nil
		if pa, ok := b.cfg.Authorizer.(PartialAuthorizer); ok && err != nil {
			if err := pa.AuthorizeSome(ctx, id, ActionSubscribe, q.Filter); err != nil {
				return nil, "", err
			}
		}
	}
	if len(b.al.cfgs) == 0 {
		return []Alarm{}, "", nil
	}
	if err := b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
		return nil, "", err
	}
	out, next, err := b.listAlarms(ctx, id, q, before, all)
	if err != nil || next == "" {
		return out, "", err
	}
	if next, err = b.cursors.seal(ctx, b.cfg.Store, id, scope, next); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// listAlarms reads open alarms older than before and keeps those q selects
// and id may see (all: every one of q.Filter): a page and the id to go on
// from ("" at the end).
func (b *Bridge) listAlarms(ctx context.Context, id Identity, q AlarmQuery, before string, all bool) ([]Alarm, string, error) {
	out := []Alarm{}
	budget := 10*q.Limit + 100 // alarms read at most
	batch := min(1000, max(q.Limit, 100))
	for budget > 0 {
		n := min(batch, budget)
		page, err := b.al.store.OpenAlarms(ctx, before, n)
		if err != nil {
			return nil, "", err
		}
		end := len(page) < n
		budget -= len(page)
		for i := range page {
			a := &page[i]
			before = a.ID
			if q.Filter != "" && !topic.Match(q.Filter, a.Topic) || !a.Is(q.State) {
				continue
			}
			if !all && b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, a.Topic) != nil {
				continue
			}
			out = append(out, *a)
			if len(out) == q.Limit {
				if end && i == len(page)-1 {
					return out, "", nil
				}
				return out, a.ID, nil
			}
		}
		if end {
			return out, "", nil
		}
	}
	return out, before, nil
}

// errNoAlarm is the answer for an alarm id that is unknown.
func errNoAlarm(alarmID string) error {
	return Errorf(ECodeNotFound, "there is no alarm %q", truncate(alarmID))
}

// loadAlarm reads an alarm by id: not found for an id of the wrong form.
func (b *Bridge) loadAlarm(ctx context.Context, alarmID string) (Alarm, error) {
	if _, _, err := ParseID(alarmID); err != nil || len(b.al.cfgs) == 0 {
		return Alarm{}, errNoAlarm(alarmID)
	}
	a, err := b.al.store.Alarm(ctx, alarmID)
	if ErrorCode(err) == ECodeNotFound {
		return Alarm{}, errNoAlarm(alarmID)
	}
	return a, err
}

// GetAlarm returns one alarm, open or closed, with its history; id needs
// subscribe on its topic.
func (b *Bridge) GetAlarm(ctx context.Context, id Identity, alarmID string) (Alarm, error) {
	a, err := b.loadAlarm(ctx, alarmID)
	if err != nil {
		return Alarm{}, err
	}
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, a.Topic); err != nil {
		return Alarm{}, err
	}
	if err := b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
		return Alarm{}, err
	}
	return a, nil
}

// AckAlarm acknowledges an alarm for id, who needs publish on its topic,
// with an optional comment, and returns it. Of several acknowledgments at
// once (on any instances) exactly one succeeds; the others, and every
// later one, get ECodeAlreadyAcknowledged naming who acknowledged and
// when, with the alarm. With the alarm's ack_topic, the acknowledgment is
// published there, retained, QoS 1.
func (b *Bridge) AckAlarm(ctx context.Context, id Identity, alarmID, comment string) (Alarm, error) {
	a, err := b.loadAlarm(ctx, alarmID)
	if err != nil {
		return Alarm{}, err
	}
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionPublish, a.Topic); err != nil {
		return Alarm{}, err
	}
	if err := b.cfg.Limiter.Allow(id, ActionPublish); err != nil {
		return Alarm{}, err
	}
	if len(comment) > MaxAlarmComment {
		return Alarm{}, Errorf(ECodeInvalidRequest, "comment is longer than %d bytes", MaxAlarmComment)
	}
	if err := checkString("comment", comment); err != nil {
		return Alarm{}, err
	}
	now := time.Now()
	var seen Alarm
	a, _, err = b.updateAlarm(ctx, AlarmKey{ID: alarmID}, func(cur *Alarm) (*Alarm, error) {
		switch {
		case cur == nil:
			return nil, errNoAlarm(alarmID)
		case cur.Acknowledged:
			seen = cur.Clone()
			return nil, &Error{Code: ECodeAlreadyAcknowledged, Message: fmt.Sprintf("the alarm was acknowledged by %s at %s",
				cur.AckedBy, cur.AckedAt.UTC().Format(time.RFC3339Nano))}
		}
		cur.Acknowledged, cur.AckedAt, cur.AckedBy, cur.Comment = true, now, id.Key(), comment
		cur.record(AlarmTransition{Kind: AlarmAcknowledged, At: now, By: id.Key(), Comment: comment})
		return cur, nil
	})
	if err != nil {
		return seen, err
	}
	if c := b.alarmConfig(a.Name); c != nil && c.AckTopic != "" {
		// Even when the caller goes away now: the acknowledgment stands.
		b.publishAck(context.WithoutCancel(ctx), c, &a)
	}
	return a, nil
}

// AlarmAck is the payload published on an alarm's ack_topic.
type AlarmAck struct {
	ID      string    `json:"id"`
	Topic   string    `json:"topic"`
	AckedBy string    `json:"acked_by"`
	AckedAt time.Time `json:"acked_at"`
	Comment string    `json:"comment"`
}

// publishAck publishes the acknowledgment of a on c's ack_topic, as the
// bridge (not as the person: the configuration chose the topic). A
// failure is logged; the acknowledgment stands.
func (b *Bridge) publishAck(ctx context.Context, c *AlarmConfig, a *Alarm) {
	payload, _ := json.Marshal(AlarmAck{ID: a.ID, Topic: a.Topic, AckedBy: a.AckedBy, AckedAt: a.AckedAt.UTC(), Comment: a.Comment})
	msg := Message{Topic: ackTopicFor(c.AckTopic, a.Topic), Payload: payload, QoS: 1, Retain: true, ReceivedAt: time.Now()}
	err := b.validateName(msg.Topic)
	var up Upstream
	if err == nil {
		up, err = b.route(msg.Topic)
	}
	if err == nil {
		_, err = b.send(ctx, up, msg)
	}
	if err != nil {
		b.log.Warn("alarms: publishing an acknowledgment failed; the alarm stays acknowledged", "alarm", a.Name, "id", a.ID, "topic", msg.Topic, "err", err)
	}
}
