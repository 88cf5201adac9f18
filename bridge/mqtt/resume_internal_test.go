package mqtt

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// A resumed session's queued messages arrive right after the CONNACK,
// possibly before autopaho calls onConnectionUp. Each must be acknowledged
// once handled: one that is not stops paho's in-order acknowledgements, and
// the session stalls for good once the broker's inflight window is full
// (the fleet's ingest stopped during a rolling restart under load).
func TestResumedBacklogIsAcknowledged(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	const n = 100 // far more than Mosquitto's inflight window (20)
	var handled atomic.Int64
	var first atomic.Bool
	cfg := Config{Name: "t", URL: mq.URL, ClientID: "mbtest-resume-backlog", Filters: []string{"b/#"}, SessionExpiry: time.Minute,
		OnMessagesAck: func(ms []bridge.Message) bool {
			if !first.Swap(true) {
				// Still busy with the first batch when the connection is
				// announced up.
				time.Sleep(300 * time.Millisecond)
			}
			handled.Add(int64(len(ms)))
			return true
		}}
	open := func() *Conn {
		c, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closeConn := func(c *Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}

	// The session, with its subscription, then a backlog while no one is
	// connected.
	c := open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.AwaitReady(ctx)
	cancel()
	if err != nil {
		t.Fatalf("AwaitReady: %v %q", err, c.Problems())
	}
	closeConn(c)
	var lines strings.Builder
	for i := range n {
		fmt.Fprintln(&lines, i)
	}
	pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(mq.Port), "-V", "mqttv5", "-q", "1", "-t", "b/x", "-l")
	pub.Stdin = strings.NewReader(lines.String())
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}

	// Resume it with autopaho's goroutine late to announce the connection,
	// as on a busy machine.
	cfg.testHookConnectionUp = func() { time.Sleep(100 * time.Millisecond) }
	first.Store(false)
	handled.Store(0)
	c = open()
	defer closeConn(c)
	deadline := time.Now().Add(15 * time.Second)
	for handled.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := handled.Load(); got < n {
		t.Fatalf("the resumed session stalled after %d of %d queued messages", got, n)
	}
}
