// Command extproc-client sends HTTP requests to an ext_proc server the way Envoy's ext_proc
// filter does (internal/extprocclient: one stream per request over one gRPC connection,
// headers then the body in chunks) and prints what the server decided, one JSON object per
// request. The integration tests drive the endpoint picker with it.
//
// Requests are read from stdin, one JSON object per line:
//
//	{"id": "r1", "method": "POST", "path": "/v1/chat/completions", "headers": {"x-a": "b"},
//	 "body": "{...}", "chunks": 2, "subset": ["10.0.0.1:8000"], "malformed": "body-before-headers"}
//
// Only "body" is needed for a chat completion POST; "method" GET with no body is a bodiless
// request. "subset" is sent as the envoy.lb.subset_hint filter metadata; "malformed" is one
// of body-before-headers, empty-message. Each answer is a line:
//
//	{"id": "r1", "status": 200, "destination": "ip:port", "metadata_destination": "ip:port",
//	 "set_headers": {...}, "clear_route_cache": true, "body_returned": true, "latency_ms": 0.9}
//
// status is 200 when the request was routed, the ImmediateResponse's code (with
// "error_body", its JSON body) when the server answered itself, and 0 when the stream ended
// with a gRPC error ("grpc_code", "grpc_message").
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"dynamo-images.local/epp/internal/extprocclient"
	"dynamo-images.local/epp/internal/handler"
)

type input struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Chunks    int               `json:"chunks"`
	Subset    []string          `json:"subset"`
	Malformed string            `json:"malformed"`
}

type output struct {
	ID                  string            `json:"id"`
	Status              int               `json:"status"`
	Destination         string            `json:"destination,omitempty"`
	MetadataDestination string            `json:"metadata_destination,omitempty"`
	SetHeaders          map[string]string `json:"set_headers,omitempty"`
	ClearRouteCache     bool              `json:"clear_route_cache,omitempty"`
	BodyReturned        bool              `json:"body_returned,omitempty"`
	ErrorBody           json.RawMessage   `json:"error_body,omitempty"`
	GRPCCode            string            `json:"grpc_code,omitempty"`
	GRPCMessage         string            `json:"grpc_message,omitempty"`
	LatencyMS           float64           `json:"latency_ms"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "ext_proc server address")
	interval := flag.Duration("interval", 0, "pause between two requests")
	timeout := flag.Duration("timeout", 10*time.Second, "limit for each request")
	flag.Parse()
	if err := run(*addr, *interval, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "extproc-client:", err)
		os.Exit(1)
	}
}

func run(addr string, interval, timeout time.Duration) error {
	// One connection for every request: Envoy multiplexes its ext_proc streams likewise.
	conn, err := grpc.NewClient(addr, extprocclient.DialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for n := 0; in.Scan(); n++ {
		if len(in.Bytes()) == 0 {
			continue
		}
		var req input
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("input line %d: %w", n+1, err)
		}
		if n > 0 && interval > 0 {
			time.Sleep(interval)
		}
		o, err := exchange(client, req, timeout)
		if err != nil {
			return fmt.Errorf("request %q: %w", req.ID, err)
		}
		if err := out.Encode(o); err != nil {
			return err
		}
	}
	return in.Err()
}

func exchange(client extprocv3.ExternalProcessorClient, in input, timeout time.Duration) (output, error) {
	if in.Method == "" {
		in.Method = "POST"
	}
	if in.Path == "" {
		in.Path = "/v1/chat/completions"
	}
	if in.ID == "" {
		in.ID = fmt.Sprintf("extproc-client-%d", time.Now().UnixNano())
	}
	req := extprocclient.NewRequest(in.Method, in.Path, in.ID, []byte(in.Body), in.Chunks)
	keys := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.Headers = append(req.Headers, extprocclient.Header{Key: k, Value: in.Headers[k]})
	}
	req.Malformed = in.Malformed
	if in.Subset != nil {
		hint := make([]any, len(in.Subset))
		for i, a := range in.Subset {
			hint[i] = a
		}
		v, err := structpb.NewValue(hint)
		if err != nil {
			return output{}, err
		}
		req.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			handler.DefaultSubsetNamespace: {Fields: map[string]*structpb.Value{handler.DefaultSubsetKey: v}},
		}}
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := extprocclient.Exchange(ctx, client, req)
	o := output{ID: in.ID, LatencyMS: float64(res.Latency.Microseconds()) / 1000}
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || st.Code() == 0 {
			return o, err // not an answer of the server: a broken exchange
		}
		o.GRPCCode, o.GRPCMessage = st.Code().String(), st.Message()
		return o, nil
	}
	if ir := res.Immediate; ir != nil {
		o.Status = int(ir.GetStatus().GetCode())
		o.ErrorBody = ir.GetBody()
		if !json.Valid(o.ErrorBody) {
			o.ErrorBody, _ = json.Marshal(string(ir.GetBody()))
		}
		return o, nil
	}
	common := res.Routing.GetRequestHeaders().GetResponse()
	o.Status = 200
	o.Destination = res.Destination()
	o.MetadataDestination = res.MetadataDestination()
	o.ClearRouteCache = common.GetClearRouteCache()
	o.SetHeaders = map[string]string{}
	for _, h := range common.GetHeaderMutation().GetSetHeaders() {
		o.SetHeaders[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	o.BodyReturned = in.Body != "" && string(res.BodyBack) == in.Body
	return o, nil
}
