package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// stalledBroker is a broker stand-in: it answers CONNECT with CONNACK, sends
// the first 8000 bytes of a PUBLISH of 100 000 on *topic, and then neither
// sends nor reads anything until the test ends, so the proxy waits inside
// that packet and its writes block once the socket buffers are full. It
// returns the broker's URL.
func stalledBroker(t *testing.T, topic *atomic.Pointer[string]) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				p, err := mqttpacket.ReadPacket(bufio.NewReader(conn), mqttpacket.MaxVBI)
				if err != nil {
					return
				}
				cp, err := parseMQTTConnect(p)
				if err != nil {
					return
				}
				out := (&connackPacket{props: &packets.Properties{}}).encode(cp.version)
				out = mqttpacket.AppendVBI(append(out, packets.PUBLISH<<4), 100_000)
				e := &mqttpacket.Encoder{B: out}
				e.String(*topic.Load())
				if cp.version == mqtt5 {
					e.Byte(0) // no properties
				}
				e.Raw(bytes.Repeat([]byte{'x'}, 8000-len(e.B)))
				if _, err := conn.Write(e.B); err != nil {
					return
				}
				<-stop
			})
		}
	})
	return "mqtt://" + ln.Addr().String()
}

// A broker that stops inside a packet and stops reading holds up nothing:
// a client's protocol error ends its connection, and Shutdown ends one
// whose publishes fill the socket buffers to the broker, both well within
// the write timeout (a minute here).
func TestMQTTProxyStalledBroker(t *testing.T) {
	var topic atomic.Pointer[string]
	url := stalledBroker(t, &topic)
	e := newProxyEnv(t, url, func(cfg *MQTTConfig, _ *bridge.Config) { cfg.WriteTimeout = time.Minute })
	stalled := e.prefix + "/users/alice/stalled"
	topic.Store(&stalled)
	open := func() *client {
		c := e.dial(t, aliceKey)
		if ack := c.connect5(nil); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
		}
		// The start of the PUBLISH arrives: the proxy is inside it.
		if b, err := c.in.ReadByte(); err != nil || b != packets.PUBLISH<<4 {
			t.Fatalf("the stalled PUBLISH: %#x %v", b, err)
		}
		return c
	}

	// The client's error path: a second CONNECT is a protocol error.
	c := open()
	c.send([]byte{packets.CONNECT << 4, 0})
	if code := c.closed(); code != websocket.CloseProtocolError {
		t.Errorf("after a protocol error: close code %d, want 1002", code)
	}

	// Shutdown, while the proxy's writes to the broker block.
	c = open()
	var b bytes.Buffer
	if _, err := publish5(e.prefix+"/users/alice/flood", 0, 0, strings.Repeat("y", 256<<10)).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		// A write that does not end within a second: the buffers are full.
		_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
		if c.ws.WriteMessage(websocket.BinaryMessage, b.Bytes()) != nil {
			break
		}
		if i == 400 {
			t.Fatal("100 MiB went to a broker that reads nothing")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code := c.closed(); code != websocket.CloseServiceRestart {
		t.Errorf("shutdown: close code %d, want 1012", code)
	}
}
