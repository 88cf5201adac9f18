// Package mqttpacket is the one MQTT 3.1.1 and 5 wire codec of the house
// beside paho: the framing (fixed header, variable byte integers, reading
// a packet within a size limit), an Encoder for packet bodies, and the few
// client packets the test helpers and the benchmark build (client.go). The
// MQTT-over-WebSocket proxy (wsproxy) parses what clients and brokers send
// on top of it, strictly, and is fuzzed; internal/testenv and bench/ use
// it to speak raw MQTT. It imports nothing of the house.
package mqttpacket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed MQTT packet")

// ErrTooLarge is a packet over the maximum packet size.
var ErrTooLarge = errors.New("MQTT packet too large")

// Malformed is an error wrapping ErrMalformed.
func Malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Packet is one MQTT control packet: the first byte of its fixed header and
// the rest after the remaining length.
type Packet struct {
	Header byte
	Body   []byte
}

// Kind is the packet type (packets.CONNECT, ...); Flags the low nibble.
func (p Packet) Kind() byte  { return p.Header >> 4 }
func (p Packet) Flags() byte { return p.Header & 0x0F }

// Bytes is the packet as it goes on the wire.
func (p Packet) Bytes() []byte {
	out := make([]byte, 0, 1+4+len(p.Body))
	out = append(out, p.Header)
	out = AppendVBI(out, len(p.Body))
	return append(out, p.Body...)
}

// MaxVBI is the largest remaining length MQTT can encode.
const MaxVBI = 268_435_455

// ReadHeader reads a fixed header: the first byte and the remaining length.
// A variable byte integer of more than four bytes, or not in its shortest
// form, is malformed. io.EOF before the first byte is returned as is.
func ReadHeader(r io.ByteReader) (header byte, length int, err error) {
	header, err = r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	length, err = ReadVBI(r)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return header, length, err
}

// ReadVBI reads a variable byte integer.
func ReadVBI(r io.ByteReader) (int, error) {
	v, shift := 0, 0
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b == 0 && i > 0 {
			return 0, Malformed("variable byte integer not in its shortest form")
		}
		v |= int(b&0x7F) << shift
		if b&0x80 == 0 {
			return v, nil
		}
		shift += 7
	}
	return 0, Malformed("variable byte integer longer than 4 bytes")
}

// AppendVBI appends v as a variable byte integer.
func AppendVBI(b []byte, v int) []byte {
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

// VBILen is the number of bytes of v as a variable byte integer.
func VBILen(v int) int {
	n := 1
	for v > 127 {
		v >>= 7
		n++
	}
	return n
}

// ReadPacket reads one packet whose total size (fixed header included) is
// at most max bytes; a larger one is ErrTooLarge and is not read.
func ReadPacket(r *bufio.Reader, max int) (Packet, error) {
	h, n, err := ReadHeader(r)
	if err != nil {
		return Packet{}, err
	}
	if size := 1 + VBILen(n) + n; size > max {
		return Packet{Header: h}, fmt.Errorf("%w: %d bytes, more than the limit of %d", ErrTooLarge, size, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Packet{}, err
	}
	return Packet{Header: h, Body: body}, nil
}

// Encoder builds a packet body in B.
type Encoder struct{ B []byte }

func (e *Encoder) Byte(v byte)     { e.B = append(e.B, v) }
func (e *Encoder) Uint16(v uint16) { e.B = binary.BigEndian.AppendUint16(e.B, v) }
func (e *Encoder) Raw(v []byte)    { e.B = append(e.B, v...) }
func (e *Encoder) Binary(v []byte) { e.Uint16(uint16(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) String(v string) { e.Uint16(uint16(len(v))); e.B = append(e.B, v...) }

// Packet is the packet of fixed header h with the body built so far.
func (e *Encoder) Packet(h byte) []byte { return Packet{Header: h, Body: e.B}.Bytes() }

// Properties appends an MQTT 5 property block of a packet of kind.
func (e *Encoder) Properties(p *packets.Properties, kind byte) {
	var b []byte
	if p != nil {
		b = p.Pack(kind)
	}
	e.B = AppendVBI(e.B, len(b))
	e.B = append(e.B, b...)
}

// DecodeProperties decodes raw (length and content) with paho's decoder,
// which must consume exactly the block.
func DecodeProperties(raw []byte, kind byte) (props *packets.Properties, err error) {
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
