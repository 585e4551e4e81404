package datastore

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

// fakeScraper serves per-URL metrics or errors and counts calls.
type fakeScraper struct {
	mu      sync.Mutex
	metrics map[string]backend.Metrics
	fail    map[string]bool
	calls   map[string]int
}

func newFakeScraper() *fakeScraper {
	return &fakeScraper{metrics: map[string]backend.Metrics{}, fail: map[string]bool{}, calls: map[string]int{}}
}

func (f *fakeScraper) set(url string, m backend.Metrics, fail bool) {
	f.mu.Lock()
	f.metrics[url] = m
	f.fail[url] = fail
	f.mu.Unlock()
}

func (f *fakeScraper) callCount(url string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[url]
}

func (f *fakeScraper) scrape(_ context.Context, url string) (backend.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[url]++
	if f.fail[url] {
		return backend.Metrics{}, errors.New("connection refused")
	}
	return f.metrics[url], nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func keys(eps []*backend.Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.Key())
	}
	return out
}

func info(key, url string, models ...string) backend.EndpointInfo {
	return backend.EndpointInfo{Key: key, Address: key + ":8000", MetricsURL: url, Models: models}
}

func newStore(t *testing.T, f *fakeScraper) *Store {
	s := New(Options{Scrape: f.scrape, RefreshInterval: 5 * time.Millisecond, StalenessThreshold: time.Second})
	t.Cleanup(s.Close)
	return s
}

func TestEndpointsBecomeReadyAfterAScrape(t *testing.T) {
	f := newFakeScraper()
	f.set("u/a", backend.Metrics{WaitingQueueSize: 3, KVCacheUsage: 0.5}, false)
	f.set("u/b", backend.Metrics{}, true)
	s := newStore(t, f)
	s.SetSource("static", []backend.EndpointInfo{info("a", "u/a"), info("b", "u/b")})

	waitFor(t, "a ready", func() bool { return reflect.DeepEqual(keys(s.Candidates()), []string{"a"}) })
	c := s.Candidates()[0]
	if c.Metrics.WaitingQueueSize != 3 || c.Metrics.KVCacheUsage != 0.5 || c.Metrics.UpdatedAt.IsZero() {
		t.Fatalf("metrics = %+v", c.Metrics)
	}
	waitFor(t, "b scraped", func() bool { return f.callCount("u/b") > 0 })
	statuses := s.Statuses()
	if len(statuses) != 2 || statuses[1].Ready || statuses[1].LastError != "connection refused" {
		t.Fatalf("statuses = %+v", statuses)
	}
}

func TestFailingEndpointIsDroppedAndComesBack(t *testing.T) {
	f := newFakeScraper()
	f.set("u/a", backend.Metrics{}, false)
	f.set("u/b", backend.Metrics{}, false)
	s := newStore(t, f)
	s.SetSource("static", []backend.EndpointInfo{info("a", "u/a"), info("b", "u/b")})
	waitFor(t, "both ready", func() bool { return len(s.Candidates()) == 2 })

	f.set("u/b", backend.Metrics{}, true)
	waitFor(t, "b dropped", func() bool { return reflect.DeepEqual(keys(s.Candidates()), []string{"a"}) })

	f.set("u/b", backend.Metrics{WaitingQueueSize: 1}, false)
	waitFor(t, "b back", func() bool { return len(s.Candidates()) == 2 })
}

func TestStaleMetricsAreNotReady(t *testing.T) {
	f := newFakeScraper()
	// The scrape succeeds but reports data older than the staleness threshold.
	f.set("u/a", backend.Metrics{UpdatedAt: time.Now().Add(-time.Hour)}, false)
	s := newStore(t, f)
	s.SetSource("static", []backend.EndpointInfo{info("a", "u/a")})
	waitFor(t, "scraped", func() bool { return f.callCount("u/a") > 1 })
	if got := s.Candidates(); len(got) != 0 {
		t.Fatalf("stale endpoint is a candidate: %v", keys(got))
	}
}

