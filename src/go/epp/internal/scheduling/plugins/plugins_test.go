package plugins

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/scheduling"
)

func ep(key string, queue, kv float64, pending int64) *backend.Endpoint {
	return &backend.Endpoint{
		Info:         &backend.EndpointInfo{Key: key, Address: key + ":8000"},
		Metrics:      backend.Metrics{WaitingQueueSize: queue, KVCacheUsage: kv},
		PendingPicks: pending,
	}
}

// params returns a strict decoder over a YAML parameters block, like the config loader's.
func params(text string) DecodeParams {
	return func(into any) error {
		if text == "" {
			return nil
		}
		dec := yaml.NewDecoder(strings.NewReader(text))
		dec.KnownFields(true)
		return dec.Decode(into)
	}
}

func mustNew(t *testing.T, typ, paramText string) scheduling.Plugin {
	t.Helper()
	p, err := New(typ, "", params(paramText))
	if err != nil {
		t.Fatal(err)
	}
	if p.Type() != typ || p.Name() != typ {
		t.Fatalf("type/name = %s/%s", p.Type(), p.Name())
	}
	return p
}

func score(t *testing.T, p scheduling.Plugin, req *scheduling.Request, cycle *scheduling.CycleState, eps ...*backend.Endpoint) []float64 {
	t.Helper()
	if cycle == nil {
		cycle = scheduling.NewCycleState()
	}
	if req == nil {
		req = &scheduling.Request{}
	}
	return p.(scheduling.Scorer).Score(context.Background(), cycle, req, eps)
}

func approx(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9 {
			return false
		}
	}
	return true
}

func TestQueueScorer(t *testing.T) {
	s := mustNew(t, QueueScorerType, "")
	got := score(t, s, nil, nil, ep("a", 0, 0, 0), ep("b", 5, 0, 0), ep("c", 10, 0, 0))
	if !approx(got, []float64{1, 0.5, 0}) {
		t.Fatalf("scores = %v", got)
	}
	if got := score(t, s, nil, nil, ep("a", 3, 0, 0), ep("b", 3, 0, 0)); !approx(got, []float64{1, 1}) {
		t.Fatalf("equal queues: %v", got)
	}
	// Picks made since the last scrape count as queued by default...
	if got := score(t, s, nil, nil, ep("a", 0, 0, 4), ep("b", 2, 0, 0)); !approx(got, []float64{0, 1}) {
		t.Fatalf("with pending picks: %v", got)
	}
	// ...unless disabled.
	s = mustNew(t, QueueScorerType, "countPendingPicks: false")
	if got := score(t, s, nil, nil, ep("a", 0, 0, 4), ep("b", 2, 0, 0)); !approx(got, []float64{1, 0}) {
		t.Fatalf("pending picks ignored: %v", got)
	}
	if got := score(t, s, nil, nil); len(got) != 0 {
		t.Fatalf("no endpoints: %v", got)
	}
}

func TestKVCacheScorer(t *testing.T) {
	s := mustNew(t, KVCacheScorerType, "")
	if got := score(t, s, nil, nil, ep("a", 0, 0, 0), ep("b", 0, 0.25, 0), ep("c", 0, 1, 0)); !approx(got, []float64{1, 0.75, 0}) {
		t.Fatalf("scores = %v", got)
	}
	if _, err := New("kv-cache-scorer", "old-name", nil); err != nil {
		t.Fatalf("GIE's old type name: %v", err)
	}
}

func prompt(blocks ...string) string {
	var b strings.Builder
	for _, s := range blocks {
		b.WriteString(strings.Repeat(s, 4)) // hashBlockSize 4 below: one letter per block
	}
	return b.String()
}

