// Package scraper reads the load metrics of model servers from their Prometheus endpoints.
// Metric names differ per engine (Dynamo, vLLM, SGLang, TRT-LLM), so each load figure is a
// list of metric specs tried in order; the first spec with samples wins.
package scraper

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

// MetricSpec selects samples by metric name and, optionally, exact label values.
type MetricSpec struct {
	Name   string
	Labels map[string]string
}

func (s MetricSpec) String() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, s.Labels[k])
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

func (s MetricSpec) matches(labels map[string]string) bool {
	for k, v := range s.Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ParseMetricSpec parses `name` or `name{label="value",...}` (quotes optional).
func ParseMetricSpec(text string) (MetricSpec, error) {
	text = strings.TrimSpace(text)
	open := strings.IndexByte(text, '{')
	if open < 0 {
		if !validMetricName(text) {
			return MetricSpec{}, fmt.Errorf("invalid metric name %q", text)
		}
		return MetricSpec{Name: text}, nil
	}
	name := text[:open]
	if !validMetricName(name) {
		return MetricSpec{}, fmt.Errorf("invalid metric name %q", name)
	}
	if !strings.HasSuffix(text, "}") {
		return MetricSpec{}, fmt.Errorf("metric spec %q: missing closing brace", text)
	}
	spec := MetricSpec{Name: name, Labels: map[string]string{}}
	for _, pair := range splitOutside(text[open+1:len(text)-1], ',', '"') {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return MetricSpec{}, fmt.Errorf("metric spec %q: bad label matcher %q", text, pair)
		}
		v = strings.TrimSpace(v)
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		spec.Labels[strings.TrimSpace(k)] = v
	}
	return spec, nil
}

// ParseMetricSpecList parses comma-separated specs; commas inside braces belong to the spec.
func ParseMetricSpecList(text string) ([]MetricSpec, error) {
	var specs []MetricSpec
	depth := 0
	start := 0
	flush := func(end int) error {
		part := strings.TrimSpace(text[start:end])
		if part == "" {
			return nil
		}
		s, err := ParseMetricSpec(part)
		if err != nil {
			return err
		}
		specs = append(specs, s)
		return nil
	}
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				if err := flush(i); err != nil {
					return nil, err
				}
				start = i + 1
			}
		}
	}
	if err := flush(len(text)); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("no metric given")
	}
	return specs, nil
}

