package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// RunGroups runs the conformance suite of bridge.Groups. newGroups returns
// a new, empty store with the history window w and the groups over its
// history, for one subtest, and arranges their cleanup.
//
// One subtest waits about 1 s for a blocked read, others a few tens of
// milliseconds for pending messages to become idle.
func RunGroups(t *testing.T, newGroups func(t *testing.T, w Window) (bridge.Store, bridge.Groups)) {
	tests := []struct {
		name string
		fn   func(*testing.T, bridge.Store, bridge.Groups)
		w    Window
	}{
		{"ReadAndAck", testGroupReadAndAck, Window{}},
		{"OncePerGroup", testGroupOncePerGroup, Window{}},
		{"GroupsIndependent", testGroupsIndependent, Window{}},
		{"Claim", testGroupClaim, Window{}},
		{"ClaimTrimmed", testGroupClaimTrimmed, Window{Size: 2}},
		{"Lost", testGroupLost, Window{Size: 2}},
		{"Block", testGroupBlock, Window{}},
		{"Concurrent", testGroupConcurrent, Window{}},
		{"DeadLetters", testGroupDeadLetters, Window{}},
		{"DeadLettersBounded", testGroupDeadLettersBounded, Window{}},
		{"Replay", testGroupReplay, Window{}},
		{"Invalid", testGroupInvalid, Window{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, g := newGroups(t, tt.w)
			tt.fn(t, s, g)
		})
	}
}

func createGroup(t testing.TB, g bridge.Groups, group string) {
	t.Helper()
	if err := g.CreateGroup(t.Context(), group); err != nil {
		t.Fatalf("CreateGroup(%q): %v", group, err)
	}
}

func readGroup(t testing.TB, g bridge.Groups, group, consumer string, count int) []bridge.Message {
	t.Helper()
	msgs, lost, err := g.ReadGroup(t.Context(), group, consumer, count, 0)
	if err != nil {
		t.Fatalf("ReadGroup(%q, %q, %d): %v", group, consumer, count, err)
	}
	if lost {
		t.Fatalf("ReadGroup(%q, %q, %d) reports lost messages", group, consumer, count)
	}
	return msgs
}

func pending(t testing.TB, g bridge.Groups, group string) int {
	t.Helper()
	n, err := g.Pending(t.Context(), group)
	if err != nil {
		t.Fatalf("Pending(%q): %v", group, err)
	}
	return n
}

func putN(t testing.TB, s bridge.Store, prefix string, n int) []bridge.Message {
	t.Helper()
	out := make([]bridge.Message, n)
	for i := range n {
		out[i] = put(t, s, bridge.Message{Topic: fmt.Sprintf("%s/%d", prefix, i), Payload: []byte(fmt.Sprint(i)), QoS: 1})
	}
	return out
}

func requireIDs(t testing.TB, what string, got, want []bridge.Message) {
	t.Helper()
	if d := firstDiff(ids(got), ids(want)); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// A group starts at the end of the history, hands out each message once,
// oldest first, and keeps it pending until acknowledged; creating it again
// changes nothing.
func testGroupReadAndAck(t *testing.T, s bridge.Store, g bridge.Groups) {
	putN(t, s, "before", 2)
	createGroup(t, g, "g")
	want := putN(t, s, "after", 3)
	want = append(want, put(t, s, bridge.Message{Topic: "after/bin", Payload: allBytes(false), QoS: 2, Retain: true,
		Properties: bridge.Properties{ContentType: "x/y", CorrelationData: []byte{0, 1}, UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}}}}))
	createGroup(t, g, "g") // no effect

	got := readGroup(t, g, "g", "c1", 2)
	got = append(got, readGroup(t, g, "g", "c1", 1000)...)
	requireIDs(t, "read", got, want)
	for i := range got {
		requireEqual(t, fmt.Sprintf("message %d", i), got[i], want[i])
	}
	if more := readGroup(t, g, "g", "c1", 10); len(more) != 0 {
		t.Fatalf("a further read returned %v", ids(more))
	}
	if n := pending(t, g, "g"); n != 4 {
		t.Fatalf("Pending = %d, want 4", n)
	}
	if err := g.Ack(t.Context(), "g", got[0].ID, got[2].ID, "1-0"); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, g, "g"); n != 2 {
		t.Fatalf("Pending after 2 acks = %d, want 2", n)
	}
	if err := g.Ack(t.Context(), "g", got[0].ID); err != nil { // again: ignored
		t.Fatal(err)
	}
	if n := pending(t, g, "g"); n != 2 {
		t.Fatalf("Pending after a repeated ack = %d, want 2", n)
	}
}

