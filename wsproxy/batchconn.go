package wsproxy

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Batched writes. gorilla/websocket writes every frame with its own
// conn.Write, which on a socket is one system call per frame per client:
// under fan-out that was three quarters of the CPU. So the writer frames
// its text frames itself and appends them to a batch (begin … end), which
// end writes with one system call; a message's frame is built once and
// shared by every connection (writeDelivery). gorilla, under which the
// batchConn sits, writes only control frames: pings and the close from
// the writer, pong and close replies from the reader. Those land in the
// batch while there is one and go straight through otherwise. An idle
// connection holds no buffer.

const (
	// flushAt flushes a batch early once this many bytes are buffered;
	// a bigger frame is written on its own, without a copy.
	flushAt = 64 << 10
	// batchBufSize is the size of a fresh batch buffer.
	batchBufSize = 16 << 10
)

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

// batchConn is the network connection under a gorilla Conn.
//
// gorilla serialises its own writes, all control frames, and calls
// SetWriteDeadline then Write with one whole frame each time (the
// connection must never write data through gorilla: Write tells a close
// frame by its first byte). batchConn's mutex orders those against the
// writer's frames and flushes (lock order: gorilla's, then batchConn's;
// writeFrame, writeText, begin and end take only batchConn's).
type batchConn struct {
	net.Conn
	timeout time.Duration // of each flush

	mu        sync.Mutex
	batching  bool
	buf       *[]byte // the frames of the batch, only while batching
	err       error   // the first failed write of a batch
	closeSent bool    // gorilla wrote a close frame: no more data frames
}

// SetWriteDeadline passes gorilla's deadline to the socket outside a
// batch; inside one, every flush sets its own.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		return nil
	}
	return b.Conn.SetWriteDeadline(t)
}

// Write is gorilla's: p is one control frame (and the handshake's answer
// before). It is buffered inside a batch and written through outside one.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > 0 && p[0] == closeFrameByte {
		b.closeSent = true
	}
	if !b.batching {
		return b.Conn.Write(p)
	}
	if err := b.appendLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// closeFrameByte starts a close frame: FIN and opcode 8.
const closeFrameByte = 0x80 | websocket.CloseMessage

// appendLocked adds p to the batch; a batch that would grow past flushAt
// is flushed first, and a p of flushAt or more is written on its own.
func (b *batchConn) appendLocked(p []byte) error {
	if b.err != nil {
		return b.err
	}
	if len(*b.buf)+len(p) > flushAt {
		if err := b.flushLocked(); err != nil {
			return err
		}
		if len(p) >= flushAt {
			return b.writeLocked(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return nil
}

// writeFrame adds a whole frame (textFrame) to the batch; the writer's.
func (b *batchConn) writeFrame(frame []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return websocket.ErrCloseSent
	}
	return b.appendLocked(frame)
}

// writeText adds a text frame holding p to the batch; the writer's.
func (b *batchConn) writeText(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return websocket.ErrCloseSent
	}
	var h [maxHeader]byte
	if err := b.appendLocked(appendTextHeader(h[:0], len(p))); err != nil {
		return err
	}
	return b.appendLocked(p)
}

// maxHeader is the longest header of a server's frame (no mask).
const maxHeader = 10

// appendTextHeader appends the header of an unfragmented text frame of n
// bytes, as a server sends it: FIN, opcode 1, no mask (RFC 6455, 5.2).
func appendTextHeader(dst []byte, n int) []byte {
	const b0 = 0x80 | websocket.TextMessage
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
	}
}

// textFrame returns p as a whole text frame.
func textFrame(p []byte) []byte {
	return append(appendTextHeader(make([]byte, 0, maxHeader+len(p)), len(p)), p...)
}

// begin starts a batch: gorilla's writes are buffered until end.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.buf = batchBufs.Get().(*[]byte)
	b.mu.Unlock()
}

// end writes what the batch buffered with one system call (a batch over
// flushAt bytes takes more), returns the buffer to the pool and reports
// the first failed write of the batch.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	if err == nil {
		err = b.flushLocked()
	}
	b.batching, b.err = false, nil
	*b.buf = (*b.buf)[:0]
	batchBufs.Put(b.buf)
	b.buf = nil
	return err
}

func (b *batchConn) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	err := b.writeLocked(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

func (b *batchConn) writeLocked(p []byte) error {
	_ = b.Conn.SetWriteDeadline(time.Now().Add(b.timeout))
	if _, err := b.Conn.Write(p); err != nil {
		b.err = err
		return err
	}
	return nil
}

// hijacker hands gorilla's Upgrade the hijacked connection wrapped in a
// batchConn.
type hijacker struct {
	http.ResponseWriter
	timeout time.Duration
	wrap    func(net.Conn) net.Conn // tests: sees the socket's writes
	conn    *batchConn              // set by Hijack
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if h.wrap != nil {
		c = h.wrap(c)
	}
	h.conn = &batchConn{Conn: c, timeout: h.timeout}
	return h.conn, rw, nil
}
