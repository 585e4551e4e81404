package scraper

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// An excerpt of what an ai-dynamo 1.6.1 mocker worker serves on its system port once it has
// served a request (the vllm:* gauges appear only then; before, only the dynamo_* ones exist).
const dynamoExposition = `# HELP dynamo_component_inflight_requests Number of requests currently being processed
# TYPE dynamo_component_inflight_requests gauge
dynamo_component_inflight_requests{dynamo_component="backend",dynamo_endpoint="generate",dynamo_namespace="dynamo",worker_id="694da2136fb63706"} 3
dynamo_component_inflight_requests{dynamo_component="backend",dynamo_endpoint="worker_kv_query_source_4d6e6f9b9f9b7",dynamo_namespace="dynamo",worker_id="694da2136fb63706"} 1
# TYPE dynamo_work_handler_queue_depth gauge
dynamo_work_handler_queue_depth 9
dynamo_work_handler_queue_capacity 40000
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-mocker"} 4
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny-mocker"} 2
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny-mocker"} 0.25
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="tiny-mocker"} 0.75
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",model_name="tiny-mocker",le="0.001"} 0
`

func extract(t *testing.T, mapping MetricMapping, text string) (float64, float64, float64, error) {
	t.Helper()
	m, err := NewExtractor(mapping).Extract(strings.NewReader(text), time.Unix(100, 0))
	if err == nil && !m.UpdatedAt.Equal(time.Unix(100, 0)) {
		t.Fatalf("UpdatedAt = %v", m.UpdatedAt)
	}
	return m.WaitingQueueSize, m.RunningRequests, m.KVCacheUsage, err
}

func TestDynamoDefaultsReadVLLMNames(t *testing.T) {
	q, r, kv, err := extract(t, DefaultMappings[EngineDynamo], dynamoExposition)
	if err != nil {
		t.Fatal(err)
	}
	// vllm:* names win over the dynamo_* fallbacks; kv_cache_usage_perc over gpu_cache_usage_perc.
	if q != 2 || r != 4 || kv != 0.25 {
		t.Fatalf("got queue=%v running=%v kv=%v, want 2 4 0.25", q, r, kv)
	}
}

