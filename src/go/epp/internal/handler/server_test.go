package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/config"
	"dynamo-images.local/epp/internal/datastore"
	"dynamo-images.local/epp/internal/grpctest"
	"dynamo-images.local/epp/internal/telemetry"
)

// fakePool is a fixed endpoint pool.
type fakePool struct {
	mu        sync.Mutex
	endpoints []*backend.Endpoint
	picks     []string
}

func (p *fakePool) Candidates() []*backend.Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*backend.Endpoint(nil), p.endpoints...)
}

func (p *fakePool) Model(model string) datastore.ModelStatus {
	st := datastore.ModelStatus{}
	for _, e := range p.endpoints {
		if len(e.Info.Models) > 0 {
			st.Known = true
			st.Models = append(st.Models, e.Info.Models...)
		}
		if e.Info.ServesModel(model) {
			st.Served = true
		}
	}
	return st
}

func (p *fakePool) RecordPick(key string) {
	p.mu.Lock()
	p.picks = append(p.picks, key)
	p.mu.Unlock()
}

func endpoint(addr string, queue, kv float64, models ...string) *backend.Endpoint {
	return &backend.Endpoint{
		Info:    &backend.EndpointInfo{Key: "static/" + addr, Address: addr, Models: models},
		Metrics: backend.Metrics{WaitingQueueSize: queue, KVCacheUsage: kv, UpdatedAt: time.Now()},
	}
}

type harness struct {
	pool    *fakePool
	client  extprocv3.ExternalProcessorClient
	metrics *telemetry.Metrics
}

// newHarness serves the handler on an in-memory gRPC connection.
func newHarness(t testing.TB, cfgText string, mutate func(*Options), eps ...*backend.Endpoint) *harness {
	t.Helper()
	if cfgText == "" {
		cfgText = config.DefaultConfigText
	}
	loaded, err := config.Load([]byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{pool: &fakePool{endpoints: eps}, metrics: telemetry.New(nil)}
	opts := Options{Pool: h.pool, Scheduler: loaded.Scheduler, Saturation: loaded.Saturation, Metrics: h.metrics,
		WorkerIDHeader: DefaultWorkerIDHeader}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Dial(t, func(gs *grpc.Server) { extprocv3.RegisterExternalProcessorServer(gs, srv) })
	h.client = extprocv3.NewExternalProcessorClient(conn)
	return h
}

func (h *harness) open(t *testing.T) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	stream, err := h.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// requestHeaders is what Envoy sends first: the request headers and the filter metadata.
func requestHeaders(endOfStream bool, subset *structpb.Value, headers ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	all := append([]string{":method", "POST", ":path", "/v1/chat/completions", "content-type", "application/json", "x-request-id", "req-1"}, headers...)
	for i := 0; i+1 < len(all); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: all[i], RawValue: []byte(all[i+1])})
	}
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: endOfStream}}}
	if subset != nil {
		req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			DefaultSubsetNamespace: {Fields: map[string]*structpb.Value{DefaultSubsetKey: subset}},
		}}
	}
	return req
}

func requestBody(chunk string, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(chunk), EndOfStream: endOfStream}}}
}

func send(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, reqs ...*extprocv3.ProcessingRequest) {
	t.Helper()
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
}

