package wsproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
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

// errMalformed is wrapped by every parse error.
var errMalformed = errors.New("malformed MQTT packet")

// errTooLarge is a packet over the maximum packet size.
var errTooLarge = errors.New("MQTT packet too large")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// packet is one MQTT control packet: the first byte of its fixed header and
// the rest after the remaining length.
type packet struct {
	header byte
	body   []byte
}

func (p packet) kind() byte  { return p.header >> 4 }
func (p packet) flags() byte { return p.header & 0x0F }

// bytes is the packet as it goes on the wire.
func (p packet) bytes() []byte {
	out := make([]byte, 0, 1+4+len(p.body))
	out = append(out, p.header)
	out = appendVBI(out, len(p.body))
	return append(out, p.body...)
}

// maxVBI is the largest remaining length MQTT can encode.
const maxVBI = 268_435_455

// readHeader reads a fixed header: the first byte and the remaining length.
// A variable byte integer of more than four bytes, or not in its shortest
// form, is malformed. io.EOF before the first byte is returned as is.
func readHeader(r io.ByteReader) (header byte, length int, err error) {
	header, err = r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	length, err = readVBI(r)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return header, length, err
}

func readVBI(r io.ByteReader) (int, error) {
	v, shift := 0, 0
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b == 0 && i > 0 {
			return 0, malformed("variable byte integer not in its shortest form")
		}
		v |= int(b&0x7F) << shift
		if b&0x80 == 0 {
			return v, nil
		}
		shift += 7
	}
	return 0, malformed("variable byte integer longer than 4 bytes")
}

func appendVBI(b []byte, v int) []byte {
	for {
		d := byte(v & 0x7F)
		v >>= 7
		if v > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if v == 0 {
			return b
		}
	}
}

// vbiLen is the number of bytes of v as a variable byte integer.
func vbiLen(v int) int {
	n := 1
	for v > 127 {
		v >>= 7
		n++
	}
	return n
}

// readPacket reads one packet whose total size (fixed header included) is
// at most max bytes; a larger one is errTooLarge and is not read.
func readPacket(r *bufio.Reader, max int) (packet, error) {
	h, n, err := readHeader(r)
	if err != nil {
		return packet{}, err
	}
	if size := 1 + vbiLen(n) + n; size > max {
		return packet{header: h}, fmt.Errorf("%w: %d bytes, more than the limit of %d", errTooLarge, size, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return packet{}, err
	}
	return packet{header: h, body: body}, nil
}

// checkFixedHeader checks what the fixed header alone says of a packet a
// client sends: a type a client may send in its protocol version, and the
// flags that type requires.
func checkFixedHeader(p packet, version byte) error {
	switch p.kind() {
	case packets.PUBLISH:
		return nil // its flags are checked by parsePublish
	case packets.PUBREL, packets.SUBSCRIBE, packets.UNSUBSCRIBE:
		if p.flags() != 0x2 {
			return malformed("packet type %d with flags %#x, want 0x2", p.kind(), p.flags())
		}
	case packets.PUBACK, packets.PUBREC, packets.PUBCOMP, packets.PINGREQ, packets.DISCONNECT:
		if p.flags() != 0 {
			return malformed("packet type %d with flags %#x, want 0", p.kind(), p.flags())
		}
	case packets.AUTH:
		if version != mqtt5 {
			return malformed("AUTH exists only in MQTT 5")
		}
		if p.flags() != 0 {
			return malformed("AUTH with flags %#x, want 0", p.flags())
		}
	case packets.CONNECT:
		return malformed("a second CONNECT")
	default:
		return malformed("packet type %d may not be sent by a client", p.kind())
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
		d.err = malformed(format, args...)
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
	n, err := readVBI(r)
	if err != nil {
		d.fail("%s length: %v", what, err)
		return nil
	}
	total := vbiLen(n) + n
	if total > len(d.b) {
		d.fail("%s: %d bytes announced, %d left", what, n, len(d.b)-vbiLen(n))
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
	props, err := decodeProperties(raw, kind)
	if err != nil {
		d.fail("%s: %v", what, err)
		return nil, nil
	}
	return raw, props
}

// decodeProperties decodes raw (length and content) with paho's decoder,
// which must consume exactly the block.
func decodeProperties(raw []byte, kind byte) (props *packets.Properties, err error) {
	defer func() {
		if r := recover(); r != nil {
			props, err = nil, fmt.Errorf("undecodable properties: %v", r)
		}
	}()
	props = &packets.Properties{}
	buf := bytes.NewBuffer(raw)
	if err := props.Unpack(buf, kind); err != nil {
		return nil, err
	}
	if buf.Len() != 0 {
		return nil, errors.New("a property runs past the block")
	}
	for _, s := range []string{props.ContentType, props.ResponseTopic, props.AssignedClientID, props.AuthMethod,
		props.ResponseInfo, props.ServerReference, props.ReasonString} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return nil, errors.New("a string property is not valid UTF-8")
		}
	}
	for _, u := range props.User {
		if !utf8.ValidString(u.Key) || !utf8.ValidString(u.Value) || strings.IndexByte(u.Key+u.Value, 0) >= 0 {
			return nil, errors.New("a user property is not valid UTF-8")
		}
	}
	return props, nil
}

func (d *decoder) end(what string) {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the end of the %s", len(d.b), what)
	}
}

