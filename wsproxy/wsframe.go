package wsproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"
)

// The WebSocket framing of /v1/ws (RFC 6455, section 5), owned here:
// gorilla/websocket does the handshake, and this file builds the server's
// frames and parses the client's. Owning both lets the writer batch any
// frame it builds (message frames are built once per message and shared
// by every connection) and lets the reader parse frames out of a pooled
// buffer only while the socket has something to read, so that an idle
// connection holds neither a goroutine nor a buffer (conn.go, poll_*.go).

// Opcodes (RFC 6455, 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close codes of RFC 6455 the server sends itself.
const (
	closeNormal        = 1000
	closeNoStatus      = 1005 // received: the close frame had no code
	closeProtocolError = 1002
	closeTooBig        = 1009
)

// maxHeader is the longest header of a server's frame (no mask).
const maxHeader = 10

// appendHeader appends the header of an unfragmented frame of n bytes, as
// a server sends it: FIN, the opcode, no mask.
func appendHeader(dst []byte, op byte, n int) []byte {
	b0 := 0x80 | op
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
	return append(appendHeader(make([]byte, 0, maxHeader+len(p)), opText, len(p)), p...)
}

// closePayload is the payload of a close frame: the code and the reason
// (cut to fit a control frame's 125 bytes); none for closeNoStatus.
func closePayload(code int, reason string) []byte {
	if code == closeNoStatus {
		return nil
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// A clientFrame is one frame of a client, its payload unmasked in place.
type clientFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// errShort says that b holds only part of a frame.
var errShort = errors.New("short frame")

// frameError is a broken frame: the connection closes with code.
type frameError struct {
	code int
	msg  string
}

func (e *frameError) Error() string { return e.msg }

func wsProtocolError(msg string) error { return &frameError{closeProtocolError, msg} }

// parseFrame parses the frame at the start of b: it returns the frame and
// its length, or errShort and the length needed to know more (at least
// len(b)+1), or a *frameError. A frame whose payload is over limit is an
// error at once, before it arrives.
func parseFrame(b []byte, limit int64) (clientFrame, int, error) {
	if len(b) < 2 {
		return clientFrame{}, 2, errShort
	}
	b0, b1 := b[0], b[1]
	f := clientFrame{fin: b0&0x80 != 0, op: b0 & 0x0f}
	if b0&0x70 != 0 {
		return f, 0, wsProtocolError("reserved bits set (no extension was negotiated)")
	}
	switch f.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !f.fin || b1&0x7f > 125 {
			return f, 0, wsProtocolError("a control frame must be whole and at most 125 bytes")
		}
	default:
		return f, 0, wsProtocolError("unknown opcode")
	}
	if b1&0x80 == 0 {
		return f, 0, wsProtocolError("a client's frame must be masked")
	}
	n, head := uint64(b1&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, 4, errShort
		}
		n, head = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 10, errShort
		}
		n, head = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > uint64(limit) {
		return f, 0, &frameError{closeTooBig, "message too big"}
	}
	size := head + 4 + int(n)
	if len(b) < size {
		return f, size, errShort
	}
	mask := b[head : head+4]
	f.payload = b[head+4 : size]
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, size, nil
}

// parseClose reads a client's close frame: the code to answer with, or a
// *frameError for a malformed one.
func parseClose(p []byte) (int, error) {
	switch {
	case len(p) == 0:
		return closeNoStatus, nil
	case len(p) == 1:
		return 0, wsProtocolError("a close frame's code has two bytes")
	case !utf8.Valid(p[2:]):
		return 0, wsProtocolError("a close frame's reason must be UTF-8")
	}
	code := int(binary.BigEndian.Uint16(p))
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code, nil
	}
	return 0, wsProtocolError("invalid close code")
}

// Batched writes. Writing every frame with a write of its own is one
// system call per frame per client: under fan-out that was three quarters
// of the CPU. So the writer appends its frames to a batch (begin … end),
// which end writes with one system call. Outside a batch a frame is
// written at once. An idle connection holds no buffer.

const (
	// flushAt flushes a batch early once this many bytes are buffered;
	// a bigger frame is written on its own, without a copy.
	flushAt = 64 << 10
	// batchBufSize is the size of a fresh batch buffer.
	batchBufSize = 16 << 10
)

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

// errCloseSent refuses frames after the close frame.
var errCloseSent = errors.New("websocket: close sent")

// batchWriter writes a connection's frames. Its writer (conn.writer, or
// run before it) builds data frames; control frames (ping, pong, close)
// come through writeControl. Every write has the deadline timeout.
type batchWriter struct {
	nc      net.Conn
	timeout time.Duration // of each write

	mu        sync.Mutex
	batching  bool
	buf       *[]byte // the frames of the batch, only while batching
	err       error   // the first failed write of a batch
	closeSent bool    // a close frame went: no more frames
}

// appendLocked adds p to the batch, or writes it outside one; a batch
// that would grow past flushAt is flushed first, and a p of flushAt or
// more is written on its own.
func (b *batchWriter) appendLocked(p []byte) error {
	if b.err != nil {
		return b.err
	}
	if !b.batching {
		return b.writeLocked(p)
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

// writeFrame adds a whole frame (textFrame) to the batch.
func (b *batchWriter) writeFrame(frame []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return errCloseSent
	}
	return b.appendLocked(frame)
}

// writeText adds a text frame holding p to the batch.
func (b *batchWriter) writeText(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return errCloseSent
	}
	if b.batching && b.err == nil && len(*b.buf)+maxHeader+len(p) <= flushAt {
		*b.buf = append(appendHeader(*b.buf, opText, len(p)), p...)
		return nil
	}
	return b.appendLocked(textFrame(p)) // big, or outside a batch
}

// writeControl adds a ping, pong or close frame (payload at most 125
// bytes); after a close frame nothing more is written.
func (b *batchWriter) writeControl(op byte, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return errCloseSent
	}
	b.closeSent = op == opClose
	var f [2 + 125]byte
	return b.appendLocked(append(appendHeader(f[:0], op, len(payload)), payload...))
}

// begin starts a batch: frames are buffered until end.
func (b *batchWriter) begin() {
	b.mu.Lock()
	b.batching = true
	b.buf = batchBufs.Get().(*[]byte)
	b.mu.Unlock()
}

// end writes what the batch buffered with one system call (a batch over
// flushAt bytes takes more), returns the buffer to the pool and reports
// the first failed write of the batch.
func (b *batchWriter) end() error {
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

func (b *batchWriter) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	err := b.writeLocked(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

func (b *batchWriter) writeLocked(p []byte) error {
	_ = b.nc.SetWriteDeadline(time.Now().Add(b.timeout))
	if _, err := b.nc.Write(p); err != nil {
		b.err = err
		return err
	}
	return nil
}

// hijacker hands gorilla's Upgrade the hijacked connection, which it
// writes the handshake's answer to; from then on the connection is ours.
type hijacker struct {
	http.ResponseWriter
	wrap func(net.Conn) net.Conn // tests: sees the socket's reads and writes
	raw  net.Conn                // set by Hijack: the socket (readiness)
	nc   net.Conn                // set by Hijack: raw, or wrapped
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.raw, h.nc = c, c
	if h.wrap != nil {
		h.nc = h.wrap(c)
	}
	return h.nc, rw, nil
}
