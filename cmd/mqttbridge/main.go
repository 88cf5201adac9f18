// Command mqttbridge bridges MQTT v5 brokers to HTTP. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/config"
)

func main() {
	// The live heap is small and every request leaves garbage behind: with
	// the default GOGC=100 the collector runs dozens of times a second.
	// Unless the operator chose, collect at five times the live heap.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if code, ok := subcommand(os.Args[1:], os.Stdout, os.Stderr, os.Getenv); ok {
		os.Exit(code)
	}
	cfg, err := config.Load(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Print(config.Usage())
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mqttbridge: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := NewMain(cfg)
	m.Stdout = os.Stdout
	if err := m.Run(ctx); err != nil {
		_ = m.Close(context.Background())
		fmt.Fprintf(os.Stderr, "mqttbridge: %v\n", err) // the last line printed
		os.Exit(1)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := m.ReloadTLS(); err != nil {
				m.Logger.Error("SIGHUP: reloading the TLS certificate failed; the old one stays", "err", err)
			} else {
				m.Logger.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	}()
	<-ctx.Done()
	stop()
	signal.Stop(hup)
	m.Logger.Info("shutting down: draining", "grace", time.Duration(cfg.HTTP.ShutdownTimeout))

	shutdown, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.HTTP.ShutdownTimeout))
	defer cancel()
	if err := m.Close(shutdown); err != nil {
		fmt.Fprintf(os.Stderr, "mqttbridge: shutdown: %v\n", err)
		os.Exit(1)
	}
}