func TestDynamoFallbacksWhenVLLMNamesAbsent(t *testing.T) {
	var lines []string
	for _, l := range strings.Split(dynamoExposition, "\n") {
		if strings.HasPrefix(l, "vllm:num_requests") || strings.HasPrefix(l, "vllm:kv_cache") {
			continue
		}
		lines = append(lines, l)
	}
	q, r, kv, err := extract(t, DefaultMappings[EngineDynamo], strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	// In-flight requests of the generate endpoint only (3), not of the KV query endpoint (1).
	if q != 9 || r != 3 || kv != 0.75 {
		t.Fatalf("got queue=%v running=%v kv=%v, want 9 3 0.75", q, r, kv)
	}
}

func TestSGLangAndTRTLLMNames(t *testing.T) {
	sglang := "sglang:num_queue_reqs{model_name=\"m\"} 7\nsglang:num_running_reqs{model_name=\"m\"} 5\nsglang:token_usage{model_name=\"m\"} 0.5\n"
	q, r, kv, err := extract(t, DefaultMappings[EngineSGLang], sglang)
	if err != nil || q != 7 || r != 5 || kv != 0.5 {
		t.Fatalf("sglang: got %v %v %v %v", q, r, kv, err)
	}
	trt := `nv_trt_llm_request_metrics{model="ensemble",request_type="waiting",version="1"} 6
nv_trt_llm_request_metrics{model="ensemble",request_type="scheduled",version="1"} 8
nv_trt_llm_request_metrics{model="ensemble",request_type="max",version="1"} 512
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="ensemble",version="1"} 0.125
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="ensemble",version="1"} 4096
`
	q, r, kv, err = extract(t, DefaultMappings[EngineTRTLLM], trt)
	if err != nil || q != 6 || r != 8 || kv != 0.125 {
		t.Fatalf("trtllm: got %v %v %v %v", q, r, kv, err)
	}
}

func TestKVUsesMaxAndIsClamped(t *testing.T) {
	text := "vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.3\nvllm:kv_cache_usage_perc{engine=\"1\"} 1.7\n"
	_, _, kv, err := extract(t, DefaultMappings[EngineVLLM], text)
	if err != nil || kv != 1 {
		t.Fatalf("kv = %v, %v; want 1 (max 1.7 clamped)", kv, err)
	}
}

func TestMissingMetricsIsAnError(t *testing.T) {
	_, _, _, err := extract(t, DefaultMappings[EngineSGLang], dynamoExposition)
	if err == nil || !strings.Contains(err.Error(), "sglang:num_queue_reqs") {
		t.Fatalf("want an error naming the missing metrics, got %v", err)
	}
}

func TestNaNSamplesAreIgnored(t *testing.T) {
	q, _, _, err := extract(t, DefaultMappings[EngineVLLM], "vllm:num_requests_waiting{a=\"1\"} NaN\nvllm:num_requests_waiting{a=\"2\"} 4\n")
	if err != nil || q != 4 {
		t.Fatalf("queue = %v, %v; want 4", q, err)
	}
}

func TestLabelParsingHandlesEscapesAndTimestamps(t *testing.T) {
	text := `my_queue{path="a\"b,c}",kind="wait"} 11 1700000000000
my_queue{path="x\\y",kind="run"} 5
`
	mapping := MetricMapping{WaitingQueue: mustSpecs(t, `my_queue{kind="wait"}`), Running: mustSpecs(t, `my_queue{path="x\\y"}`)}
	q, r, _, err := extract(t, mapping, text)
	if err != nil || q != 11 || r != 5 {
		t.Fatalf("got queue=%v running=%v err=%v, want 11 5", q, r, err)
	}
}

func TestMalformedExposition(t *testing.T) {
	for _, text := range []string{
		"vllm:num_requests_waiting{a=\"1\" 4\n",
		"vllm:num_requests_waiting{a=1} 4\n",
		"vllm:num_requests_waiting abc\n",
		"vllm:num_requests_waiting\n",
	} {
		if _, _, _, err := extract(t, DefaultMappings[EngineVLLM], text); err == nil {
			t.Errorf("no error for %q", text)
		}
	}
}

func mustSpecs(t *testing.T, s string) []MetricSpec {
	t.Helper()
	specs, err := ParseMetricSpecList(s)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

func TestParseMetricSpecList(t *testing.T) {
	specs := mustSpecs(t, `a, b{x="1",y="2"} ,c{z=3}`)
	want := []MetricSpec{
		{Name: "a"},
		{Name: "b", Labels: map[string]string{"x": "1", "y": "2"}},
		{Name: "c", Labels: map[string]string{"z": "3"}},
	}
	if !reflect.DeepEqual(specs, want) {
		t.Fatalf("got %#v", specs)
	}
	if got := specs[1].String(); got != `b{x="1",y="2"}` {
		t.Fatalf("String() = %s", got)
	}
	for _, bad := range []string{"", "1abc", "a{x=1", "a{=1}", "a b"} {
		if _, err := ParseMetricSpecList(bad); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestHTTPScraper(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(dynamoExposition))
	}))
	defer srv.Close()
	sc := NewHTTPScraper(DefaultMappings[EngineDynamo])
	m, err := sc.Scrape(context.Background(), srv.URL+"/metrics")
	if err != nil || m.WaitingQueueSize != 2 || m.UpdatedAt.IsZero() {
		t.Fatalf("got %+v, %v", m, err)
	}
	status = http.StatusInternalServerError
	if _, err := sc.Scrape(context.Background(), srv.URL+"/metrics"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("want HTTP 500 error, got %v", err)
	}
	srv.Close()
	if _, err := sc.Scrape(context.Background(), srv.URL+"/metrics"); err == nil {
		t.Fatal("want a connection error")
	}
}
