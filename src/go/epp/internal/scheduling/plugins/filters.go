package plugins

import (
	"context"
	"fmt"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/scheduling"
)

// leastFilter keeps the endpoints whose value lies in the lowest 1/n-th of the candidates'
// [min,max] range (n = number of candidates), as GIE's least-queue and least-kv-cache filters
// do. It never removes every endpoint.
type leastFilter struct {
	base
	value func(*backend.Endpoint) float64
}

func (f *leastFilter) Filter(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, endpoints []*backend.Endpoint) []*backend.Endpoint {
	if len(endpoints) <= 1 {
		return endpoints
	}
	minV, maxV := f.value(endpoints[0]), f.value(endpoints[0])
	for _, e := range endpoints[1:] {
		v := f.value(e)
		if v < minV {
			minV = v
		}
		if v > maxV {
			maxV = v
		}
	}
	limit := minV + (maxV-minV)/float64(len(endpoints))
	kept := make([]*backend.Endpoint, 0, len(endpoints))
	for _, e := range endpoints {
		if f.value(e) <= limit {
			kept = append(kept, e)
		}
	}
	return kept
}

type leastQueueFilterParams struct {
	CountPendingPicks *bool `yaml:"countPendingPicks"`
}

func newLeastQueueFilter(name string, decode DecodeParams) (scheduling.Plugin, error) {
	var p leastQueueFilterParams
	if err := decode(&p); err != nil {
		return nil, err
	}
	countPending := p.CountPendingPicks == nil || *p.CountPendingPicks
	return &leastFilter{
		base:  base{LeastQueueFilterType, name},
		value: func(e *backend.Endpoint) float64 { return queueDepth(e, countPending) },
	}, nil
}

func newLeastKVCacheFilter(name string, decode DecodeParams) (scheduling.Plugin, error) {
	if err := decode(&struct{}{}); err != nil {
		return nil, err
	}
	return &leastFilter{
		base:  base{LeastKVCacheFilterType, name},
		value: func(e *backend.Endpoint) float64 { return e.Metrics.KVCacheUsage },
	}, nil
}

// lowQueueFilter keeps endpoints whose queue is at most threshold. When every endpoint is
// above it, all are kept: the filter expresses a preference, overload is the saturation
// detector's business.
type lowQueueFilter struct {
	base
	threshold         float64
	countPendingPicks bool
}

type lowQueueFilterParams struct {
	Threshold         *float64 `yaml:"threshold"`
	CountPendingPicks *bool    `yaml:"countPendingPicks"`
}

func newLowQueueFilter(name string, decode DecodeParams) (scheduling.Plugin, error) {
	var p lowQueueFilterParams
	if err := decode(&p); err != nil {
		return nil, err
	}
	f := &lowQueueFilter{base: base{LowQueueFilterType, name}, threshold: 128, countPendingPicks: true}
	if p.Threshold != nil {
		if *p.Threshold < 0 {
			return nil, fmt.Errorf("threshold must not be negative")
		}
		f.threshold = *p.Threshold
	}
	if p.CountPendingPicks != nil {
		f.countPendingPicks = *p.CountPendingPicks
	}
	return f, nil
}

func (f *lowQueueFilter) Filter(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, endpoints []*backend.Endpoint) []*backend.Endpoint {
	kept := make([]*backend.Endpoint, 0, len(endpoints))
	for _, e := range endpoints {
		if queueDepth(e, f.countPendingPicks) <= f.threshold {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		return endpoints
	}
	return kept
}
