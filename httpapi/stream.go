package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/origin"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// streamMessage is the data of an SSE message event: the envelope, and
// snapshot for current values sent at the start.
type streamMessage struct {
	wire.Envelope
	Snapshot bool `json:"snapshot,omitempty"`
}

// streamAlarm is the data of an alarm event.
type streamAlarm struct {
	wire.Alarm
	Snapshot bool `json:"snapshot,omitempty"`
}

type sseKey struct{}

// stream is GET /v1/stream: Server-Sent Events of every message matching
// the filters. `id:` is the message id; Last-Event-ID (header, or the
// last_event_id query parameter) resumes after it from the history.
func (s *Server) stream(c *gin.Context) {
	if err := checkQuery(c, "filter", "snapshot", "last_event_id", "access_token"); err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	filters := q["filter"]
	if len(filters) == 0 || len(filters) > 100 {
		s.fail(c, invalid("give 1 to 100 filter parameters, e.g. filter=%s", "plant/%23"))
		return
	}
	var snapshot bool
	if v := q.Get("snapshot"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.fail(c, invalid("snapshot must be true or false, not %q", v))
			return
		}
		snapshot = b
	}
	last := c.GetHeader("Last-Event-ID")
	if last == "" {
		last = q.Get("last_event_id")
	}
	if last != "" {
		if _, _, err := bridge.ParseID(last); err != nil {
			s.fail(c, invalid("Last-Event-ID %q is not a message id", last))
			return
		}
	}
	if !origin.Allowed(c.Request, s.cfg.AllowedOrigins) {
		s.fail(c, bridge.Errorf(bridge.ECodeForbidden, "origin %q is not allowed (ws.allowed_origins)", c.GetHeader("Origin")))
		return
	}
	if s.refuseDraining(c) {
		return
	}
	id := identity(c)
	for _, f := range filters {
		if err := s.bridge.CheckSubscribe(c, id, f); err != nil {
			s.fail(c, err)
			return
		}
	}
	// Refused with 503 before the stream begins while the store is down.
	if err := s.bridge.StoreReady(c); err != nil {
		s.fail(c, err)
		return
	}
	release, err := s.bridge.Connect(id)
	if err != nil {
		s.fail(c, err)
		return
	}
	defer release()
	expired, stopExpiry := expiryTimer(id)
	defer stopExpiry()

	fc := s.cfg.StreamQueue
	fc.Kind, fc.Notify, fc.Alarms = "sse", nil, true
	feed := s.bridge.NewFeed(id, fc)
	defer feed.Close()
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	rc := http.NewResponseController(c.Writer)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Writer.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 1000\n\n")) {
		return
	}

	// The snapshot or replay waits on the queue this loop drains.
	subscribed := make(chan error, 1)
	go func() {
		subscribed <- feed.Subscribe(c, filters, bridge.SubscribeOptions{Snapshot: snapshot && last == "", After: last})
	}()
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	var batch []bridge.Delivery
	for {
		select {
		case <-feed.Ready():
			// Everything queued, a batch at a time.
			for batch = feed.Take(batch[:0], 64); len(batch) > 0; batch = feed.Take(batch[:0], 64) {
				for i, d := range batch {
					feed.Took(d)
					batch[i] = bridge.Delivery{} // the event may go
					if !write(sseEvent(d)) {
						return
					}
				}
			}
		case err := <-subscribed:
			subscribed = nil
			switch {
			case err == nil:
			case bridge.ErrorCode(err) == bridge.ECodeGap:
				if !write(sseData("gap", map[string]string{"last_id": last, "message": "messages after Last-Event-ID have left the history window; re-read current values"})) {
					return
				}
			default:
				d, _ := wire.Detail(err)
				write(sseData("error", d))
				return
			}
		case <-heartbeat.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-s.bridge.Draining():
			// EventSource reconnects (to another instance) and resumes
			// with Last-Event-ID.
			return
		case <-feed.Done():
			if bridge.ErrorCode(feed.Err()) == bridge.ECodeSlowConsumer {
				s.bridge.Metrics().SlowClosed("sse")
			}
			d, _ := wire.Detail(feed.Err())
			write(sseData("error", d))
			return
		case <-expired:
			write(sseData("error", wire.ErrorDetail{Code: bridge.ECodeUnauthorized, Message: "token expired"}))
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// sseEvent is the SSE form of a delivery, built once per message for every
// stream, or a gap event. Snapshot values carry no id, so that they do not
// move the client's Last-Event-ID.
func sseEvent(d bridge.Delivery) []byte {
	if d.Alarm != nil { // no id, as a gap
		if d.Snapshot {
			return sseData("alarm", streamAlarm{wire.NewAlarm(&d.Alarm.Alarm, false, time.Now()), true})
		}
		return d.Alarm.Encoded(sseKey{}, func(a *bridge.Alarm) any {
			return sseData("alarm", streamAlarm{Alarm: wire.NewAlarm(a, false, time.Now())})
		}).([]byte)
	}
	if d.Gap != nil { // no id: Last-Event-ID stays at the last message
		return sseData("gap", map[string]string{"last_id": d.Gap.After,
			"message": "messages after last_id left the history window before this server delivered them; re-read current values"})
	}
	if d.Snapshot {
		return sseData("message", streamMessage{wire.NewEnvelope(&d.Event.Message, time.Now()), true})
	}
	return d.Event.Encoded(sseKey{}, func(m *bridge.Message) any {
		var b bytes.Buffer
		b.WriteString("id: ")
		b.WriteString(m.ID)
		b.WriteByte('\n')
		b.Write(sseData("message", streamMessage{Envelope: wire.NewEnvelope(m, time.Now())}))
		return b.Bytes()
	}).([]byte)
}

func sseData(event string, v any) []byte {
	data, _ := json.Marshal(v)
	return []byte("event: " + event + "\ndata: " + string(data) + "\n\n")
}

// expiryTimer fires when id's credentials expire; never for credentials
// without expiry.
func expiryTimer(id bridge.Identity) (<-chan time.Time, func()) {
	if id.Expires.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(id.Expires))
	return t.C, func() { t.Stop() }
}
