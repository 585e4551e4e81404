// Package discovery produces the endpoint pool: a static list from flags, or the instances
// Dynamo workers register in etcd.
package discovery

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"dynamo-images.local/epp/internal/backend"
)

// Sink receives the full endpoint list of a source whenever it changes.
type Sink interface {
	SetSource(source string, infos []backend.EndpointInfo)
}

// StaticSource is the source name of --static-endpoints.
const StaticSource = "static"

// ParseStatic parses the --static-endpoints value: comma-separated entries, each either
// "host:port" (metrics scraped from http://host:port/metrics, as vLLM and SGLang serve them) or
// "host:port=METRICS_URL" (e.g. a Dynamo worker's system port). models, when given, are the
// model names every static endpoint serves.
func ParseStatic(spec string, models []string) ([]backend.EndpointInfo, error) {
	var out []backend.EndpointInfo
	seen := map[string]bool{}
	for _, raw := range strings.Split(spec, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		addr, metricsURL, hasURL := strings.Cut(raw, "=")
		addr = strings.TrimSpace(addr)
		if err := validateHostPort(addr); err != nil {
			return nil, fmt.Errorf("static endpoint %q: %w", raw, err)
		}
		if hasURL {
			metricsURL = strings.TrimSpace(metricsURL)
			if err := validateHTTPURL(metricsURL); err != nil {
				return nil, fmt.Errorf("static endpoint %q: metrics URL: %w", raw, err)
			}
		} else {
			metricsURL = "http://" + addr + "/metrics"
		}
		if seen[addr] {
			return nil, fmt.Errorf("static endpoint %q listed twice", addr)
		}
		seen[addr] = true
		out = append(out, backend.EndpointInfo{
			Key:        StaticSource + "/" + addr,
			Address:    addr,
			MetricsURL: metricsURL,
			Models:     append([]string(nil), models...),
		})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no static endpoint given")
	}
	return out, nil
}

func validateHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func validateHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: missing host", raw)
	}
	return nil
}
