// Package extprocclient plays Envoy's ext_proc filter for one HTTP request, as Envoy does with
// the endpoint picker's reference configuration (request_header_mode SEND, request body mode
// FULL_DUPLEX_STREAMED): one bidirectional gRPC stream per request, the request headers as a
// HeaderMap with raw_value bytes, then the body in request_body chunks ending with
// end_of_stream; it reads the answers until the routing decision and the body streamed back,
// or an ImmediateResponse. The benchmark (cmd/epp-bench) and the integration test client
// (cmd/extproc-client) both use it.
package extprocclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"dynamo-images.local/epp/internal/handler"
)

// Protocol names of the endpoint picker (GIE) that the answers are read with: the EPP's
// defaults, defined once in the handler.
const (
	DestinationHeader = handler.DefaultDestinationHeader
	MetadataNamespace = handler.DefaultMetadataNamespace
)

// DialOptions are the HTTP/2 settings Envoy's gRPC client uses by default: 256 MiB stream and
// connection flow-control windows that do not change, so unlike gRPC-Go's default (window
// sizing by bandwidth-delay estimation) it sends no PINGs as data arrives.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(envoyWindowBytes),
		grpc.WithInitialConnWindowSize(envoyWindowBytes),
	}
}

// envoyWindowBytes is Envoy's default initial_stream_window_size and
// initial_connection_window_size (HTTP/2 protocol options).
const envoyWindowBytes = 256 << 20

// Malformed ways to break the protocol on purpose, for testing a server's error handling.
const (
	// BodyBeforeHeaders sends the body chunks without the request headers.
	BodyBeforeHeaders = "body-before-headers"
	// EmptyMessage sends the headers, then a ProcessingRequest without a request phase.
	EmptyMessage = "empty-message"
)

// Header is one HTTP header; names are sent lower-case, as Envoy does.
type Header struct {
	Key, Value string
}

// Request is one HTTP request as the proxy received it.
type Request struct {
	// Headers, pseudo-headers (":method", ":path", ...) first, as Envoy orders them.
	Headers []Header
	Body    []byte
	// Chunks is the number of request_body messages the body is split into (at least 1).
	Chunks int
	// Metadata is the filter metadata Envoy forwards with the headers (e.g. the subset hint).
	Metadata *corev3.Metadata
	// Malformed, when set, breaks the protocol (BodyBeforeHeaders, EmptyMessage).
	Malformed string
}

// Result is what the ext_proc server answered.
type Result struct {
	// Latency runs from opening the stream to the first answer (the routing decision).
	Latency time.Duration
	// Routing is the answer to the request headers (nil when the request was rejected).
	Routing *extprocv3.ProcessingResponse
	// Immediate is the server's own HTTP answer (nil when the request was routed).
	Immediate *extprocv3.ImmediateResponse
	// BodyBack is the request body the server streamed back for the proxy to forward.
	BodyBack []byte
}

// SetHeader returns the value the routing answer sets header key to ("" if it sets none).
func (r *Result) SetHeader(key string) string {
	for _, h := range r.Routing.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			if raw := h.GetHeader().GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// Destination is the endpoint (or fallback list) in the x-gateway-destination-endpoint header.
func (r *Result) Destination() string { return r.SetHeader(DestinationHeader) }

// MetadataDestination is the same key in the envoy.lb dynamic metadata.
func (r *Result) MetadataDestination() string {
	return r.Routing.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()[DestinationHeader].GetStringValue()
}

// NewRequest is an HTTP request with the headers Envoy sends for a plain HTTP/1.1 client
// (pseudo-headers, x-forwarded-proto, x-request-id) and, with a body, the JSON content-type
// and content-length.
func NewRequest(method, path, requestID string, body []byte, chunks int) Request {
	headers := []Header{{":authority", "gateway"}, {":path", path}, {":method", method}, {":scheme", "http"}}
	if len(body) > 0 {
		headers = append(headers, Header{"content-type", "application/json"}, Header{"content-length", strconv.Itoa(len(body))})
	}
	headers = append(headers, Header{"x-forwarded-proto", "http"}, Header{"x-request-id", requestID})
	return Request{Headers: headers, Body: body, Chunks: chunks}
}

// Exchange runs one request over a new stream of client. A gRPC error from the server (the
// stream ended with a status other than OK) is returned as the error, with its status intact.
func Exchange(ctx context.Context, client extprocv3.ExternalProcessorClient, req Request) (Result, error) {
	var res Result
	if req.Malformed != "" && req.Malformed != BodyBeforeHeaders && req.Malformed != EmptyMessage {
		return res, fmt.Errorf("unknown malformation %q", req.Malformed)
	}
	begin := time.Now()
	stream, err := client.Process(ctx)
	if err != nil {
		return res, err
	}
	send := func(msg *extprocv3.ProcessingRequest) error {
		err := stream.Send(msg)
		if errors.Is(err, io.EOF) {
			// The server already ended the stream (say, on a malformed message before this one);
			// gRPC reports that as io.EOF here and the server's status from Recv.
			if _, recvErr := stream.Recv(); recvErr != nil {
				return recvErr
			}
		}
		return err
	}
	headers := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, len(req.Headers))}
	for i, h := range req.Headers {
		headers.Headers[i] = &corev3.HeaderValue{Key: h.Key, RawValue: []byte(h.Value)}
	}
	headersMsg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: headers, EndOfStream: len(req.Body) == 0}},
		MetadataContext: req.Metadata,
	}
	switch req.Malformed {
	case BodyBeforeHeaders:
		headersMsg = nil
	case EmptyMessage:
		if err := send(headersMsg); err != nil {
			return res, err
		}
		headersMsg = &extprocv3.ProcessingRequest{}
	}
	if headersMsg != nil {
		if err := send(headersMsg); err != nil {
			return res, err
		}
	}
	if len(req.Body) > 0 {
		chunks := max(1, min(req.Chunks, len(req.Body)))
		size := (len(req.Body) + chunks - 1) / chunks
		for off := 0; off < len(req.Body); off += size {
			end := min(off+size, len(req.Body))
			if err := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
				RequestBody: &extprocv3.HttpBody{Body: req.Body[off:end], EndOfStream: end == len(req.Body)}}}); err != nil {
				return res, err
			}
		}
	}

	resp, err := stream.Recv()
	if err != nil {
		return res, err // the server's status: io.EOF is an error too, the request got no answer
	}
	res.Latency = time.Since(begin)
	switch {
	case resp.GetImmediateResponse() != nil:
		res.Immediate = resp.GetImmediateResponse()
	case resp.GetRequestHeaders() != nil:
		res.Routing = resp
		for len(req.Body) > 0 {
			resp, err := stream.Recv()
			if err != nil {
				return res, fmt.Errorf("reading the body streamed back: %w", err)
			}
			sr := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
			if sr == nil {
				return res, fmt.Errorf("want the request body streamed back, got %v", resp)
			}
			res.BodyBack = append(res.BodyBack, sr.GetBody()...)
			if sr.GetEndOfStream() {
				break
			}
		}
	default:
		return res, fmt.Errorf("want a request_headers answer or an immediate response, got %v", resp)
	}
	// The request is over for the proxy: close our side; the server must end the stream.
	if err := stream.CloseSend(); err != nil {
		return res, err
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("want the end of the stream, got %v / %v", resp, err)
	}
	return res, nil
}