func TestPrefixCacheScorerLearnsFromPicks(t *testing.T) {
	p := mustNew(t, PrefixCacheScorerType, "hashBlockSize: 4")
	pp := p.(scheduling.PostPicker)
	a, b := ep("a", 0, 0, 0), ep("b", 0, 0, 0)
	req := &scheduling.Request{Model: "m", Prompt: prompt("w", "x", "y", "z")}

	if got := score(t, p, req, nil, a, b); !approx(got, []float64{0, 0}) {
		t.Fatalf("no history: %v", got)
	}
	cycle := scheduling.NewCycleState()
	score(t, p, req, cycle, a, b)
	pp.PostPick(context.Background(), cycle, req, []*backend.Endpoint{a, b}) // a is the pick, b a fallback

	if got := score(t, p, req, nil, a, b); !approx(got, []float64{1, 0}) {
		t.Fatalf("same prompt: %v", got)
	}
	// Shares the first two of four blocks, plus a trailing partial block that is not hashed.
	half := &scheduling.Request{Model: "m", Prompt: prompt("w", "x", "q", "r") + "zz"}
	if got := score(t, p, half, nil, a, b); !approx(got, []float64{0.5, 0}) {
		t.Fatalf("half prefix: %v", got)
	}
	// A match must start at the first block: same later blocks do not count.
	shifted := &scheduling.Request{Model: "m", Prompt: prompt("v", "x", "y", "z")}
	if got := score(t, p, shifted, nil, a, b); !approx(got, []float64{0, 0}) {
		t.Fatalf("different first block: %v", got)
	}
	other := &scheduling.Request{Model: "other", Prompt: req.Prompt}
	if got := score(t, p, other, nil, a, b); !approx(got, []float64{0, 0}) {
		t.Fatalf("other model: %v", got)
	}
	short := &scheduling.Request{Model: "m", Prompt: "ww"}
	if got := score(t, p, short, nil, a, b); !approx(got, []float64{0, 0}) {
		t.Fatalf("prompt shorter than a block: %v", got)
	}

	p.(scheduling.EndpointRemovedListener).EndpointRemoved("a")
	if got := score(t, p, req, nil, a, b); !approx(got, []float64{0, 0}) {
		t.Fatalf("after removal: %v", got)
	}
}

func TestPrefixCacheScorerCapsBlocks(t *testing.T) {
	p := mustNew(t, PrefixCacheScorerType, "{hashBlockSize: 4, maxPrefixBlocksToMatch: 2}")
	s := p.(*prefixCacheScorer)
	if n := len(s.blockHashes(&scheduling.Request{Prompt: prompt("a", "b", "c", "d")})); n != 2 {
		t.Fatalf("hashed %d blocks, want 2", n)
	}
	// The chain makes equal blocks at different positions hash differently.
	h := s.blockHashes(&scheduling.Request{Prompt: prompt("a", "a")})
	if h[0] == h[1] {
		t.Fatal("equal blocks at different positions share a hash")
	}
}

func TestPrefixCacheScorerLRUIsBounded(t *testing.T) {
	p := mustNew(t, PrefixCacheScorerType, "{hashBlockSize: 4, lruCapacityPerServer: 3}")
	s := p.(*prefixCacheScorer)
	a := ep("a", 0, 0, 0)
	for i := 0; i < 20; i++ {
		req := &scheduling.Request{Prompt: fmt.Sprintf("%04d%04d", i, i)}
		s.PostPick(context.Background(), scheduling.NewCycleState(), req, []*backend.Endpoint{a})
	}
	if n := s.servers["a"].len(); n != 3 {
		t.Fatalf("LRU holds %d hashes, want 3", n)
	}
	// The most recent request's leading block is kept: it was inserted last.
	last := &scheduling.Request{Prompt: "00190019"}
	if got := score(t, p, last, nil, a); !approx(got, []float64{1}) {
		t.Fatalf("most recent prompt: %v", got)
	}
	first := &scheduling.Request{Prompt: "00000000"}
	if got := score(t, p, first, nil, a); !approx(got, []float64{0}) {
		t.Fatalf("evicted prompt: %v", got)
	}
}

