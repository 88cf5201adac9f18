package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// withAdmin adds the API key "key-admin" that may publish and read
// everything.
func withAdmin(c *config.Config) {
	c.Auth.APIKeys = append(c.Auth.APIKeys, config.APIKey{Name: "admin", SHA256: auth.HashKey("key-admin"),
		Rules: config.Rules{Publish: []string{"#"}, Subscribe: []string{"#"}}})
}

// seedBatches publishes one message to each topic as admin, in batches.
func (in *instance) seedBatches(t *testing.T, topics []string) {
	t.Helper()
	for len(topics) > 0 {
		n := min(len(topics), 100)
		var items []map[string]any
		for _, tp := range topics[:n] {
			items = append(items, map[string]any{"topic": tp, "payload": "v"})
		}
		topics = topics[n:]
		body, _ := json.Marshal(items)
		if resp, out := in.do(t, "POST", "/v1/publish/batch", body, append(key("admin"), "Content-Type", "application/json")...); resp.StatusCode != 200 {
			t.Fatalf("seeding: %d %s", resp.StatusCode, out)
		}
	}
}

type listPage struct {
	Messages   []struct{ Topic string }
	NextCursor string `json:"next_cursor"`
}

// Cursors reveal no topic, not even by base64-decoding them: alice lists
// users/# over a store where the scan passes 1100 of aaron's topics before
// hers and bob's after; paging returns each of hers exactly once, a call
// examines a bounded number of topics (the first page is empty, with a
// cursor), and a cursor is good only for alice and that filter.
func TestAuthListCursorsRevealNothing(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		keysFor("alice", "bob")(c)
		withAdmin(c)
		c.Limits.PublishRate, c.Limits.ReadRate = 0, 0
	}, nil)
	in.waitReady(t)
	var topics []string
	for i := range 1100 {
		topics = append(topics, fmt.Sprintf("users/aaron/private/%04d", i))
	}
	mine := []string{"users/alice/a", "users/alice/b", "users/alice/c"}
	topics = append(topics, mine...)
	topics = append(topics, "users/bob/private/x", "users/bob/private/y")
	in.seedBatches(t, topics)

	list := func(filter, cursor string, header []string) (int, listPage, []byte) {
		q := "/v1/messages?limit=2&filter=" + url.QueryEscape(filter)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		resp, body := in.do(t, "GET", q, nil, header...)
		var p listPage
		_ = json.Unmarshal(body, &p)
		return resp.StatusCode, p, body
	}
	eventually(t, "the seeded values", func() string {
		n, cursor := 0, ""
		for {
			resp, body := in.do(t, "GET", "/v1/messages?limit=1000&filter=users/%23&cursor="+url.QueryEscape(cursor), nil, key("admin")...)
			p := decode[listPage](t, body)
			if resp.StatusCode != 200 {
				return string(body)
			}
			n += len(p.Messages)
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if n != len(topics) {
			return fmt.Sprintf("%d of %d topics", n, len(topics))
		}
		return ""
	})

	var got, cursors []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("the list did not end")
		}
		status, p, body := list("users/#", cursor, key("alice"))
		if status != 200 || len(p.Messages) > 2 {
			t.Fatalf("page %d: %d %s", page, status, body)
		}
		if page == 0 && (len(p.Messages) != 0 || p.NextCursor == "") {
			t.Errorf("the first page: %s; want no message and a cursor (one call examines at most 1000 topics)", body)
		}
		for _, m := range p.Messages {
			got = append(got, m.Topic)
		}
		if p.NextCursor == "" {
			break
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			d, err := enc.DecodeString(p.NextCursor)
			if err == nil && (strings.Contains(string(d), "users/") || strings.Contains(string(d), "aaron") || strings.Contains(string(d), "bob")) {
				t.Fatalf("cursor %q decodes to %q", p.NextCursor, d)
			}
		}
		cursors = append(cursors, p.NextCursor)
		cursor = p.NextCursor
	}
	if !slices.Equal(got, mine) {
		t.Errorf("alice listed %q, want %q", got, mine)
	}

	tampered := []byte(cursors[0]) // one character changed, still in the cursor's alphabet
	if tampered[len(tampered)/2] == 'A' {
		tampered[len(tampered)/2] = 'B'
	} else {
		tampered[len(tampered)/2] = 'A'
	}
	for name, c := range map[string]struct {
		filter, cursor string
		header         []string
	}{
		"bob with alice's cursor":       {"users/#", cursors[0], key("bob")},
		"alice with another filter":     {"users/+/+/+", cursors[0], key("alice")},
		"a tampered cursor":             {"users/#", string(tampered), key("alice")},
		"a topic name in base64":        {"users/#", base64.RawURLEncoding.EncodeToString([]byte("users/aaron/private/0999")), key("alice")},
		"the admin with alice's cursor": {"users/#", cursors[0], key("admin")},
	} {
		if status, _, body := list(c.filter, c.cursor, c.header); status != 400 || errorCode(body) != "invalid_cursor" {
			t.Errorf("%s: %d %s, want 400 invalid_cursor", name, status, body)
		}
	}
}

