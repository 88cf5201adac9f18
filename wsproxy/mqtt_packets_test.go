package wsproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// pahoBytes encodes a packet with paho's own encoder, the reference for MQTT 5.
func pahoBytes(t testing.TB, cp *packets.ControlPacket) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readOne(t testing.TB, b []byte) mqttpacket.Packet {
	t.Helper()
	p, err := mqttpacket.ReadPacket(bufio.NewReader(bytes.NewReader(b)), mqttpacket.MaxVBI)
	if err != nil {
		t.Fatalf("mqttpacket.ReadPacket(% x): %v", b, err)
	}
	return p
}

func TestReadPacketFraming(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"pingreq", []byte{0xC0, 0}, 10, nil},
		{"two-byte length", append([]byte{0x30, 0x80, 0x01}, make([]byte, 128)...), 1000, nil},
		{"over the limit", append([]byte{0x30, 0x80, 0x01}, make([]byte, 128)...), 130, mqttpacket.ErrTooLarge},
		{"exactly the limit", append([]byte{0x30, 0x80, 0x01}, make([]byte, 128)...), 131, nil},
		{"non-minimal length", []byte{0xC0, 0x80, 0x00}, 10, mqttpacket.ErrMalformed},
		{"five-byte length", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, mqttpacket.MaxVBI, mqttpacket.ErrMalformed},
		{"truncated body", []byte{0x30, 5, 0, 1}, 10, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0x30, 0x80}, 10, io.ErrUnexpectedEOF},
		{"nothing", nil, 10, io.EOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := mqttpacket.ReadPacket(bufio.NewReader(bytes.NewReader(c.in)), c.max)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err == nil && !bytes.Equal(p.Bytes(), c.in) {
				t.Errorf("bytes() = % x, want the input % x", p.Bytes(), c.in)
			}
		})
	}
}

