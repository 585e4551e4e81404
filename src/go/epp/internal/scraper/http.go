package scraper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

// HTTPScraper fetches a Prometheus endpoint and extracts the load metrics.
type HTTPScraper struct {
	Client    *http.Client
	Extractor *Extractor
}

// NewHTTPScraper returns a scraper with a connection-reusing client. Requests are bounded by
// the caller's context.
func NewHTTPScraper(mapping MetricMapping) *HTTPScraper {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// One idle connection per model server is enough: each is scraped by a single loop.
	transport.MaxIdleConnsPerHost = 2
	transport.Proxy = nil // model servers are cluster-local; an HTTP(S)_PROXY must not apply
	return &HTTPScraper{Client: &http.Client{Transport: transport}, Extractor: NewExtractor(mapping)}
}

// Scrape implements datastore.ScrapeFunc.
func (h *HTTPScraper) Scrape(ctx context.Context, url string) (backend.Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return backend.Metrics{}, err
	}
	// Ask for the text format: the extractor does not read the protobuf exposition.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := h.Client.Do(req)
	if err != nil {
		return backend.Metrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
		return backend.Metrics{}, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	m, err := h.Extractor.Extract(resp.Body, time.Now())
	if err != nil {
		return backend.Metrics{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return m, nil
}