func recv(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient) *extprocv3.ProcessingResponse {
	t.Helper()
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// sendRequest sends headers and the body in chunks of 7 bytes, as Envoy streams it in
// FULL_DUPLEX_STREAMED mode.
func sendRequest(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, body string, subset *structpb.Value, headers ...string) {
	t.Helper()
	send(t, s, requestHeaders(false, subset, headers...))
	for len(body) > 7 {
		send(t, s, requestBody(body[:7], false))
		body = body[7:]
	}
	send(t, s, requestBody(body, true))
}

func setHeaders(m *extprocv3.HeaderMutation) map[string]string {
	out := map[string]string{}
	for _, h := range m.GetSetHeaders() {
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return out
}

func metadataDestination(resp *extprocv3.ProcessingResponse) string {
	return resp.GetDynamicMetadata().GetFields()[DefaultMetadataNamespace].GetStructValue().GetFields()[DefaultDestinationHeader].GetStringValue()
}

// expectRouted reads the streamed-mode answer and returns the destination.
func expectRouted(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, body string) string {
	t.Helper()
	resp := recv(t, s)
	hr := resp.GetRequestHeaders()
	if hr == nil {
		t.Fatalf("want a request-headers answer, got %v", resp)
	}
	if !hr.GetResponse().GetClearRouteCache() {
		t.Error("route cache not cleared")
	}
	headers := setHeaders(hr.GetResponse().GetHeaderMutation())
	dest := headers[DefaultDestinationHeader]
	if dest == "" || metadataDestination(resp) != dest {
		t.Fatalf("header %q and metadata %q must name the same destination", dest, metadataDestination(resp))
	}
	for _, h := range hr.GetResponse().GetHeaderMutation().GetSetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s is not overwritten", h.GetHeader().GetKey())
		}
	}
	if headers["content-length"] != strconv.Itoa(len(body)) {
		t.Errorf("content-length = %q, want %d", headers["content-length"], len(body))
	}
	resp = recv(t, s)
	sr := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	if sr == nil || string(sr.GetBody()) != body || !sr.GetEndOfStream() {
		t.Fatalf("want the whole body streamed back, got %v", resp)
	}
	return dest
}

func expectImmediate(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, code int, bodyPart string) {
	t.Helper()
	resp := recv(t, s)
	ir := resp.GetImmediateResponse()
	if ir == nil {
		t.Fatalf("want an immediate response, got %v", resp)
	}
	if int(ir.GetStatus().GetCode()) != code {
		t.Fatalf("status %d, want %d (%s)", ir.GetStatus().GetCode(), code, ir.GetBody())
	}
	var parsed struct {
		Error struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ir.GetBody(), &parsed); err != nil || parsed.Error.Code != code || !strings.Contains(parsed.Error.Message, bodyPart) {
		t.Fatalf("body %s (err %v), want code %d and %q", ir.GetBody(), err, code, bodyPart)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("stream should end after an immediate response, got %v", err)
	}
}

const chatBody = `{"model":"llama","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello there, how are you today?"}],"stream":true}`

func TestStreamedRequestIsRoutedToTheLeastLoadedEndpoint(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 10, 0.9), endpoint("10.0.0.2:8000", 0, 0.1))
	s := h.open(t)
	sendRequest(t, s, chatBody, nil)
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.2:8000" {
		t.Fatalf("destination %s", dest)
	}

	// The response path: headers answered, body chunks streamed back unchanged.
	send(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{}}}})
	if recv(t, s).GetResponseHeaders() == nil {
		t.Fatal("response headers not answered")
	}
	for i, chunk := range []string{"data: {}\n\n", "data: [DONE]\n\n"} {
		send(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(chunk), EndOfStream: i == 1}}})
		sr := recv(t, s).GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if string(sr.GetBody()) != chunk || sr.GetEndOfStream() != (i == 1) {
			t.Fatalf("response chunk %d echoed as %v", i, sr)
		}
	}
	s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	if len(h.pool.picks) != 1 || h.pool.picks[0] != "static/10.0.0.2:8000" {
		t.Fatalf("recorded picks %v", h.pool.picks)
	}
	rec := httptest.NewRecorder()
	h.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`epp_requests_total{code="200"} 1`, "epp_inflight_requests 0", "epp_pick_duration_seconds_count 1"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestPrefixAffinityFollowsTheFirstPick(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0.5), endpoint("10.0.0.2:8000", 0, 0.5))
	long := `{"model":"llama","prompt":"` + strings.Repeat("The same long shared system prompt. ", 40) + `"}`
	first := ""
	for i := 0; i < 20; i++ {
		s := h.open(t)
		sendRequest(t, s, long, nil)
		dest := expectRouted(t, s, long)
		if first == "" {
			first = dest
		} else if dest != first {
			t.Fatalf("request %d went to %s, the prefix is cached on %s", i, dest, first)
		}
	}
}

