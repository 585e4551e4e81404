// Package datastore keeps the endpoint pool: what discovery reported, merged over sources,
// and the latest metrics of every endpoint, refreshed by one scrape loop per endpoint.
package datastore

import (
	"context"
	"log/slog"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

// ScrapeFunc fetches the metrics of one endpoint.
type ScrapeFunc func(ctx context.Context, metricsURL string) (backend.Metrics, error)

// Options configure a Store.
type Options struct {
	// Scrape fetches metrics; required.
	Scrape ScrapeFunc
	// RefreshInterval is the time between two scrapes of one endpoint.
	RefreshInterval time.Duration
	// StalenessThreshold is how old the last successful scrape may be for the endpoint to stay
	// ready. It is raised to at least twice the refresh interval.
	StalenessThreshold time.Duration
	Logger             *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// Store is the endpoint pool. It is safe for concurrent use.
type Store struct {
	opts Options
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu        sync.RWMutex
	endpoints map[string]*entry // by EndpointInfo.Key
	onRemove  []func(key string)
}

type entry struct {
	source string
	info   atomic.Pointer[backend.EndpointInfo]
	// metrics is the last successful scrape; nil until the first one.
	metrics atomic.Pointer[backend.Metrics]
	// scrapeOK is false after a failed scrape until the next successful one.
	scrapeOK atomic.Bool
	lastErr  atomic.Pointer[string]
	// failureLogged is set once a failed scrape was logged, reset by a successful one.
	failureLogged atomic.Bool
	// pending counts picks since the last successful scrape.
	pending atomic.Int64
	picks   atomic.Uint64
	cancel  context.CancelFunc
}

// New creates a store; Close stops its scrape loops.
func New(opts Options) *Store {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 50 * time.Millisecond
	}
	if min := 2 * opts.RefreshInterval; opts.StalenessThreshold < min {
		opts.StalenessThreshold = min
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Store{opts: opts, ctx: ctx, stop: stop, endpoints: map[string]*entry{}}
}

// Close stops every scrape loop and waits for them.
func (s *Store) Close() {
	s.stop()
	s.wg.Wait()
}

// OnRemove registers fn to be called with the key of every endpoint that leaves the pool.
func (s *Store) OnRemove(fn func(key string)) {
	s.mu.Lock()
	s.onRemove = append(s.onRemove, fn)
	s.mu.Unlock()
}

// SetSource replaces the endpoints reported by one discovery source: new keys start being
// scraped, missing keys are dropped, changed ones are updated in place (a new metrics URL
// takes effect at the next scrape).
func (s *Store) SetSource(source string, infos []backend.EndpointInfo) {
	var removed []string
	s.mu.Lock()
	seen := make(map[string]bool, len(infos))
	for i := range infos {
		info := infos[i]
		seen[info.Key] = true
		if e, ok := s.endpoints[info.Key]; ok {
			if e.source == source {
				e.info.Store(&info)
				continue
			}
			s.opts.Logger.Warn("endpoint key reported by two discovery sources; keeping the first",
				"key", info.Key, "kept", e.source, "ignored", source)
			continue
		}
		e := &entry{source: source}
		e.info.Store(&info)
		ctx, cancel := context.WithCancel(s.ctx)
		e.cancel = cancel
		s.endpoints[info.Key] = e
		s.wg.Add(1)
		go s.scrapeLoop(ctx, e)
		s.opts.Logger.Info("endpoint added", "key", info.Key, "address", info.Address, "metrics", info.MetricsURL, "models", info.Models)
	}
	for key, e := range s.endpoints {
		if e.source == source && !seen[key] {
			e.cancel()
			delete(s.endpoints, key)
			removed = append(removed, key)
			s.opts.Logger.Info("endpoint removed", "key", key)
		}
	}
	listeners := append([]func(string){}, s.onRemove...)
	s.mu.Unlock()
	for _, key := range removed {
		for _, fn := range listeners {
			fn(key)
		}
	}
}

func (s *Store) scrapeLoop(ctx context.Context, e *entry) {
	defer s.wg.Done()
	// Scrape at once (a new endpoint becomes ready fast), then at a random phase: endpoints
	// added together must not all be scraped in the same instant, every interval, which makes
	// a CPU burst that delays picks.
	s.scrapeOnce(ctx, e)
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.Int63n(int64(s.opts.RefreshInterval)))):
	}
	ticker := time.NewTicker(s.opts.RefreshInterval)
	defer ticker.Stop()
	for {
		s.scrapeOnce(ctx, e)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *Store) scrapeOnce(ctx context.Context, e *entry) {
	info := e.info.Load()
	// A scrape must finish before the data is stale anyway.
	sctx, cancel := context.WithTimeout(ctx, s.opts.StalenessThreshold)
	m, err := s.opts.Scrape(sctx, info.MetricsURL)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		msg := err.Error()
		e.lastErr.Store(&msg)
		e.scrapeOK.Store(false)
		// Log once per outage, not once per scrape.
		if !e.failureLogged.Swap(true) {
			s.opts.Logger.Warn("endpoint unready: scraping metrics failed", "key", info.Key, "url", info.MetricsURL, "err", err)
		}
		return
	}
	if m.UpdatedAt.IsZero() {
		m.UpdatedAt = s.opts.Now()
	}
	e.metrics.Store(&m)
	e.pending.Store(0)
	e.failureLogged.Store(false)
	if !e.scrapeOK.Swap(true) {
		s.opts.Logger.Info("endpoint ready", "key", info.Key, "address", info.Address)
	}
}

