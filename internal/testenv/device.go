package testenv

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Device is a device simulated by a real MQTT v5 client: it subscribes to
// a filter and answers each request the way MQTT v5 request/response
// says, by publishing the reply that answer returns to the request's
// Response Topic with the request's Correlation Data (unless the reply
// sets its own), QoS 1. answer returning false stays silent.
type Device struct {
	// Requests counts the requests received, answered or not.
	Requests atomic.Int64

	answer func(req bridge.Message) (bridge.Message, bool)
	cli    *paho.Client
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
}

// StartDevice connects the device to url, subscribes to filter (QoS 1)
// and answers until the test ends.
func StartDevice(tb testing.TB, url, filter string, answer func(req bridge.Message) (bridge.Message, bool)) *Device {
	tb.Helper()
	d := &Device{answer: answer}
	d.cli = connect(tb, url, "mbtest-device-", func(pr paho.PublishReceived) (bool, error) {
		d.Requests.Add(1)
		req := fromPaho(pr.Packet)
		reply, ok := d.answer(req)
		if !ok || req.Properties.ResponseTopic == "" {
			return true, nil
		}
		reply.Topic = req.Properties.ResponseTopic
		if reply.Properties.CorrelationData == nil {
			reply.Properties.CorrelationData = req.Properties.CorrelationData
		}
		if reply.QoS == 0 {
			reply.QoS = 1
		}
		// Not from paho's goroutine: it delivers the PUBACK this waits for.
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.stopped {
			return true, nil
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = d.cli.Publish(ctx, toPaho(reply))
		}()
		return true, nil
	})
	tb.Cleanup(func() {
		d.mu.Lock()
		d.stopped = true
		d.mu.Unlock()
		d.wg.Wait()
		disconnect(d.cli)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := d.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		tb.Fatalf("testenv: device subscribe to %q: %v %v", filter, err, sa)
	}
	return d
}
