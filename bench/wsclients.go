package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// The WebSocket subscribers of the F1 and M1 scenarios, one per protocol:
//
//   - "bridge": the bridge's JSON protocol (docs/websocket.md). It subscribes
//     with ?filter= at connect and reads {"type":"message",...} frames.
//   - "mosquitto": MQTT v5 over WebSocket (subprotocol "mqtt"): CONNECT,
//     SUBSCRIBE at QoS 0, then PUBLISH packets. The binary frames are a byte
//     stream: one frame may hold several packets, a packet may span frames.
//   - "centrifugo": Centrifugo's JSON protocol: connect and subscribe
//     commands, then push replies, several per frame separated by newlines.
//
// Each subscriber is one goroutine that reads frames into a buffer it
// reuses and finds the payload with a scanner that neither decodes nor
// builds maps, so the generator costs far less than the servers it
// measures (paho would cost more than Mosquitto itself).

// Systems of the WebSocket scenarios.
const (
	kindBridge     = "bridge"
	kindMosquitto  = "mosquitto"
	kindCentrifugo = "centrifugo"
)

func checkKind(k string) error {
	switch k {
	case kindBridge, kindMosquitto, kindCentrifugo:
		return nil
	}
	return fmt.Errorf("system %q: want bridge, mosquitto or centrifugo", k)
}

// subShared is what all subscribers of one run share with the publisher.
type subShared struct {
	phase *atomic.Int32 // phaseWarmup, phaseMeasure, phaseStop
	base  atomic.Int64  // first sequence number that counts; MaxInt64 before
}

// subscriber is one WebSocket connection.
type subscriber struct {
	kind  string
	topic string
	sh    *subShared
	ws    *websocket.Conn

	ready     chan struct{} // closed once subscribed
	readyOnce sync.Once
	done      chan struct{} // closed when the read loop has ended
	closing   atomic.Bool   // set before we close the connection ourselves

	total atomic.Int64 // messages received, probes included
	got   atomic.Int64 // messages with a sequence number >= sh.base

	// Owned by the read loop; read only after done is closed.
	n       int64 // deliveries inside the measurement window
	h       *hist // their latency (nil: not recorded)
	bad     int64 // frames that could not be understood
	err     error // why the read loop ended, when not closed by us
	errWhat string
}