// The binary search in matchedPrefix relies on the remembered blocks being prefix-closed;
// check it against a linear scan under a workload of shared prefixes, unique tails and
// constant eviction.
func TestPrefixMatchEqualsLinearScan(t *testing.T) {
	p := mustNew(t, PrefixCacheScorerType, "{hashBlockSize: 1, lruCapacityPerServer: 40}")
	s := p.(*prefixCacheScorer)
	rng := rand.New(rand.NewSource(3))
	eps := []*backend.Endpoint{ep("a", 0, 0, 0), ep("b", 0, 0, 0), ep("c", 0, 0, 0)}
	randomPrompt := func() string {
		// One of four shared prefixes of varying length, then a random tail.
		var b strings.Builder
		b.WriteString("abcdefghijklmnopqrstuvwxyz"[:rng.Intn(26)])
		b.WriteString([]string{"", "X", "YY", "ZZZ"}[rng.Intn(4)])
		for i := rng.Intn(12); i > 0; i-- {
			b.WriteByte(byte('0' + rng.Intn(4)))
		}
		return b.String()
	}
	for i := 0; i < 5000; i++ {
		req := &scheduling.Request{Model: "m", Prompt: randomPrompt()}
		hashes := s.blockHashes(req)
		for _, e := range eps {
			lru := s.servers[e.Key()]
			if lru == nil {
				continue
			}
			linear := 0
			for linear < len(hashes) && lru.contains(hashes[linear]) {
				linear++
			}
			if got := lru.matchedPrefix(hashes); got != linear {
				t.Fatalf("request %d, endpoint %s: binary search %d, linear scan %d", i, e.Key(), got, linear)
			}
		}
		s.PostPick(context.Background(), scheduling.NewCycleState(), req, []*backend.Endpoint{eps[rng.Intn(len(eps))]})
	}
}

func TestPrefixCacheScorerParams(t *testing.T) {
	for _, bad := range []string{"hashBlockSize: 0", "lruCapacityPerServer: -1", "blockSize: 4"} {
		if _, err := New(PrefixCacheScorerType, "p", params(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func filter(t *testing.T, p scheduling.Plugin, eps ...*backend.Endpoint) []string {
	t.Helper()
	out := []string{}
	for _, e := range p.(scheduling.Filter).Filter(context.Background(), scheduling.NewCycleState(), &scheduling.Request{}, eps) {
		out = append(out, e.Key())
	}
	return out
}

func TestFilters(t *testing.T) {
	lq := mustNew(t, LeastQueueFilterType, "")
	// Range [0,9], 3 endpoints: keep queue <= 3.
	if got := filter(t, lq, ep("a", 0, 0, 0), ep("b", 3, 0, 0), ep("c", 9, 0, 0)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("least-queue: %v", got)
	}
	if got := filter(t, lq, ep("a", 0, 0, 4), ep("b", 2, 0, 0)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("least-queue with pending picks: %v", got)
	}
	lkv := mustNew(t, LeastKVCacheFilterType, "")
	if got := filter(t, lkv, ep("a", 0, 0.9, 0), ep("b", 0, 0.1, 0)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("least-kv-cache: %v", got)
	}
	if got := filter(t, lkv, ep("a", 0, 0.5, 0), ep("b", 0, 0.5, 0)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("least-kv-cache ties: %v", got)
	}
	low := mustNew(t, LowQueueFilterType, "threshold: 5")
	if got := filter(t, low, ep("a", 5, 0, 0), ep("b", 6, 0, 0)); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("low-queue: %v", got)
	}
	if got := filter(t, low, ep("a", 7, 0, 0), ep("b", 6, 0, 0)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("low-queue, all above: %v", got)
	}
	if _, err := New(LowQueueFilterType, "x", params("threshold: -1")); err == nil {
		t.Fatal("negative threshold accepted")
	}
}

func pick(t *testing.T, p scheduling.Plugin, scored ...scheduling.ScoredEndpoint) []string {
	t.Helper()
	out := []string{}
	for _, e := range p.(scheduling.Picker).Pick(context.Background(), scheduling.NewCycleState(), scored) {
		out = append(out, e.Key())
	}
	return out
}

func se(key string, s float64) scheduling.ScoredEndpoint {
	return scheduling.ScoredEndpoint{Endpoint: ep(key, 0, 0, 0), Score: s}
}

func TestMaxScorePicker(t *testing.T) {
	p := mustNew(t, MaxScorePickerType, "")
	if got := pick(t, p, se("a", 1), se("b", 2.5), se("c", 2)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("pick = %v", got)
	}
	// Ties are broken at random: over many picks each tied endpoint wins, the lower never.
	wins := map[string]int{}
	for i := 0; i < 600; i++ {
		wins[pick(t, p, se("a", 2), se("low", 1), se("b", 2), se("c", 2))[0]]++
	}
	if wins["low"] != 0 || wins["a"] < 100 || wins["b"] < 100 || wins["c"] < 100 {
		t.Fatalf("tie-break wins = %v", wins)
	}
	if got := pick(t, p); len(got) != 0 {
		t.Fatalf("empty input: %v", got)
	}

	fallback := mustNew(t, MaxScorePickerType, "maxNumOfEndpoints: 3")
	if got := pick(t, fallback, se("a", 1), se("b", 3), se("c", 2), se("d", 0)); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Fatalf("fallback order = %v", got)
	}
	if got := pick(t, fallback, se("a", 1)); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("fewer endpoints than maxNumOfEndpoints: %v", got)
	}
	tied := map[string]int{}
	for i := 0; i < 300; i++ {
		tied[strings.Join(pick(t, fallback, se("x", 5), se("a", 1), se("b", 1), se("c", 1)), ",")[:3]]++
	}
	if len(tied) != 3 {
		t.Fatalf("second place is not random among ties: %v", tied)
	}
	if _, err := New(MaxScorePickerType, "x", params("maxNumOfEndpoints: 0")); err == nil {
		t.Fatal("maxNumOfEndpoints 0 accepted")
	}
}

func TestRandomPicker(t *testing.T) {
	p := mustNew(t, RandomPickerType, "maxNumOfEndpoints: 2")
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		got := pick(t, p, se("a", 0), se("b", 9), se("c", 0))
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("pick = %v", got)
		}
		seen[got[0]] = true
	}
	if len(seen) != 3 {
		t.Fatalf("first picks seen: %v", seen)
	}
}