func TestSetSourceReconcilesAndNotifiesRemoval(t *testing.T) {
	f := newFakeScraper()
	for _, u := range []string{"u/a", "u/b", "u/c"} {
		f.set(u, backend.Metrics{}, false)
	}
	s := newStore(t, f)
	var mu sync.Mutex
	var removed []string
	s.OnRemove(func(key string) {
		mu.Lock()
		removed = append(removed, key)
		mu.Unlock()
	})
	s.SetSource("etcd", []backend.EndpointInfo{info("a", "u/a"), info("b", "u/b")})
	s.SetSource("static", []backend.EndpointInfo{info("c", "u/c")})
	waitFor(t, "three ready", func() bool { return len(s.Candidates()) == 3 })

	// b vanished from etcd, a changed address; the static source is untouched.
	changed := info("a", "u/a")
	changed.Address = "10.0.0.9:9000"
	s.SetSource("etcd", []backend.EndpointInfo{changed})
	got := s.Candidates()
	if !reflect.DeepEqual(keys(got), []string{"a", "c"}) || got[0].Address() != "10.0.0.9:9000" {
		t.Fatalf("candidates = %v (a at %s)", keys(got), got[0].Address())
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(removed, []string{"b"}) {
		t.Fatalf("removed = %v", removed)
	}
	// The scrape loop of b stopped (a scrape already under way when b was removed may still
	// finish, so count after it had time to).
	time.Sleep(20 * time.Millisecond)
	n := f.callCount("u/b")
	time.Sleep(50 * time.Millisecond)
	if f.callCount("u/b") != n {
		t.Fatal("b is still scraped after removal")
	}
}

func TestModelStatus(t *testing.T) {
	f := newFakeScraper()
	s := newStore(t, f)
	if st := s.Model("m"); st.Known || st.Served {
		t.Fatalf("empty pool: %+v", st)
	}
	s.SetSource("etcd", []backend.EndpointInfo{info("a", "u/a", "llama"), info("b", "u/b", "qwen", "llama")})
	if st := s.Model("qwen"); !st.Known || !st.Served {
		t.Fatalf("qwen: %+v", st)
	}
	st := s.Model("mistral")
	if !st.Known || st.Served || !reflect.DeepEqual(st.Models, []string{"llama", "qwen"}) {
		t.Fatalf("mistral: %+v", st)
	}
	// An endpoint without a model list serves anything.
	s.SetSource("static", []backend.EndpointInfo{info("c", "u/c")})
	if st := s.Model("mistral"); !st.Served {
		t.Fatalf("mistral with a catch-all endpoint: %+v", st)
	}
}

func TestPendingPicksResetOnScrape(t *testing.T) {
	f := newFakeScraper()
	f.set("u/a", backend.Metrics{}, true) // keep it unscraped while counting
	s := newStore(t, f)
	s.SetSource("static", []backend.EndpointInfo{info("a", "u/a")})
	s.RecordPick("a")
	s.RecordPick("a")
	s.RecordPick("unknown") // ignored
	f.set("u/a", backend.Metrics{}, false)
	waitFor(t, "ready", func() bool { return len(s.Candidates()) == 1 })
	if p := s.Candidates()[0].PendingPicks; p != 0 {
		t.Fatalf("pending picks after a scrape = %d, want 0", p)
	}
	// Stop scraping successfully, then count again.
	f.set("u/a", backend.Metrics{}, true)
	waitFor(t, "unready", func() bool { return len(s.Candidates()) == 0 })
	if st := s.Statuses()[0]; st.Picks != 2 {
		t.Fatalf("total picks = %d, want 2", st.Picks)
	}
}

func TestPendingPicksVisibleBetweenScrapes(t *testing.T) {
	f := newFakeScraper()
	f.set("u/a", backend.Metrics{}, false)
	s := New(Options{Scrape: f.scrape, RefreshInterval: time.Hour, StalenessThreshold: 3 * time.Hour})
	defer s.Close()
	s.SetSource("static", []backend.EndpointInfo{info("a", "u/a")})
	waitFor(t, "ready", func() bool { return len(s.Candidates()) == 1 })
	s.RecordPick("a")
	s.RecordPick("a")
	if p := s.Candidates()[0].PendingPicks; p != 2 {
		t.Fatalf("pending picks = %d, want 2", p)
	}
}
