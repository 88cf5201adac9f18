package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Authorizer checks the callers of DeadLetters and Replay; *bridge.Bridge
// is one.
type Authorizer interface {
	Authorize(ctx context.Context, id bridge.Identity, action bridge.Action, topic string) error
}

// ManagerConfig configures the webhooks of one instance.
type ManagerConfig struct {
	// Webhooks to deliver; may be empty.
	Webhooks []Config
	// Groups and Leases are the store's; required with webhooks.
	Groups bridge.Groups
	Leases bridge.Leases
	// Authorizer checks who may read and replay dead letters: the caller
	// needs ActionSubscribe on every filter of the webhook (the dead
	// letters hold their messages), and to replay (which sends them
	// again) ActionPublish on every filter too. Default: allow all.
	Authorizer Authorizer
	// Consumer is this instance's name in the consumer groups (its
	// instance id); required with webhooks.
	Consumer string
	// Client sends the requests; default: a client that follows no
	// redirects (a 3xx answer is a failed attempt).
	Client *http.Client
	// Logger; default discards.
	Logger *slog.Logger
}

// Manager runs the webhooks of one instance. Create it with New, start it
// with Start, and stop it with Close.
type Manager struct {
	cfg     ManagerConfig
	log     *slog.Logger
	workers map[string]*worker
	names   []string

	soft, hard           context.Context // soft: stop taking work; hard: abort requests
	stopSoft, stopHard   context.CancelFunc
	wg                   sync.WaitGroup
	startOnce, closeOnce sync.Once
	done                 chan struct{}
}

// New checks every webhook's configuration and fills its defaults.
func New(cfg ManagerConfig) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Authorizer == nil {
		cfg.Authorizer = bridge.AllowAll{}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if len(cfg.Webhooks) > 0 && (cfg.Groups == nil || cfg.Leases == nil || cfg.Consumer == "") {
		return nil, errors.New("webhook: Groups, Leases and Consumer are required")
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, workers: map[string]*worker{}, done: make(chan struct{})}
	for _, c := range cfg.Webhooks {
		c.Filters = slices.Clone(c.Filters)
		key, err := c.fill()
		if err != nil {
			return nil, err
		}
		if _, dup := m.workers[c.Name]; dup {
			return nil, fmt.Errorf("webhook %q is configured twice", c.Name)
		}
		m.workers[c.Name] = newWorker(m, c, key)
		m.names = append(m.names, c.Name)
	}
	return m, nil
}

// Start creates the consumer group of every webhook (at the end of the
// history, the first time; a store that does not answer is retried in the
// background) and starts delivering. Messages recorded after Start
// returned are delivered; those recorded before are delivered only when
// the webhook's group existed already.
func (m *Manager) Start(ctx context.Context) {
	m.startOnce.Do(func() {
		m.soft, m.stopSoft = context.WithCancel(ctx)
		m.hard, m.stopHard = context.WithCancel(context.WithoutCancel(ctx))
		for _, name := range m.names {
			w := m.workers[name]
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			w.ensureGroup(cctx)
			cancel()
			m.wg.Add(1)
			go w.run(m.soft)
		}
	})
}

// Close stops taking work, lets the attempts under way finish until ctx
// ends (then aborts them: their messages are delivered again by the next
// holder), releases the leases and waits. Safe to call twice.
func (m *Manager) Close(ctx context.Context) error {
	var err error
	m.closeOnce.Do(func() {
		if m.stopSoft == nil { // never started
			close(m.done)
			return
		}
		m.stopSoft()
		go func() {
			m.wg.Wait()
			m.stopHard()
			close(m.done)
		}()
	})
	select {
	case <-m.done:
	case <-ctx.Done():
		if m.stopHard != nil {
			m.stopHard()
		}
		<-m.done
		err = fmt.Errorf("webhook: close: %w", ctx.Err())
	}
	return err
}

// Names lists the webhooks, in configuration order.
func (m *Manager) Names() []string { return slices.Clone(m.names) }

// Stats returns the counters of a webhook on this instance.
func (m *Manager) Stats(name string) (Stats, bool) {
	w, ok := m.workers[name]
	if !ok {
		return Stats{}, false
	}
	return w.stats(), true
}

// worker finds a webhook and checks that id may do each of actions on
// every topic the webhook delivers (its filters).
func (m *Manager) worker(ctx context.Context, id bridge.Identity, name string, actions ...bridge.Action) (*worker, error) {
	w, ok := m.workers[name]
	if !ok {
		return nil, bridge.Errorf(bridge.ECodeNotFound, "there is no webhook %q", name)
	}
	for _, a := range actions {
		for _, f := range w.cfg.Filters {
			if err := m.cfg.Authorizer.Authorize(ctx, id, a, f); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// DeadLetters returns a page of a webhook's dead letters, oldest first:
// up to limit (1..1000), after the dead-letter id after ("" from the
// start), and the cursor of the next page ("" at the end).
func (m *Manager) DeadLetters(ctx context.Context, id bridge.Identity, name, after string, limit int) ([]bridge.DeadLetter, string, error) {
	w, err := m.worker(ctx, id, name, bridge.ActionSubscribe)
	if err != nil {
		return nil, "", err
	}
	return m.cfg.Groups.DeadLetters(ctx, w.group, after, limit)
}

// Replay queues dead letters of a webhook for delivery again (every one
// when ids is empty) and returns how many were queued; unknown ids are
// ignored. The instance that delivers the webhook sends them within about
// a second, each with a full round of attempts; one that fails again
// returns to the dead letters with a new id.
//
// Replaying sends messages again, so it needs more than reading them: id
// must be allowed to subscribe to and to publish on every filter of the
// webhook, which covers the topic of every dead letter it can have.
func (m *Manager) Replay(ctx context.Context, id bridge.Identity, name string, ids []string) (int, error) {
	w, err := m.worker(ctx, id, name, bridge.ActionSubscribe, bridge.ActionPublish)
	if err != nil {
		return 0, err
	}
	return m.cfg.Groups.Replay(ctx, w.group, ids)
}
