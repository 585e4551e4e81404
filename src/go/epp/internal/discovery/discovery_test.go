package discovery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

func TestParseStatic(t *testing.T) {
	got, err := ParseStatic(" 10.0.0.1:8000, 10.0.0.2:8001=http://10.0.0.2:9091/metrics ,[::1]:8002", []string{"llama"})
	if err != nil {
		t.Fatal(err)
	}
	want := []backend.EndpointInfo{
		{Key: "static/10.0.0.1:8000", Address: "10.0.0.1:8000", MetricsURL: "http://10.0.0.1:8000/metrics", Models: []string{"llama"}},
		{Key: "static/10.0.0.2:8001", Address: "10.0.0.2:8001", MetricsURL: "http://10.0.0.2:9091/metrics", Models: []string{"llama"}},
		{Key: "static/[::1]:8002", Address: "[::1]:8002", MetricsURL: "http://[::1]:8002/metrics", Models: []string{"llama"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"", "10.0.0.1", "10.0.0.1:0", ":8000", "a:1,a:1", "a:1=ftp://x/metrics", "a:1=http:///metrics"} {
		if _, err := ParseStatic(bad, nil); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

// fakeEtcd serves etcd's v3 JSON gateway range call over an in-memory key space.
type fakeEtcd struct {
	mu     sync.Mutex
	kv     map[string]string
	down   bool
	ranges int
}

func (f *fakeEtcd) put(k, v string) { f.mu.Lock(); f.kv[k] = v; f.mu.Unlock() }
func (f *fakeEtcd) del(k string)    { f.mu.Lock(); delete(f.kv, k); f.mu.Unlock() }
func (f *fakeEtcd) setDown(d bool)  { f.mu.Lock(); f.down = d; f.mu.Unlock() }

func (f *fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v3/kv/range" {
		http.NotFound(w, r)
		return
	}
	if f.down {
		http.Error(w, `{"error":"etcdserver: no leader"}`, http.StatusServiceUnavailable)
		return
	}
	f.ranges++
	var req struct {
		Key      string `json:"key"`
		RangeEnd string `json:"range_end"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start, _ := base64.StdEncoding.DecodeString(req.Key)
	end, _ := base64.StdEncoding.DecodeString(req.RangeEnd)
	type kv struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		Lease string `json:"lease"`
	}
	var kvs []kv
	var keys []string
	for k := range f.kv {
		if k >= string(start) && k < string(end) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		kvs = append(kvs, kv{Key: base64.StdEncoding.EncodeToString([]byte(k)), Value: base64.StdEncoding.EncodeToString([]byte(f.kv[k])), Lease: "1"})
	}
	resp := map[string]any{"header": map[string]string{"revision": "7"}, "count": strconv.Itoa(len(kvs))}
	if len(kvs) > 0 {
		resp["kvs"] = kvs // the gateway omits empty fields
	}
	json.NewEncoder(w).Encode(resp)
}

func newFakeEtcd(t *testing.T) (*fakeEtcd, *httptest.Server) {
	f := &fakeEtcd{kv: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// registerWorker writes what an ai-dynamo 1.6.1 worker writes for one instance (values
// abridged from a real mocker worker's registration).
func registerWorker(f *fakeEtcd, lease uint64, hostPort string, wrappedCard bool, model string) string {
	hex := strconv.FormatUint(lease, 16)
	f.put("v1/instances/dynamo/backend/generate/"+hex, fmt.Sprintf(
		`{"type":"Endpoint","component":"backend","endpoint":"generate","namespace":"dynamo","instance_id":%d,"transport":{"tcp":"%s/%s/dynamo/backend/generate"},"device_type":"cuda","request_plane_codec":"msgpack"}`,
		lease, hostPort, hex))
	if model == "" {
		return hex
	}
	card := fmt.Sprintf(`{"display_name":%q,"slug":"x","source_path":"/models/x","kv_cache_block_size":16,"model_type":"Chat | Completions","model_input":"Tokens","worker_type":"aggregated","runtime_config":{"context_length":0,"total_kv_blocks":8192,"max_num_seqs":256,"max_num_batched_tokens":8192,"tool_call_parser":null,"runtime_data":{"output_replay_consumer":true}}}`, model)
	if wrappedCard {
		card = fmt.Sprintf(`{"type":"Model","namespace":"dynamo","component":"backend","endpoint":"generate","instance_id":%d,"card_json":%s}`, lease, card)
	}
	f.put("v1/mdc/dynamo/backend/generate/"+hex, card)
	return hex
}

func etcdOpts(endpoints ...string) EtcdOptions {
	return EtcdOptions{Endpoints: endpoints, Namespace: "dynamo", Component: "backend", Endpoint: "generate", PollInterval: 5 * time.Millisecond}
}

func TestEtcdPollReadsDynamoRegistry(t *testing.T) {
	f, srv := newFakeEtcd(t)
	// A lease id above 2^53: JSON float parsing would corrupt it.
	const leaseA = uint64(7587888160958628103)
	hexA := registerWorker(f, leaseA, "10.1.2.3:36789", true, "Qwen/Qwen3-0.6B")
	registerWorker(f, 0x2a, "[fd00::5]:40000", false, "Qwen/Qwen3-0.6B")
	registerWorker(f, 0x2b, "10.1.2.5:1", false, "") // no model card yet
	// Not ours: another component, another endpoint with our endpoint's name as prefix, and a
	// NATS-only instance.
	f.put("v1/instances/dynamo/prefill/generate/99", `{"instance_id":153,"transport":{"tcp":"10.9.9.9:1/x"}}`)
	f.put("v1/instances/dynamo/backend/generate2/98", `{"instance_id":152,"transport":{"tcp":"10.9.9.9:2/x"}}`)
	f.put("v1/instances/dynamo/backend/generate/97", `{"instance_id":151,"transport":{"nats_tcp":"dynamo_backend.generate-97"}}`)
	f.put("v1/instances/dynamo/backend/generate/96", `not json`)

	e, err := NewEtcd(etcdOpts(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []backend.EndpointInfo{
		{Key: "etcd/2a", Address: "[fd00::5]:40000", MetricsURL: "http://[fd00::5]:8081/metrics", Models: []string{"Qwen/Qwen3-0.6B"},
			InstanceID: "42", KVCacheBlockSize: 16, TotalKVBlocks: 8192, MaxNumSeqs: 256},
		{Key: "etcd/2b", Address: "10.1.2.5:1", MetricsURL: "http://10.1.2.5:8081/metrics", InstanceID: "43"},
		{Key: "etcd/" + hexA, Address: "10.1.2.3:36789", MetricsURL: "http://10.1.2.3:8081/metrics", Models: []string{"Qwen/Qwen3-0.6B"},
			InstanceID: strconv.FormatUint(leaseA, 10), KVCacheBlockSize: 16, TotalKVBlocks: 8192, MaxNumSeqs: 256},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestEtcdTemplates(t *testing.T) {
	f, srv := newFakeEtcd(t)
	registerWorker(f, 0xabc, "10.1.2.3:36789", false, "m")
	opts := etcdOpts(srv.URL)
	opts.TargetTemplate = "{host}:8000"
	opts.MetricsURLTemplate = "http://metrics.{namespace}.svc:9000/{component}/{endpoint}/{instance_hex}/{instance_id}?port={port}"
	e, err := NewEtcd(opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Poll(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if got[0].Address != "10.1.2.3:8000" ||
		got[0].MetricsURL != "http://metrics.dynamo.svc:9000/backend/generate/abc/2748?port=36789" {
		t.Fatalf("got %+v", got[0])
	}

	for _, bad := range []EtcdOptions{
		func() EtcdOptions { o := etcdOpts(srv.URL); o.TargetTemplate = "{host}"; return o }(),
		func() EtcdOptions { o := etcdOpts(srv.URL); o.MetricsURLTemplate = "{host}:8081/metrics"; return o }(),
		func() EtcdOptions { o := etcdOpts(srv.URL); o.Component = "a/b"; return o }(),
		func() EtcdOptions { o := etcdOpts(); return o }(),
	} {
		if _, err := NewEtcd(bad); err == nil {
			t.Errorf("no error for %+v", bad)
		}
	}
}

// recordingSink keeps every reported endpoint list.
type recordingSink struct {
	mu      sync.Mutex
	reports [][]backend.EndpointInfo
}

func (r *recordingSink) SetSource(source string, infos []backend.EndpointInfo) {
	if source != EtcdSource {
		panic("unexpected source " + source)
	}
	r.mu.Lock()
	r.reports = append(r.reports, infos)
	r.mu.Unlock()
}

func (r *recordingSink) last() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reports) == 0 {
		return nil, 0
	}
	var keys []string
	for _, i := range r.reports[len(r.reports)-1] {
		keys = append(keys, i.Key)
	}
	return keys, len(r.reports)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestEtcdRunTracksLeasesAndSurvivesOutages(t *testing.T) {
	f, srv := newFakeEtcd(t)
	registerWorker(f, 1, "10.0.0.1:1000", false, "m")
	registerWorker(f, 2, "10.0.0.2:1000", false, "m")
	// The first etcd endpoint is dead: discovery must fail over to the second.
	e, err := NewEtcd(etcdOpts("http://127.0.0.1:1", srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, sink); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "two workers", func() bool { k, _ := sink.last(); return reflect.DeepEqual(k, []string{"etcd/1", "etcd/2"}) })

	// Worker 2's lease expires: etcd deletes its keys.
	f.del("v1/instances/dynamo/backend/generate/2")
	f.del("v1/mdc/dynamo/backend/generate/2")
	waitFor(t, "worker 2 gone", func() bool { k, _ := sink.last(); return reflect.DeepEqual(k, []string{"etcd/1"}) })

	// etcd outage: no report at all, so the pool keeps worker 1.
	f.setDown(true)
	_, n := sink.last()
	time.Sleep(50 * time.Millisecond)
	if k, n2 := sink.last(); n2 != n || !reflect.DeepEqual(k, []string{"etcd/1"}) {
		t.Fatalf("reports during the outage: %v (%d -> %d)", k, n, n2)
	}
	f.setDown(false)
	registerWorker(f, 3, "10.0.0.3:1000", false, "m")
	waitFor(t, "worker 3", func() bool { k, _ := sink.last(); return reflect.DeepEqual(k, []string{"etcd/1", "etcd/3"}) })
}

func TestPrefixEnd(t *testing.T) {
	cases := map[string]string{"v1/a/": "v1/a0", "a\xff": "b", "\xff\xff": "\x00"}
	for in, want := range cases {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCardVariants(t *testing.T) {
	for _, tc := range []struct{ json, name string }{
		{`{"display_name":"a","service_name":"b"}`, "a"},
		{`{"name":"n"}`, "n"},
		{`{"type":"Model","card_json":{"display_name":"wrapped"}}`, "wrapped"},
	} {
		c, err := parseCard([]byte(tc.json))
		if err != nil || c.name != tc.name {
			t.Errorf("%s: got %+v, %v", tc.json, c, err)
		}
	}
	if _, err := parseCard([]byte(`{"slug":"x"}`)); err == nil || !strings.Contains(err.Error(), "display_name") {
		t.Errorf("card without a name: %v", err)
	}
}
