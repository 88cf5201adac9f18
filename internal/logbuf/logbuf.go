// Package logbuf batches log lines into fewer writes: one write(2) per
// line costs an HTTP request several per cent of its CPU. Lines below
// slog.LevelWarn wait at most Delay (or until Size bytes are waiting);
// a warning or error is written at once, with everything before it.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

const (
	// Delay is how long a line may wait.
	Delay = 100 * time.Millisecond
	// Size is how many bytes may wait.
	Size = 64 << 10
)

// Writer buffers what is written to it for at most Delay. It is safe for
// concurrent use.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer // armed while buf holds bytes
	err   error       // the last write error, returned by the next Write
}

// New returns a Writer that writes to w.
func New(w io.Writer) *Writer {
	b := &Writer{w: w, buf: make([]byte, 0, Size)}
	b.timer = time.AfterFunc(time.Hour, func() { _ = b.Flush() })
	b.timer.Stop()
	return b
}

// Write appends p; it reaches the underlying writer within Delay.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	if len(b.buf)+len(p) > Size {
		b.flushLocked()
		if len(p) > Size {
			return b.w.Write(p)
		}
	}
	if len(b.buf) == 0 {
		b.timer.Reset(Delay)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes what is waiting.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *Writer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.timer.Stop()
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Handler wraps h, which writes to w, so that a record at slog.LevelWarn
// or above is written at once.
func Handler(h slog.Handler, w *Writer) slog.Handler { return handler{h, w} }

type handler struct {
	slog.Handler
	w *Writer
}

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		_ = h.w.Flush()
	}
	return err
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{h.Handler.WithAttrs(attrs), h.w}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{h.Handler.WithGroup(name), h.w}
}
