package app

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the EPP's GOGC when the environment sets none. Its live heap is small (a
// few MB: the endpoint pool, their metrics, the prefix index), so with Go's default of 100 it
// collects about five times a second at 1,000 picks/s, and every cycle delays the picks in
// flight. 400 collects about four times less often for a heap about five times the live data,
// which the memory limit below keeps inside the container. benchmarks/epp/run.sh measures it
// (GOGC=100 in its environment reproduces the old setting).
const DefaultGCPercent = 400

// memoryLimitShare of the container's memory limit is Go's soft memory limit when GOMEMLIMIT
// is unset: the collector then runs as often as it must to stay below the limit, whatever GOGC
// lets the heap grow to (the rest is for stacks, binaries and the kernel's buffers).
const memoryLimitShare = 0.9

// RuntimeSettings is what ApplyRuntimeDefaults decided, for the startup log.
type RuntimeSettings struct {
	GCPercent        string // GOGC, or DefaultGCPercent with "(default)"
	MemoryLimitBytes int64  // 0: none
	MemoryLimitFrom  string // "GOMEMLIMIT" or the cgroup file it came from
}

// ApplyRuntimeDefaults sets the garbage collector for a latency-bound server unless the
// environment (GOGC, GOMEMLIMIT) already did: GOGC=DefaultGCPercent, and a soft memory limit
// of memoryLimitShare of the cgroup memory limit found under cgroupRoot (/sys/fs/cgroup; v2,
// then v1), if any. cmd/epp applies it at start, and so does the benchmark's floor server.
func ApplyRuntimeDefaults(getenv func(string) string, cgroupRoot string) RuntimeSettings {
	var s RuntimeSettings
	if v := getenv("GOGC"); v != "" {
		s.GCPercent = v // the runtime read it already
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent = fmt.Sprintf("%d (default)", DefaultGCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		s.MemoryLimitBytes, s.MemoryLimitFrom = debug.SetMemoryLimit(-1), "GOMEMLIMIT"
		return s
	}
	if limit, file := CgroupMemoryLimit(cgroupRoot); limit > 0 {
		s.MemoryLimitBytes = int64(float64(limit) * memoryLimitShare)
		s.MemoryLimitFrom = fmt.Sprintf("%.0f%% of %s", memoryLimitShare*100, file)
		debug.SetMemoryLimit(s.MemoryLimitBytes)
	}
	return s
}

// CgroupMemoryLimit returns the memory limit of this process's cgroup as the container sees
// it (cgroup v2 memory.max, else v1 memory/memory.limit_in_bytes) and the file it read; 0 when
// there is none or it is "max" (v1 writes a huge number instead).
func CgroupMemoryLimit(cgroupRoot string) (int64, string) {
	for _, file := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		path := filepath.Join(cgroupRoot, file)
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		text := strings.TrimSpace(string(raw))
		if text == "max" {
			return 0, path
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0, path
		}
		return n, path
	}
	return 0, ""
}
