package mqttpacket

import (
	"encoding/binary"

	"github.com/eclipse/paho.golang/packets"
)

// The packets of a plain MQTT 5 client (clean start, no properties, no
// will), for the test helpers and the benchmark, which must stay cheap: the
// builders run once per connection (a publisher rewrites its payload in
// place), and Split and PublishPayload read without copying.

// Connect5 is an MQTT 5 CONNECT with clean start and no credentials.
func Connect5(clientID string, keepAlive uint16) []byte {
	e := Encoder{}
	e.String("MQTT")
	e.Byte(5)
	e.Byte(0x02) // clean start
	e.Uint16(keepAlive)
	e.Byte(0) // no properties
	e.String(clientID)
	return e.Packet(packets.CONNECT << 4)
}

// Subscribe5 subscribes to one filter; options holds the maximum QoS (and
// the MQTT 5 subscription options).
func Subscribe5(id uint16, filter string, options byte) []byte {
	e := Encoder{}
	e.Uint16(id)
	e.Byte(0) // no properties
	e.String(filter)
	e.Byte(options)
	return e.Packet(packets.SUBSCRIBE<<4 | 0x02)
}

// Publish5 is an MQTT 5 PUBLISH without properties (id only for QoS 1 and
// 2). The payload starts at payloadAt, for a caller that rewrites it in
// place.
func Publish5(topic string, qos byte, id uint16, payload []byte) (pkt []byte, payloadAt int) {
	e := Encoder{B: make([]byte, 0, 2+len(topic)+3+len(payload))}
	e.String(topic)
	if qos > 0 {
		e.Uint16(id)
	}
	e.Byte(0) // no properties
	e.Raw(payload)
	pkt = e.Packet(packets.PUBLISH<<4 | qos<<1)
	return pkt, len(pkt) - len(payload)
}

// Split takes the first whole packet off b, without copying: n is the
// number of bytes it took, 0 when b does not hold a whole packet yet.
func Split(b []byte) (p Packet, n int, err error) {
	if len(b) < 2 {
		return Packet{}, 0, nil
	}
	v, vn, err := vbi(b[1:])
	if err != nil || vn == 0 || 1+vn+v > len(b) {
		return Packet{}, 0, err
	}
	n = 1 + vn + v
	return Packet{Header: b[0], Body: b[1+vn : n]}, n, nil
}

// PublishPayload is the payload of an MQTT 5 PUBLISH.
func PublishPayload(p Packet) ([]byte, error) {
	b := p.Body
	if len(b) < 2 {
		return nil, Malformed("PUBLISH without a topic name")
	}
	i := 2 + int(binary.BigEndian.Uint16(b))
	if p.Flags()&0x06 != 0 {
		i += 2 // packet identifier
	}
	if i > len(b) {
		return nil, Malformed("PUBLISH shorter than its topic name")
	}
	v, n, err := vbi(b[i:])
	if err == nil && (n == 0 || i+n+v > len(b)) {
		err = Malformed("PUBLISH shorter than its properties")
	}
	if err != nil {
		return nil, err
	}
	return b[i+n+v:], nil
}

// ReasonCode is the reason code of an MQTT 5 CONNACK, PUBACK (0 when the
// short form leaves it out), or the first filter's of a SUBACK.
func ReasonCode(p Packet) (byte, error) {
	b := p.Body
	switch p.Kind() {
	case packets.CONNACK:
		if len(b) >= 2 {
			return b[1], nil
		}
	case packets.PUBACK:
		if len(b) == 2 {
			return 0, nil
		}
		if len(b) > 2 {
			return b[2], nil
		}
	case packets.SUBACK:
		if len(b) >= 3 {
			v, n, err := vbi(b[2:])
			if err == nil && n > 0 && 2+n+v < len(b) {
				return b[2+n+v], nil
			}
		}
	}
	return 0, Malformed("packet type %d without a reason code", p.Kind())
}

// vbi decodes a variable byte integer at the start of b: n is its length,
// 0 when b ends inside it.
func vbi(b []byte) (v, n int, err error) {
	shift := 0
	for i := range 4 {
		if i >= len(b) {
			return 0, 0, nil
		}
		if b[i] == 0 && i > 0 {
			return 0, 0, Malformed("variable byte integer not in its shortest form")
		}
		v |= int(b[i]&0x7F) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, Malformed("variable byte integer longer than 4 bytes")
}

// ConnackProperties are the properties of an MQTT 5 CONNACK.
func ConnackProperties(p Packet) (*packets.Properties, error) {
	if p.Kind() != packets.CONNACK || len(p.Body) < 3 {
		return nil, Malformed("not an MQTT 5 CONNACK")
	}
	return DecodeProperties(p.Body[2:], packets.CONNACK)
}
