package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Subscribe connects a real MQTT v5 client to url (mqtt:// or tcp://),
// subscribes to filter with QoS 2 and Retain As Published, waits for a
// successful SUBACK and returns the messages it receives, with every
// property, the QoS and the retain flag as delivered (ReceivedAt set, no
// ID). The channel buffers 1000 messages and is closed after the client
// disconnects at the end of the test.
func Subscribe(tb testing.TB, url, filter string) <-chan bridge.Message {
	tb.Helper()
	ch := make(chan bridge.Message, 1000)
	stop := make(chan struct{})
	cli := connect(tb, url, "mbtest-sub-", func(pr paho.PublishReceived) (bool, error) {
		msg := fromPaho(pr.Packet)
		select {
		case ch <- msg:
		case <-stop: // the test is over; nobody reads any more
		}
		return true, nil
	})
	tb.Cleanup(func() {
		close(stop)
		if disconnect(cli) {
			close(ch) // paho's router has returned: nothing sends any more
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: filter, QoS: 2, RetainAsPublished: true},
	}})
	if err != nil {
		tb.Fatalf("testenv: subscribe to %q at %s: %v", filter, url, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		tb.Fatalf("testenv: subscribe to %q at %s refused: reason codes % x", filter, url, sa.Reasons)
	}
	return ch
}

// Publish publishes msg (topic, payload, QoS, retain, properties) with a
// real MQTT v5 client connected for this one message, and fails the test if
// a QoS 1/2 publish is not acknowledged with success.
func Publish(tb testing.TB, url string, msg bridge.Message) {
	tb.Helper()
	cli := connect(tb, url, "mbtest-pub-", nil)
	defer disconnect(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Publish(ctx, toPaho(msg))
	if err != nil {
		tb.Fatalf("testenv: publish to %q at %s: %v", msg.Topic, url, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		tb.Fatalf("testenv: publish to %q at %s refused: reason 0x%02X", msg.Topic, url, resp.ReasonCode)
	}
}

// NextMessage returns the next message from ch, failing the test if none
// arrives within timeout.
func NextMessage(tb testing.TB, ch <-chan bridge.Message, timeout time.Duration) bridge.Message {
	tb.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			tb.Fatalf("testenv: message channel closed")
		}
		return m
	case <-time.After(timeout):
		tb.Fatalf("testenv: no message within %s", timeout)
	}
	return bridge.Message{}
}

func connect(tb testing.TB, rawURL, idPrefix string, onPublish func(paho.PublishReceived) (bool, error)) *paho.Client {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatalf("testenv: %q: %v", rawURL, err)
	}
	if u.Scheme != "mqtt" && u.Scheme != "tcp" {
		tb.Fatalf("testenv: %q: only mqtt:// and tcp:// are supported here", u.Redacted())
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		tb.Fatalf("testenv: connect to %s: %v", u.Redacted(), err)
	}
	cfg := paho.ClientConfig{
		ClientID: idPrefix + randomHex(tb, 6),
		Conn:     conn,
	}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
	}
	cli := paho.NewClient(cfg)
	cp := &paho.Connect{KeepAlive: 30, ClientID: cfg.ClientID, CleanStart: true}
	if u.User != nil {
		cp.Username, cp.UsernameFlag = u.User.Username(), true
		if p, ok := u.User.Password(); ok {
			cp.Password, cp.PasswordFlag = []byte(p), true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := cli.Connect(ctx, cp)
	if err != nil {
		code := byte(0)
		if ca != nil {
			code = ca.ReasonCode
		}
		tb.Fatalf("testenv: MQTT connect to %s: %v (reason 0x%02X)", u.Redacted(), err, code)
	}
	return cli
}

// disconnect sends DISCONNECT and reports whether the client stopped.
func disconnect(cli *paho.Client) bool {
	_ = cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-cli.Done():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func toPaho(msg bridge.Message) *paho.Publish {
	p := msg.Properties
	props := &paho.PublishProperties{
		ContentType:     p.ContentType,
		ResponseTopic:   p.ResponseTopic,
		CorrelationData: p.CorrelationData,
		PayloadFormat:   p.PayloadFormat,
		MessageExpiry:   p.MessageExpiry,
	}
	for _, up := range p.UserProperties {
		props.User = append(props.User, paho.UserProperty{Key: up.Key, Value: up.Value})
	}
	return &paho.Publish{QoS: msg.QoS, Retain: msg.Retain, Topic: msg.Topic, Payload: msg.Payload, Properties: props}
}

func fromPaho(p *paho.Publish) bridge.Message {
	msg := bridge.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, ReceivedAt: time.Now()}
	if msg.Payload == nil {
		msg.Payload = []byte{}
	}
	if pp := p.Properties; pp != nil {
		msg.Properties = bridge.Properties{
			ContentType:     pp.ContentType,
			ResponseTopic:   pp.ResponseTopic,
			CorrelationData: pp.CorrelationData,
			PayloadFormat:   pp.PayloadFormat,
			MessageExpiry:   pp.MessageExpiry,
		}
		for _, up := range pp.User {
			msg.Properties.UserProperties = append(msg.Properties.UserProperties, bridge.UserProperty{Key: up.Key, Value: up.Value})
		}
	}
	return msg
}

// String formats a message for test failure output.
func String(m bridge.Message) string {
	return fmt.Sprintf("%s qos=%d retain=%t payload=%q props=%+v", m.Topic, m.QoS, m.Retain, m.Payload, m.Properties)
}