// A response topic is one the caller may publish to, at every entry point:
// a raw publish's MQTT-Response-Topic, a JSON publish's and a batch item's
// properties.response_topic, a WebSocket publish frame's. Refused ones
// reach nothing.
func TestAuthResponseTopic(t *testing.T) {
	in := startLogged(t, keysFor("alice"), nil)
	in.waitReady(t)
	seen := testenv.Subscribe(t, in.Embedded.URL(), "users/#")
	alice := key("alice")

	if resp, body := in.do(t, "POST", "/v1/topics/users/alice/cmd", []byte("x"), append(alice, "MQTT-Response-Topic", "users/bob/inbox")...); resp.StatusCode != 403 || errorCode(body) != "forbidden" {
		t.Errorf("raw publish: %d %s, want 403", resp.StatusCode, body)
	}
	pub := `{"topic":"users/alice/cmd","payload":"x","properties":{"response_topic":"users/bob/inbox"}}`
	if resp, body := in.do(t, "POST", "/v1/publish", []byte(pub), append(alice, "Content-Type", "application/json")...); resp.StatusCode != 403 || errorCode(body) != "forbidden" {
		t.Errorf("JSON publish: %d %s, want 403", resp.StatusCode, body)
	}
	batch := `[{"topic":"users/alice/ok","payload":"x"},` + pub + `]`
	resp, body := in.do(t, "POST", "/v1/publish/batch", []byte(batch), append(alice, "Content-Type", "application/json")...)
	var refused struct{ Results []struct{ Index, Status int } }
	_ = json.Unmarshal(body, &refused)
	if resp.StatusCode != 400 || len(refused.Results) != 1 || refused.Results[0].Index != 1 || refused.Results[0].Status != 403 {
		t.Errorf("batch: %d %s, want 400 with item 1 refused 403", resp.StatusCode, body)
	}
	c, _ := in.wsConnectAuth(t, "", alice...)
	f := c.request(`{"type":"publish","id":"p","topic":"users/alice/cmd","payload":"x","properties":{"response_topic":"users/bob/inbox"}}`, "p")
	if f["type"] != "error" || f["code"] != "forbidden" {
		t.Errorf("WebSocket publish: %v, want an error frame forbidden", f)
	}
	select {
	case m := <-seen:
		t.Fatalf("the broker got %s", testenv.String(m))
	case <-time.After(300 * time.Millisecond):
	}

	// A response topic of her own passes.
	if resp, body := in.do(t, "POST", "/v1/topics/users/alice/cmd", []byte("x"), append(alice, "MQTT-Response-Topic", "users/alice/inbox")...); resp.StatusCode != 200 {
		t.Fatalf("raw publish with her own response topic: %d %s", resp.StatusCode, body)
	}
	if m := testenv.NextMessage(t, seen, 5*time.Second); m.Topic != "users/alice/cmd" || m.Properties.ResponseTopic != "users/alice/inbox" {
		t.Errorf("the broker got %s", testenv.String(m))
	}
}

