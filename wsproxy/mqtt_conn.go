package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
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
	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
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

// revokeID is the packet identifier of the proxy's own UNSUBSCRIBE; the
// client's packets wait until its UNSUBACK has come, so the identifier is
// not the client's at the time.
const revokeID = 1

// maxVerdicts bounds the topic names whose delivery verdict a connection
// remembers.
const maxVerdicts = 1024

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
// (fromBroker); both write to the client under wmu and to the broker under
// umu.
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

	wmu  sync.Mutex // one writer of the WebSocket at a time
	torn bool       // under wmu: a message to the client ended inside a packet

	upstream net.Conn   // the broker connection, opened before the upgrade
	umu      sync.Mutex // one writer of upstream at a time

	// The broker session (set by connect): its broker client id, whether
	// the broker keeps it after the connection, and for how long (0:
	// without end).
	session    string
	persistent bool
	sessionTTL time.Duration

	// Owned by fromBroker once it runs.
	verdicts  map[string]bool     // whether the identity may receive a topic name (at most maxVerdicts)
	released  map[uint16]struct{} // QoS 2 deliveries the proxy dropped and answered with PUBREC: their PUBREL is the proxy's to complete
	revoking  bool                // the UNSUBACK of the proxy's UNSUBSCRIBE is awaited
	revoked   chan struct{}       // closed by fromBroker when it came; nil: no UNSUBSCRIBE
	pubHeader []byte              // reused: the topic name and packet identifier of a PUBLISH

	mu      sync.Mutex
	pending map[uint16][]byte // partly refused SUBSCRIBEs by packet id (subackPending where the broker's codes go)

	done      chan struct{}
	cancel    context.CancelFunc // ends run's context, with done
	closeOnce sync.Once
}

func newMQTTConn(s *MQTTServer, ws *websocket.Conn, id bridge.Identity, up net.Conn, cancel context.CancelFunc) *mqttConn {
	return &mqttConn{s: s, ws: ws, id: id, log: s.log, upstream: up, pending: map[uint16][]byte{}, done: make(chan struct{}), cancel: cancel,
		verdicts: map[string]bool{}, released: map[uint16]struct{}{}}
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
	p, err := mqttpacket.ReadPacket(in, c.s.cfg.MaxPacketSize)
	if err != nil {
		c.fail(err)
		return
	}
	up, fromUp, idle, ok := c.connect(ctx, p)
	if !ok {
		return
	}
	defer c.s.grants.release(c.id.Key(), c.session, c, c.persistent, c.sessionTTL)
	if !c.id.Expires.IsZero() {
		t := time.AfterFunc(time.Until(c.id.Expires), func() {
			c.end(rcNotAuthorized, CloseTokenExpired, "token expired")
		})
		defer t.Stop()
	}
	brokerDone := make(chan struct{})
	go func() {
		defer close(brokerDone)
		c.fromBroker(ctx, fromUp)
	}()
	c.fromClient(ctx, in, up, idle)
	_ = up.Close()
	<-brokerDone
}