func TestRegistry(t *testing.T) {
	if _, err := New("no-such-plugin", "x", nil); err == nil || !strings.Contains(err.Error(), QueueScorerType) {
		t.Fatalf("unknown type error should list known types: %v", err)
	}
	p, err := New(QueueScorerType, "my-queue", nil)
	if err != nil || p.Name() != "my-queue" {
		t.Fatalf("named plugin: %v %v", p, err)
	}
	if _, err := New(SingleProfileHandlerType, "h", params("x: 1")); err == nil {
		t.Fatal("unknown parameter accepted")
	}
	if _, ok := mustNew(t, SingleProfileHandlerType, "").(ProfileHandler); !ok {
		t.Fatal("single-profile-handler is not a ProfileHandler")
	}
}

// hashLRU against a model of it (a slice ordered most recent first) under random adds of a
// small hash space, so that refreshes and evictions are frequent.
func TestHashLRUMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, capacity := range []int{1, 2, 7, 64} {
		l := newHashLRU(capacity)
		var model []uint64
		for i := 0; i < 20000; i++ {
			h := uint64(rng.Intn(3 * capacity))
			for j, m := range model {
				if m == h {
					model = append(model[:j], model[j+1:]...)
					break
				}
			}
			model = append([]uint64{h}, model...)
			if len(model) > capacity {
				model = model[:capacity]
			}
			l.add(h)
			if l.len() != len(model) {
				t.Fatalf("capacity %d, step %d: %d hashes, model %d", capacity, i, l.len(), len(model))
			}
			var order []uint64
			for s := l.head; s != noSlot; s = l.nodes[s].next {
				order = append(order, l.nodes[s].hash)
			}
			if fmt.Sprint(order) != fmt.Sprint(model) {
				t.Fatalf("capacity %d, step %d: recency %v, model %v", capacity, i, order, model)
			}
			for _, m := range model {
				if !l.contains(m) {
					t.Fatalf("capacity %d, step %d: %d missing", capacity, i, m)
				}
			}
		}
	}
}

// BenchmarkPrefixIndexGC measures a full garbage collection with 8 endpoints' prefix indexes
// full (the default 31,250 hashes each), which a live EPP carries through every cycle, and
// reports the live heap they take.
func BenchmarkPrefixIndexGC(b *testing.B) {
	lrus := make([]*hashLRU, 8)
	rng := rand.New(rand.NewSource(1))
	for i := range lrus {
		lrus[i] = newHashLRU(defaultLRUCapacityPerServer)
		for j := 0; j < defaultLRUCapacityPerServer; j++ {
			lrus[i].add(rng.Uint64())
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "MB-live")
	runtime.KeepAlive(lrus)
}

// BenchmarkHashLRUAdd adds new hashes to a full LRU (an add and an eviction each).
func BenchmarkHashLRUAdd(b *testing.B) {
	l := newHashLRU(defaultLRUCapacityPerServer)
	for j := 0; j < defaultLRUCapacityPerServer; j++ {
		l.add(uint64(j))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.add(uint64(defaultLRUCapacityPerServer + i))
	}
}
