package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// noopHandler is the P1/R1 peer: gin in release mode with the bridge's
// routes, each answering 204 and doing nothing else.
func noopHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	nothing := func(c *gin.Context) { c.Status(http.StatusNoContent) }
	e.POST("/v1/topics/*topic", nothing)
	e.GET("/v1/topics/*topic", nothing)
	e.GET("/healthz", nothing)
	return e
}

// newNoopServer is configured like the bridge's HTTP server.
func newNoopServer() *http.Server {
	return &http.Server{Handler: noopHandler(), ReadHeaderTimeout: 10 * time.Second}
}

func cmdNoop(args []string) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18090", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := newNoopServer()
	fmt.Printf("mqttbench noop listening on http://%s (POST and GET /v1/topics/*topic -> 204)\n", ln.Addr())
	ctx, stop := signalContext()
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
