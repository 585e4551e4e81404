package extprocclient

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"dynamo-images.local/epp/internal/grpctest"
)

// recorder records what it receives and answers like an endpoint picker in streamed mode:
// routed to "10.0.0.1:8000", or 404 when the body is "unknown".
type recorder struct {
	extprocv3.UnimplementedExternalProcessorServer
	got chan []*extprocv3.ProcessingRequest
}

func (r *recorder) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var msgs []*extprocv3.ProcessingRequest
	defer func() { r.got <- msgs }()
	var body []byte
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		msgs = append(msgs, req)
		if b := req.GetRequestBody(); b != nil {
			body = append(body, b.GetBody()...)
			if !b.GetEndOfStream() {
				continue
			}
		} else if !req.GetRequestHeaders().GetEndOfStream() {
			continue
		}
		if string(body) == "unknown" {
			return srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: 404}, Body: []byte(`{}`)}}})
		}
		srv.Send(&extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: DestinationHeader, RawValue: []byte("10.0.0.1:8000")}}}}}}},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{MetadataNamespace: structpb.NewStructValue(
				&structpb.Struct{Fields: map[string]*structpb.Value{DestinationHeader: structpb.NewStringValue("10.0.0.1:8000")}})}},
		})
		for off := 0; off < len(body); off += 4 {
			end := min(off+4, len(body))
			srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
				Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
					StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body[off:end], EndOfStream: end == len(body)}}}}}}})
		}
	}
}

func setup(t *testing.T) (extprocv3.ExternalProcessorClient, *recorder) {
	rec := &recorder{got: make(chan []*extprocv3.ProcessingRequest, 1)}
	conn := grpctest.Dial(t, func(gs *grpc.Server) { extprocv3.RegisterExternalProcessorServer(gs, rec) })
	return extprocv3.NewExternalProcessorClient(conn), rec
}

func TestExchangeSendsHeadersThenChunksAndReadsTheDecision(t *testing.T) {
	client, rec := setup(t)
	body := `{"model":"m","prompt":"hello"}`
	res, err := Exchange(context.Background(), client, NewRequest("POST", "/v1/completions", "r1", []byte(body), 3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Destination() != "10.0.0.1:8000" || res.MetadataDestination() != "10.0.0.1:8000" || string(res.BodyBack) != body || res.Immediate != nil {
		t.Fatalf("result %+v", res)
	}
	msgs := <-rec.got
	if len(msgs) != 4 {
		t.Fatalf("want headers and 3 body chunks, got %v", msgs)
	}
	h := msgs[0].GetRequestHeaders()
	var names []string
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.GetValue() != "" || len(hv.GetRawValue()) == 0 {
			t.Errorf("header %s: want raw_value only", hv.GetKey())
		}
		names = append(names, hv.GetKey())
	}
	if got := strings.Join(names, " "); got != ":authority :path :method :scheme content-type content-length x-forwarded-proto x-request-id" || h.GetEndOfStream() {
		t.Fatalf("headers %s, end_of_stream %v", got, h.GetEndOfStream())
	}
	var sent string
	for i, m := range msgs[1:] {
		sent += string(m.GetRequestBody().GetBody())
		if m.GetRequestBody().GetEndOfStream() != (i == 2) {
			t.Errorf("chunk %d: end_of_stream %v", i, m.GetRequestBody().GetEndOfStream())
		}
	}
	if sent != body {
		t.Fatalf("body sent %q", sent)
	}
}

func TestExchangeBodilessAndImmediate(t *testing.T) {
	client, rec := setup(t)
	res, err := Exchange(context.Background(), client, NewRequest("GET", "/v1/models", "r2", nil, 0))
	if err != nil || res.Destination() != "10.0.0.1:8000" {
		t.Fatalf("%+v %v", res, err)
	}
	if msgs := <-rec.got; len(msgs) != 1 || !msgs[0].GetRequestHeaders().GetEndOfStream() {
		t.Fatalf("a bodiless request is one headers message with end_of_stream: %v", msgs)
	}
	res, err = Exchange(context.Background(), client, NewRequest("POST", "/v1/completions", "r3", []byte("unknown"), 1))
	if err != nil || res.Immediate.GetStatus().GetCode() != 404 || res.Routing != nil {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestExchangeMalformed(t *testing.T) {
	client, rec := setup(t)
	Exchange(context.Background(), client, Request{Body: []byte("x"), Chunks: 1, Malformed: BodyBeforeHeaders})
	if msgs := <-rec.got; len(msgs) == 0 || msgs[0].GetRequestBody() == nil {
		t.Fatalf("want the body first: %v", msgs)
	}
	Exchange(context.Background(), client, Request{Headers: []Header{{":method", "GET"}}, Malformed: EmptyMessage})
	if msgs := <-rec.got; len(msgs) < 2 || msgs[1].GetRequest() != nil {
		t.Fatalf("want headers, then an empty message: %v", msgs)
	}
	if _, err := Exchange(context.Background(), client, Request{Malformed: "nonsense"}); err == nil {
		t.Fatal("unknown malformation accepted")
	}
}

// rejecter ends every stream with InvalidArgument as soon as the first message arrives, as the
// endpoint picker does with a malformed stream.
type rejecter struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (rejecter) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	srv.Recv()
	return status.Error(codes.InvalidArgument, "rejected")
}

// Sends after the server ended the stream get io.EOF from gRPC; the answer is the server's status.
func TestExchangeReportsTheStatusOfAStreamEndedMidRequest(t *testing.T) {
	conn := grpctest.Dial(t, func(gs *grpc.Server) { extprocv3.RegisterExternalProcessorServer(gs, rejecter{}) })
	client := extprocv3.NewExternalProcessorClient(conn)
	body := []byte(strings.Repeat("x", 4096))
	for i := 0; i < 50; i++ {
		_, err := Exchange(context.Background(), client, Request{Body: body, Chunks: 4096, Malformed: BodyBeforeHeaders})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("try %d: want the server's InvalidArgument, got %v", i, err)
		}
	}
}