// encoder builds a packet body.
type encoder struct{ b []byte }

func (e *encoder) byte(v byte)          { e.b = append(e.b, v) }
func (e *encoder) uint16(v uint16)      { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) raw(v []byte)         { e.b = append(e.b, v...) }
func (e *encoder) binary(v []byte)      { e.uint16(uint16(len(v))); e.b = append(e.b, v...) }
func (e *encoder) string(v string)      { e.uint16(uint16(len(v))); e.b = append(e.b, v...) }
func (e *encoder) packet(h byte) []byte { return packet{header: h, body: e.b}.bytes() }

// properties appends an MQTT 5 property block.
func (e *encoder) properties(p *packets.Properties, kind byte) {
	var b []byte
	if p != nil {
		b = p.Pack(kind)
	}
	e.b = appendVBI(e.b, len(b))
	e.b = append(e.b, b...)
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
func parseMQTTConnect(p packet) (*connectPacket, error) {
	if p.kind() != packets.CONNECT {
		return nil, malformed("the first packet must be CONNECT, not type %d", p.kind())
	}
	if p.flags() != 0 {
		return nil, malformed("CONNECT with flags %#x", p.flags())
	}
	d := &decoder{b: p.body}
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
		return nil, malformed("protocol name %q", name)
	}
	c := &connectPacket{version: level}
	flags := d.byte("connect flags")
	c.keepAlive = d.uint16("keep alive")
	if d.err != nil {
		return nil, d.err
	}
	if flags&0x01 != 0 {
		return nil, malformed("CONNECT reserved flag set")
	}
	c.cleanStart = flags&0x02 != 0
	c.will = flags&0x04 != 0
	c.willQoS = flags >> 3 & 0x03
	c.willRetain = flags&0x20 != 0
	c.hasPassword = flags&0x40 != 0
	c.hasUsername = flags&0x80 != 0
	switch {
	case c.willQoS == 3:
		return nil, malformed("will QoS 3")
	case !c.will && (c.willQoS != 0 || c.willRetain):
		return nil, malformed("will QoS or retain without a will")
	case level == mqtt311 && c.hasPassword && !c.hasUsername:
		return nil, malformed("a password without a user name")
	}
	if level == mqtt5 {
		_, c.props = d.properties("CONNECT properties", packets.CONNECT)
	}
	c.clientID = d.string("client identifier")
	if c.will {
		if level == mqtt5 {
			c.willProps = d.rawProperties("will properties")
			if d.err == nil {
				if props, err := decodeProperties(c.willProps, packets.CONNECT); err != nil {
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
	e := &encoder{}
	e.string("MQTT")
	e.byte(c.version)
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
	e.byte(flags)
	e.uint16(c.keepAlive)
	if c.version == mqtt5 {
		e.properties(c.props, packets.CONNECT)
	}
	e.string(c.clientID)
	if c.will {
		if c.version == mqtt5 {
			e.raw(c.willProps)
		}
		e.string(c.willTopic)
		e.binary(c.willPayload)
	}
	if c.hasUsername {
		e.string(c.username)
	}
	if c.hasPassword {
		e.binary(c.password)
	}
	return e.packet(packets.CONNECT << 4)
}

// connackPacket is a parsed CONNACK.
type connackPacket struct {
	sessionPresent bool
	reason         byte
	props          *packets.Properties // MQTT 5; never nil then
}

func parseConnack(p packet, version byte) (*connackPacket, error) {
	if p.kind() != packets.CONNACK || p.flags() != 0 {
		return nil, malformed("the broker answered CONNECT with packet type %d", p.kind())
	}
	d := &decoder{b: p.body}
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
		return nil, malformed("CONNACK reserved flags set")
	}
	return c, nil
}

func (c *connackPacket) encode(version byte) []byte {
	e := &encoder{}
	if c.sessionPresent {
		e.byte(1)
	} else {
		e.byte(0)
	}
	e.byte(c.reason)
	if version == mqtt5 {
		e.properties(c.props, packets.CONNACK)
	}
	return e.packet(packets.CONNACK << 4)
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

func parsePublish(p packet, version byte) (*publishPacket, error) {
	if p.kind() != packets.PUBLISH {
		return nil, malformed("not a PUBLISH")
	}
	f := p.flags()
	pub := &publishPacket{qos: f >> 1 & 0x03, retain: f&0x01 != 0}
	dup := f&0x08 != 0
	switch {
	case pub.qos == 3:
		return nil, malformed("PUBLISH with QoS 3")
	case pub.qos == 0 && dup:
		return nil, malformed("PUBLISH with QoS 0 and DUP set")
	}
	d := &decoder{b: p.body}
	pub.topic = d.string("topic name")
	if pub.qos > 0 {
		pub.id = d.uint16("packet identifier")
		if d.err == nil && pub.id == 0 {
			return nil, malformed("PUBLISH with packet identifier 0")
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
		return nil, nil, 0, malformed("the broker's PUBLISH with QoS %d and %d bytes", qos, n)
	}
	head = append(buf[:0], 0, 0)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, 0, err
	}
	topicLen := int(binary.BigEndian.Uint16(head))
	size := 2 + topicLen + idLen
	if size > n {
		return nil, nil, 0, malformed("the broker's PUBLISH is shorter than its topic name")
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

func parseSubscribe(p packet, version byte) (*subscribePacket, error) {
	if p.kind() != packets.SUBSCRIBE || p.flags() != 0x2 {
		return nil, malformed("SUBSCRIBE with flags %#x, want 0x2", p.flags())
	}
	d := &decoder{b: p.body}
	s := &subscribePacket{id: d.uint16("packet identifier")}
	if d.err == nil && s.id == 0 {
		return nil, malformed("SUBSCRIBE with packet identifier 0")
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
			return nil, malformed("subscription QoS 3")
		case version == mqtt311 && sub.options&0xFC != 0:
			return nil, malformed("reserved subscription option bits set")
		case version == mqtt5 && sub.options&0xC0 != 0:
			return nil, malformed("reserved subscription option bits set")
		case version == mqtt5 && sub.options>>4&0x03 == 3:
			return nil, malformed("retain handling 3")
		}
		s.subs = append(s.subs, sub)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(s.subs) == 0 {
		return nil, malformed("SUBSCRIBE without a topic filter")
	}
	return s, nil
}

func (s *subscribePacket) encode(version byte) []byte {
	e := &encoder{}
	e.uint16(s.id)
	if version == mqtt5 {
		e.raw(s.props)
	}
	for _, sub := range s.subs {
		e.string(sub.filter)
		e.byte(sub.options)
	}
	return e.packet(packets.SUBSCRIBE<<4 | 0x2)
}

// unsubscribePacket is a parsed UNSUBSCRIBE.
type unsubscribePacket struct {
	id      uint16
	props   []byte // MQTT 5, raw
	filters []string
}

func parseUnsubscribe(p packet, version byte) (*unsubscribePacket, error) {
	if p.kind() != packets.UNSUBSCRIBE || p.flags() != 0x2 {
		return nil, malformed("UNSUBSCRIBE with flags %#x, want 0x2", p.flags())
	}
	d := &decoder{b: p.body}
	u := &unsubscribePacket{id: d.uint16("packet identifier")}
	if d.err == nil && u.id == 0 {
		return nil, malformed("UNSUBSCRIBE with packet identifier 0")
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
		return nil, malformed("UNSUBSCRIBE without a topic filter")
	}
	return u, nil
}

func (u *unsubscribePacket) encode(version byte) []byte {
	e := &encoder{}
	e.uint16(u.id)
	if version == mqtt5 {
		if len(u.props) == 0 {
			e.byte(0)
		} else {
			e.raw(u.props)
		}
	}
	for _, f := range u.filters {
		e.string(f)
	}
	return e.packet(packets.UNSUBSCRIBE<<4 | 0x2)
}

// subackPacket is a parsed SUBACK.
type subackPacket struct {
	id      uint16
	props   []byte // MQTT 5, raw
	reasons []byte
}

func parseSuback(p packet, version byte) (*subackPacket, error) {
	if p.kind() != packets.SUBACK || p.flags() != 0 {
		return nil, malformed("not a SUBACK")
	}
	d := &decoder{b: p.body}
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
	e := &encoder{}
	e.uint16(s.id)
	if version == mqtt5 {
		if len(s.props) == 0 {
			e.byte(0)
		} else {
			e.raw(s.props)
		}
	}
	e.raw(s.reasons)
	return e.packet(packets.SUBACK << 4)
}

// ackPacket encodes a PUBACK or PUBREC (kind) refusing a publish; MQTT 5
// only. reason, when not empty, becomes the Reason String.
func ackPacket(kind byte, id uint16, code byte, reason string) []byte {
	e := &encoder{}
	e.uint16(id)
	e.byte(code)
	var props *packets.Properties
	if reason != "" {
		props = &packets.Properties{ReasonString: reason}
	}
	e.properties(props, kind)
	return e.packet(kind << 4)
}

// idPacket encodes a packet of a fixed header and a packet identifier
// alone: the proxy's PUBACK, PUBREC and PUBCOMP to the broker (success, in
// either version).
func idPacket(kind byte, id uint16) []byte {
	return []byte{kind << 4, 2, byte(id >> 8), byte(id)}
}

// disconnectPacket encodes an MQTT 5 DISCONNECT from the server.
func disconnectPacket(code byte, reason string) []byte {
	e := &encoder{}
	e.byte(code)
	var props *packets.Properties
	if reason != "" {
		props = &packets.Properties{ReasonString: reason}
	}
	e.properties(props, packets.DISCONNECT)
	return e.packet(packets.DISCONNECT << 4)
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
