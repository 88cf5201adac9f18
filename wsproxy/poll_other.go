//go:build !linux

package wsproxy

import "net"

// Without epoll every connection reads in a goroutine of its own
// (poll_linux.go has the poller).

type watcher struct{}

func newWatcher(net.Conn, func()) (*watcher, error) { return nil, nil }

func (*watcher) arm() error { return nil }
func (*watcher) stop()      {}
