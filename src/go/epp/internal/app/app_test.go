package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// modelServer serves vLLM-style metrics with the given queue length.
func modelServer(t *testing.T, queue int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} %d\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.2\n", queue)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostPort(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// start parses args like the binary does and runs the app until the test ends.
func start(t *testing.T, args ...string) *App {
	t.Helper()
	opts := DefaultOptions()
	fs := flag.NewFlagSet("epp", flag.ContinueOnError)
	opts.RegisterFlags(fs)
	base := []string{"--listen-host=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0", "--refresh-metrics-interval=10ms"}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	a, err := New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return a
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func waitReady(t *testing.T, a *App, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(a.Store().Candidates()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("want %d ready endpoints, have %d", n, len(a.Store().Candidates()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// route sends one chat request over ext_proc as Envoy does and returns the routing headers.
func route(t *testing.T, addr, body string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(dial(t, addr)).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":path", RawValue: []byte("/v1/chat/completions")}}}}}})
	stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	if ir := resp.GetImmediateResponse(); ir != nil {
		out[":status"] = fmt.Sprint(int(ir.GetStatus().GetCode()))
		return out
	}
	for _, h := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	stream.CloseSend()
	return out
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestStaticEndpointsEndToEnd(t *testing.T) {
	busy, idle := modelServer(t, 20), modelServer(t, 0)
	// The idle server's metrics are served elsewhere than its traffic port: per-endpoint URL.
	a := start(t,
		"--static-endpoints="+hostPort(busy)+",10.0.0.7:8000="+idle.URL+"/metrics",
		"--static-models=m",
		"--model-server-type=vllm",
		"--config-text=apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n")
	grpcAddr, healthAddr, metricsAddr := a.Addrs()

	hc, err := healthpb.NewHealthClient(dial(t, healthAddr)).Check(context.Background(),
		&healthpb.HealthCheckRequest{Service: extprocv3.ExternalProcessor_ServiceDesc.ServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}

	waitReady(t, a, 2)
	if got := route(t, grpcAddr, `{"model":"m","prompt":"hi"}`)["x-gateway-destination-endpoint"]; got != "10.0.0.7:8000" {
		t.Fatalf("routed to %q", got)
	}
	if got := route(t, grpcAddr, `{"model":"other","prompt":"hi"}`)[":status"]; got != "404" {
		t.Fatalf("unknown model: status %q", got)
	}

	metrics := httpGet(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{`epp_endpoint_ready{address="10.0.0.7:8000",endpoint="static/10.0.0.7:8000"} 1`, `epp_requests_total{code="404"} 1`, "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var endpoints []map[string]any
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+metricsAddr+"/debug/endpoints")), &endpoints); err != nil || len(endpoints) != 2 {
		t.Fatalf("/debug/endpoints: %v %v", endpoints, err)
	}

	// The idle server goes away: it is dropped and everything goes to the busy one.
	idle.Close()
	waitReady(t, a, 1)
	if got := route(t, grpcAddr, `{"model":"m","prompt":"hi"}`)["x-gateway-destination-endpoint"]; got != hostPort(busy) {
		t.Fatalf("routed to %q after the idle server died", got)
	}
}

func TestEtcdDiscoveryEndToEnd(t *testing.T) {
	metrics := modelServer(t, 0)
	_, metricsPort, _ := net.SplitHostPort(hostPort(metrics))
	const lease = 0x694d9a3b1c2e8f10
	kvs := map[string]string{
		fmt.Sprintf("v1/instances/dyn/backend/generate/%x", lease): fmt.Sprintf(
			`{"type":"Endpoint","namespace":"dyn","component":"backend","endpoint":"generate","instance_id":%d,"transport":{"tcp":"127.0.0.1:41000/%x/dyn/backend/generate"}}`, uint64(lease), lease),
		fmt.Sprintf("v1/mdc/dyn/backend/generate/%x", lease): `{"display_name":"Qwen/Qwen3-0.6B","kv_cache_block_size":16,"runtime_config":{"total_kv_blocks":100,"max_num_seqs":8}}`,
	}
	etcd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key      string `json:"key"`
			RangeEnd string `json:"range_end"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		start, _ := base64.StdEncoding.DecodeString(req.Key)
		end, _ := base64.StdEncoding.DecodeString(req.RangeEnd)
		var out []map[string]string
		for k, v := range kvs {
			if k >= string(start) && k < string(end) {
				out = append(out, map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(k)), "value": base64.StdEncoding.EncodeToString([]byte(v))})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"kvs": out})
	}))
	defer etcd.Close()

	a := start(t, "--etcd-endpoints="+etcd.URL, "--dynamo-namespace=dyn", "--etcd-poll-interval=20ms",
		"--etcd-target-template={host}:8000", "--etcd-metrics-url-template=http://{host}:"+metricsPort+"/metrics")
	grpcAddr, _, _ := a.Addrs()
	waitReady(t, a, 1)
	headers := route(t, grpcAddr, `{"model":"Qwen/Qwen3-0.6B","messages":[{"role":"user","content":"hi"}]}`)
	if headers["x-gateway-destination-endpoint"] != "127.0.0.1:8000" || headers["x-worker-instance-id"] != fmt.Sprint(uint64(lease)) {
		t.Fatalf("routing headers %v", headers)
	}
	if got := route(t, grpcAddr, `{"model":"llama"}`)[":status"]; got != "404" {
		t.Fatalf("unknown model: status %q", got)
	}
}

func TestOptionErrors(t *testing.T) {
	cases := map[string][]string{
		"no endpoint source":             {},
		"not both":                       {"--static-endpoints=a:1", "--config-file=x", "--config-text=y"},
		"--config-file":                  {"--static-endpoints=a:1", "--config-file=/does/not/exist"},
		"--config-text":                  {"--static-endpoints=a:1", "--config-text=kind: nope"},
		"--model-server-type":            {"--static-endpoints=a:1", "--model-server-type=tgi"},
		"--total-queued-requests-metric": {"--static-endpoints=a:1", "--total-queued-requests-metric=a{"},
		"--static-endpoints":             {"--static-endpoints=nohostport"},
		"etcd discovery":                 {"--etcd-endpoints=http://e:2379", "--etcd-target-template={host}"},
		"unknown body mode":              {"--static-endpoints=a:1", "--body-mode=chunked"},
		"--grpc-port":                    {"--static-endpoints=a:1", "--grpc-port=70000"},
	}
	for want, args := range cases {
		opts := DefaultOptions()
		fs := flag.NewFlagSet("epp", flag.ContinueOnError)
		opts.RegisterFlags(fs)
		if err := fs.Parse(append([]string{"--listen-host=127.0.0.1", "--grpc-health-port=0", "--metrics-port=0"}, args...)); err != nil {
			t.Fatal(err)
		}
		if opts.GRPCPort == 9002 {
			opts.GRPCPort = 0
		}
		a, err := New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			a.Run(canceled())
			t.Errorf("%v: no error", args)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %q does not mention %q", args, err, want)
		}
	}
	if _, err := (&Options{LogLevel: "loud"}).Logger(); err == nil {
		t.Error("bad log level accepted")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
