package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a server process a test starts, stops, kills and restarts,
// ready once it accepts TCP on Addr. Its output is kept for Log.
type Process struct {
	tb   testing.TB
	name string
	argv []string
	env  []string
	Addr string // host:port it listens on when ready

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *SyncBuffer
}

// StartProcess starts argv (with env added to this process's environment)
// and waits until it accepts TCP connections on addr. The cleanup kills it.
func StartProcess(tb testing.TB, name, addr string, env []string, argv ...string) *Process {
	tb.Helper()
	p := &Process{tb: tb, name: name, argv: argv, env: env, Addr: addr, out: &SyncBuffer{}}
	tb.Cleanup(p.Kill)
	p.Start()
	return p
}

// Start starts the process again after Stop or Kill; it does nothing while
// the process runs.
func (p *Process) Start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		p.tb.Fatalf("testenv: starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for dialCheck(p.Addr, 200*time.Millisecond) != nil {
		select {
		case <-done:
			p.tb.Fatalf("testenv: %s exited: %s", p.name, lastLines([]byte(p.out.String()), 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			p.tb.Fatalf("testenv: %s does not listen on %s: %s", p.name, p.Addr, lastLines([]byte(p.out.String()), 20))
		}
	}
	// Something else may have taken the port while the process was down
	// (another test's server): then the dial succeeds but ours exits.
	select {
	case <-done:
		p.tb.Fatalf("testenv: %s exited after start (port %s taken?): %s", p.name, p.Addr, lastLines([]byte(p.out.String()), 20))
	case <-time.After(150 * time.Millisecond):
	}
	p.cmd, p.done = cmd, done
}

// Stop sends SIGTERM and waits for the exit (SIGKILL after 10 s).
func (p *Process) Stop() { p.end(syscall.SIGTERM, 10*time.Second) }

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() { p.end(syscall.SIGKILL, 10*time.Second) }

func (p *Process) end(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd, p.done = nil, nil
}

// Pause freezes the process with SIGSTOP: its connections stay open and
// nothing is answered, as with a hung server. Resume, Stop or Kill undo it.
func (p *Process) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() { p.signal(syscall.SIGCONT) }

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Running reports whether the process runs.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Log is everything the process wrote so far.
func (p *Process) Log() string { return p.out.String() }

// StartRedis starts a private redis-server on a free loopback port. With
// durable, every write is in an append-only file (fsync always), so a
// restart keeps the data; else nothing is kept on disk. Its URL is
// redis://127.0.0.1:<port>/0.
func StartRedis(tb testing.TB, durable bool) (*Process, string) {
	tb.Helper()
	port := FreePort(tb)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	aof := []string{"--appendonly", "no"}
	if durable {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--save", "",
		"--dir", tb.TempDir(), "--daemonize", "no", "--loglevel", "warning"}, aof...)
	p := StartProcess(tb, "redis-server", addr, nil, args...)
	return p, "redis://" + addr + "/0"
}