// Consumers of one group share the messages: each goes to one of them.
func testGroupOncePerGroup(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	want := putN(t, s, "t", 4)
	a := readGroup(t, g, "g", "a", 2)
	b := readGroup(t, g, "g", "b", 10)
	requireIDs(t, "consumer a", a, want[:2])
	requireIDs(t, "consumer b", b, want[2:])
}

// Two groups each read every message.
func testGroupsIndependent(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "one")
	createGroup(t, g, "two")
	want := putN(t, s, "t", 3)
	requireIDs(t, "group one", readGroup(t, g, "one", "c", 10), want)
	requireIDs(t, "group two", readGroup(t, g, "two", "c", 10), want)
	if err := g.Ack(t.Context(), "one", want[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, g, "two"); n != 3 {
		t.Fatalf("an ack in group one changed group two: Pending = %d", n)
	}
}

// Pending messages idle long enough move to the claiming consumer, oldest
// first, and can be claimed again only once idle again.
func testGroupClaim(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	want := putN(t, s, "t", 3)
	readGroup(t, g, "g", "dead", 10)
	if got, _, err := g.Claim(t.Context(), "g", "survivor", time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("Claim of messages idle for less than minIdle = %v, %v; want none", ids(got), err)
	}
	time.Sleep(60 * time.Millisecond)
	got, gone, err := g.Claim(t.Context(), "g", "survivor", 50*time.Millisecond, 2)
	if err != nil || gone != 0 {
		t.Fatalf("Claim: %v (gone %d)", err, gone)
	}
	requireIDs(t, "first claim", got, want[:2])
	for i := range got {
		requireEqual(t, "claimed message", got[i], want[i])
	}
	got, _, err = g.Claim(t.Context(), "g", "survivor", 50*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	requireIDs(t, "second claim (the rest; the claimed ones are not idle)", got, want[2:])
	if n := pending(t, g, "g"); n != 3 {
		t.Fatalf("Pending = %d, want 3", n)
	}
	if err := g.Ack(t.Context(), "g", want[0].ID, want[1].ID, want[2].ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := g.Claim(t.Context(), "g", "x", 0, 10); len(got) != 0 {
		t.Fatalf("acknowledged messages were claimed: %v", ids(got))
	}
}

// A pending message that left the history cannot be claimed: it is removed
// from the pending list and counted.
func testGroupClaimTrimmed(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	putN(t, s, "old", 2)
	readGroup(t, g, "g", "dead", 10)
	want := putN(t, s, "new", 2) // the window holds 2: the old ones are gone
	readGroup(t, g, "g", "dead", 1)
	time.Sleep(20 * time.Millisecond)
	got, gone, err := g.Claim(t.Context(), "g", "survivor", 10*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	requireIDs(t, "claimed", got, want[:1])
	if gone != 2 {
		t.Fatalf("gone = %d, want 2", gone)
	}
	if n := pending(t, g, "g"); n != 1 {
		t.Fatalf("Pending = %d, want 1", n)
	}
}

// Messages that leave the history before the group read them are reported
// lost, once.
func testGroupLost(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	all := putN(t, s, "t", 5)
	msgs, lost, err := g.ReadGroup(t.Context(), "g", "c", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !lost {
		t.Fatal("ReadGroup does not report the messages trimmed before it read them")
	}
	requireIDs(t, "read after the loss", msgs, all[3:])
	_, lost, err = g.ReadGroup(t.Context(), "g", "c", 10, 0)
	if err != nil || lost {
		t.Fatalf("the loss is reported again (%v, %v)", lost, err)
	}
}

// A blocked read returns as soon as a message comes, or after block.
func testGroupBlock(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	began := time.Now()
	msgs, _, err := g.ReadGroup(t.Context(), "g", "c", 10, 300*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("ReadGroup on nothing = %v, %v", ids(msgs), err)
	}
	if d := time.Since(began); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("ReadGroup with block 300ms returned after %v", d)
	}
	done := make(chan bridge.Message, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		m, err := s.Put(t.Context(), bridge.Message{Topic: "t", Payload: []byte("x")})
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	began = time.Now()
	msgs, _, err = g.ReadGroup(t.Context(), "g", "c", 10, 5*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("blocked ReadGroup = %v, %v; want the message put meanwhile", ids(msgs), err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("the blocked read returned only after %v", d)
	}
	requireEqual(t, "blocked read", msgs[0], <-done)
}

// Concurrent consumers of one group get every message exactly once.
func testGroupConcurrent(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	want := putN(t, s, "t", 200)
	var (
		mu  sync.Mutex
		got []string
		wg  sync.WaitGroup
	)
	for c := range 4 {
		wg.Go(func() {
			for {
				msgs, _, err := g.ReadGroup(t.Context(), "g", fmt.Sprint("c", c), 7, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				got = append(got, ids(msgs)...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(got, func(a, b string) int { c, _ := bridge.CompareIDs(a, b); return c })
	if d := firstDiff(got, ids(want)); d != "" {
		t.Fatalf("messages read by 4 consumers: %s", d)
	}
}

func deadLetters(t testing.TB, g bridge.Groups, group string) []bridge.DeadLetter {
	t.Helper()
	var all []bridge.DeadLetter
	after := ""
	for range 1000 {
		dls, next, err := g.DeadLetters(t.Context(), group, after, 2)
		if err != nil {
			t.Fatalf("DeadLetters(%q, %q): %v", group, after, err)
		}
		if len(dls) > 2 {
			t.Fatalf("DeadLetters(limit 2) returned %d", len(dls))
		}
		all = append(all, dls...)
		if next == "" {
			return all
		}
		after = next
	}
	t.Fatal("DeadLetters does not end")
	return nil
}

func dlIDs(dls []bridge.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, d := range dls {
		out[i] = d.ID
	}
	return out
}

func requireDeadLetter(t testing.TB, what string, got, want bridge.DeadLetter) {
	t.Helper()
	requireEqual(t, what+": message", got.Message, want.Message)
	if got.Attempts != want.Attempts || got.Error != want.Error || !got.FailedAt.Equal(ms(want.FailedAt)) {
		t.Fatalf("%s: attempts %d error %q failed at %v; want %d %q %v", what, got.Attempts, got.Error, got.FailedAt,
			want.Attempts, want.Error, ms(want.FailedAt))
	}
	if want.ID != "" && got.ID != want.ID {
		t.Fatalf("%s: id %s, want %s", what, got.ID, want.ID)
	}
}

// A dead letter acknowledges its message and keeps it, whole, in a list
// read in pages, oldest first.
func testGroupDeadLetters(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	m := put(t, s, bridge.Message{Topic: "dev/1", Payload: allBytes(true), QoS: 1,
		Properties: bridge.Properties{ContentType: "a/b", MessageExpiry: ptr(uint32(600)), UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}}}})
	msgs := putN(t, s, "t", 4)
	readGroup(t, g, "g", "c", 10)
	if dls, next, err := g.DeadLetters(t.Context(), "g", "", 10); err != nil || len(dls) != 0 || next != "" {
		t.Fatalf("DeadLetters of a new group = %v, %q, %v", dls, next, err)
	}
	failed := time.Now()
	first, err := g.DeadLetter(t.Context(), "g", bridge.DeadLetter{Message: m, Attempts: 3, Error: "HTTP 500", FailedAt: failed}, 100)
	if err != nil {
		t.Fatal(err)
	}
	parseID(t, first.ID)
	if n := pending(t, g, "g"); n != 4 {
		t.Fatalf("Pending after a dead letter = %d, want 4 (it acknowledges its message)", n)
	}
	want := []bridge.DeadLetter{{ID: first.ID, Message: m, Attempts: 3, Error: "HTTP 500", FailedAt: failed}}
	for i, msg := range msgs {
		dl, err := g.DeadLetter(t.Context(), "g", bridge.DeadLetter{Message: msg, Attempts: i + 1, Error: fmt.Sprint("e", i), FailedAt: failed}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !parseID(t, want[len(want)-1].ID).less(parseID(t, dl.ID)) {
			t.Fatalf("dead letter ids do not grow: %s after %s", dl.ID, want[len(want)-1].ID)
		}
		want = append(want, bridge.DeadLetter{ID: dl.ID, Message: msg, Attempts: i + 1, Error: fmt.Sprint("e", i), FailedAt: failed})
	}
	got := deadLetters(t, g, "g")
	if d := firstDiff(dlIDs(got), dlIDs(want)); d != "" {
		t.Fatalf("dead letters: %s", d)
	}
	for i := range got {
		requireDeadLetter(t, fmt.Sprint("dead letter ", i), got[i], want[i])
	}
	if n := pending(t, g, "g"); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
}

// The list keeps the newest max dead letters.
func testGroupDeadLettersBounded(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	msgs := putN(t, s, "t", 5)
	readGroup(t, g, "g", "c", 10)
	var want []string
	for _, m := range msgs {
		dl, err := g.DeadLetter(t.Context(), "g", bridge.DeadLetter{Message: m, Attempts: 1, FailedAt: time.Now()}, 3)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, dl.ID)
	}
	if d := firstDiff(dlIDs(deadLetters(t, g, "g")), want[2:]); d != "" {
		t.Fatalf("dead letters with max 3: %s", d)
	}
}

// Replay moves dead letters to the replay queue; ReplayDone takes them
// off it, and back to the dead letters when they failed again.
func testGroupReplay(t *testing.T, s bridge.Store, g bridge.Groups) {
	createGroup(t, g, "g")
	msgs := putN(t, s, "t", 3)
	readGroup(t, g, "g", "c", 10)
	failed := time.Now()
	var dls []bridge.DeadLetter
	for _, m := range msgs {
		dl, err := g.DeadLetter(t.Context(), "g", bridge.DeadLetter{Message: m, Attempts: 2, Error: "down", FailedAt: failed}, 100)
		if err != nil {
			t.Fatal(err)
		}
		dls = append(dls, dl)
	}
	if n, err := g.Replay(t.Context(), "g", []string{dls[1].ID, "1-1"}); err != nil || n != 1 {
		t.Fatalf("Replay(one and an unknown id) = %d, %v; want 1", n, err)
	}
	if d := firstDiff(dlIDs(deadLetters(t, g, "g")), []string{dls[0].ID, dls[2].ID}); d != "" {
		t.Fatalf("dead letters after replaying one: %s", d)
	}
	queued, err := g.Replays(t.Context(), "g", 10)
	if err != nil || len(queued) != 1 {
		t.Fatalf("Replays = %v, %v; want one", queued, err)
	}
	requireDeadLetter(t, "replay entry", queued[0], bridge.DeadLetter{Message: msgs[1], Attempts: 2, Error: "down", FailedAt: failed})
	if again, _ := g.Replays(t.Context(), "g", 10); len(again) != 1 || again[0].ID != queued[0].ID {
		t.Fatalf("Replays does not keep the entry until ReplayDone: %v", again)
	}
	if err := g.ReplayDone(t.Context(), "g", queued[0].ID, nil, 100); err != nil {
		t.Fatal(err)
	}
	if left, _ := g.Replays(t.Context(), "g", 10); len(left) != 0 {
		t.Fatalf("Replays after ReplayDone = %v", left)
	}

	if n, err := g.Replay(t.Context(), "g", nil); err != nil || n != 2 {
		t.Fatalf("Replay(all) = %d, %v; want 2", n, err)
	}
	if left := deadLetters(t, g, "g"); len(left) != 0 {
		t.Fatalf("dead letters after replaying all: %v", dlIDs(left))
	}
	queued, _ = g.Replays(t.Context(), "g", 1)
	if len(queued) != 1 || queued[0].Message.ID != msgs[0].ID {
		t.Fatalf("Replays(1) = %v, want the oldest", queued)
	}
	again := bridge.DeadLetter{Message: queued[0].Message, Attempts: 5, Error: "still down", FailedAt: failed.Add(time.Second)}
	if err := g.ReplayDone(t.Context(), "g", queued[0].ID, &again, 100); err != nil {
		t.Fatal(err)
	}
	back := deadLetters(t, g, "g")
	if len(back) != 1 {
		t.Fatalf("dead letters after a failed replay: %v", dlIDs(back))
	}
	requireDeadLetter(t, "dead again", back[0], again)
	if !parseID(t, dls[2].ID).less(parseID(t, back[0].ID)) {
		t.Fatalf("the dead letter's new id %s is not newer than %s", back[0].ID, dls[2].ID)
	}
	if left, _ := g.Replays(t.Context(), "g", 10); len(left) != 1 || left[0].Message.ID != msgs[2].ID {
		t.Fatalf("replay queue = %v, want the third message only", left)
	}
}

func testGroupInvalid(t *testing.T, s bridge.Store, g bridge.Groups) {
	ctx := t.Context()
	_, _, err := g.ReadGroup(ctx, "missing", "c", 1, 0)
	requireCode(t, err, bridge.ECodeInvalidRequest, "ReadGroup of a missing group")
	_, err = g.Pending(ctx, "missing")
	requireCode(t, err, bridge.ECodeInvalidRequest, "Pending of a missing group")
	requireCode(t, g.CreateGroup(ctx, ""), bridge.ECodeInvalidRequest, "CreateGroup(\"\")")
	createGroup(t, g, "g")
	_, _, err = g.ReadGroup(ctx, "g", "", 1, 0)
	requireCode(t, err, bridge.ECodeInvalidRequest, "ReadGroup without consumer")
	_, _, err = g.ReadGroup(ctx, "g", "c", 0, 0)
	requireCode(t, err, bridge.ECodeInvalidRequest, "ReadGroup(count 0)")
	_, _, err = g.Claim(ctx, "g", "c", 0, 1001)
	requireCode(t, err, bridge.ECodeInvalidRequest, "Claim(count 1001)")
	requireCode(t, g.Ack(ctx, "g", "x"), bridge.ECodeInvalidRequest, "Ack(bad id)")
	_, err = g.Replay(ctx, "g", []string{"x"})
	requireCode(t, err, bridge.ECodeInvalidRequest, "Replay(bad id)")
	_, _, err = g.DeadLetters(ctx, "g", "x", 1)
	requireCode(t, err, bridge.ECodeInvalidRequest, "DeadLetters(bad cursor)")
	_, err = g.DeadLetter(ctx, "g", bridge.DeadLetter{Message: bridge.Message{ID: "nope"}}, 1)
	requireCode(t, err, bridge.ECodeInvalidRequest, "DeadLetter of a message without id")
	_ = s
}
