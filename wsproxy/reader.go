package wsproxy

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// The reader of a /v1/ws connection. While the client sends nothing, its
// socket waits in the poller (poll_linux.go) and nothing of the reader
// exists; when the socket becomes readable, readReady runs in a goroutine
// of its own with a buffer from a pool, reads and handles the frames that
// came (a frame that came only in part, to its end), and hands the socket
// back to the poller at the next frame boundary. Where there is no poller
// (TLS, not Linux) the reader runs in a goroutine for the whole
// connection.

// The reader's states.
const (
	rRunning = iota // a goroutine reads (or start has not armed it yet)
	rIdle           // the socket waits in the poller: no goroutine
	rDone           // the reader ended
)

const readBufSize = 4 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// startReader starts reading: from the poller, or in a goroutine.
func (c *conn) startReader() {
	w, err := newWatcher(c.raw, c.onReadable)
	if err != nil {
		c.s.log.Warn("watching a WebSocket for readiness failed; it is read in a goroutine", "err", err)
	}
	if w == nil {
		go c.readReady(true)
		return
	}
	c.watcher = w
	c.toIdle()
}

// onReadable is the poller's: the socket has something to read.
func (c *conn) onReadable() {
	if c.rstate.CompareAndSwap(rIdle, rRunning) {
		c.readReady(false)
	}
}

// toIdle hands the socket to the poller; the reader under way returns.
func (c *conn) toIdle() {
	c.rstate.Store(rIdle)
	// Looked at after the state is stored, so that a closeSocket after
	// the look finds the reader idle and ends it.
	if err := c.watcher.arm(); err != nil || c.closed.Load() {
		c.endIdleReader()
	}
}

// endIdleReader ends the reader if it is idle: the socket was closed, and
// the poller will not start it again.
func (c *conn) endIdleReader() {
	if c.rstate.CompareAndSwap(rIdle, rDone) {
		c.readerEnded()
	}
}

// readerEnded is called once, when nothing more is read: the writer
// closes the connection (1000, unless a close is under way already).
func (c *conn) readerEnded() {
	if c.watcher != nil {
		c.watcher.stop()
	}
	close(c.readerDone)
	c.closeWith(closeNormal, "")
	c.partDone()
}

// readReady reads and handles whole frames until the socket has no more
// (block: until the connection ends), then returns to the poller.
func (c *conn) readReady(block bool) {
	pooled := readBufs.Get().(*[]byte)
	defer readBufs.Put(pooled)
	buf := *pooled // may grow for a big frame
	var (
		have, off int    // buf[off:have] is read and not parsed yet
		msg       []byte // a fragmented message so far
		inMsg     bool
		msgOp     byte
	)
	need := 0
	for {
		// What came, or more of the frame under way.
		if off > 0 {
			have = copy(buf, buf[off:have])
			off = 0
		}
		if need > len(buf) {
			buf = append(buf[:have], make([]byte, need-have)...)
		}
		n, err := c.nc.Read(buf[have:])
		have += n
		if err != nil && n == 0 {
			c.rstate.Store(rDone)
			c.readerEnded()
			return
		}
		// The whole frames that came.
		need = 0
		for have > off {
			f, size, err := parseFrame(buf[off:have], c.s.cfg.ReadLimit)
			if err == errShort {
				need = size
				break
			}
			if err == nil {
				off += size
				c.lastRead.Store(time.Now().UnixNano())
				var data []byte
				switch {
				case f.op >= opClose:
					err = c.onControl(f)
				case f.op == opContinuation && !inMsg, f.op != opContinuation && inMsg:
					err = wsProtocolError("unexpected continuation frame")
				case int64(len(msg)+len(f.payload)) > c.s.cfg.ReadLimit:
					err = &frameError{closeTooBig, "message too big"}
				case f.op != opContinuation && f.fin:
					data, msgOp = bytes.Clone(f.payload), f.op
				default:
					if f.op != opContinuation {
						msgOp = f.op
					}
					msg, inMsg = append(msg, f.payload...), !f.fin
					if f.fin {
						data, msg = msg, nil
					}
				}
				if err == nil && data != nil {
					c.onMessage(msgOp, data)
				}
			}
			if err != nil {
				if fe, ok := errors.AsType[*frameError](err); ok {
					c.closeWith(fe.code, fe.msg)
				}
				c.rstate.Store(rDone)
				c.readerEnded()
				return
			}
		}
		if off == have {
			off, have = 0, 0
			if !inMsg && !block {
				c.toIdle()
				return
			}
		}
	}
}

// onControl handles a ping, pong or close frame of the client; an error
// ends the reader.
func (c *conn) onControl(f clientFrame) error {
	switch f.op {
	case opPing:
		c.wmu.Lock()
		c.pong = append(make([]byte, 0, len(f.payload)), f.payload...)
		c.wmu.Unlock()
		c.kick()
	case opClose:
		code, err := parseClose(f.payload)
		if err != nil {
			return err
		}
		// Answered with the same code, unless a close is under way.
		c.closeWith(code, "")
		return errClosed
	}
	return nil // a pong: that something came is enough
}

// errClosed ends the reader after the client's close frame.
var errClosed = errors.New("websocket: closed by the client")

// onMessage handles a whole message of the client.
func (c *conn) onMessage(op byte, data []byte) {
	if op != opText {
		c.inOrder(false, func() {
			c.reply(errorFrameFor("", bridge.Errorf(bridge.ECodeInvalidRequest, "frames must be text frames holding one JSON object")))
		})
		return
	}
	c.handle(context.Background(), data)
}