func (s *Store) ready(e *entry, now time.Time) (*backend.Metrics, bool) {
	m := e.metrics.Load()
	if m == nil || !e.scrapeOK.Load() {
		return m, false
	}
	return m, now.Sub(m.UpdatedAt) <= s.opts.StalenessThreshold
}

// Candidates returns a snapshot of every ready endpoint, sorted by key.
func (s *Store) Candidates() []*backend.Endpoint {
	now := s.opts.Now()
	s.mu.RLock()
	out := make([]*backend.Endpoint, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		m, ok := s.ready(e, now)
		if !ok {
			continue
		}
		out = append(out, &backend.Endpoint{Info: e.info.Load(), Metrics: *m, PendingPicks: e.pending.Load()})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Info.Key < out[j].Info.Key })
	return out
}

// ModelStatus tells how the pool relates to a model name.
type ModelStatus struct {
	// Known is true when at least one endpoint advertises model names, i.e. discovery can
	// tell unknown models apart.
	Known bool
	// Served is true when some endpoint (ready or not) serves the model.
	Served bool
	// Models lists the advertised model names, sorted (only when Known and not Served).
	Models []string
}

// Model reports whether any endpoint serves model. Models is filled only when the model is
// unknown (it is for the error message, and this runs on every request).
func (s *Store) Model(model string) ModelStatus {
	st := ModelStatus{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.endpoints {
		info := e.info.Load()
		if len(info.Models) > 0 {
			st.Known = true
		}
		if info.ServesModel(model) {
			st.Served = true
		}
	}
	if !st.Known || st.Served {
		return st
	}
	names := map[string]bool{}
	for _, e := range s.endpoints {
		for _, m := range e.info.Load().Models {
			if !names[m] {
				names[m] = true
				st.Models = append(st.Models, m)
			}
		}
	}
	sort.Strings(st.Models)
	return st
}

// RecordPick counts a request sent to key (see backend.Endpoint.PendingPicks).
func (s *Store) RecordPick(key string) {
	s.mu.RLock()
	e := s.endpoints[key]
	s.mu.RUnlock()
	if e != nil {
		e.pending.Add(1)
		e.picks.Add(1)
	}
}

// Status describes one endpoint for telemetry and debugging.
type Status struct {
	Info      backend.EndpointInfo
	Source    string
	Ready     bool
	Metrics   *backend.Metrics
	LastError string
	Picks     uint64
}

// Statuses returns every endpoint, ready or not, sorted by key.
func (s *Store) Statuses() []Status {
	now := s.opts.Now()
	s.mu.RLock()
	out := make([]Status, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		m, ok := s.ready(e, now)
		st := Status{Info: *e.info.Load(), Source: e.source, Ready: ok, Metrics: m, Picks: e.picks.Load()}
		if p := e.lastErr.Load(); p != nil && !e.scrapeOK.Load() {
			st.LastError = *p
		}
		out = append(out, st)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Info.Key < out[j].Info.Key })
	return out
}