// Reads have a budget per identity: over it, a GET, a list, a stream and a
// WebSocket connection get 429 with Retry-After, while another identity
// reads on.
func TestAuthReadBudget(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		keysFor("a", "b")(c)
		c.Limits.ReadRate, c.Limits.ReadBurst = 0.1, 3 // a token every 10 s
	}, nil)
	in.waitReady(t)
	for i, path := range []string{"/v1/topics/users/a/x", "/v1/messages?filter=users/a/%23", "/v1/topics/users/a/y"} {
		if resp, body := in.do(t, "GET", path, nil, key("a")...); resp.StatusCode == 429 {
			t.Fatalf("read %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/v1/topics/users/a/x", "/v1/messages?filter=users/a/%23", "/v1/stream?filter=users/a/%23"} {
		resp, body := in.do(t, "GET", path, nil, key("a")...)
		if resp.StatusCode != 429 || errorCode(body) != "rate_limited" {
			t.Errorf("GET %s over the budget: %d %s, want 429", path, resp.StatusCode, body)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
			t.Errorf("GET %s: Retry-After %q, want 1 to 10 seconds", path, resp.Header.Get("Retry-After"))
		}
	}
	if _, status := in.dialAuth(t, "", key("a")...); status != http.StatusTooManyRequests {
		t.Errorf("WebSocket over the budget: %d, want 429", status)
	}
	for _, path := range []string{"/v1/topics/users/b/x", "/v1/messages?filter=users/b/%23"} {
		if resp, body := in.do(t, "GET", path, nil, key("b")...); resp.StatusCode == 429 {
			t.Errorf("another identity's GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// Instances sharing a Redis seal cursors with one key (kept in Redis): a
// list begun on one instance goes on on another.
func TestListCursorAcrossInstances(t *testing.T) {
	testenv.Long(t, "two instances on one Redis")
	prefix := testenv.Prefix(t)
	args := []string{"--mqtt-url", testenv.MosquittoURL(t), "--redis-url", testenv.RedisURL(t), "--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := start(t, append(args, "--instance-id", "a")...)
	b := start(t, append(args, "--instance-id", "b")...)
	a.waitReady(t)
	b.waitReady(t)
	var want []string
	for i := range 5 {
		tp := fmt.Sprintf("%s/dev/%d", prefix, i)
		want = append(want, tp)
		if resp, body := a.do(t, "POST", "/v1/topics/"+tp, []byte("v")); resp.StatusCode != 200 {
			t.Fatalf("publish: %d %s", resp.StatusCode, body)
		}
	}
	filter := "/v1/messages?filter=" + url.QueryEscape(prefix+"/dev/+")
	eventually(t, "the values", func() string {
		_, body := b.do(t, "GET", filter, nil)
		if n := len(decode[listPage](t, body).Messages); n != 5 {
			return fmt.Sprintf("%d of 5: %s", n, body)
		}
		return ""
	})
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		in := []*instance{a, b}[page%2]
		q := filter + "&limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		resp, body := in.do(t, "GET", q, nil)
		if resp.StatusCode != 200 || page > 5 {
			t.Fatalf("page %d: %d %s", page, resp.StatusCode, body)
		}
		p := decode[listPage](t, body)
		for _, m := range p.Messages {
			got = append(got, m.Topic)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %q, want %q", got, want)
	}
}

// Replaying dead letters sends webhooks again: an identity that may only
// read the webhook's topics lists its dead letters but may not replay them
// (403, the dead letter stays); one that may also publish there replays.
func TestAuthDeadLetterReplay(t *testing.T) {
	rcv := newERP(t)
	rcv.setFail(func(string, int) int { return http.StatusInternalServerError })
	zero := 0
	in := startLogged(t, func(c *config.Config) {
		withAuth(c)
		withAdmin(c)
		c.Auth.APIKeys = append(c.Auth.APIKeys,
			config.APIKey{Name: "reader", SHA256: auth.HashKey("key-reader"), Rules: config.Rules{Subscribe: []string{"orders/#"}}},
			config.APIKey{Name: "writer", SHA256: auth.HashKey("key-writer"), Rules: config.Rules{Subscribe: []string{"orders/#"}, Publish: []string{"orders/#"}}})
		c.Webhooks = []config.Webhook{{Name: "erp", Filters: []string{"orders/+/status"}, URL: rcv.URL, Secret: hookSecret,
			Timeout: config.Duration(time.Second), Retries: &zero}}
	}, nil)
	in.waitReady(t)
	if resp, body := in.do(t, "POST", "/v1/topics/orders/1/status", []byte("v"), key("admin")...); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	type deadLetters struct {
		DeadLetters []struct{ ID string } `json:"dead_letters"`
	}
	var id string
	eventually(t, "the dead letter", func() string {
		resp, body := in.do(t, "GET", "/v1/webhooks/erp/dead-letters", nil, key("reader")...)
		dl := decode[deadLetters](t, body).DeadLetters
		if resp.StatusCode != 200 || len(dl) != 1 {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		id = dl[0].ID
		return ""
	})
	rcv.setFail(nil)
	for _, path := range []string{"/v1/webhooks/erp/dead-letters/replay", "/v1/webhooks/erp/dead-letters/" + id + "/replay"} {
		if resp, body := in.do(t, "POST", path, nil, key("reader")...); resp.StatusCode != 403 || errorCode(body) != "forbidden" {
			t.Errorf("replay by a reader (POST %s): %d %s, want 403", path, resp.StatusCode, body)
		}
	}
	if _, body := in.do(t, "GET", "/v1/webhooks/erp/dead-letters", nil, key("reader")...); len(decode[deadLetters](t, body).DeadLetters) != 1 {
		t.Fatalf("after the refused replays: %s", body)
	}
	if resp, body := in.do(t, "POST", "/v1/webhooks/erp/dead-letters/"+id+"/replay", nil, key("writer")...); resp.StatusCode != 200 || string(body) != `{"replayed":1}` {
		t.Fatalf("replay by a writer: %d %s", resp.StatusCode, body)
	}
	eventually(t, "the replayed delivery", func() string {
		if got := rcv.accepted(); len(got) != 1 || got[0].topic != "orders/1/status" {
			return fmt.Sprint(got)
		}
		return ""
	})
}
