package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// MQTT 5 reason codes the proxy sends.
const (
	rcUnspecified       = 0x80
	rcMalformed         = 0x81
	rcProtocolError     = 0x82
	rcUnsupportedProto  = 0x84
	rcClientIDInvalid   = 0x85
	rcNotAuthorized     = 0x87
	rcShuttingDown      = 0x8B
	rcKeepAliveTimeout  = 0x8D
	rcFilterInvalid     = 0x8F
	rcTopicNameInvalid  = 0x90
	rcPacketTooLarge    = 0x95
	rcSharedUnsupported = 0x9E

	noDisconnect = 0 // end without an MQTT 5 DISCONNECT
)

// closeTryAgainLater is the WebSocket close code 1013.
const closeTryAgainLater = 1013

// MQTT 3.1.1 CONNACK return codes and the SUBACK failure.
const (
	rc311BadVersion = 0x01
	rc311IDRejected = 0x02
	rc311NotAuth    = 0x05
	rc311SubFailure = 0x80
)

// maxClientIDLen bounds the client id a client may choose, in bytes.
const maxClientIDLen = 256

// subackPending marks, in a partly refused SUBSCRIBE's reason codes, the
// places that the broker's SUBACK fills.
const subackPending = 0xFF

var (
	errTextFrame = errors.New("MQTT over WebSocket needs binary frames, not text")
	errShared    = bridge.Errorf(bridge.ECodeForbidden, "shared subscriptions ($share/...) are not available through the proxy")
)

// protocolError is a well-formed packet that breaks a rule of the protocol
// or of the proxy.
type protocolError struct{ msg string }

func (e protocolError) Error() string { return e.msg }

// refused is a publish that MQTT 3.1.1 cannot refuse in an acknowledgement:
// the connection is closed.
type refused struct{ err error }

func (e refused) Error() string { return "publish refused: " + e.err.Error() }

// mqttConn is one proxied connection: the client's packets are read in the
// HTTP handler's goroutine (fromClient), the broker's in another
// (fromBroker); both write to the client under wmu.
type mqttConn struct {
	s   *MQTTServer
	ws  *websocket.Conn
	id  bridge.Identity // its ClientID is the MQTT client id unless the credentials fix one
	log *slog.Logger

	version     byte
	problemInfo bool // MQTT 5: Reason Strings may be sent on acknowledgements
	connected   atomic.Bool
	brokerBye   atomic.Bool // the broker sent DISCONNECT (MQTT 5)
	clientBye   atomic.Bool // the client sent DISCONNECT

	wmu sync.Mutex // one writer of the WebSocket at a time

	upstream net.Conn // the broker connection, opened before the upgrade

	mu      sync.Mutex
	pending map[uint16][]byte // partly refused SUBSCRIBEs by packet id (subackPending where the broker's codes go)

	done      chan struct{}
	closeOnce sync.Once
}

func newMQTTConn(s *MQTTServer, ws *websocket.Conn, id bridge.Identity, up net.Conn) *mqttConn {
	return &mqttConn{s: s, ws: ws, id: id, log: s.log, upstream: up, pending: map[uint16][]byte{}, done: make(chan struct{})}
}

// wsStream reads the binary messages of a WebSocket as one byte stream: MQTT
// packets need not be aligned with WebSocket messages.
type wsStream struct {
	ws *websocket.Conn
	r  io.Reader
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			kind, r, err := s.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if errors.Is(err, io.EOF) {
			s.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *mqttConn) run(ctx context.Context) {
	defer c.ws.Close()
	defer c.upstream.Close()
	in := bufio.NewReader(&wsStream{ws: c.ws})
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.ConnectTimeout))
	p, err := readPacket(in, c.s.cfg.MaxPacketSize)
	if err != nil {
		c.fail(err)
		return
	}
	up, fromUp, idle, ok := c.connect(ctx, p)
	if !ok {
		return
	}
	if !c.id.Expires.IsZero() {
		t := time.AfterFunc(time.Until(c.id.Expires), func() {
			c.end(rcNotAuthorized, CloseTokenExpired, "token expired")
		})
		defer t.Stop()
	}
	brokerDone := make(chan struct{})
	go func() {
		defer close(brokerDone)
		c.fromBroker(fromUp)
	}()
	c.fromClient(ctx, in, up, idle)
	_ = up.Close()
	<-brokerDone
}

