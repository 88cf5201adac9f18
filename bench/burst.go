package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// B1: a burst of -burst messages published open loop as fast as the
// publisher writes them (16 PUBLISH packets per write), to -subs
// subscribers that keep reading. Reported: how many of the subscribers
// were disconnected, how many deliveries arrived, and the time to drain
// (from the first message sent until the last subscriber still connected
// has every message).

type burstResult struct {
	Messages      int     `json:"messages"`
	PublishSecs   float64 `json:"publish_seconds"`
	DrainSecs     float64 `json:"drain_seconds"` // first send → last delivery
	Delivered     int64   `json:"delivered"`
	DeliveredPct  float64 `json:"delivered_pct"`
	Disconnected  int     `json:"disconnected"`
	DisconnectWhy string  `json:"disconnect_sample,omitempty"`
}

func runBurst(ctx context.Context, cfg fanConfig, res *fanResult, subs []*subscriber, p publisher, base int64, phase *atomic.Int32) (*fanResult, error) {
	b := &burstResult{Messages: cfg.Burst}
	res.Burst = b
	phase.Store(phaseMeasure)
	cpu0 := selfCPU()
	pc0 := make([]time.Duration, len(cfg.Pids))
	for i, pid := range cfg.Pids {
		pc0[i], _ = pidCPU(pid)
	}
	sys0 := readCPUTimes()
	t0 := time.Now()
	var pubErr error
	for i := 0; i < cfg.Burst && pubErr == nil; i++ {
		pubErr = p.send(time.Now().UnixNano(), base+int64(i), i%16 == 15 || i == cfg.Burst-1)
	}
	b.PublishSecs = time.Since(t0).Seconds()
	want := int64(cfg.Burst)
	deadline := t0.Add(cfg.BurstDrain)
	for {
		pending := 0
		for _, s := range subs {
			select {
			case <-s.done:
				continue // disconnected: counted below
			default:
			}
			if s.got.Load() < want {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	wall := time.Since(t0)
	b.DrainSecs = wall.Seconds()
	phase.Store(phaseStop)
	for _, s := range subs {
		select {
		case <-s.done:
			b.Disconnected++
			if b.DisconnectWhy == "" {
				if err := s.failure(); err != nil {
					b.DisconnectWhy = err.Error()
				} else {
					b.DisconnectWhy = "connection ended"
				}
			}
		default:
		}
		got := min(s.got.Load(), want)
		b.Delivered += got
		res.Lost += want - got
	}
	b.DeliveredPct = 100 * float64(b.Delivered) / float64(want*int64(len(subs)))
	res.GenCPUPct = 100 * float64(selfCPU()-cpu0) / float64(wall)
	if len(cfg.Pids) > 0 {
		res.PidCPUPct = map[string]float64{}
		for i, pid := range cfg.Pids {
			pc, _ := pidCPU(pid)
			res.PidCPUPct[fmt.Sprint(pid)] = 100 * float64(pc-pc0[i]) / float64(wall)
		}
	}
	res.CPUBusyPct = cpuBusyPct(sys0, readCPUTimes())
	res.LoadAvg = loadAvg()
	res.Seconds, res.Published, res.Deliveries = wall.Seconds(), want, b.Delivered
	if pubErr != nil {
		res.Errors, res.ErrorSample = 1, "publisher: "+pubErr.Error()
	}
	// Valid as a measurement when the publisher sent everything; losses and
	// disconnections are the result.
	res.Valid = pubErr == nil
	if !res.Valid {
		res.Invalid = res.ErrorSample
	}
	return res, nil
}

func printBurstResult(w io.Writer, r *fanResult) {
	b := r.Burst
	fmt.Fprintf(w, "%s: burst of %d × %d B published open loop -> %d subscribers at %s\n", r.System, b.Messages, r.PayloadSize, r.Subs, r.SubURL)
	fmt.Fprintf(w, "  published in %.3fs; drained in %.3fs\n", b.PublishSecs, b.DrainSecs)
	fmt.Fprintf(w, "  delivered %d (%.1f%%), subscribers disconnected %d %s\n", b.Delivered, b.DeliveredPct, b.Disconnected, b.DisconnectWhy)
	fmt.Fprintf(w, "  generator CPU %.1f%% of one core, load average %.2f\n", r.GenCPUPct, r.LoadAvg)
	for pid, v := range r.PidCPUPct {
		fmt.Fprintf(w, "  pid %s CPU %.1f%% of one core\n", pid, v)
	}
}