// end closes the connection once: the broker connection, then an MQTT 5
// DISCONNECT with reason5 (unless noDisconnect, or before CONNACK, or after
// a message that ended inside a packet), the WebSocket close code and text.
// The broker connection goes first: fromBroker holds wmu while it copies a
// packet, and a broker that stops inside one would hold it for ever.
func (c *mqttConn) end(reason5 byte, code int, text string) {
	c.closeOnce.Do(func() {
		close(c.done)
		c.cancel()
		_ = c.upstream.Close()
		if reason5 != noDisconnect {
			c.wmu.Lock()
			// connected is set under wmu once CONNACK is written, after
			// version.
			if c.connected.Load() && c.version == mqtt5 && !c.brokerBye.Load() && !c.clientBye.Load() && !c.torn {
				_ = c.writeLocked(disconnectPacket(reason5, reasonString(text)))
			}
			c.wmu.Unlock()
		}
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeText(text)), time.Now().Add(time.Second))
		_ = c.ws.Close()
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
	case errors.Is(err, mqttpacket.ErrTooLarge):
		c.logDebug("mqtt proxy: packet too large", "err", err)
		c.end(rcPacketTooLarge, websocket.CloseMessageTooBig, err.Error())
	case errors.Is(err, mqttpacket.ErrMalformed):
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
func (c *mqttConn) connect(ctx context.Context, p mqttpacket.Packet) (up net.Conn, fromUp *bufio.Reader, idle time.Duration, ok bool) {
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
		cp.props.TopicAliasMaximum = nil // the proxy must see the topic name of every delivery
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
		if err := c.checkPublish(ctx, cp.willTopic, cp.willRespTo, cp.willQoS); err != nil {
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
	var ap mqttpacket.Packet
	if _, err = conn.Write(cp.encode()); err == nil {
		if ap, err = mqttpacket.ReadPacket(fromUp, mqttpacket.MaxVBI); err == nil {
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
	out := ap.Bytes()
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
	c.logDebug("mqtt proxy: connected", "version", c.version, "broker_client_id", cp.clientID, "session_present", ack.sessionPresent)
	c.session = cp.clientID
	c.persistent = c.version == mqtt311 && !cp.cleanStart
	if e := cp.props; c.version == mqtt5 && e.SessionExpiryInterval != nil && *e.SessionExpiryInterval > 0 {
		c.persistent = true
		if *e.SessionExpiryInterval != 0xFFFFFFFF {
			c.sessionTTL = time.Duration(*e.SessionExpiryInterval) * time.Second
		}
	}
	granted := c.s.grants.claim(c.id.Key(), c.session, c, cp.cleanStart || !ack.sessionPresent)
	c.revoke(ctx, conn, granted)
	return conn, fromUp, idle, true
}

// revoke unsubscribes, in a resumed session, the filters the proxy passed
// on before that the identity may no longer subscribe to. fromBroker takes
// the UNSUBACK; fromClient waits for it before it passes anything on.
func (c *mqttConn) revoke(ctx context.Context, up net.Conn, granted []string) {
	var gone []string
	for _, f := range granted {
		// A failing authorizer (an internal error) revokes nothing: every
		// delivery is checked anyway.
		if err := c.checkSubscribe(ctx, f); err != nil && bridge.ErrorCode(err) != bridge.ECodeInternal {
			gone = append(gone, f)
		}
	}
	if len(gone) == 0 {
		return
	}
	c.logDebug("mqtt proxy: unsubscribing the resumed session from filters no longer allowed", "filters", gone)
	c.s.grants.update(c.id.Key(), c.session, gone, true)
	c.revoking, c.revoked = true, make(chan struct{})
	u := &unsubscribePacket{id: revokeID, filters: gone}
	_ = c.toBroker(up, u.encode(c.version)) // a failure ends the connection
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
// has been handled; PUBLISH and SUBSCRIBE are checked, UNSUBSCRIBE noted,
// the others passed. It starts once revoke's UNSUBSCRIBE is answered.
func (c *mqttConn) fromClient(ctx context.Context, in *bufio.Reader, up net.Conn, idle time.Duration) {
	if c.revoked != nil && !c.awaitRevoked() {
		return
	}
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(idle))
		p, err := mqttpacket.ReadPacket(in, c.s.cfg.MaxPacketSize)
		if err == nil {
			switch p.Kind() {
			case packets.PUBLISH:
				err = c.publish(ctx, p, up)
			case packets.SUBSCRIBE:
				err = c.subscribe(ctx, p, up)
			case packets.UNSUBSCRIBE:
				err = c.unsubscribe(p, up)
			default:
				if err = checkFixedHeader(p, c.version); err == nil {
					err = c.toBroker(up, p.Bytes())
					if p.Kind() == packets.DISCONNECT {
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

// awaitRevoked waits for the UNSUBACK of revoke's UNSUBSCRIBE; false when
// the connection ended instead.
func (c *mqttConn) awaitRevoked() bool {
	t := time.NewTimer(c.s.cfg.ConnectTimeout)
	defer t.Stop()
	select {
	case <-c.revoked:
		return true
	case <-c.done:
	case <-t.C:
		c.log.Warn("mqtt proxy: the broker did not answer UNSUBSCRIBE")
		c.end(rcUnspecified, closeTryAgainLater, "the broker did not answer")
	}
	return false
}

// toBroker writes to the broker; a failure ends the connection.
func (c *mqttConn) toBroker(up net.Conn, b []byte) error {
	c.umu.Lock()
	_ = up.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_, err := up.Write(b)
	c.umu.Unlock()
	if err != nil {
		c.end(noDisconnect, websocket.CloseGoingAway, "the broker connection was lost")
		return err
	}
	return nil
}

// publish passes an allowed PUBLISH on as it came. A refused one is
// answered with PUBACK or PUBREC 0x87 (MQTT 5, QoS 1 and 2), dropped (MQTT
// 5, QoS 0), or closes the connection (MQTT 3.1.1).
func (c *mqttConn) publish(ctx context.Context, p mqttpacket.Packet, up net.Conn) error {
	pub, err := parsePublish(p, c.version)
	if err != nil {
		return err
	}
	if pub.alias {
		return protocolError{"Topic Alias is not accepted (the Topic Alias Maximum is 0)"}
	}
	if err := topic.ValidateName(pub.topic); err != nil {
		return mqttpacket.Malformed("topic name %q: %v", reasonString(pub.topic), err)
	}
	msg := bridge.Message{Topic: pub.topic, QoS: pub.qos, Properties: bridge.Properties{ResponseTopic: pub.respTo}}
	var sent error
	err = c.s.cfg.Bridge.Forward(ctx, c.id, c.s.cfg.Broker, msg, func() error {
		sent = c.toBroker(up, p.Bytes())
		return sent
	})
	switch {
	case err == nil:
		return sent
	case ctx.Err() != nil: // the connection ended while waiting for budget
		return io.EOF
	case c.version != mqtt5:
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

// checkPublish checks a topic name the client names in its will, with the
// message's response topic (MQTT 5; "" when none).
func (c *mqttConn) checkPublish(ctx context.Context, name, responseTopic string, qos byte) error {
	msg := bridge.Message{Topic: name, QoS: qos, Properties: bridge.Properties{ResponseTopic: responseTopic}}
	return c.s.cfg.Bridge.CheckPublishOn(ctx, c.id, c.s.cfg.Broker, msg)
}

// mayReceive reports whether the identity may receive a delivery on a topic
// name: the subscribe rules (the bridge's authorizer, as for every other
// read) and the proxied broker's topics. Verdicts are remembered, a bounded
// number: the identity's rules do not change during a connection. Called
// by fromBroker only.
func (c *mqttConn) mayReceive(ctx context.Context, name []byte) bool {
	if ok, found := c.verdicts[string(name)]; found {
		return ok
	}
	s := string(name)
	err := c.s.cfg.Bridge.MayReceiveOn(ctx, c.id, c.s.cfg.Broker, s)
	ok := err == nil
	if code := bridge.ErrorCode(err); ok || code == bridge.ECodeForbidden || code == bridge.ECodeNotBridged {
		if len(c.verdicts) >= maxVerdicts {
			clear(c.verdicts)
		}
		c.verdicts[s] = ok
	}
	return ok
}

// checkSubscribe checks a filter the client subscribes to.
func (c *mqttConn) checkSubscribe(ctx context.Context, filter string) error {
	if err := topic.ValidateFilter(filter); err != nil {
		return bridge.Errorf(bridge.ECodeInvalidTopic, "filter %q: %v", reasonString(filter), err)
	}
	if _, _, shared := topic.IsShared(filter); shared {
		return errShared
	}
	return c.s.cfg.Bridge.CheckSubscribeOn(ctx, c.id, c.s.cfg.Broker, filter)
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
func (c *mqttConn) subscribe(ctx context.Context, p mqttpacket.Packet, up net.Conn) error {
	s, err := parseSubscribe(p, c.version)
	if err != nil {
		return err
	}
	codes := make([]byte, len(s.subs))
	var allowed []subscription
	var filters []string
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
		filters = append(filters, sub.filter)
	}
	c.s.grants.update(c.id.Key(), c.session, filters, false)
	c.mu.Lock()
	delete(c.pending, s.id)
	switch {
	case len(allowed) == len(s.subs):
		c.mu.Unlock()
		return c.toBroker(up, p.Bytes())
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

// unsubscribe passes an UNSUBSCRIBE on as it came, and forgets its filters.
func (c *mqttConn) unsubscribe(p mqttpacket.Packet, up net.Conn) error {
	u, err := parseUnsubscribe(p, c.version)
	if err != nil {
		return err
	}
	c.s.grants.update(c.id.Key(), c.session, u.filters, true)
	return c.toBroker(up, p.Bytes())
}

// propertiesBlock is an encoded property block.
func propertiesBlock(p *packets.Properties, kind byte) []byte {
	e := &mqttpacket.Encoder{}
	e.Properties(p, kind)
	return e.B
}

// fromBroker passes the broker's packets to the client, streaming their
// payloads; packets already waiting in the buffer share one WebSocket
// message. Read instead of streamed: the SUBACK of a partly refused
// SUBSCRIBE (merged), the topic name of every PUBLISH (checked: one the
// identity may not receive is dropped, and its flow completed with the
// broker), the PUBREL of a dropped QoS 2 PUBLISH (answered), and the
// UNSUBACK of the proxy's own UNSUBSCRIBE (taken).
func (c *mqttConn) fromBroker(ctx context.Context, r *bufio.Reader) {
	for {
		h, n, err := mqttpacket.ReadHeader(r)
		if err == nil {
			err = c.fromBrokerPacket(ctx, r, h, n)
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

// fromBrokerPacket handles one packet of the broker, whose fixed header
// (h, remaining length n) has been read.
func (c *mqttConn) fromBrokerPacket(ctx context.Context, r *bufio.Reader, h byte, n int) error {
	switch h >> 4 {
	case packets.SUBACK:
		if c.hasPending() {
			return c.mergeSuback(r, h, n)
		}
	case packets.UNSUBACK:
		if c.revoking && n >= 2 {
			b, err := r.Peek(2)
			if err != nil {
				return err
			}
			if binary.BigEndian.Uint16(b) == revokeID {
				c.revoking = false
				close(c.revoked)
				_, err := r.Discard(n)
				return err
			}
		}
	case packets.PUBREL:
		if len(c.released) > 0 && n >= 2 {
			b, err := r.Peek(2)
			if err != nil {
				return err
			}
			id := binary.BigEndian.Uint16(b)
			if _, ok := c.released[id]; ok {
				delete(c.released, id)
				if _, err := r.Discard(n); err != nil {
					return err
				}
				return c.toBroker(c.upstream, idPacket(packets.PUBCOMP, id))
			}
		}
	case packets.PUBLISH:
		qos := h >> 1 & 0x03
		head, name, id, err := readPublishHead(r, n, qos, c.pubHeader)
		if err != nil {
			return err
		}
		c.pubHeader = head
		if c.mayReceive(ctx, name) {
			return c.stream(r, h, n, head)
		}
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.logDebug("mqtt proxy: delivery dropped: the identity may not receive it", "topic", string(name))
		}
		if _, err := r.Discard(n - len(head)); err != nil {
			return err
		}
		switch qos {
		case 1:
			return c.toBroker(c.upstream, idPacket(packets.PUBACK, id))
		case 2:
			c.released[id] = struct{}{}
			return c.toBroker(c.upstream, idPacket(packets.PUBREC, id))
		}
		return nil
	}
	return c.stream(r, h, n, nil)
}

func (c *mqttConn) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// coalesceLimit bounds the packets stream puts in one WebSocket message.
const coalesceLimit = 64 << 10

// stream copies a packet from the broker to the client (head, the start of
// its body, already read), in one WebSocket message with the packets after
// it that are already buffered and pass unchanged (up to coalesceLimit
// bytes).
func (c *mqttConn) stream(r *bufio.Reader, h byte, n int, head []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	c.torn = true // until the message is complete
	for total := 0; ; {
		switch h >> 4 {
		case packets.DISCONNECT:
			c.brokerBye.Store(true)
		case packets.PUBLISH:
			c.s.cfg.Bridge.Metrics().Delivered(metricsKind)
		}
		if _, err := w.Write(mqttpacket.AppendVBI([]byte{h}, n)); err != nil {
			return err
		}
		if _, err := w.Write(head); err != nil {
			return err
		}
		if _, err := io.CopyN(w, r, int64(n-len(head))); err != nil {
			return err
		}
		total += n
		head = nil
		var ok bool
		if h, n, ok = c.bufferedPasses(r); !ok || total+n > coalesceLimit {
			err := w.Close()
			c.torn = err != nil
			return err
		}
		if _, err := r.Discard(1 + mqttpacket.VBILen(n)); err != nil {
			return err
		}
	}
}

// bufferedPasses peeks at the next packet and reports whether it is in r's
// buffer far enough to tell that it passes unchanged: not a packet that
// fromBrokerPacket reads, and for a PUBLISH a topic name already known to be
// allowed. It consumes nothing and never waits.
func (c *mqttConn) bufferedPasses(r *bufio.Reader) (h byte, n int, ok bool) {
	if h, n, ok = bufferedHeader(r); !ok {
		return 0, 0, false
	}
	switch h >> 4 {
	case packets.SUBACK:
		ok = !c.hasPending()
	case packets.UNSUBACK:
		ok = !c.revoking
	case packets.PUBREL:
		ok = len(c.released) == 0
	case packets.PUBLISH:
		at := 1 + mqttpacket.VBILen(n) + 2
		b, _ := r.Peek(min(r.Buffered(), at))
		if len(b) < at {
			return h, n, false
		}
		end := at + int(binary.BigEndian.Uint16(b[at-2:]))
		if b, _ = r.Peek(min(r.Buffered(), end)); len(b) < end || end-at+2 > n {
			return h, n, false
		}
		allowed, known := c.verdicts[string(b[at:end])]
		ok = allowed && known
	}
	return h, n, ok
}

// bufferedHeader peeks at the fixed header of the next packet when it is
// entirely in r's buffer; it consumes nothing.
func bufferedHeader(r *bufio.Reader) (h byte, n int, ok bool) {
	b, _ := r.Peek(min(r.Buffered(), 5))
	if len(b) < 2 {
		return 0, 0, false
	}
	h, n, err := mqttpacket.ReadHeader(bytes.NewReader(b))
	if err != nil {
		return 0, 0, false
	}
	return h, n, true
}

// mergeSuback puts the broker's reason codes for the filters passed on into
// the places left for them among the refusals.
func (c *mqttConn) mergeSuback(r *bufio.Reader, h byte, n int) error {
	if n > 1<<20 {
		return mqttpacket.Malformed("SUBACK of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	p := mqttpacket.Packet{Header: h, Body: body}
	ack, err := parseSuback(p, c.version)
	if err != nil {
		return err
	}
	c.mu.Lock()
	codes, ok := c.pending[ack.id]
	delete(c.pending, ack.id)
	c.mu.Unlock()
	if !ok {
		return c.write(p.Bytes())
	}
	j := 0
	for i, code := range codes {
		if code != subackPending {
			continue
		}
		if j == len(ack.reasons) {
			return mqttpacket.Malformed("the broker's SUBACK has fewer reason codes than filters")
		}
		codes[i] = ack.reasons[j]
		j++
	}
	if j != len(ack.reasons) {
		return mqttpacket.Malformed("the broker's SUBACK has more reason codes than filters")
	}
	ack.reasons = codes
	return c.write(ack.encode(c.version))
}

// errMessage is the message of an error that may be shown to the client.
func errMessage(err error) string {
	d, _ := wire.Detail(err)
	return d.Message
}