// end closes the connection once: an MQTT 5 DISCONNECT with reason5 (unless
// noDisconnect, or before CONNACK), the WebSocket close code and text, and
// the broker connection.
func (c *mqttConn) end(reason5 byte, code int, text string) {
	c.closeOnce.Do(func() {
		close(c.done)
		if reason5 != noDisconnect {
			c.wmu.Lock()
			// connected is set under wmu once CONNACK is written, after
			// version.
			if c.connected.Load() && c.version == mqtt5 && !c.brokerBye.Load() && !c.clientBye.Load() {
				_ = c.writeLocked(disconnectPacket(reason5, reasonString(text)))
			}
			c.wmu.Unlock()
		}
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeText(text)), time.Now().Add(time.Second))
		_ = c.ws.Close()
		_ = c.upstream.Close()
	})
}

// shutdown ends the connection because the server stops, with the close
// code 1012 (service restart) that /v1/ws uses too; it does not wait for a
// slow client.
func (c *mqttConn) shutdown() {
	go c.end(rcShuttingDown, websocket.CloseServiceRestart, "server shutting down")
}

// closeText fits text into a close frame (123 bytes).
func closeText(s string) string {
	if len(s) <= 120 {
		return s
	}
	s = s[:120]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// fail ends the connection after a failure to read or handle a client's
// packet.
func (c *mqttConn) fail(err error) {
	var pe protocolError
	var rf refused
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		c.logDebug("mqtt proxy: packet too large", "err", err)
		c.end(rcPacketTooLarge, websocket.CloseMessageTooBig, err.Error())
	case errors.Is(err, errMalformed):
		c.logDebug("mqtt proxy: malformed packet", "err", err)
		c.end(rcMalformed, websocket.CloseProtocolError, err.Error())
	case errors.As(err, &pe):
		c.logDebug("mqtt proxy: protocol error", "err", err)
		c.end(rcProtocolError, websocket.CloseProtocolError, err.Error())
	case errors.As(err, &rf):
		c.logDebug("mqtt proxy: publish refused, closing (MQTT 3.1.1)", "err", err)
		c.end(rcNotAuthorized, websocket.ClosePolicyViolation, err.Error())
	case errors.Is(err, errTextFrame):
		c.end(rcProtocolError, websocket.CloseUnsupportedData, err.Error())
	case errors.As(err, &ne) && ne.Timeout():
		c.logDebug("mqtt proxy: client idle too long")
		c.end(rcKeepAliveTimeout, websocket.CloseNormalClosure, "keep alive timeout")
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.end(rcMalformed, websocket.CloseProtocolError, "the connection ended inside a packet")
	default: // the client went away, or the connection is closing
		c.end(noDisconnect, websocket.CloseNormalClosure, "")
	}
}

func (c *mqttConn) logDebug(msg string, args ...any) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug(msg, append(args, "identity", c.id.Name, "client_id", c.id.ClientID)...)
	}
}