func TestParseConnect(t *testing.T) {
	// MQTT 5, from paho's encoder: every field and properties survive a
	// round trip through parse and encode.
	expiry, rpi := uint32(3600), byte(0)
	v5 := packets.NewControlPacket(packets.CONNECT)
	c5 := v5.Content.(*packets.Connect)
	*c5 = packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, CleanStart: true, KeepAlive: 30, ClientID: "dev1",
		Properties: &packets.Properties{SessionExpiryInterval: &expiry, RequestProblemInfo: &rpi, User: []packets.User{{Key: "k", Value: "v"}}},
		WillFlag:   true, WillQOS: 1, WillRetain: true, WillTopic: "a/will", WillMessage: []byte("gone"),
		WillProperties: &packets.Properties{ContentType: "text/plain"},
		UsernameFlag:   true, Username: "u", PasswordFlag: true, Password: []byte("p")}
	raw := pahoBytes(t, v5)
	cp, err := parseMQTTConnect(readOne(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if cp.version != 5 || !cp.cleanStart || cp.keepAlive != 30 || cp.clientID != "dev1" || !cp.will || cp.willQoS != 1 ||
		!cp.willRetain || cp.willTopic != "a/will" || string(cp.willPayload) != "gone" || cp.username != "u" || string(cp.password) != "p" ||
		*cp.props.SessionExpiryInterval != 3600 || *cp.props.RequestProblemInfo != 0 {
		t.Errorf("parsed %+v", cp)
	}
	if got := cp.encode(); !bytes.Equal(got, raw) {
		t.Errorf("encode:\n% x\nwant paho's\n% x", got, raw)
	}

	// MQTT 3.1.1, by hand: no properties.
	v4 := []byte{0x10, 0, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}
	v4[1] = byte(len(v4) - 2)
	cp, err = parseMQTTConnect(readOne(t, v4))
	if err != nil {
		t.Fatal(err)
	}
	if cp.version != 4 || cp.clientID != "id" || cp.username != "u" || string(cp.password) != "p" || cp.keepAlive != 60 {
		t.Errorf("parsed %+v", cp)
	}
	if got := cp.encode(); !bytes.Equal(got, v4) {
		t.Errorf("encode:\n% x\nwant\n% x", got, v4)
	}

	bad := func(name string, mutate func([]byte) []byte, want error) {
		t.Run(name, func(t *testing.T) {
			b := mutate(bytes.Clone(v4))
			b[1] = byte(len(b) - 2)
			_, err := parseMQTTConnect(readOne(t, b))
			if !errors.Is(err, want) && !(want == nil && err == nil) {
				var ev errVersion
				if !(errors.As(err, &ev) && errors.As(want, &ev)) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
		})
	}
	bad("reserved flag", func(b []byte) []byte { b[9] |= 1; return b }, mqttpacket.ErrMalformed)
	bad("password without user name", func(b []byte) []byte { b[9] = 0x42; return b[:len(b)-3] }, mqttpacket.ErrMalformed)
	bad("will QoS without will", func(b []byte) []byte { b[9] |= 0x08; return b }, mqttpacket.ErrMalformed)
	bad("trailing byte", func(b []byte) []byte { return append(b, 0) }, mqttpacket.ErrMalformed)
	bad("truncated", func(b []byte) []byte { return b[:len(b)-1] }, mqttpacket.ErrMalformed)
	bad("protocol name", func(b []byte) []byte { b[4] = 'X'; return b }, mqttpacket.ErrMalformed)
	bad("level 3", func(b []byte) []byte { b[8] = 3; return b }, errVersion{})
	bad("client id not UTF-8", func(b []byte) []byte { b[14] = 0xFF; return b }, mqttpacket.ErrMalformed)
	bad("client id with U+0000", func(b []byte) []byte { b[14] = 0; return b }, mqttpacket.ErrMalformed)
	bad("not CONNECT", func(b []byte) []byte { b[0] = 0x30; return b }, mqttpacket.ErrMalformed)

	mqtt31 := []byte{0x10, 0, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0, 2, 'i', 'd'}
	mqtt31[1] = byte(len(mqtt31) - 2)
	var ev errVersion
	if _, err := parseMQTTConnect(readOne(t, mqtt31)); !errors.As(err, &ev) || ev.level != 3 {
		t.Errorf("MQTT 3.1: err = %v, want errVersion", err)
	}
}

func TestParseSubscribe(t *testing.T) {
	sid := 7
	v5 := packets.NewControlPacket(packets.SUBSCRIBE)
	s5 := v5.Content.(*packets.Subscribe)
	s5.PacketID = 9
	s5.Properties = &packets.Properties{SubscriptionIdentifier: &sid}
	s5.Subscriptions = []packets.SubOptions{{Topic: "a/+", QoS: 1, NoLocal: true}, {Topic: "b/#", QoS: 2, RetainHandling: 2, RetainAsPublished: true}}
	raw := pahoBytes(t, v5)
	s, err := parseSubscribe(readOne(t, raw), mqtt5)
	if err != nil {
		t.Fatal(err)
	}
	if s.id != 9 || len(s.subs) != 2 || s.subs[0].filter != "a/+" || s.subs[0].options != 0x05 || s.subs[1].options != 0x2A {
		t.Errorf("parsed %+v", s)
	}
	if got := s.encode(mqtt5); !bytes.Equal(got, raw) {
		t.Errorf("encode:\n% x\nwant\n% x", got, raw)
	}
	// The subset keeps the packet id and properties.
	s.subs = s.subs[1:]
	sub, err := parseSubscribe(readOne(t, s.encode(mqtt5)), mqtt5)
	if err != nil || sub.id != 9 || !bytes.Equal(sub.props, s.props) || !reflect.DeepEqual(sub.subs, s.subs) {
		t.Errorf("subset: %+v, %v", sub, err)
	}

	v4 := []byte{0x82, 0, 0, 5, 0, 3, 'a', '/', 'b', 1}
	v4[1] = byte(len(v4) - 2)
	s, err = parseSubscribe(readOne(t, v4), mqtt311)
	if err != nil || s.id != 5 || len(s.subs) != 1 || s.subs[0].filter != "a/b" || s.subs[0].options != 1 {
		t.Fatalf("parsed %+v, %v", s, err)
	}
	if got := s.encode(mqtt311); !bytes.Equal(got, v4) {
		t.Errorf("encode % x, want % x", got, v4)
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"flags":               func(b []byte) []byte { b[0] = 0x80; return b },
		"QoS 3":               func(b []byte) []byte { b[len(b)-1] = 3; return b },
		"3.1.1 reserved bits": func(b []byte) []byte { b[len(b)-1] = 0x05; return b },
		"no filter":           func(b []byte) []byte { return b[:4] },
		"packet id 0":         func(b []byte) []byte { b[3] = 0; return b },
		"options missing":     func(b []byte) []byte { return b[:len(b)-1] },
	} {
		b := mutate(bytes.Clone(v4))
		b[1] = byte(len(b) - 2)
		if _, err := parseSubscribe(readOne(t, b), mqtt311); !errors.Is(err, mqttpacket.ErrMalformed) {
			t.Errorf("%s: err = %v, want malformed", name, err)
		}
	}
}

func TestParsePublish(t *testing.T) {
	alias := uint16(3)
	v5 := packets.NewControlPacket(packets.PUBLISH)
	p5 := v5.Content.(*packets.Publish)
	p5.Topic, p5.QoS, p5.Retain, p5.PacketID, p5.Payload = "a/b", 2, true, 77, []byte("x")
	p5.Properties = &packets.Properties{TopicAlias: &alias}
	p, err := parsePublish(readOne(t, pahoBytes(t, v5)), mqtt5)
	if err != nil || p.topic != "a/b" || p.qos != 2 || !p.retain || p.id != 77 || !p.alias {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	v4 := []byte{0x32, 0, 0, 3, 'a', '/', 'b', 0, 5, 'h', 'i'}
	v4[1] = byte(len(v4) - 2)
	p, err = parsePublish(readOne(t, v4), mqtt311)
	if err != nil || p.topic != "a/b" || p.qos != 1 || p.id != 5 {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	for name, header := range map[string]byte{"QoS 3": 0x36, "DUP on QoS 0": 0x38} {
		b := bytes.Clone(v4)
		b[0] = header
		if _, err := parsePublish(readOne(t, b), mqtt311); !errors.Is(err, mqttpacket.ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	b := bytes.Clone(v4)
	b[8] = 0 // packet id 0
	if _, err := parsePublish(readOne(t, b), mqtt311); !errors.Is(err, mqttpacket.ErrMalformed) {
		t.Errorf("packet id 0: err = %v", err)
	}
}

func TestSubackAndAcks(t *testing.T) {
	s := &subackPacket{id: 4, reasons: []byte{0, 0x87, 2}}
	got := s.encode(mqtt5)
	cp, err := packets.ReadPacket(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if sa := cp.Content.(*packets.Suback); sa.PacketID != 4 || !bytes.Equal(sa.Reasons, []byte{0, 0x87, 2}) {
		t.Errorf("paho reads %+v", sa)
	}
	back, err := parseSuback(readOne(t, got), mqtt5)
	if err != nil || back.id != 4 || !bytes.Equal(back.reasons, s.reasons) {
		t.Errorf("parseSuback: %+v %v", back, err)
	}
	if got := (&subackPacket{id: 4, reasons: []byte{1, 0x80}}).encode(mqtt311); !bytes.Equal(got, []byte{0x90, 4, 0, 4, 1, 0x80}) {
		t.Errorf("3.1.1 SUBACK % x", got)
	}

	cp, err = packets.ReadPacket(bytes.NewReader(ackPacket(packets.PUBREC, 12, 0x87, "no")))
	if err != nil {
		t.Fatal(err)
	}
	if pr := cp.Content.(*packets.Pubrec); pr.PacketID != 12 || pr.ReasonCode != 0x87 || pr.Properties.ReasonString != "no" {
		t.Errorf("PUBREC %+v", pr)
	}
	cp, err = packets.ReadPacket(bytes.NewReader(disconnectPacket(0x8B, "bye")))
	if err != nil {
		t.Fatal(err)
	}
	if d := cp.Content.(*packets.Disconnect); d.ReasonCode != 0x8B || d.Properties.ReasonString != "bye" {
		t.Errorf("DISCONNECT %+v", d)
	}
}

func TestReasonString(t *testing.T) {
	s := reasonString(strings.Repeat("é", 300))
	if len(s) > 210 || !strings.HasSuffix(s, "…") {
		t.Errorf("reasonString: %d bytes %q", len(s), s)
	}
	if closeText(strings.Repeat("é", 100)) != strings.Repeat("é", 60) {
		t.Error("closeText does not cut at a rune boundary within 120 bytes")
	}
}

// FuzzClientPackets feeds any bytes to the parsers of what clients send, in
// both protocol versions: none may panic, and what parses must encode to
// something that parses to the same.
func FuzzClientPackets(f *testing.F) {
	f.Add([]byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}, false)
	f.Add([]byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 3, 0x11, 0, 0, 0, 0, 0}, true)
	f.Add([]byte{0x82, 8, 0, 5, 0, 3, 'a', '/', 'b', 1}, false)
	f.Add([]byte{0x82, 11, 0, 5, 2, 0x0B, 7, 0, 3, 'a', '/', '#', 0x2A}, true)
	f.Add([]byte{0x32, 9, 0, 3, 'a', '/', 'b', 0, 5, 'h', 'i'}, false)
	f.Add([]byte{0x34, 12, 0, 3, 'a', '/', 'b', 0, 5, 3, 0x23, 0, 1, 'x'}, true)
	f.Add([]byte{0x62, 2, 0, 1, 0xC0, 0, 0xE0, 0}, true)
	f.Add([]byte{0xA2, 7, 0, 5, 0, 3, 'a', '/', 'b'}, false)
	f.Add([]byte{0xA2, 8, 0, 5, 0, 0, 3, 'a', '/', '#'}, true)
	f.Fuzz(func(t *testing.T, data []byte, v5 bool) {
		version := byte(mqtt311)
		if v5 {
			version = mqtt5
		}
		r := bufio.NewReader(bytes.NewReader(data))
		for range 8 {
			p, err := mqttpacket.ReadPacket(r, 4096)
			if err != nil {
				return
			}
			_ = checkFixedHeader(p, version)
			switch p.Kind() {
			case packets.CONNECT:
				c, err := parseMQTTConnect(p)
				if err != nil {
					continue
				}
				again, err := parseMQTTConnect(readOne(t, c.encode()))
				if err != nil {
					t.Fatalf("re-encoded CONNECT does not parse: %v", err)
				}
				if again.clientID != c.clientID || again.willTopic != c.willTopic || again.username != c.username ||
					!bytes.Equal(again.password, c.password) || again.keepAlive != c.keepAlive || again.version != c.version {
					t.Fatalf("CONNECT round trip: %+v != %+v", again, c)
				}
			case packets.SUBSCRIBE:
				s, err := parseSubscribe(p, version)
				if err != nil {
					continue
				}
				again, err := parseSubscribe(readOne(t, s.encode(version)), version)
				if err != nil || !reflect.DeepEqual(again, s) {
					t.Fatalf("SUBSCRIBE round trip: %+v, %v != %+v", again, err, s)
				}
			case packets.UNSUBSCRIBE:
				u, err := parseUnsubscribe(p, version)
				if err != nil {
					continue
				}
				again, err := parseUnsubscribe(readOne(t, u.encode(version)), version)
				if err != nil || !reflect.DeepEqual(again, u) {
					t.Fatalf("UNSUBSCRIBE round trip: %+v, %v != %+v", again, err, u)
				}
			case packets.PUBLISH:
				_, _ = parsePublish(p, version)
			case packets.SUBACK:
				_, _ = parseSuback(p, version)
			case packets.CONNACK:
				if c, err := parseConnack(p, version); err == nil {
					if _, err := parseConnack(readOne(t, c.encode(version)), version); err != nil {
						t.Fatalf("re-encoded CONNACK does not parse: %v", err)
					}
				}
			}
		}
	})
}

func TestBufferedHeader(t *testing.T) {
	for _, c := range []struct {
		in     []byte
		h      byte
		n      int
		wantOK bool
	}{
		{[]byte{0x30, 2, 0, 0}, 0x30, 2, true},
		{[]byte{0x30, 0x80, 0x01}, 0x30, 128, true},
		{[]byte{0x30, 0x80}, 0, 0, false}, // the length is not all buffered
		{[]byte{0x30}, 0, 0, false},
		{[]byte{0x30, 0x80, 0x00}, 0, 0, false}, // malformed: left to readHeader
	} {
		r := bufio.NewReader(bytes.NewReader(c.in))
		_, _ = r.Peek(len(c.in))
		h, n, ok := bufferedHeader(r)
		if h != c.h || n != c.n || ok != c.wantOK {
			t.Errorf("bufferedHeader(% x) = %#x %d %v", c.in, h, n, ok)
		}
		if r.Buffered() != len(c.in) {
			t.Errorf("bufferedHeader(% x) consumed input", c.in)
		}
	}
}
