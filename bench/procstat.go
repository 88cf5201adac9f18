package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat and /proc/stat
// times. It is 100 on every Linux ABI Go supports (sysconf would need cgo).
const clockTicks = 100

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidCPU is the user+system CPU time of a process (all its threads), from
// /proc/<pid>/stat, at 10 ms resolution.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// cpuTimes is one line of /proc/stat: busy and total ticks of one CPU.
type cpuTimes struct{ busy, total uint64 }

// readCPUTimes reads per-CPU times from /proc/stat, keyed "cpu0", "cpu1".
// Busy counts user, nice, system, irq, softirq and steal (time the
// hypervisor gave to someone else is time this machine could not use).
func readCPUTimes() map[string]cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	out := map[string]cpuTimes{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		out[f[0]] = cpuTimes{busy: busy, total: busy + v[3] + v[4]}
	}
	return out
}

// cpuBusyPct is each CPU's busy share between two readings, in percent.
func cpuBusyPct(a, b map[string]cpuTimes) map[string]float64 {
	out := map[string]float64{}
	for k, x := range b {
		y, ok := a[k]
		if !ok || x.total <= y.total {
			continue
		}
		out[k] = 100 * float64(x.busy-y.busy) / float64(x.total-y.total)
	}
	return out
}

// loadAvg is the first field of /proc/loadavg.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
