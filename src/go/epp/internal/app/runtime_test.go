package app

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		want             int64
	}{
		{"v2 limit", "memory.max", "268435456\n", 268435456},
		{"v2 unlimited", "memory.max", "max\n", 0},
		{"v1 limit", "memory/memory.limit_in_bytes", "536870912\n", 536870912},
		{"v1 unlimited", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
		{"garbage", "memory.max", "lots\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, tc.file), tc.text)
			got, file := CgroupMemoryLimit(root)
			if got != tc.want || file != filepath.Join(root, tc.file) {
				t.Errorf("CgroupMemoryLimit = %d, %q; want %d, %q", got, file, tc.want, filepath.Join(root, tc.file))
			}
		})
	}
	if got, file := CgroupMemoryLimit(t.TempDir()); got != 0 || file != "" {
		t.Errorf("no cgroup files: got %d, %q", got, file)
	}
}

func TestApplyRuntimeDefaults(t *testing.T) {
	// The settings are process-wide: restore them for the other tests.
	oldPercent, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "memory.max"), "1000000000\n")
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}

	s := ApplyRuntimeDefaults(env(nil), root)
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Errorf("GC percent %d, want %d", got, DefaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 900000000 || s.MemoryLimitBytes != got {
		t.Errorf("memory limit %d (reported %d), want 90%% of the cgroup's 1e9", got, s.MemoryLimitBytes)
	}
	if s.GCPercent != "400 (default)" || s.MemoryLimitFrom != "90% of "+filepath.Join(root, "memory.max") {
		t.Errorf("settings %+v", s)
	}

	// What the environment sets wins: the runtime applied it at start, so nothing changes.
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(123 << 20)
	s = ApplyRuntimeDefaults(env(map[string]string{"GOGC": "150", "GOMEMLIMIT": "123MiB"}), root)
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC=150 overridden: %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 123<<20 || s.MemoryLimitBytes != 123<<20 || s.MemoryLimitFrom != "GOMEMLIMIT" {
		t.Errorf("GOMEMLIMIT overridden: limit %d, settings %+v", got, s)
	}
}
