// Command mqttbridge bridges MQTT v5 brokers to HTTP. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/config"
)

func main() {
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
		fmt.Fprintf(os.Stderr, "mqttbridge: %v\n", err)
		_ = m.Close(context.Background())
		os.Exit(1)
	}
	<-ctx.Done()
	stop()

	shutdown, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.HTTP.ShutdownTimeout))
	defer cancel()
	if err := m.Close(shutdown); err != nil {
		fmt.Fprintf(os.Stderr, "mqttbridge: shutdown: %v\n", err)
		os.Exit(1)
	}
}