func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		ok := r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// splitOutside splits s at sep, ignoring separators inside quote-delimited parts.
func splitOutside(s string, sep, quote byte) []string {
	var parts []string
	inQuote := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == quote:
			inQuote = !inQuote
		case s[i] == sep && !inQuote:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// MetricMapping names the metrics that carry each load figure, in order of preference.
type MetricMapping struct {
	WaitingQueue []MetricSpec
	Running      []MetricSpec
	KVCacheUsage []MetricSpec
}

func specs(names ...string) []MetricSpec {
	out := make([]MetricSpec, len(names))
	for i, n := range names {
		s, err := ParseMetricSpec(n)
		if err != nil {
			panic(err)
		}
		out[i] = s
	}
	return out
}

// Engine names accepted by --model-server-type.
const (
	EngineDynamo = "dynamo"
	EngineVLLM   = "vllm"
	EngineSGLang = "sglang"
	EngineTRTLLM = "trtllm"
)

// DefaultMappings holds each engine's metric names.
//
//   - dynamo: ai-dynamo 1.6.1 workers (the mocker included) publish vLLM-compatible gauges on
//     their system port plus Dynamo's own runtime gauges, which serve as fallbacks.
//   - vllm: vLLM V1 names, with V0's gpu_cache_usage_perc as the KV fallback.
//   - sglang, trtllm: the names of GIE's model-server protocol (Triton TensorRT-LLM backend).
var DefaultMappings = map[string]MetricMapping{
	EngineDynamo: {
		WaitingQueue: specs("vllm:num_requests_waiting", "dynamo_work_handler_queue_depth"),
		// Only the serving endpoint's in-flight requests: workers also count the KV-router
		// queries they answer (dynamo_endpoint="worker_kv_query_source_...") here.
		Running:      specs("vllm:num_requests_running", `dynamo_component_inflight_requests{dynamo_endpoint="generate"}`),
		KVCacheUsage: specs("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
	},
	EngineVLLM: {
		WaitingQueue: specs("vllm:num_requests_waiting"),
		Running:      specs("vllm:num_requests_running"),
		KVCacheUsage: specs("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
	},
	EngineSGLang: {
		WaitingQueue: specs("sglang:num_queue_reqs"),
		Running:      specs("sglang:num_running_reqs"),
		KVCacheUsage: specs("sglang:token_usage"),
	},
	EngineTRTLLM: {
		WaitingQueue: specs(`nv_trt_llm_request_metrics{request_type="waiting"}`),
		Running:      specs(`nv_trt_llm_request_metrics{request_type="scheduled"}`),
		KVCacheUsage: specs(`nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}`),
	},
}

// Engines lists the engine names, sorted.
func Engines() []string {
	out := make([]string, 0, len(DefaultMappings))
	for k := range DefaultMappings {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Extractor turns a Prometheus text exposition into backend.Metrics.
type Extractor struct {
	mapping MetricMapping
	wanted  map[string]bool
}

// NewExtractor builds an extractor for mapping.
func NewExtractor(mapping MetricMapping) *Extractor {
	x := &Extractor{mapping: mapping, wanted: map[string]bool{}}
	for _, list := range [][]MetricSpec{mapping.WaitingQueue, mapping.Running, mapping.KVCacheUsage} {
		for _, s := range list {
			x.wanted[s.Name] = true
		}
	}
	return x
}

type sample struct {
	labels map[string]string
	value  float64
}

// Extract parses an exposition. Counts (queue, running) are summed over the selected series,
// the KV-cache fraction takes the maximum (the fullest cache limits the server). A figure
// without samples reads 0; it is an error only when none of the mapped metrics is present,
// since then the target is not the configured kind of model server.
func (x *Extractor) Extract(r io.Reader, now time.Time) (backend.Metrics, error) {
	samples, err := parseExposition(r, x.wanted)
	if err != nil {
		return backend.Metrics{}, err
	}
	m := backend.Metrics{UpdatedAt: now}
	var found bool
	var ok bool
	if m.WaitingQueueSize, ok = pick(samples, x.mapping.WaitingQueue, false); ok {
		found = true
	}
	if m.RunningRequests, ok = pick(samples, x.mapping.Running, false); ok {
		found = true
	}
	if m.KVCacheUsage, ok = pick(samples, x.mapping.KVCacheUsage, true); ok {
		found = true
	}
	if !found {
		return backend.Metrics{}, fmt.Errorf("none of the configured metrics is exported (%v, %v, %v)",
			x.mapping.WaitingQueue, x.mapping.Running, x.mapping.KVCacheUsage)
	}
	m.KVCacheUsage = math.Min(1, math.Max(0, m.KVCacheUsage))
	m.WaitingQueueSize = math.Max(0, m.WaitingQueueSize)
	m.RunningRequests = math.Max(0, m.RunningRequests)
	return m, nil
}

func pick(samples map[string][]sample, specs []MetricSpec, useMax bool) (float64, bool) {
	for _, spec := range specs {
		var total float64
		n := 0
		for _, s := range samples[spec.Name] {
			if !spec.matches(s.labels) || math.IsNaN(s.value) || math.IsInf(s.value, 0) {
				continue
			}
			switch {
			case n == 0:
				total = s.value
			case useMax:
				total = math.Max(total, s.value)
			default:
				total += s.value
			}
			n++
		}
		if n > 0 {
			return total, true
		}
	}
	return 0, false
}

// scanBuffers recycles the line buffers of parseExposition: every endpoint is scraped many
// times a second, and a fresh buffer per scrape would dominate the EPP's allocations.
var scanBuffers = sync.Pool{New: func() any { b := make([]byte, 16*1024); return &b }}

// parseExposition reads the samples of the wanted metric names from a Prometheus text
// exposition (version 0.0.4). Lines of other metrics are skipped before their labels are
// parsed, which keeps scraping cheap on servers that export hundreds of series.
func parseExposition(r io.Reader, wanted map[string]bool) (map[string][]sample, error) {
	out := map[string][]sample{}
	buf := scanBuffers.Get().(*[]byte)
	defer scanBuffers.Put(buf)
	sc := bufio.NewScanner(r)
	sc.Buffer(*buf, 4*1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ \t")
		if end <= 0 || !wanted[string(line[:end])] { // no allocation: map lookup by converted key
			continue
		}
		name := string(line[:end])
		rest := string(line[end:])
		labels := map[string]string{}
		if rest[0] == '{' {
			var err error
			labels, rest, err = parseLabels(rest[1:])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("line %d: sample without value", lineNo)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad value %q", lineNo, fields[0])
		}
		out[name] = append(out[name], sample{labels: labels, value: v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseLabels parses `k="v",k2="v2"}` and returns the labels and the text after the brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return nil, "", fmt.Errorf("unterminated label set")
		}
		if s[i] == '}' {
			return labels, s[i+1:], nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, "", fmt.Errorf("label without value")
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		if i >= len(s) || s[i] != '"' {
			return nil, "", fmt.Errorf("label %q: value not quoted", key)
		}
		i++
		var b strings.Builder
		closed := false
		for i < len(s) {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				switch s[i+1] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i+1])
				}
				i += 2
				continue
			}
			if c == '"' {
				closed = true
				i++
				break
			}
			b.WriteByte(c)
			i++
		}
		if !closed {
			return nil, "", fmt.Errorf("label %q: unterminated value", key)
		}
		labels[key] = b.String()
	}
}
