// Package backend holds the types that describe a model-server endpoint: what discovery knows
// about it (EndpointInfo), what scraping learned (Metrics) and the read-only snapshot the
// scheduler works on (Endpoint).
package backend

import (
	"time"
)

// EndpointInfo is what a discovery source knows about one model-server endpoint.
type EndpointInfo struct {
	// Key identifies the endpoint across updates. It is unique over all discovery sources
	// (e.g. "static/10.0.0.5:8000", "etcd/694d9a3b1c2e8f10"). Two keys may share an Address,
	// for instance two Dynamo workers behind one frontend sidecar.
	Key string
	// Address is the "host:port" the gateway must send the request to.
	Address string
	// MetricsURL is the Prometheus endpoint scraped for load metrics.
	MetricsURL string
	// Models served by the endpoint. Empty means "unknown": the endpoint serves any model.
	Models []string
	// InstanceID is the Dynamo instance (etcd lease) id in decimal, empty for static endpoints.
	InstanceID string
	// Model-card facts published by Dynamo workers (0 when unknown).
	KVCacheBlockSize int
	TotalKVBlocks    int
	MaxNumSeqs       int
}

// ServesModel reports whether the endpoint can serve model. Endpoints without a model list
// serve everything, and an empty model matches every endpoint.
func (e *EndpointInfo) ServesModel(model string) bool {
	if model == "" || len(e.Models) == 0 {
		return true
	}
	for _, m := range e.Models {
		if m == model {
			return true
		}
	}
	return false
}

// Metrics is one successful scrape of a model server, normalised across engines.
type Metrics struct {
	// WaitingQueueSize is the number of requests queued but not yet running.
	WaitingQueueSize float64
	// RunningRequests is the number of requests being decoded.
	RunningRequests float64
	// KVCacheUsage is the fraction [0,1] of KV-cache blocks in use.
	KVCacheUsage float64
	// UpdatedAt is when the scrape finished.
	UpdatedAt time.Time
}

// Endpoint is the scheduler's immutable view of one ready endpoint for one scheduling cycle.
type Endpoint struct {
	Info    *EndpointInfo
	Metrics Metrics
	// PendingPicks counts requests this EPP sent to the endpoint after Metrics was scraped; the
	// model server cannot have reported them yet, so load scorers may add them to the queue.
	PendingPicks int64
}

// Key is a shortcut for e.Info.Key.
func (e *Endpoint) Key() string { return e.Info.Key }

// Address is a shortcut for e.Info.Address.
func (e *Endpoint) Address() string { return e.Info.Address }