func TestSubsetHint(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 10, 0.9), endpoint("10.0.0.2:8000", 0, 0.1))

	s := h.open(t)
	sendRequest(t, s, chatBody, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("10.0.0.1:8000")}}))
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.1:8000" {
		t.Fatalf("subset ignored: %s", dest)
	}

	s = h.open(t)
	sendRequest(t, s, chatBody, structpb.NewStringValue("10.0.0.9:8000, 10.0.0.1:8000"))
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.1:8000" {
		t.Fatalf("string subset ignored: %s", dest)
	}

	s = h.open(t)
	sendRequest(t, s, chatBody, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("10.0.0.9:8000")}}))
	expectImmediate(t, s, http.StatusServiceUnavailable, "subset")

	s = h.open(t)
	sendRequest(t, s, chatBody, structpb.NewListValue(&structpb.ListValue{}))
	expectImmediate(t, s, http.StatusServiceUnavailable, "subset")
}

func TestNoReadyEndpointIs503(t *testing.T) {
	h := newHarness(t, "", nil)
	s := h.open(t)
	sendRequest(t, s, chatBody, nil)
	expectImmediate(t, s, http.StatusServiceUnavailable, "no ready endpoint")
}

func TestModelFiltering(t *testing.T) {
	h := newHarness(t, "", nil,
		endpoint("10.0.0.1:8000", 10, 0.9, "llama"),
		endpoint("10.0.0.2:8000", 0, 0.1, "qwen"))
	s := h.open(t)
	sendRequest(t, s, chatBody, nil)
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.1:8000" {
		t.Fatalf("llama routed to %s", dest)
	}

	s = h.open(t)
	unknown := `{"model":"mistral","prompt":"hi"}`
	sendRequest(t, s, unknown, nil)
	expectImmediate(t, s, http.StatusNotFound, `model "mistral" is not served by this pool; available models: llama, qwen`)
}

func TestKnownModelWithoutReadyEndpointIs503(t *testing.T) {
	// A store-backed pool: endpoint b serves llama but never scrapes successfully.
	store := datastore.New(datastore.Options{
		Scrape: func(_ context.Context, url string) (backend.Metrics, error) {
			if strings.Contains(url, "b") {
				return backend.Metrics{}, io.ErrUnexpectedEOF
			}
			return backend.Metrics{}, nil
		},
		RefreshInterval: 5 * time.Millisecond,
	})
	defer store.Close()
	store.SetSource("static", []backend.EndpointInfo{
		{Key: "a", Address: "a:1", MetricsURL: "a", Models: []string{"qwen"}},
		{Key: "b", Address: "b:1", MetricsURL: "b", Models: []string{"llama"}},
	})
	deadline := time.Now().Add(5 * time.Second)
	for len(store.Candidates()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("endpoint a never became ready")
		}
		time.Sleep(2 * time.Millisecond)
	}
	h := newHarness(t, "", func(o *Options) { o.Pool = store })
	s := h.open(t)
	sendRequest(t, s, chatBody, nil)
	expectImmediate(t, s, http.StatusServiceUnavailable, `no ready endpoint for model "llama"`)
}

func TestLoadShedding(t *testing.T) {
	busy := []*backend.Endpoint{endpoint("10.0.0.1:8000", 50, 0.5), endpoint("10.0.0.2:8000", 1, 0.95)}
	h := newHarness(t, "", nil, busy...)

	s := h.open(t)
	sendRequest(t, s, chatBody, nil, DefaultPriorityHeader, "-1")
	expectImmediate(t, s, http.StatusTooManyRequests, "saturated")

	// Standard and critical requests are never shed.
	for _, prio := range []string{"0", "5", "not-a-number"} {
		s = h.open(t)
		sendRequest(t, s, chatBody, nil, DefaultPriorityHeader, prio)
		expectRouted(t, s, chatBody)
	}

	// A sheddable request is served while one endpoint has room.
	h = newHarness(t, "", nil, endpoint("10.0.0.1:8000", 50, 0.5), endpoint("10.0.0.2:8000", 2, 0.3))
	s = h.open(t)
	sendRequest(t, s, chatBody, nil, DefaultPriorityHeader, "-1")
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.2:8000" {
		t.Fatalf("destination %s", dest)
	}
}