// write sends one message of MQTT packets to the client.
func (c *mqttConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

func (c *mqttConn) writeLocked(b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// connect handles the client's CONNECT: it checks and rewrites it, opens the
// broker connection, and answers with the broker's CONNACK (rewritten for
// MQTT 5). ok is false when the connection has ended.
func (c *mqttConn) connect(ctx context.Context, p packet) (up net.Conn, fromUp *bufio.Reader, idle time.Duration, ok bool) {
	cp, err := parseMQTTConnect(p)
	var ev errVersion
	if errors.As(err, &ev) {
		_ = c.write([]byte{packets.CONNACK << 4, 2, 0, rc311BadVersion})
		c.end(noDisconnect, websocket.CloseProtocolError, ev.Error())
		return nil, nil, 0, false
	}
	if err != nil {
		c.fail(err)
		return nil, nil, 0, false
	}
	c.version = cp.version
	if cp.version == mqtt5 {
		c.problemInfo = cp.props.RequestProblemInfo == nil || *cp.props.RequestProblemInfo == 1
	}
	refuse := func(code5, code311 byte, msg string) {
		c.logDebug("mqtt proxy: CONNECT refused", "reason", msg)
		ack := &connackPacket{reason: code311}
		if c.version == mqtt5 {
			ack = &connackPacket{reason: code5, props: &packets.Properties{ReasonString: reasonString(msg)}}
		}
		_ = c.write(ack.encode(c.version))
		c.end(noDisconnect, websocket.ClosePolicyViolation, msg)
	}

	// The client id: the credentials' own, or the client's; a new one when
	// empty. The broker sees it after the identity's name.
	cid, assigned := cp.clientID, false
	switch {
	case c.id.ClientID != "" && cid != "" && cid != c.id.ClientID:
		refuse(rcClientIDInvalid, rc311IDRejected, fmt.Sprintf("the credentials fix the client id to %q", c.id.ClientID))
		return nil, nil, 0, false
	case cid == "" && c.id.ClientID != "":
		cid, assigned = c.id.ClientID, true
	case cid == "":
		if c.version == mqtt311 && !cp.cleanStart {
			refuse(0, rc311IDRejected, "an empty client id needs a clean session")
			return nil, nil, 0, false
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		cid, assigned = "auto-"+hex.EncodeToString(b[:]), true
	}
	if err := checkClientID(cid); err != nil {
		refuse(rcClientIDInvalid, rc311IDRejected, err.Error())
		return nil, nil, 0, false
	}
	if c.id.ClientID == "" && !strings.ContainsAny(cid, "+#/") {
		c.id.ClientID = cid // %c in the identity's rules
	}
	if cp.will {
		if err := c.checkPublish(ctx, cp.willTopic, cp.willQoS); err != nil {
			refuse(publishReason(err), rc311NotAuth, "will message: "+errMessage(err))
			return nil, nil, 0, false
		}
	}
	// The identity's key, not its bare name: an API key and a JWT subject
	// of the same name never share a broker session (bridge.Identity.Key).
	cp.clientID = c.id.Key() + "/" + cid
	if len(cp.clientID) > 65535 {
		refuse(rcClientIDInvalid, rc311IDRejected, "the identity's name and the client id are too long together")
		return nil, nil, 0, false
	}
	if !c.s.cfg.PassCredentials {
		cp.hasUsername, cp.username = c.s.cfg.Username != "", c.s.cfg.Username
		cp.hasPassword, cp.password = c.s.cfg.Password != "" && (cp.hasUsername || c.version == mqtt5), []byte(c.s.cfg.Password)
		if c.version == mqtt5 {
			cp.props.AuthMethod, cp.props.AuthData = "", nil
		}
	}

	conn := c.upstream
	_ = conn.SetDeadline(time.Now().Add(c.s.cfg.ConnectTimeout))
	fromUp = bufio.NewReader(conn)
	var ack *connackPacket
	var ap packet
	if _, err = conn.Write(cp.encode()); err == nil {
		if ap, err = readPacket(fromUp, maxVBI); err == nil {
			ack, err = parseConnack(ap, c.version)
		}
	}
	if err != nil {
		// No CONNACK: a refusing one would make MQTT.js give up.
		c.log.Warn("mqtt proxy: the broker did not answer CONNECT", "err", err)
		c.end(noDisconnect, closeTryAgainLater, "the broker did not answer")
		return nil, nil, 0, false
	}
	_ = conn.SetDeadline(time.Time{})

	keepAlive := cp.keepAlive
	out := ap.bytes()
	if c.version == mqtt5 {
		props := ack.props
		if props.ServerKeepAlive != nil {
			keepAlive = *props.ServerKeepAlive
		}
		props.TopicAliasMaximum = nil // the proxy must see every topic name
		if max := uint32(c.s.cfg.MaxPacketSize); props.MaximumPacketSize == nil || *props.MaximumPacketSize > max {
			props.MaximumPacketSize = &max
		}
		props.AssignedClientID = ""
		if assigned {
			props.AssignedClientID = cid
		}
		if ka := time.Duration(keepAlive) * 1500 * time.Millisecond; keepAlive == 0 || ka > c.s.cfg.IdleTimeout {
			ska := uint16(max(1, c.s.cfg.IdleTimeout*2/3/time.Second))
			props.ServerKeepAlive, keepAlive = &ska, ska
		}
		out = ack.encode(mqtt5)
	}
	idle = c.s.cfg.IdleTimeout
	if ka := time.Duration(keepAlive) * 1500 * time.Millisecond; keepAlive > 0 && ka < idle {
		idle = ka
	}
	accepted := (c.version == mqtt5 && ack.reason < 0x80) || (c.version == mqtt311 && ack.reason == 0)
	c.wmu.Lock()
	err = c.writeLocked(out)
	c.connected.Store(err == nil && accepted)
	c.wmu.Unlock()
	if err != nil {
		c.end(noDisconnect, websocket.CloseNormalClosure, "")
		return nil, nil, 0, false
	}
	if !accepted {
		c.logDebug("mqtt proxy: the broker refused the connection", "reason", ack.reason)
		c.end(noDisconnect, websocket.CloseNormalClosure, "the broker refused the connection")
		return nil, nil, 0, false
	}
	c.logDebug("mqtt proxy: connected", "version", c.version, "broker_client_id", cp.clientID)
	return conn, fromUp, idle, true
}

// checkClientID refuses client ids that are too long or hold control
// characters.
func checkClientID(cid string) error {
	if len(cid) > maxClientIDLen {
		return fmt.Errorf("the client id is longer than %d bytes", maxClientIDLen)
	}
	for _, r := range cid {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return errors.New("the client id holds a control character")
		}
	}
	return nil
}

// fromClient reads the client's packets until the connection ends: CONNECT
// has been handled; PUBLISH and SUBSCRIBE are checked, the others passed.
func (c *mqttConn) fromClient(ctx context.Context, in *bufio.Reader, up net.Conn, idle time.Duration) {
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(idle))
		p, err := readPacket(in, c.s.cfg.MaxPacketSize)
		if err == nil {
			switch p.kind() {
			case packets.PUBLISH:
				err = c.publish(ctx, p, up)
			case packets.SUBSCRIBE:
				err = c.subscribe(ctx, p, up)
			default:
				if err = checkFixedHeader(p, c.version); err == nil {
					err = c.toBroker(up, p.bytes())
					if p.kind() == packets.DISCONNECT {
						c.clientBye.Store(true)
					}
				}
			}
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// toBroker writes to the broker; a failure ends the connection.
func (c *mqttConn) toBroker(up net.Conn, b []byte) error {
	_ = up.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if _, err := up.Write(b); err != nil {
		c.end(noDisconnect, websocket.CloseGoingAway, "the broker connection was lost")
		return err
	}
	return nil
}

// publish passes an allowed PUBLISH on as it came. A refused one is
// answered with PUBACK or PUBREC 0x87 (MQTT 5, QoS 1 and 2), dropped (MQTT
// 5, QoS 0), or closes the connection (MQTT 3.1.1).
func (c *mqttConn) publish(ctx context.Context, p packet, up net.Conn) error {
	pub, err := parsePublish(p, c.version)
	if err != nil {
		return err
	}
	if pub.alias {
		return protocolError{"Topic Alias is not accepted (the Topic Alias Maximum is 0)"}
	}
	if err := topic.ValidateName(pub.topic); err != nil {
		return malformed("topic name %q: %v", reasonString(pub.topic), err)
	}
	if err := c.checkPublish(ctx, pub.topic, pub.qos); err != nil {
		c.s.cfg.Bridge.Metrics().Published(pub.qos, bridge.ErrorCode(err))
		if c.version != mqtt5 {
			return refused{err}
		}
		c.logDebug("mqtt proxy: publish refused", "topic", pub.topic, "err", err)
		reason := ""
		if c.problemInfo {
			reason = reasonString(errMessage(err))
		}
		switch pub.qos {
		case 1:
			return c.write(ackPacket(packets.PUBACK, pub.id, publishReason(err), reason))
		case 2:
			return c.write(ackPacket(packets.PUBREC, pub.id, publishReason(err), reason))
		}
		return nil
	}
	for {
		err := c.s.cfg.Limiter.Allow(c.id, bridge.ActionPublish)
		if err == nil {
			break
		}
		wait := 100 * time.Millisecond
		if e, ok := errors.AsType[*bridge.Error](err); ok && e.RetryAfter > 0 {
			wait = min(e.RetryAfter, time.Second)
		}
		select {
		case <-time.After(wait):
		case <-c.done:
			return io.EOF
		}
	}
	if err := c.toBroker(up, p.bytes()); err != nil {
		return err
	}
	c.s.cfg.Bridge.Metrics().Published(pub.qos, "ok")
	return nil
}

// checkPublish checks a topic name the client publishes to (or names in its
// will): the bridge's checks and the proxied broker's topics.
func (c *mqttConn) checkPublish(ctx context.Context, name string, qos byte) error {
	if err := c.s.cfg.Bridge.CheckPublish(ctx, c.id, bridge.Message{Topic: name, QoS: qos}); err != nil {
		return err
	}
	for _, f := range c.s.cfg.Topics {
		if topic.Match(f, name) {
			return nil
		}
	}
	return bridge.Errorf(bridge.ECodeNotBridged, "the topic %q is not bridged to this broker", reasonString(name))
}

// checkSubscribe checks a filter the client subscribes to.
func (c *mqttConn) checkSubscribe(ctx context.Context, filter string) error {
	if err := topic.ValidateFilter(filter); err != nil {
		return bridge.Errorf(bridge.ECodeInvalidTopic, "filter %q: %v", reasonString(filter), err)
	}
	if _, _, shared := topic.IsShared(filter); shared {
		return errShared
	}
	if err := c.s.cfg.Bridge.CheckSubscribe(ctx, c.id, filter); err != nil {
		return err
	}
	for _, f := range c.s.cfg.Topics {
		if topic.Covers(f, filter) {
			return nil
		}
	}
	return bridge.Errorf(bridge.ECodeNotBridged, "the filter %q reaches beyond the topics bridged to this broker", reasonString(filter))
}

// publishReason is the MQTT 5 reason code of a refused publish.
func publishReason(err error) byte {
	if bridge.ErrorCode(err) == bridge.ECodeInvalidTopic {
		return rcTopicNameInvalid
	}
	return rcNotAuthorized
}

// subscribeReason is the SUBACK code of a refused filter.
func (c *mqttConn) subscribeReason(err error) byte {
	switch {
	case c.version != mqtt5:
		return rc311SubFailure
	case err == errShared:
		return rcSharedUnsupported
	case bridge.ErrorCode(err) == bridge.ECodeInvalidTopic:
		return rcFilterInvalid
	case bridge.ErrorCode(err) == bridge.ECodeInternal:
		return rcUnspecified
	}
	return rcNotAuthorized
}

// subscribe passes a SUBSCRIBE on when every filter is allowed, answers it
// alone when none is, and otherwise passes on the allowed ones and merges
// the broker's SUBACK with the refusals (fromBroker).
func (c *mqttConn) subscribe(ctx context.Context, p packet, up net.Conn) error {
	s, err := parseSubscribe(p, c.version)
	if err != nil {
		return err
	}
	codes := make([]byte, len(s.subs))
	var allowed []subscription
	firstRefusal := ""
	for i, sub := range s.subs {
		if err := c.checkSubscribe(ctx, sub.filter); err != nil {
			codes[i] = c.subscribeReason(err)
			if firstRefusal == "" {
				firstRefusal = errMessage(err)
			}
			c.logDebug("mqtt proxy: subscription refused", "filter", sub.filter, "err", err)
			continue
		}
		codes[i] = subackPending
		allowed = append(allowed, sub)
	}
	c.mu.Lock()
	delete(c.pending, s.id)
	switch {
	case len(allowed) == len(s.subs):
		c.mu.Unlock()
		return c.toBroker(up, p.bytes())
	case len(allowed) == 0:
		c.mu.Unlock()
		ack := &subackPacket{id: s.id, reasons: codes}
		if c.version == mqtt5 && c.problemInfo {
			ack.props = propertiesBlock(&packets.Properties{ReasonString: reasonString(firstRefusal)}, packets.SUBACK)
		}
		return c.write(ack.encode(c.version))
	}
	c.pending[s.id] = codes
	c.mu.Unlock()
	s.subs = allowed
	return c.toBroker(up, s.encode(c.version))
}

// propertiesBlock is an encoded property block.
func propertiesBlock(p *packets.Properties, kind byte) []byte {
	e := &encoder{}
	e.properties(p, kind)
	return e.b
}

// fromBroker passes the broker's packets to the client, streaming their
// payloads; packets already waiting in the buffer share one WebSocket
// message. Only the SUBACK of a partly refused SUBSCRIBE is read and
// merged.
func (c *mqttConn) fromBroker(r *bufio.Reader) {
	for {
		h, n, err := readHeader(r)
		if err == nil && h>>4 == packets.SUBACK && c.hasPending() {
			err = c.mergeSuback(r, h, n)
		} else if err == nil {
			err = c.stream(r, h, n)
		}
		if err != nil {
			select {
			case <-c.done:
			default:
				c.logDebug("mqtt proxy: broker connection ended", "err", err)
			}
			if c.clientBye.Load() {
				c.end(noDisconnect, websocket.CloseNormalClosure, "")
			} else {
				c.end(rcUnspecified, websocket.CloseGoingAway, "the broker closed the connection")
			}
			return
		}
	}
}

func (c *mqttConn) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// coalesceLimit bounds the packets stream puts in one WebSocket message.
const coalesceLimit = 64 << 10

// stream copies a packet from the broker to the client, in one WebSocket
// message with the packets after it that are already buffered (up to
// coalesceLimit bytes), but not a SUBACK that must be merged.
func (c *mqttConn) stream(r *bufio.Reader, h byte, n int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	for total := 0; ; {
		switch h >> 4 {
		case packets.DISCONNECT:
			c.brokerBye.Store(true)
		case packets.PUBLISH:
			c.s.cfg.Bridge.Metrics().Delivered(metricsKind)
		}
		if _, err := w.Write(appendVBI([]byte{h}, n)); err != nil {
			return err
		}
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return err
		}
		total += n
		var ok bool
		if h, n, ok = bufferedHeader(r); !ok || total+n > coalesceLimit || (h>>4 == packets.SUBACK && c.hasPending()) {
			return w.Close()
		}
		if _, err := r.Discard(1 + vbiLen(n)); err != nil {
			return err
		}
	}
}

// bufferedHeader peeks at the fixed header of the next packet when it is
// entirely in r's buffer; it consumes nothing.
func bufferedHeader(r *bufio.Reader) (h byte, n int, ok bool) {
	b, _ := r.Peek(min(r.Buffered(), 5))
	if len(b) < 2 {
		return 0, 0, false
	}
	h, n, err := readHeader(bytes.NewReader(b))
	if err != nil {
		return 0, 0, false
	}
	return h, n, true
}

// mergeSuback puts the broker's reason codes for the filters passed on into
// the places left for them among the refusals.
func (c *mqttConn) mergeSuback(r *bufio.Reader, h byte, n int) error {
	if n > 1<<20 {
		return malformed("SUBACK of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	p := packet{header: h, body: body}
	ack, err := parseSuback(p, c.version)
	if err != nil {
		return err
	}
	c.mu.Lock()
	codes, ok := c.pending[ack.id]
	delete(c.pending, ack.id)
	c.mu.Unlock()
	if !ok {
		return c.write(p.bytes())
	}
	j := 0
	for i, code := range codes {
		if code != subackPending {
			continue
		}
		if j == len(ack.reasons) {
			return malformed("the broker's SUBACK has fewer reason codes than filters")
		}
		codes[i] = ack.reasons[j]
		j++
	}
	if j != len(ack.reasons) {
		return malformed("the broker's SUBACK has more reason codes than filters")
	}
	ack.reasons = codes
	return c.write(ack.encode(c.version))
}

// errMessage is the message of an error that may be shown to the client.
func errMessage(err error) string {
	d, _ := wire.Detail(err)
	return d.Message
}
