package wsproxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// The MQTT packets the proxy reads from clients are parsed here, strictly:
// anything the MQTT 3.1.1 or 5 specification calls malformed is an error,
// and the proxy closes the connection. Only CONNECT, PUBLISH, SUBSCRIBE and
// UNSUBSCRIBE are looked into (and from the broker CONNACK, SUBACK, the
// topic name and packet identifier of a PUBLISH, and the packet identifier
// of a PUBREL or UNSUBACK); every other packet is checked for its fixed
// header only and passed on as it came.
// MQTT 5 properties are decoded with paho.golang's packets.Properties,
// always on a slice of exactly their declared length.

// MQTT protocol levels.
const (
	mqtt311 = 4
	mqtt5   = 5
)

// checkFixedHeader checks what the fixed header alone says of a packet a
// client sends: a type a client may send in its protocol version, and the
// flags that type requires.
func checkFixedHeader(p mqttpacket.Packet, version byte) error {
	switch p.Kind() {
	case packets.PUBLISH:
		return nil // its flags are checked by parsePublish
	case packets.PUBREL, packets.SUBSCRIBE, packets.UNSUBSCRIBE:
		if p.Flags() != 0x2 {
			return mqttpacket.Malformed("packet type %d with flags %#x, want 0x2", p.Kind(), p.Flags())
		}
	case packets.PUBACK, packets.PUBREC, packets.PUBCOMP, packets.PINGREQ, packets.DISCONNECT:
		if p.Flags() != 0 {
			return mqttpacket.Malformed("packet type %d with flags %#x, want 0", p.Kind(), p.Flags())
		}
	case packets.AUTH:
		if version != mqtt5 {
			return mqttpacket.Malformed("AUTH exists only in MQTT 5")
		}
		if p.Flags() != 0 {
			return mqttpacket.Malformed("AUTH with flags %#x, want 0", p.Flags())
		}
	case packets.CONNECT:
		return mqttpacket.Malformed("a second CONNECT")
	default:
		return mqttpacket.Malformed("packet type %d may not be sent by a client", p.Kind())
	}
	return nil
}

