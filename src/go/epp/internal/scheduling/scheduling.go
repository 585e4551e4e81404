// Package scheduling is the plugin framework that picks an endpoint for a request, modelled on
// the Gateway API Inference Extension (GIE) scheduler: a profile runs its filters in order,
// sums the weighted scores of its scorers, lets its picker choose, and finally tells plugins
// that care (e.g. the prefix-cache scorer) which endpoint was picked.
package scheduling

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"dynamo-images.local/epp/internal/backend"
)

// Request is what the scheduler knows about one inference request.
type Request struct {
	// ID is the request id (x-request-id), for logs only.
	ID string
	// Model is the "model" field of the OpenAI request body ("" when absent).
	Model string
	// Prompt is the text used for prefix-cache affinity: the completion prompt, or the chat
	// messages flattened in order.
	Prompt string
	// Headers holds the request headers, lower-cased keys.
	Headers map[string]string
}

// CycleState carries data between plugins within one scheduling cycle (e.g. the prompt block
// hashes the prefix scorer computed during scoring and records after the pick).
type CycleState struct {
	mu   sync.Mutex
	data map[string]any
}

// NewCycleState returns an empty cycle state.
func NewCycleState() *CycleState { return &CycleState{data: map[string]any{}} }

// Write stores v under key.
func (c *CycleState) Write(key string, v any) {
	c.mu.Lock()
	c.data[key] = v
	c.mu.Unlock()
}

// Read returns the value stored under key.
func (c *CycleState) Read(key string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.data[key]
	return v, ok
}

// Plugin is implemented by every scheduling plugin.
type Plugin interface {
	// Type is the plugin type as written in the config ("queue-scorer").
	Type() string
	// Name is the plugin instance name from the config (defaults to the type).
	Name() string
}

// Filter removes endpoints that should not receive the request.
type Filter interface {
	Plugin
	Filter(ctx context.Context, cycle *CycleState, req *Request, endpoints []*backend.Endpoint) []*backend.Endpoint
}

// Scorer rates every endpoint in [0,1], higher is better. The returned slice is parallel to
// endpoints.
type Scorer interface {
	Plugin
	Score(ctx context.Context, cycle *CycleState, req *Request, endpoints []*backend.Endpoint) []float64
}

// ScoredEndpoint is an endpoint with its weighted total score.
type ScoredEndpoint struct {
	Endpoint *backend.Endpoint
	Score    float64
}

// Picker chooses the endpoints to return, best first; the rest are fallbacks.
type Picker interface {
	Plugin
	Pick(ctx context.Context, cycle *CycleState, scored []ScoredEndpoint) []*backend.Endpoint
}

// PostPicker is implemented by plugins that learn from the scheduling decision.
type PostPicker interface {
	Plugin
	PostPick(ctx context.Context, cycle *CycleState, req *Request, picked []*backend.Endpoint)
}

// EndpointRemovedListener is implemented by plugins that keep per-endpoint state and must
// forget endpoints that left the pool.
type EndpointRemovedListener interface {
	EndpointRemoved(key string)
}

// WeightedScorer is a scorer with its weight in a profile.
type WeightedScorer struct {
	Scorer
	Weight float64
}

// Profile is one scheduling profile: filters, weighted scorers and a picker.
type Profile struct {
	Name    string
	Filters []Filter
	Scorers []WeightedScorer
	Picker  Picker
}

// ErrNoEndpoints means no endpoint survived the filters.
var ErrNoEndpoints = errors.New("no endpoint is available for the request")

// Scheduler runs a profile over the candidate endpoints of a request.
type Scheduler struct {
	profile *Profile
	// plugins lists each plugin instance once, for PostPick and removal notifications.
	plugins []Plugin
}

// NewScheduler builds a scheduler for profile. plugins are all configured plugin instances.
func NewScheduler(profile *Profile, plugins []Plugin) (*Scheduler, error) {
	if profile == nil || profile.Picker == nil {
		return nil, fmt.Errorf("scheduling profile needs a picker")
	}
	return &Scheduler{profile: profile, plugins: plugins}, nil
}

// Profile returns the scheduler's profile.
func (s *Scheduler) Profile() *Profile { return s.profile }

// Schedule picks endpoints for req among candidates. The first returned endpoint is the
// primary pick, the others are fallbacks in order.
func (s *Scheduler) Schedule(ctx context.Context, req *Request, candidates []*backend.Endpoint) ([]*backend.Endpoint, error) {
	cycle := NewCycleState()
	endpoints := candidates
	for _, f := range s.profile.Filters {
		endpoints = f.Filter(ctx, cycle, req, endpoints)
		if len(endpoints) == 0 {
			return nil, fmt.Errorf("%w: filter %q removed every endpoint", ErrNoEndpoints, f.Name())
		}
	}
	if len(endpoints) == 0 {
		return nil, ErrNoEndpoints
	}

	scored := make([]ScoredEndpoint, len(endpoints))
	for i, e := range endpoints {
		scored[i].Endpoint = e
	}
	for _, ws := range s.profile.Scorers {
		scores := ws.Score(ctx, cycle, req, endpoints)
		for i := range scored {
			scored[i].Score += ws.Weight * clamp01(scores[i])
		}
	}

	picked := s.profile.Picker.Pick(ctx, cycle, scored)
	if len(picked) == 0 {
		return nil, ErrNoEndpoints
	}
	for _, p := range s.plugins {
		if pp, ok := p.(PostPicker); ok {
			pp.PostPick(ctx, cycle, req, picked)
		}
	}
	return picked, nil
}

// EndpointRemoved tells plugins with per-endpoint state that key left the pool.
func (s *Scheduler) EndpointRemoved(key string) {
	for _, p := range s.plugins {
		if l, ok := p.(EndpointRemovedListener); ok {
			l.EndpointRemoved(key)
		}
	}
}

func clamp01(v float64) float64 {
	switch {
	case v != v: // NaN: a broken scorer must not poison the total.
		return 0
	case v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}
