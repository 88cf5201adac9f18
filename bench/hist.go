package main

import (
	"math/bits"
	"strconv"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds: exact below 64 ns,
// then 64 buckets per power of two (at most 1.6% relative error). Each
// worker owns one, so recording needs no synchronisation; they are merged
// at the end.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = 64 * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	return (e+1)*histSub + int((v>>e)&(histSub-1))
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	sub := uint64(i % histSub)
	lo := (histSub + sub) << e
	return lo + (uint64(1)<<e)/2
}

func (h *hist) record(d time.Duration) {
	v := uint64(d)
	if d < 0 {
		v = 0
	}
	h.counts[histIndex(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the q-quantile (0 < q <= 1); 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// millis are the median, 90th and 99th percentiles and the maximum, in
// milliseconds.
func (h *hist) millis() (p50, p90, p99, max float64) {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return ms(h.quantile(0.50)), ms(h.quantile(0.90)), ms(h.quantile(0.99)), ms(time.Duration(h.max))
}

// pidCPUPct is the CPU use of each of pids over wall, from the CPU times
// before and after, in % of one core; nil without pids.
func pidCPUPct(pids []int, before, after []time.Duration, wall time.Duration) map[string]float64 {
	if len(pids) == 0 {
		return nil
	}
	out := map[string]float64{}
	for i, pid := range pids {
		out[strconv.Itoa(pid)] = 100 * float64(after[i]-before[i]) / float64(wall)
	}
	return out
}
