package plugins

import (
	"context"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/scheduling"
)

// queueDepth is the load figure used by the queue scorer and filters: the waiting queue the
// model server reported plus, optionally, the requests picked for it since that scrape.
func queueDepth(e *backend.Endpoint, countPendingPicks bool) float64 {
	q := e.Metrics.WaitingQueueSize
	if countPendingPicks {
		q += float64(e.PendingPicks)
	}
	return q
}

// queueScorer prefers endpoints with short waiting queues. Scores are min-max normalised over
// the candidates: the shortest queue scores 1, the longest 0, all equal queues score 1.
type queueScorer struct {
	base
	countPendingPicks bool
}

type queueScorerParams struct {
	// CountPendingPicks adds the requests sent since the last scrape to the reported queue,
	// so that a burst between two scrapes does not all land on the same endpoint.
	CountPendingPicks *bool `yaml:"countPendingPicks"`
}

func newQueueScorer(name string, decode DecodeParams) (scheduling.Plugin, error) {
	var p queueScorerParams
	if err := decode(&p); err != nil {
		return nil, err
	}
	s := &queueScorer{base: base{QueueScorerType, name}, countPendingPicks: true}
	if p.CountPendingPicks != nil {
		s.countPendingPicks = *p.CountPendingPicks
	}
	return s, nil
}

func (s *queueScorer) Score(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, endpoints []*backend.Endpoint) []float64 {
	scores := make([]float64, len(endpoints))
	if len(endpoints) == 0 {
		return scores
	}
	minQ, maxQ := queueDepth(endpoints[0], s.countPendingPicks), queueDepth(endpoints[0], s.countPendingPicks)
	for _, e := range endpoints[1:] {
		q := queueDepth(e, s.countPendingPicks)
		if q < minQ {
			minQ = q
		}
		if q > maxQ {
			maxQ = q
		}
	}
	for i, e := range endpoints {
		if maxQ == minQ {
			scores[i] = 1
			continue
		}
		scores[i] = (maxQ - queueDepth(e, s.countPendingPicks)) / (maxQ - minQ)
	}
	return scores
}

// kvCacheScorer prefers endpoints with free KV cache: score = 1 - utilisation.
type kvCacheScorer struct{ base }

func newKVCacheScorer(name string, decode DecodeParams) (scheduling.Plugin, error) {
	if err := decode(&struct{}{}); err != nil {
		return nil, err
	}
	return &kvCacheScorer{base{KVCacheScorerType, name}}, nil
}

func (s *kvCacheScorer) Score(_ context.Context, _ *scheduling.CycleState, _ *scheduling.Request, endpoints []*backend.Endpoint) []float64 {
	scores := make([]float64, len(endpoints))
	for i, e := range endpoints {
		scores[i] = 1 - e.Metrics.KVCacheUsage
	}
	return scores
}
