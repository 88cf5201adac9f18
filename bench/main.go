// Command mqttbench is the load generator for the scenarios of
// docs/benchmarks.md ("How we measure"): P1 (HTTP publish), R1 (GET last value), F1
// (WebSocket fan-out), M1 (idle WebSocket memory) and S1 (stream store
// throughput).
//
//	mqttbench noop -addr 127.0.0.1:18090
//	    the do-nothing peer: gin, release mode, POST and GET /v1/topics/*topic -> 204
//	mqttbench http -url URL -method POST|GET -conns 64 -duration 10s -body-size 64 [-header K:V]
//	    a closed-loop generator over keep-alive connections
//	mqttbench fanout -system bridge|mosquitto|centrifugo -sub-url WS -pub-url URL -subs 100 [-rate D]
//	    one MQTT (or Centrifugo HTTP) publisher, N WebSocket subscribers on one topic
//	mqttbench idle -system bridge|mosquitto|centrifugo -url WS -conns 10000 -pid PID
//	    idle subscribed connections; server VmRSS before and after
//	mqttbench stream -mqtt 127.0.0.1:18894 -sub ws|redis -window 500
//	    S1: an MQTT publisher and one subscriber of what the bridge ingests
//	    (a WebSocket client, or XREAD of its Redis stream), in a closed loop
//	mqttbench run -scenario P1|R1|F1|M1|S1|all [-runs 3]
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
	case "fanout":
		err = cmdFanout(os.Args[2:])
	case "idle":
		err = cmdIdle(os.Args[2:])
	case "stream":
		err = cmdStream(os.Args[2:])
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
  mqttbench fanout -system bridge|mosquitto|centrifugo -sub-url WS -pub-url URL -subs 100 [-rate D] [-json]
  mqttbench idle -system bridge|mosquitto|centrifugo -url WS -conns 10000 -pid PID [-json]
  mqttbench stream -mqtt 127.0.0.1:18894 -sub ws|redis [-ws-url WS] [-redis-url URL] [-window 500] [-json]
  mqttbench run -scenario P1|R1|F1|M1|S1|all (P1,R1)|ws (F1,M1) [-runs 3] [-bridge /tmp/mqttbridge] [-centrifugo PATH]
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

// verdict says whether a generator's run may be published: a run the
// machine disturbed, or that lost or failed requests, is invalid, and why.
type verdict struct {
	Valid   bool   `json:"valid"`
	Invalid string `json:"invalid_reason,omitempty"`
}

func (v *verdict) failure() error {
	if v.Valid {
		return nil
	}
	return fmt.Errorf("run invalid for publishing: %s", v.Invalid)
}

// report runs a generator until a signal and prints its result, as JSON
// with asJSON; an invalid run is an error.
func report[R interface{ failure() error }](asJSON bool, run func(context.Context) (R, error), print func(io.Writer, R)) error {
	ctx, stop := signalContext()
	defer stop()
	res, err := run(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(os.Stdout, res)
	}
	print(os.Stdout, res)
	return res.failure()
}
