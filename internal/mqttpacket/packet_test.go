package mqttpacket_test

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// What the builders write, paho reads as meant, and Split takes it off a
// stream byte by byte exactly when it is whole.
func TestClientPackets(t *testing.T) {
	pub, at := mqttpacket.Publish5("a/b", 1, 7, []byte("payload"))
	stream := bytes.Join([][]byte{mqttpacket.Connect5("c1", 30), mqttpacket.Subscribe5(3, "a/#", 1), pub}, nil)

	r := bufio.NewReader(bytes.NewReader(stream))
	cp, err := packets.ReadPacket(r)
	if err != nil || cp.Content.(*packets.Connect).ClientID != "c1" || cp.Content.(*packets.Connect).KeepAlive != 30 || !cp.Content.(*packets.Connect).CleanStart {
		t.Fatalf("CONNECT: %v %+v", err, cp)
	}
	sp, err := packets.ReadPacket(r)
	if s, ok := sp.Content.(*packets.Subscribe); err != nil || !ok || s.PacketID != 3 || s.Subscriptions[0].Topic != "a/#" || s.Subscriptions[0].QoS != 1 {
		t.Fatalf("SUBSCRIBE: %v %+v", err, sp)
	}
	pp, err := packets.ReadPacket(r)
	if p, ok := pp.Content.(*packets.Publish); err != nil || !ok || p.Topic != "a/b" || p.QoS != 1 || p.PacketID != 7 || string(p.Payload) != "payload" {
		t.Fatalf("PUBLISH: %v %+v", err, pp)
	}
	if string(pub[at:]) != "payload" {
		t.Fatalf("payloadAt %d: %q", at, pub[at:])
	}

	var got []mqttpacket.Packet
	buf := []byte{}
	for _, c := range stream {
		buf = append(buf, c)
		p, n, err := mqttpacket.Split(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			got, buf = append(got, p), buf[n:]
		}
	}
	if len(got) != 3 || len(buf) != 0 || got[2].Kind() != packets.PUBLISH {
		t.Fatalf("Split: %d packets, %d bytes left", len(got), len(buf))
	}
	if b, err := mqttpacket.PublishPayload(got[2]); err != nil || string(b) != "payload" {
		t.Fatalf("PublishPayload: %q %v", b, err)
	}
	if _, _, err := mqttpacket.Split([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}); !errors.Is(err, mqttpacket.ErrMalformed) {
		t.Fatalf("a 5-byte remaining length: %v", err)
	}
}

func TestReasonCode(t *testing.T) {
	for _, tc := range []struct {
		p    mqttpacket.Packet
		want byte
	}{
		{mqttpacket.Packet{Header: 0x20, Body: []byte{0, 0x87, 0}}, 0x87},
		{mqttpacket.Packet{Header: 0x40, Body: []byte{0, 1}}, 0},
		{mqttpacket.Packet{Header: 0x40, Body: []byte{0, 1, 0x97, 0}}, 0x97},
		{mqttpacket.Packet{Header: 0x90, Body: []byte{0, 1, 0, 1}}, 1},
		{mqttpacket.Packet{Header: 0x90, Body: []byte{0, 1, 2, 0x1F, 0, 0x80}}, 0x80},
	} {
		if got, err := mqttpacket.ReasonCode(tc.p); err != nil || got != tc.want {
			t.Errorf("% x: %#x %v, want %#x", tc.p.Bytes(), got, err, tc.want)
		}
	}
	if _, err := mqttpacket.ReasonCode(mqttpacket.Packet{Header: 0x90, Body: []byte{0, 1, 0}}); err == nil {
		t.Error("a SUBACK without reason codes has one")
	}
}

// Split and ReadPacket agree on every input.
func FuzzSplit(f *testing.F) {
	pub, _ := mqttpacket.Publish5("t", 0, 0, []byte("x"))
	f.Add(pub)
	f.Add([]byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := mqttpacket.Split(b)
		q, rerr := mqttpacket.ReadPacket(bufio.NewReader(bytes.NewReader(b)), mqttpacket.MaxVBI+5)
		switch {
		case n > 0 && (rerr != nil || q.Header != p.Header || !bytes.Equal(q.Body, p.Body)):
			t.Fatalf("Split took % x, ReadPacket %v % x", p.Bytes(), rerr, q.Bytes())
		case n == 0 && err == nil && rerr == nil:
			t.Fatalf("ReadPacket read % x from what Split found incomplete", q.Bytes())
		}
		if n > 0 {
			_, _ = mqttpacket.PublishPayload(p)
			_, _ = mqttpacket.ReasonCode(p)
		}
	})
}
