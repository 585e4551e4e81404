// Package telemetry exposes the EPP's own Prometheus metrics.
package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"dynamo-images.local/epp/internal/datastore"
)

// Metrics are the request-path metrics.
type Metrics struct {
	Registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	pickDuration prometheus.Histogram
	inflight     prometheus.Gauge
}

// New creates the metrics and registers them, the Go runtime and process collectors, and the
// endpoint pool collector (when store is not nil) in a fresh registry.
func New(store *datastore.Store) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "epp_requests_total",
			Help: "Requests handled, by HTTP status the EPP decided (200 = routed).",
		}, []string{"code"}),
		pickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "epp_pick_duration_seconds",
			Help:    "Time from the complete request to the routing decision.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6, 750e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "epp_inflight_requests",
			Help: "Routed requests whose response has not completed (as seen by ext_proc).",
		}),
	}
	m.Registry.MustRegister(m.requests, m.pickDuration, m.inflight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if store != nil {
		m.Registry.MustRegister(&poolCollector{store: store})
	}
	return m
}

// ObserveRequest records one decision.
func (m *Metrics) ObserveRequest(code int, pick time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	if code == http.StatusOK {
		m.pickDuration.Observe(pick.Seconds())
	}
}

// InflightAdd moves the in-flight gauge.
func (m *Metrics) InflightAdd(delta float64) {
	if m != nil {
		m.inflight.Add(delta)
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		families, err := m.Registry.Gather()
		if err != nil && len(families) == 0 {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, f := range families {
			if err := enc.Encode(f); err != nil {
				return
			}
		}
	})
}

// poolCollector reports the endpoint pool at scrape time.
type poolCollector struct{ store *datastore.Store }

var (
	descReady   = prometheus.NewDesc("epp_endpoint_ready", "1 when the endpoint is a routing candidate.", []string{"endpoint", "address"}, nil)
	descQueue   = prometheus.NewDesc("epp_endpoint_queue_depth", "Waiting requests last scraped from the endpoint.", []string{"endpoint"}, nil)
	descRunning = prometheus.NewDesc("epp_endpoint_running_requests", "Running requests last scraped from the endpoint.", []string{"endpoint"}, nil)
	descKV      = prometheus.NewDesc("epp_endpoint_kv_cache_usage", "KV-cache utilisation [0,1] last scraped from the endpoint.", []string{"endpoint"}, nil)
	descPicks   = prometheus.NewDesc("epp_endpoint_picks_total", "Requests routed to the endpoint.", []string{"endpoint"}, nil)
	descAge     = prometheus.NewDesc("epp_endpoint_metrics_age_seconds", "Age of the endpoint's last successful scrape.", []string{"endpoint"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descQueue, descRunning, descKV, descPicks, descAge} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, st := range c.store.Statuses() {
		key := st.Info.Key
		ready := 0.0
		if st.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, key, st.Info.Address)
		ch <- prometheus.MustNewConstMetric(descPicks, prometheus.CounterValue, float64(st.Picks), key)
		if st.Metrics != nil {
			ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, st.Metrics.WaitingQueueSize, key)
			ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, st.Metrics.RunningRequests, key)
			ch <- prometheus.MustNewConstMetric(descKV, prometheus.GaugeValue, st.Metrics.KVCacheUsage, key)
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(st.Metrics.UpdatedAt).Seconds(), key)
		}
	}
}