// decoder reads the fields of a packet body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = mqttpacket.Malformed(format, args...)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("%s missing", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16(what string) uint16 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 2 {
		d.fail("%s missing", what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

// binary reads two bytes of length and that many bytes.
func (d *decoder) binary(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("%s: %d bytes announced, %d left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// string reads a UTF-8 string: well-formed, without U+0000.
func (d *decoder) string(what string) string {
	b := d.binary(what)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		d.fail("%s is not valid UTF-8", what)
		return ""
	}
	if bytes.IndexByte(b, 0) >= 0 {
		d.fail("%s contains U+0000", what)
		return ""
	}
	return string(b)
}

// rawProperties returns an MQTT 5 property block as it is on the wire: its
// length and its content.
func (d *decoder) rawProperties(what string) []byte {
	if d.err != nil {
		return nil
	}
	r := bytes.NewReader(d.b)
	n, err := mqttpacket.ReadVBI(r)
	if err != nil {
		d.fail("%s length: %v", what, err)
		return nil
	}
	total := mqttpacket.VBILen(n) + n
	if total > len(d.b) {
		d.fail("%s: %d bytes announced, %d left", what, n, len(d.b)-mqttpacket.VBILen(n))
		return nil
	}
	v := d.b[:total:total]
	d.b = d.b[total:]
	return v
}

// properties decodes an MQTT 5 property block of packet type kind.
func (d *decoder) properties(what string, kind byte) (raw []byte, props *packets.Properties) {
	raw = d.rawProperties(what)
	if d.err != nil {
		return nil, nil
	}
	props, err := mqttpacket.DecodeProperties(raw, kind)
	if err != nil {
		d.fail("%s: %v", what, err)
		return nil, nil
	}
	return raw, props
}

func (d *decoder) end(what string) {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the end of the %s", len(d.b), what)
	}
}

// errVersion is a CONNECT of a protocol version the proxy does not speak.
type errVersion struct {
	name  string
	level byte
}

func (e errVersion) Error() string {
	return fmt.Sprintf("unsupported MQTT protocol %q level %d (3.1.1 and 5 are supported)", e.name, e.level)
}

// connectPacket is a parsed CONNECT.
type connectPacket struct {
	version    byte
	cleanStart bool
	keepAlive  uint16
	props      *packets.Properties // MQTT 5; never nil then

	clientID    string
	will        bool
	willQoS     byte
	willRetain  bool
	willProps   []byte // MQTT 5, raw
	willRespTo  string // MQTT 5: the will's Response Topic, checked like a publish's
	willTopic   string
	willPayload []byte

	hasUsername bool
	username    string
	hasPassword bool
	password    []byte
}

// parseMQTTConnect parses a CONNECT. A well-formed CONNECT of another protocol
// version is an errVersion.
func parseMQTTConnect(p mqttpacket.Packet) (*connectPacket, error) {
	if p.Kind() != packets.CONNECT {
		return nil, mqttpacket.Malformed("the first packet must be CONNECT, not type %d", p.Kind())
	}
	if p.Flags() != 0 {
		return nil, mqttpacket.Malformed("CONNECT with flags %#x", p.Flags())
	}
	d := &decoder{b: p.Body}
	name := d.string("protocol name")
	level := d.byte("protocol level")
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case name == "MQTT" && (level == mqtt311 || level == mqtt5):
	case name == "MQTT" || name == "MQIsdp":
		return nil, errVersion{name, level}
	default:
		return nil, mqttpacket.Malformed("protocol name %q", name)
	}
	c := &connectPacket{version: level}
	flags := d.byte("connect flags")
	c.keepAlive = d.uint16("keep alive")
	if d.err != nil {
		return nil, d.err
	}
	if flags&0x01 != 0 {
		return nil, mqttpacket.Malformed("CONNECT reserved flag set")
	}
	c.cleanStart = flags&0x02 != 0
	c.will = flags&0x04 != 0
	c.willQoS = flags >> 3 & 0x03
	c.willRetain = flags&0x20 != 0
	c.hasPassword = flags&0x40 != 0
	c.hasUsername = flags&0x80 != 0
	switch {
	case c.willQoS == 3:
		return nil, mqttpacket.Malformed("will QoS 3")
	case !c.will && (c.willQoS != 0 || c.willRetain):
		return nil, mqttpacket.Malformed("will QoS or retain without a will")
	case level == mqtt311 && c.hasPassword && !c.hasUsername:
		return nil, mqttpacket.Malformed("a password without a user name")
	}
	if level == mqtt5 {
		_, c.props = d.properties("CONNECT properties", packets.CONNECT)
	}
	c.clientID = d.string("client identifier")
	if c.will {
		if level == mqtt5 {
			c.willProps = d.rawProperties("will properties")
			if d.err == nil {
				if props, err := mqttpacket.DecodeProperties(c.willProps, packets.CONNECT); err != nil {
					d.fail("will properties: %v", err)
				} else if props != nil {
					c.willRespTo = props.ResponseTopic
				}
			}
		}
		c.willTopic = d.string("will topic")
		c.willPayload = d.binary("will payload")
	}
	if c.hasUsername {
		c.username = d.string("user name")
	}
	if c.hasPassword {
		c.password = d.binary("password")
	}
	d.end("CONNECT")
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// encode is the CONNECT as it goes on the wire.
func (c *connectPacket) encode() []byte {
	e := &mqttpacket.Encoder{}
	e.String("MQTT")
	e.Byte(c.version)
	var flags byte
	if c.cleanStart {
		flags |= 0x02
	}
	if c.will {
		flags |= 0x04 | c.willQoS<<3
		if c.willRetain {
			flags |= 0x20
		}
	}
	if c.hasPassword {
		flags |= 0x40
	}
	if c.hasUsername {
		flags |= 0x80
	}
	e.Byte(flags)
	e.Uint16(c.keepAlive)
	if c.version == mqtt5 {
		e.Properties(c.props, packets.CONNECT)
	}
	e.String(c.clientID)
	if c.will {
		if c.version == mqtt5 {
			e.Raw(c.willProps)
		}
		e.String(c.willTopic)
		e.Binary(c.willPayload)
	}
	if c.hasUsername {
		e.String(c.username)
	}
	if c.hasPassword {
		e.Binary(c.password)
	}
	return e.Packet(packets.CONNECT << 4)
}

// connackPacket is a parsed CONNACK.
type connackPacket struct {
	sessionPresent bool
	reason         byte
	props          *packets.Properties // MQTT 5; never nil then
}

func parseConnack(p mqttpacket.Packet, version byte) (*connackPacket, error) {
	if p.Kind() != packets.CONNACK || p.Flags() != 0 {
		return nil, mqttpacket.Malformed("the broker answered CONNECT with packet type %d", p.Kind())
	}
	d := &decoder{b: p.Body}
	c := &connackPacket{}
	flags := d.byte("acknowledge flags")
	c.sessionPresent = flags&0x01 != 0
	c.reason = d.byte("return code")
	if version == mqtt5 {
		_, c.props = d.properties("CONNACK properties", packets.CONNACK)
	}
	d.end("CONNACK")
	if d.err != nil {
		return nil, d.err
	}
	if flags&0xFE != 0 {
		return nil, mqttpacket.Malformed("CONNACK reserved flags set")
	}
	return c, nil
}

func (c *connackPacket) encode(version byte) []byte {
	e := &mqttpacket.Encoder{}
	if c.sessionPresent {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
	e.Byte(c.reason)
	if version == mqtt5 {
		e.Properties(c.props, packets.CONNACK)
	}
	return e.Packet(packets.CONNACK << 4)
}

// publishPacket is what the proxy reads of a PUBLISH: its header, not its
// payload.
type publishPacket struct {
	topic  string
	qos    byte
	retain bool
	id     uint16 // QoS 1 and 2
	alias  bool   // MQTT 5: it carries a Topic Alias
	respTo string // MQTT 5: its Response Topic
}

func parsePublish(p mqttpacket.Packet, version byte) (*publishPacket, error) {
	if p.Kind() != packets.PUBLISH {
		return nil, mqttpacket.Malformed("not a PUBLISH")
	}
	f := p.Flags()
	pub := &publishPacket{qos: f >> 1 & 0x03, retain: f&0x01 != 0}
	dup := f&0x08 != 0
	switch {
	case pub.qos == 3:
		return nil, mqttpacket.Malformed("PUBLISH with QoS 3")
	case pub.qos == 0 && dup:
		return nil, mqttpacket.Malformed("PUBLISH with QoS 0 and DUP set")
	}
	d := &decoder{b: p.Body}
	pub.topic = d.string("topic name")
	if pub.qos > 0 {
		pub.id = d.uint16("packet identifier")
		if d.err == nil && pub.id == 0 {
			return nil, mqttpacket.Malformed("PUBLISH with packet identifier 0")
		}
	}
	if version == mqtt5 {
		_, props := d.properties("PUBLISH properties", packets.PUBLISH)
		if props != nil {
			pub.alias = props.TopicAlias != nil
			pub.respTo = props.ResponseTopic
			if props.SubscriptionIdentifier != nil {
				d.fail("a client PUBLISH must not carry a Subscription Identifier")
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return pub, nil
}

// readPublishHead reads, of a PUBLISH from the broker whose fixed header
// (QoS qos, remaining length n) has been read, the topic name and the
// packet identifier. head is what it read, as it came, in buf's storage;
// name is within head.
func readPublishHead(r io.Reader, n int, qos byte, buf []byte) (head, name []byte, id uint16, err error) {
	idLen := 0
	if qos > 0 {
		idLen = 2
	}
	if qos == 3 || n < 2+idLen {
		return nil, nil, 0, mqttpacket.Malformed("the broker's PUBLISH with QoS %d and %d bytes", qos, n)
	}
	head = append(buf[:0], 0, 0)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, 0, err
	}
	topicLen := int(binary.BigEndian.Uint16(head))
	size := 2 + topicLen + idLen
	if size > n {
		return nil, nil, 0, mqttpacket.Malformed("the broker's PUBLISH is shorter than its topic name")
	}
	head = slices.Grow(head, size-2)[:size]
	if _, err := io.ReadFull(r, head[2:]); err != nil {
		return nil, nil, 0, err
	}
	if qos > 0 {
		id = binary.BigEndian.Uint16(head[2+topicLen:])
	}
	return head, head[2 : 2+topicLen], id, nil
}

// subscription is one filter of a SUBSCRIBE and its options byte.
type subscription struct {
	filter  string
	options byte
}

// subscribePacket is a parsed SUBSCRIBE.
type subscribePacket struct {
	id    uint16
	props []byte // MQTT 5, raw
	subs  []subscription
}

func parseSubscribe(p mqttpacket.Packet, version byte) (*subscribePacket, error) {
	if p.Kind() != packets.SUBSCRIBE || p.Flags() != 0x2 {
		return nil, mqttpacket.Malformed("SUBSCRIBE with flags %#x, want 0x2", p.Flags())
	}
	d := &decoder{b: p.Body}
	s := &subscribePacket{id: d.uint16("packet identifier")}
	if d.err == nil && s.id == 0 {
		return nil, mqttpacket.Malformed("SUBSCRIBE with packet identifier 0")
	}
	if version == mqtt5 {
		s.props, _ = d.properties("SUBSCRIBE properties", packets.SUBSCRIBE)
	}
	for d.err == nil && len(d.b) > 0 {
		sub := subscription{filter: d.string("topic filter"), options: d.byte("subscription options")}
		if d.err != nil {
			break
		}
		switch {
		case sub.options&0x03 == 3:
			return nil, mqttpacket.Malformed("subscription QoS 3")
		case version == mqtt311 && sub.options&0xFC != 0:
			return nil, mqttpacket.Malformed("reserved subscription option bits set")
		case version == mqtt5 && sub.options&0xC0 != 0:
			return nil, mqttpacket.Malformed("reserved subscription option bits set")
		case version == mqtt5 && sub.options>>4&0x03 == 3:
			return nil, mqttpacket.Malformed("retain handling 3")
		}
		s.subs = append(s.subs, sub)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(s.subs) == 0 {
		return nil, mqttpacket.Malformed("SUBSCRIBE without a topic filter")
	}
	return s, nil
}

func (s *subscribePacket) encode(version byte) []byte {
	e := &mqttpacket.Encoder{}
	e.Uint16(s.id)
	if version == mqtt5 {
		e.Raw(s.props)
	}
	for _, sub := range s.subs {
		e.String(sub.filter)
		e.Byte(sub.options)
	}
	return e.Packet(packets.SUBSCRIBE<<4 | 0x2)
}

// unsubscribePacket is a parsed UNSUBSCRIBE.
type unsubscribePacket struct {
	id      uint16
	props   []byte // MQTT 5, raw
	filters []string
}

func parseUnsubscribe(p mqttpacket.Packet, version byte) (*unsubscribePacket, error) {
	if p.Kind() != packets.UNSUBSCRIBE || p.Flags() != 0x2 {
		return nil, mqttpacket.Malformed("UNSUBSCRIBE with flags %#x, want 0x2", p.Flags())
	}
	d := &decoder{b: p.Body}
	u := &unsubscribePacket{id: d.uint16("packet identifier")}
	if d.err == nil && u.id == 0 {
		return nil, mqttpacket.Malformed("UNSUBSCRIBE with packet identifier 0")
	}
	if version == mqtt5 {
		u.props, _ = d.properties("UNSUBSCRIBE properties", packets.UNSUBSCRIBE)
	}
	for d.err == nil && len(d.b) > 0 {
		u.filters = append(u.filters, d.string("topic filter"))
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(u.filters) == 0 {
		return nil, mqttpacket.Malformed("UNSUBSCRIBE without a topic filter")
	}
	return u, nil
}

func (u *unsubscribePacket) encode(version byte) []byte {
	e := &mqttpacket.Encoder{}
	e.Uint16(u.id)
	if version == mqtt5 {
		if len(u.props) == 0 {
			e.Byte(0)
		} else {
			e.Raw(u.props)
		}
	}
	for _, f := range u.filters {
		e.String(f)
	}
	return e.Packet(packets.UNSUBSCRIBE<<4 | 0x2)
}

// subackPacket is a parsed SUBACK.
type subackPacket struct {
	id      uint16
	props   []byte // MQTT 5, raw
	reasons []byte
}

func parseSuback(p mqttpacket.Packet, version byte) (*subackPacket, error) {
	if p.Kind() != packets.SUBACK || p.Flags() != 0 {
		return nil, mqttpacket.Malformed("not a SUBACK")
	}
	d := &decoder{b: p.Body}
	s := &subackPacket{id: d.uint16("packet identifier")}
	if version == mqtt5 {
		s.props = d.rawProperties("SUBACK properties")
	}
	if d.err != nil {
		return nil, d.err
	}
	s.reasons = d.b
	return s, nil
}

func (s *subackPacket) encode(version byte) []byte {
	e := &mqttpacket.Encoder{}
	e.Uint16(s.id)
	if version == mqtt5 {
		if len(s.props) == 0 {
			e.Byte(0)
		} else {
			e.Raw(s.props)
		}
	}
	e.Raw(s.reasons)
	return e.Packet(packets.SUBACK << 4)
}

// ackPacket encodes a PUBACK or PUBREC (kind) refusing a publish; MQTT 5
// only. reason, when not empty, becomes the Reason String.
func ackPacket(kind byte, id uint16, code byte, reason string) []byte {
	e := &mqttpacket.Encoder{}
	e.Uint16(id)
	e.Byte(code)
	var props *packets.Properties
	if reason != "" {
		props = &packets.Properties{ReasonString: reason}
	}
	e.Properties(props, kind)
	return e.Packet(kind << 4)
}

// idPacket encodes a packet of a fixed header and a packet identifier
// alone: the proxy's PUBACK, PUBREC and PUBCOMP to the broker (success, in
// either version).
func idPacket(kind byte, id uint16) []byte {
	return []byte{kind << 4, 2, byte(id >> 8), byte(id)}
}

// disconnectPacket encodes an MQTT 5 DISCONNECT from the server.
func disconnectPacket(code byte, reason string) []byte {
	e := &mqttpacket.Encoder{}
	e.Byte(code)
	var props *packets.Properties
	if reason != "" {
		props = &packets.Properties{ReasonString: reason}
	}
	e.Properties(props, packets.DISCONNECT)
	return e.Packet(packets.DISCONNECT << 4)
}

// reasonString shortens a message to fit a Reason String.
func reasonString(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
