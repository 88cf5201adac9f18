// Command mqttbench is the load generator for the HTTP scenarios of
// /work/shared/BENCHMARKS.md (P1: HTTP publish, R1: GET last value).
//
//	mqttbench noop -addr 127.0.0.1:18090
//	    the do-nothing peer: gin, release mode, POST and GET /v1/topics/*topic -> 204
//	mqttbench http -url URL -method POST|GET -conns 64 -duration 10s -body-size 64 [-header K:V]
//	    a closed-loop generator over keep-alive connections
//	mqttbench run -scenario P1|R1|all [-runs 3]
//	    starts each system under test pinned to CPU 0, runs the generator on
//	    CPU 1, three runs each, and prints medians and ratios
//
// See docs/benchmarks.md for the method and the figures.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "noop":
		err = cmdNoop(os.Args[2:])
	case "http":
		err = cmdHTTP(os.Args[2:])
	case "run":
		err = cmdRun(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mqttbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  mqttbench noop -addr 127.0.0.1:18090
  mqttbench http -url URL -method POST|GET -conns 64 -duration 10s -body-size 64 [-header K:V] [-json]
  mqttbench run -scenario P1|R1|all [-runs 3] [-bridge /tmp/mqttbridge] [-centrifugo PATH]
Each subcommand has -h.
`)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
