//go:build linux

package wsproxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The readiness of idle connections, from epoll: a connection's socket is
// in the poller's epoll set (one-shot) while no goroutine reads it; when
// it becomes readable the poller starts its reader (conn.readReady), which
// re-arms it once the frames that came are read. The poller's goroutine
// runs while connections are registered. The runtime's own netpoller still
// drives every read and write (deadlines, Close); this set only says when
// to start reading.

type poller struct {
	once  sync.Once
	epfd  int
	wake  int // eventfd: the loop looks whether it should end
	err   error
	mu    sync.Mutex
	fns   map[uint64]func() // registration → reader
	next  uint64
	loops bool // the loop runs
}

var thePoller poller

// watcher is a connection's registration.
type watcher struct {
	rc    syscall.RawConn
	id    uint64
	added atomic.Bool // the poller's events order the arms: the race detector does not see that
}

const wakeID = 0

func (p *poller) init() error {
	p.once.Do(func() {
		p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if p.err != nil {
			return
		}
		p.wake, p.err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if p.err != nil {
			return
		}
		p.err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.wake, &unix.EpollEvent{Events: unix.EPOLLIN})
		p.fns = map[uint64]func(){}
		p.next = wakeID + 1
	})
	return p.err
}

// newWatcher prepares the registration of raw's socket; arm adds it. The
// poller calls ready in a new goroutine each time the armed socket is
// readable (also at EOF or an error), once per arm. nil when raw has no
// socket this poller can watch (TLS): the caller reads it in a goroutine
// instead.
func newWatcher(raw net.Conn, ready func()) (*watcher, error) {
	sc, isSock := raw.(syscall.Conn)
	if !isSock {
		return nil, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &thePoller
	if err := p.init(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	id := p.next
	p.next++
	p.fns[id] = ready
	if !p.loops {
		p.loops = true
		go p.loop()
	}
	p.mu.Unlock()
	return &watcher{rc: rc, id: id}, nil
}

// ctl adds or re-arms the socket; an error when it is closed.
func (w *watcher) ctl(op int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(w.id)), Pad: int32(uint32(w.id >> 32))}
	var err error
	if cerr := w.rc.Control(func(fd uintptr) { err = unix.EpollCtl(thePoller.epfd, op, int(fd), &ev) }); cerr != nil {
		return cerr
	}
	return err
}

// arm watches the socket (again, after its reader read what came); one
// reader at a time arms it. Readable already: the poller starts the
// reader again at once.
func (w *watcher) arm() error {
	if !w.added.Swap(true) {
		return w.ctl(unix.EPOLL_CTL_ADD)
	}
	return w.ctl(unix.EPOLL_CTL_MOD)
}

// stop ends the registration; the socket may be closed already (which
// took it out of the epoll set).
func (w *watcher) stop() {
	var ev unix.EpollEvent
	_ = w.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(thePoller.epfd, unix.EPOLL_CTL_DEL, int(fd), &ev) })
	p := &thePoller
	p.mu.Lock()
	delete(p.fns, w.id)
	last := len(p.fns) == 0 && p.loops
	p.mu.Unlock()
	if last {
		var one = [8]byte{1}
		_, _ = unix.Write(p.wake, one[:])
	}
}

// loop starts the reader of each socket that became readable; it ends
// when no socket is registered.
func (p *poller) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic("wsproxy: epoll_wait: " + err.Error())
		}
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeID {
				var b [8]byte
				_, _ = unix.Read(p.wake, b[:])
				continue
			}
			p.mu.Lock()
			fn := p.fns[id]
			p.mu.Unlock()
			if fn != nil {
				go fn()
			}
		}
		p.mu.Lock()
		if len(p.fns) == 0 {
			p.loops = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}