func TestHeadersOnlyRequest(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0))
	s := h.open(t)
	send(t, s, requestHeaders(true, nil))
	resp := recv(t, s)
	headers := setHeaders(resp.GetRequestHeaders().GetResponse().GetHeaderMutation())
	if headers[DefaultDestinationHeader] != "10.0.0.1:8000" || metadataDestination(resp) != "10.0.0.1:8000" {
		t.Fatalf("answer %v", resp)
	}
	if _, ok := headers["content-length"]; ok {
		t.Fatal("content-length set on a bodiless request")
	}
}

func TestBufferedMode(t *testing.T) {
	h := newHarness(t, "", func(o *Options) { o.BodyMode = BodyModeBuffered }, endpoint("10.0.0.1:8000", 0, 0))
	s := h.open(t)
	send(t, s, requestHeaders(false, nil))
	// Envoy waits for this answer before sending the body.
	if hr := recv(t, s).GetRequestHeaders(); hr == nil || hr.GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("want a plain headers answer, got %v", hr)
	}
	send(t, s, requestBody(chatBody, true))
	resp := recv(t, s)
	common := resp.GetRequestBody().GetResponse()
	if setHeaders(common.GetHeaderMutation())[DefaultDestinationHeader] != "10.0.0.1:8000" ||
		metadataDestination(resp) != "10.0.0.1:8000" || !common.GetClearRouteCache() || common.GetBodyMutation() != nil {
		t.Fatalf("buffered body answer %v", resp)
	}
	send(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte("{}"), EndOfStream: true}}})
	if rb := recv(t, s).GetResponseBody(); rb == nil || rb.GetResponse().GetBodyMutation() != nil {
		t.Fatalf("buffered response body answer %v", rb)
	}
}

func TestFallbackEndpointsAndWorkerID(t *testing.T) {
	cfg := `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: max-score-picker
  parameters: {maxNumOfEndpoints: 3}
`
	a := endpoint("10.0.0.1:8000", 5, 0)
	b := endpoint("10.0.0.2:8000", 0, 0)
	b.Info.InstanceID = "7587888160958628103"
	c := endpoint("10.0.0.3:8000", 9, 0)
	h := newHarness(t, cfg, nil, a, b, c)
	s := h.open(t)
	sendRequest(t, s, chatBody, nil, DefaultDestinationHeader, "6.6.6.6:1")
	resp := recv(t, s)
	headers := setHeaders(resp.GetRequestHeaders().GetResponse().GetHeaderMutation())
	if headers[DefaultDestinationHeader] != "10.0.0.2:8000,10.0.0.1:8000,10.0.0.3:8000" || metadataDestination(resp) != headers[DefaultDestinationHeader] {
		t.Fatalf("destinations %q / %q", headers[DefaultDestinationHeader], metadataDestination(resp))
	}
	if headers[DefaultWorkerIDHeader] != "7587888160958628103" {
		t.Fatalf("worker id header %q", headers[DefaultWorkerIDHeader])
	}
}

func TestLargeBodyIsStreamedBackInChunks(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0))
	body := `{"model":"llama","prompt":"` + strings.Repeat("0123456789", 15000) + `"}`
	s := h.open(t)
	send(t, s, requestHeaders(false, nil))
	for off := 0; off < len(body); off += 16384 { // Envoy's chunks
		end := min(off+16384, len(body))
		send(t, s, requestBody(body[off:end], end == len(body)))
	}
	if hr := recv(t, s).GetRequestHeaders(); setHeaders(hr.GetResponse().GetHeaderMutation())["content-length"] != strconv.Itoa(len(body)) {
		t.Fatalf("headers answer %v", hr)
	}
	var got strings.Builder
	chunks := 0
	for {
		sr := recv(t, s).GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil || len(sr.GetBody()) > streamedChunkBytes {
			t.Fatalf("chunk %d: %v", chunks, sr)
		}
		got.Write(sr.GetBody())
		chunks++
		if sr.GetEndOfStream() {
			break
		}
	}
	if got.String() != body || chunks != (len(body)+streamedChunkBytes-1)/streamedChunkBytes {
		t.Fatalf("body came back in %d chunks, %d bytes (sent %d)", chunks, got.Len(), len(body))
	}
}