// dialSub opens one subscriber connection and sends what subscribes it.
// Readiness (welcome, SUBACK or the subscribe reply) is signalled on
// s.ready by the read loop, which the caller starts with go s.readLoop().
func dialSub(ctx context.Context, d *websocket.Dialer, kind, rawURL, topic, clientID string, sh *subShared, withHist bool) (*subscriber, error) {
	s := &subscriber{kind: kind, topic: topic, sh: sh, ready: make(chan struct{}), done: make(chan struct{})}
	if withHist {
		s.h = new(hist)
	}
	u := rawURL
	var hdr http.Header
	switch kind {
	case kindBridge:
		sep := "?"
		if bytes.ContainsRune([]byte(u), '?') {
			sep = "&"
		}
		u += sep + "filter=" + url.QueryEscape(topic)
	case kindMosquitto:
		hdr = http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}
	}
	ws, resp, err := d.DialContext(ctx, u, hdr)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", u, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	s.ws = ws
	switch kind {
	case kindMosquitto:
		err = ws.WriteMessage(websocket.BinaryMessage, append(mqttpacket.Connect5(clientID, 0), mqttpacket.Subscribe5(1, topic, 0)...))
	case kindCentrifugo:
		err = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{}}`+"\n"+`{"id":2,"subscribe":{"channel":`+strconv.Quote(topic)+`}}`))
	}
	if err != nil {
		ws.Close()
		return nil, err
	}
	return s, nil
}

// close ends the connection; the read loop then ends.
func (s *subscriber) close() {
	s.closing.Store(true)
	_ = s.ws.Close()
}

func (s *subscriber) setReady() { s.readyOnce.Do(func() { close(s.ready) }) }

func (s *subscriber) fail(what string, err error) {
	if s.err == nil {
		s.err, s.errWhat = err, what
	}
}

// failure is why the connection ended on its own, or nil.
func (s *subscriber) failure() error {
	if s.err == nil || s.closing.Load() {
		return nil
	}
	return fmt.Errorf("%s: %w", s.errWhat, s.err)
}

// readLoop reads frames until the connection ends.
func (s *subscriber) readLoop() {
	defer close(s.done)
	buf := make([]byte, 0, 1024)
	var pend []byte // MQTT: bytes of an incomplete packet
	for {
		_, r, err := s.ws.NextReader()
		if err != nil {
			s.fail("read", err)
			return
		}
		buf = buf[:0]
		if s.kind == kindMosquitto {
			buf = append(buf, pend...)
		}
		// Read the frame into buf, growing it when needed.
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				if err != io.EOF {
					s.fail("read", err)
					return
				}
				break
			}
		}
		switch s.kind {
		case kindBridge:
			s.bridgeFrame(buf)
		case kindCentrifugo:
			for line := buf; len(line) > 0; {
				var one []byte
				if i := bytes.IndexByte(line, '\n'); i >= 0 {
					one, line = line[:i], line[i+1:]
				} else {
					one, line = line, nil
				}
				if len(one) > 0 && !s.centrifugoReply(one) {
					return
				}
			}
		case kindMosquitto:
			used, err := s.mqttPackets(buf)
			if err != nil {
				s.fail("MQTT", err)
				return
			}
			pend = append(pend[:0], buf[used:]...)
		}
	}
}

// delivered counts one message whose payload is p.
func (s *subscriber) delivered(p []byte) {
	ts, seq, ok := parseStamp(p)
	if !ok {
		s.bad++
		return
	}
	s.total.Add(1)
	if seq >= s.sh.base.Load() {
		s.got.Add(1)
	}
	if s.sh.phase.Load() == phaseMeasure {
		s.n++
		if s.h != nil {
			s.h.record(time.Duration(time.Now().UnixNano() - ts))
		}
	}
}

// bridgeFrame handles one frame of the bridge's JSON protocol.
func (s *subscriber) bridgeFrame(f []byte) {
	typ, _ := jsonLookup(f, "type")
	switch string(typ) {
	case `"message"`:
		v, ok := jsonLookup(f, "payload")
		if p, ok2 := jsonString(v); ok && ok2 {
			s.delivered(p)
		} else {
			s.bad++
		}
	case `"welcome"`:
		s.setReady()
	default:
		s.bad++
	}
}

// centrifugoReply handles one reply of Centrifugo's JSON protocol; false
// ends the connection.
func (s *subscriber) centrifugoReply(r []byte) bool {
	if bytes.Equal(r, []byte("{}")) {
		// A ping: answer with a pong, as the protocol asks.
		if err := s.ws.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
			s.fail("pong", err)
			return false
		}
		return true
	}
	if push, ok := jsonLookup(r, "push"); ok {
		pub, _ := jsonLookup(push, "pub")
		data, _ := jsonLookup(pub, "data")
		v, _ := jsonLookup(data, "p")
		if p, ok := jsonString(v); ok {
			s.delivered(p)
		} else {
			s.bad++
		}
		return true
	}
	if e, ok := jsonLookup(r, "error"); ok {
		s.fail("Centrifugo", fmt.Errorf("error reply %s", e))
		_ = s.ws.Close()
		return false
	}
	if id, _ := jsonLookup(r, "id"); string(id) == "2" {
		s.setReady()
	}
	return true
}

// mqttPackets handles the complete MQTT packets at the start of b and
// returns how many bytes they took.
func (s *subscriber) mqttPackets(b []byte) (int, error) {
	i := 0
	for {
		pk, n, err := mqttpacket.Split(b[i:])
		if err != nil || n == 0 {
			return i, err
		}
		i += n
		switch pk.Kind() {
		case packets.PUBLISH:
			p, err := mqttpacket.PublishPayload(pk)
			if err != nil {
				return i, err
			}
			s.delivered(p)
		case packets.CONNACK, packets.SUBACK:
			if rc, err := mqttpacket.ReasonCode(pk); err != nil || rc >= 0x80 {
				return i, fmt.Errorf("refused: % x %v", pk.Bytes(), err)
			}
			if pk.Kind() == packets.SUBACK {
				s.setReady()
			}
		case packets.DISCONNECT:
			return i, fmt.Errorf("DISCONNECT from the broker: % x", pk.Body)
		}
	}
}

// --- JSON scanning without decoding ------------------------------------

// jsonLookup returns the raw value of key in the JSON object b (nil, false
// when b is not an object or has no such key). It neither decodes nor
// allocates; keys are compared byte for byte, which is enough for the
// fixed, unescaped keys of the frames read here.
func jsonLookup(b []byte, key string) ([]byte, bool) {
	i := jsonSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = jsonSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return nil, false
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '"' {
			return nil, false
		}
		ke := jsonStringEnd(b, i)
		if ke < 0 {
			return nil, false
		}
		k := b[i+1 : ke]
		i = jsonSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = jsonSpace(b, i+1)
		ve := jsonValueEnd(b, i)
		if ve < 0 {
			return nil, false
		}
		if string(k) == key {
			return b[i:ve], true
		}
		i = ve
	}
}

// jsonString strips the quotes of a raw JSON string (escapes are kept).
func jsonString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

func jsonSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonStringEnd returns the index of the closing quote of the string that
// starts at b[i], or -1.
func jsonStringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// jsonValueEnd returns the index just after the value that starts at b[i],
// or -1.
func jsonValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		e := jsonStringEnd(b, i)
		if e < 0 {
			return -1
		}
		return e + 1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				if j = jsonStringEnd(b, j); j < 0 {
					return -1
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// --- the stamp every payload carries ------------------------------------

// A payload starts with "t<19-digit send time in ns> s<10-digit sequence> "
// and is padded with 'x' to its size.
const stampLen = 33

// newPayload returns a payload of size bytes (at least stampLen).
func newPayload(size int) []byte {
	p := bytes.Repeat([]byte("x"), max(size, stampLen))
	writeStamp(p, 0, 0)
	return p
}

// writeStamp writes the stamp into the first stampLen bytes of p.
func writeStamp(p []byte, ts, seq int64) {
	p[0] = 't'
	putDigits(p[1:20], ts)
	p[20], p[21] = ' ', 's'
	putDigits(p[22:32], seq)
	p[32] = ' '
}

func putDigits(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// parseStamp reads the send time and sequence number from a payload.
func parseStamp(p []byte) (ts, seq int64, ok bool) {
	if len(p) < stampLen || p[0] != 't' || p[21] != 's' {
		return 0, 0, false
	}
	for _, c := range p[1:20] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		ts = ts*10 + int64(c-'0')
	}
	for _, c := range p[22:32] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		seq = seq*10 + int64(c-'0')
	}
	return ts, seq, true
}