// The body buffer is sized from content-length; a length that is wrong, absurd or not a
// number changes nothing but that.
func TestContentLengthOnlySizesTheBody(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0))
	for _, length := range []string{"5", strconv.Itoa(len(chatBody)), "99999999999", "-3", "many"} {
		s := h.open(t)
		sendRequest(t, s, chatBody, nil, "content-length", length)
		if dest := expectRouted(t, s, chatBody); dest != "10.0.0.1:8000" {
			t.Fatalf("content-length %s: destination %s", length, dest)
		}
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	h := newHarness(t, "", func(o *Options) { o.MaxBodyBytes = 16 }, endpoint("10.0.0.1:8000", 0, 0))
	s := h.open(t)
	send(t, s, requestHeaders(false, nil), requestBody(strings.Repeat("x", 10), false), requestBody(strings.Repeat("x", 10), false))
	expectImmediate(t, s, http.StatusRequestEntityTooLarge, "exceeds 16 bytes")
}

func TestTrailersEndTheBody(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0))
	s := h.open(t)
	send(t, s, requestHeaders(false, nil), requestBody(chatBody, false),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}})
	if dest := expectRouted(t, s, chatBody); dest != "10.0.0.1:8000" {
		t.Fatalf("destination %s", dest)
	}
	if recv(t, s).GetRequestTrailers() == nil {
		t.Fatal("trailers not answered")
	}
}

func TestMalformedStreamIsInvalidArgument(t *testing.T) {
	h := newHarness(t, "", nil, endpoint("10.0.0.1:8000", 0, 0))
	trailers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
	for name, tc := range map[string]struct {
		msgs []*extprocv3.ProcessingRequest
		want string
	}{
		"body before headers":     {[]*extprocv3.ProcessingRequest{requestBody(chatBody, true)}, "request_body before request_headers"},
		"trailers before headers": {[]*extprocv3.ProcessingRequest{trailers}, "request_trailers before request_headers"},
		"headers twice":           {[]*extprocv3.ProcessingRequest{requestHeaders(false, nil), requestHeaders(false, nil)}, "request_headers sent twice"},
		"no request phase":        {[]*extprocv3.ProcessingRequest{{}}, "without a request phase"},
	} {
		t.Run(name, func(t *testing.T) {
			s := h.open(t)
			send(t, s, tc.msgs...)
			resp, err := s.Recv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("want INVALID_ARGUMENT %q, got %v / %v", tc.want, resp, err)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	loaded, _ := config.Load([]byte(config.DefaultConfigText))
	if _, err := New(Options{Scheduler: loaded.Scheduler}); err == nil {
		t.Fatal("missing pool accepted")
	}
	if _, err := New(Options{Pool: &fakePool{}, Scheduler: loaded.Scheduler, BodyMode: "chunked"}); err == nil {
		t.Fatal("unknown body mode accepted")
	}
}

// BenchmarkStreamedPick is one full ext_proc exchange (headers, a 2 KB chat body in two
// chunks, both answers) against 8 endpoints with the default config, over an in-memory
// connection: the EPP's own cost per pick, client included, without network or scrapes.
func BenchmarkStreamedPick(b *testing.B) {
	var eps []*backend.Endpoint
	for i := 0; i < 8; i++ {
		eps = append(eps, endpoint(fmt.Sprintf("10.0.0.%d:8000", i), float64(i%3), 0.1*float64(i), "bench-model"))
	}
	h := newHarness(b, "", nil, eps...)
	system := strings.Repeat("You are a helpful inference gateway assistant. ", 32)
	bodies := make([]string, 64)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"model":"bench-model","messages":[{"role":"system","content":%q},{"role":"user","content":"question %d %s"}]}`,
			system[:len(system)-i%4*64], i, strings.Repeat("x", 400))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := bodies[i%len(bodies)]
		s, err := h.client.Process(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		s.Send(requestHeaders(false, nil))
		s.Send(requestBody(body[:len(body)/2], false))
		s.Send(requestBody(body[len(body)/2:], true))
		if r, err := s.Recv(); err != nil || r.GetRequestHeaders() == nil {
			b.Fatalf("%v %v", r, err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			b.Fatal(err)
		}
	}
}
