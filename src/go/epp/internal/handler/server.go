// Package handler implements the Envoy ext_proc side of GIE's endpoint picker protocol: it
// reads the request headers and body, picks endpoints, and answers with the
// x-gateway-destination-endpoint header plus the same value in the envoy.lb dynamic metadata,
// or with an ImmediateResponse (404 unknown model, 429 shed, 503 nothing ready).
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/config"
	"dynamo-images.local/epp/internal/datastore"
	"dynamo-images.local/epp/internal/scheduling"
	"dynamo-images.local/epp/internal/telemetry"
)

// BodyMode is the ext_proc body send mode Envoy is configured with; it decides when and how
// the EPP answers. ext_proc does not tell the server, so it is a flag.
type BodyMode string

const (
	// BodyModeStreamed is FULL_DUPLEX_STREAMED (GIE's reference Envoy config): Envoy streams
	// the body without waiting; the EPP answers the headers once the body is complete and then
	// streams the body back.
	BodyModeStreamed BodyMode = "streamed"
	// BodyModeBuffered is BUFFERED: Envoy waits for the headers answer, then sends the whole
	// body; the routing header travels in the body answer.
	BodyModeBuffered BodyMode = "buffered"
)

// Protocol defaults (GIE endpoint picker protocol).
const (
	DefaultDestinationHeader = "x-gateway-destination-endpoint"
	DefaultMetadataNamespace = "envoy.lb"
	DefaultSubsetNamespace   = "envoy.lb.subset_hint"
	DefaultSubsetKey         = "x-gateway-destination-endpoint-subset"
	DefaultPriorityHeader    = "x-gateway-inference-priority"
	DefaultWorkerIDHeader    = "x-worker-instance-id"
	DefaultMaxBodyBytes      = 32 << 20
)

// streamedChunkBytes is the largest body chunk sent back in streamed mode (GIE uses the same).
const streamedChunkBytes = 62000

// Pool is the endpoint pool as the handler needs it (datastore.Store implements it).
type Pool interface {
	Candidates() []*backend.Endpoint
	Model(model string) datastore.ModelStatus
	RecordPick(key string)
}

// Options configure the handler.
type Options struct {
	Pool       Pool
	Scheduler  *scheduling.Scheduler
	Saturation config.Saturation
	BodyMode   BodyMode
	// DestinationHeader is both the header name and the key inside MetadataNamespace.
	DestinationHeader string
	MetadataNamespace string
	SubsetNamespace   string
	SubsetKey         string
	// PriorityHeader carries an integer priority; negative means sheddable.
	PriorityHeader string
	// WorkerIDHeader, when not empty, is set to the Dynamo instance id of the picked endpoint
	// (endpoints discovered in etcd only), so that a Dynamo frontend behind the gateway can
	// route to that exact worker.
	WorkerIDHeader string
	MaxBodyBytes   int
	Metrics        *telemetry.Metrics
	Logger         *slog.Logger
}

// Server implements extprocv3.ExternalProcessorServer.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	opts Options
}

// New validates opts and fills in protocol defaults.
func New(opts Options) (*Server, error) {
	if opts.Pool == nil || opts.Scheduler == nil {
		return nil, errors.New("handler needs a pool and a scheduler")
	}
	switch opts.BodyMode {
	case "":
		opts.BodyMode = BodyModeStreamed
	case BodyModeStreamed, BodyModeBuffered:
	default:
		return nil, fmt.Errorf("unknown body mode %q (want %q or %q)", opts.BodyMode, BodyModeStreamed, BodyModeBuffered)
	}
	setDefault := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDefault(&opts.DestinationHeader, DefaultDestinationHeader)
	setDefault(&opts.MetadataNamespace, DefaultMetadataNamespace)
	setDefault(&opts.SubsetNamespace, DefaultSubsetNamespace)
	setDefault(&opts.SubsetKey, DefaultSubsetKey)
	setDefault(&opts.PriorityHeader, DefaultPriorityHeader)
	opts.DestinationHeader = strings.ToLower(opts.DestinationHeader)
	opts.PriorityHeader = strings.ToLower(opts.PriorityHeader)
	opts.WorkerIDHeader = strings.ToLower(opts.WorkerIDHeader)
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{opts: opts}, nil
}

// stream is the state of one HTTP request (one ext_proc stream).
type stream struct {
	srv      extprocv3.ExternalProcessor_ProcessServer
	headers  map[string]string // nil until request_headers arrived
	subset   []string          // nil: no hint; non-nil (maybe empty): pick from these addresses only
	body     []byte
	decided  bool
	routed   bool // the request went to a model server and its response is awaited
	finished bool
}

// Process handles one ext_proc stream.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	st := &stream{srv: srv}
	defer func() {
		if st.routed && !st.finished {
			s.opts.Metrics.InflightAdd(-1)
		}
	}()
	for {
		req, err := srv.Recv()
		if err == io.EOF || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Unknown, "receiving from the proxy: %v", err)
		}
		done, err := s.handle(srv.Context(), st, req)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// handle processes one message; done means the stream is over (immediate response sent).
func (s *Server) handle(ctx context.Context, st *stream, req *extprocv3.ProcessingRequest) (bool, error) {
	if err := checkOrder(st, req); err != nil {
		return true, err
	}
	switch v := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		st.headers = headerMap(v.RequestHeaders.GetHeaders())
		st.subset = s.subsetHint(req.GetMetadataContext())
		if v.RequestHeaders.GetEndOfStream() {
			// No body (e.g. GET): decide now and answer the headers.
			return s.decideAndAnswer(ctx, st, false)
		}
		if s.opts.BodyMode == BodyModeBuffered {
			// Envoy waits for this answer before it sends the body.
			return false, st.send(headersResponse(nil))
		}
		return false, nil

	case *extprocv3.ProcessingRequest_RequestBody:
		if st.decided {
			return false, st.send(bodyPassThrough(s.opts.BodyMode, v.RequestBody))
		}
		switch chunk := v.RequestBody.GetBody(); {
		case st.body == nil && v.RequestBody.GetEndOfStream():
			st.body = chunk // the whole body in one message: no copy
		case st.body == nil:
			// One allocation for the whole body when the proxy forwarded its length, up to
			// maxPreallocBytes: a client may announce megabytes and send them slowly, or never.
			st.body = make([]byte, 0, max(len(chunk), min(contentLength(st.headers), maxPreallocBytes)))
			st.body = append(st.body, chunk...)
		default:
			st.body = append(st.body, chunk...)
		}
		if len(st.body) > s.opts.MaxBodyBytes {
			return true, st.send(immediate(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body exceeds %d bytes", s.opts.MaxBodyBytes)))
		}
		// BUFFERED(_PARTIAL) sends one body message and waits for its answer.
		if v.RequestBody.GetEndOfStream() || s.opts.BodyMode == BodyModeBuffered {
			return s.decideAndAnswer(ctx, st, true)
		}
		return false, nil

	case *extprocv3.ProcessingRequest_RequestTrailers:
		if !st.decided {
			// Trailers end a body whose last chunk did not carry end_of_stream.
			if done, err := s.decideAndAnswer(ctx, st, len(st.body) > 0); done || err != nil {
				return done, err
			}
		}
		return false, st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}})

	case *extprocv3.ProcessingRequest_ResponseHeaders:
		if v.ResponseHeaders.GetEndOfStream() {
			s.finish(st)
		}
		return false, st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{}}})

	case *extprocv3.ProcessingRequest_ResponseBody:
		if v.ResponseBody.GetEndOfStream() {
			s.finish(st)
		}
		return false, st.send(responseBodyPassThrough(s.opts.BodyMode, v.ResponseBody))

	case *extprocv3.ProcessingRequest_ResponseTrailers:
		s.finish(st)
		return false, st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}})
	}
	return false, status.Errorf(codes.InvalidArgument, "unexpected ext_proc message %T", req.Request)
}

// maxPreallocBytes bounds what a request's content-length reserves before its body arrives;
// chat requests are far smaller, larger bodies grow as they arrive.
const maxPreallocBytes = 256 << 10

// contentLength is the request's content-length header, 0 when absent or not a number.
func contentLength(headers map[string]string) int {
	n, err := strconv.Atoi(headers["content-length"])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// checkOrder rejects streams that no proxy configured for this protocol sends: every HTTP
// request starts with its request_headers (request_header_mode SEND), exactly once. A stream
// that breaks this ends with INVALID_ARGUMENT; no routing answer is sent.
func checkOrder(st *stream, req *extprocv3.ProcessingRequest) error {
	_, isHeaders := req.Request.(*extprocv3.ProcessingRequest_RequestHeaders)
	switch {
	case req.Request == nil:
		return status.Error(codes.InvalidArgument, "malformed ext_proc stream: a message without a request phase")
	case isHeaders && st.headers != nil:
		return status.Error(codes.InvalidArgument, "malformed ext_proc stream: request_headers sent twice")
	case !isHeaders && st.headers == nil:
		return status.Errorf(codes.InvalidArgument, "malformed ext_proc stream: %s before request_headers", phaseName(req))
	}
	return nil
}

// phaseName names a message's request phase as the ext_proc proto does.
func phaseName(req *extprocv3.ProcessingRequest) string {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return fmt.Sprintf("%T", req.Request)
}

func (s *Server) finish(st *stream) {
	if st.routed && !st.finished {
		st.finished = true
		s.opts.Metrics.InflightAdd(-1)
	}
}

// decideAndAnswer picks endpoints and sends the answer for the request phase reached:
// withBody is false when the headers ended the request.
func (s *Server) decideAndAnswer(ctx context.Context, st *stream, withBody bool) (bool, error) {
	st.decided = true
	start := time.Now()
	d := s.decide(ctx, st)
	s.opts.Metrics.ObserveRequest(d.code, time.Since(start))
	// Checked first: building the log arguments costs allocations on every request.
	debug := s.opts.Logger.Enabled(ctx, slog.LevelDebug)
	if d.code != http.StatusOK {
		if debug {
			s.opts.Logger.Debug("request rejected", "code", d.code, "reason", d.message, "request_id", st.headers["x-request-id"])
		}
		return true, st.send(immediate(d.code, d.message))
	}
	st.routed = true
	s.opts.Metrics.InflightAdd(1)
	if debug {
		s.opts.Logger.Debug("request routed", "destination", d.destination, "model", d.model, "request_id", st.headers["x-request-id"])
	}

	mutation := s.routingHeaders(d, st, withBody)
	metadata := s.routingMetadata(d.destination)
	switch {
	case !withBody:
		resp := headersResponse(mutation)
		resp.DynamicMetadata = metadata
		return false, st.send(resp)
	case s.opts.BodyMode == BodyModeStreamed:
		resp := headersResponse(mutation)
		resp.DynamicMetadata = metadata
		if err := st.send(resp); err != nil {
			return false, err
		}
		// In FULL_DUPLEX_STREAMED the proxy forwards only the body the processor sends back. It
		// goes back in chunks, as GIE does, to stay below the proxy's per-message limits.
		for off := 0; ; off += streamedChunkBytes {
			end := min(off+streamedChunkBytes, len(st.body))
			if err := st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
				RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
					BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
						StreamedResponse: &extprocv3.StreamedBodyResponse{Body: st.body[off:end], EndOfStream: end == len(st.body)},
					}},
				}},
			}}); err != nil || end == len(st.body) {
				return false, err
			}
		}
	default: // buffered: the headers were answered already; mutate them in the body answer.
		return false, st.send(&extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: mutation, ClearRouteCache: true},
			}},
			DynamicMetadata: metadata,
		})
	}
}

type decision struct {
	code        int
	message     string
	model       string
	destination string
	primary     *backend.Endpoint
}

// decide runs model checks, the subset hint, load shedding and the scheduler.
func (s *Server) decide(ctx context.Context, st *stream) decision {
	body := parseBody(st.body)
	if body.Model != "" {
		if ms := s.opts.Pool.Model(body.Model); ms.Known && !ms.Served {
			return decision{code: http.StatusNotFound, message: fmt.Sprintf(
				"model %q is not served by this pool; available models: %s", body.Model, strings.Join(ms.Models, ", "))}
		}
	}

	all := s.opts.Pool.Candidates()
	candidates := make([]*backend.Endpoint, 0, len(all))
	for _, e := range all {
		if e.Info.ServesModel(body.Model) {
			candidates = append(candidates, e)
		}
	}
	if st.subset != nil {
		allowed := make(map[string]bool, len(st.subset))
		for _, a := range st.subset {
			allowed[a] = true
		}
		kept := candidates[:0]
		for _, e := range candidates {
			if allowed[e.Address()] {
				kept = append(kept, e)
			}
		}
		candidates = kept
		if len(candidates) == 0 {
			return decision{code: http.StatusServiceUnavailable, message: fmt.Sprintf(
				"none of the %d endpoints in the subset hint is ready to serve the request", len(st.subset))}
		}
	}
	if len(candidates) == 0 {
		what := "the request"
		if body.Model != "" {
			what = fmt.Sprintf("model %q", body.Model)
		}
		return decision{code: http.StatusServiceUnavailable, message: "no ready endpoint for " + what}
	}

	if parsePriority(st.headers[s.opts.PriorityHeader]) < 0 && s.saturated(candidates) {
		return decision{code: http.StatusTooManyRequests,
			message: "all endpoints are saturated; sheddable request dropped"}
	}

	req := &scheduling.Request{ID: st.headers["x-request-id"], Model: body.Model, Prompt: body.Prompt, Headers: st.headers}
	picked, err := s.opts.Scheduler.Schedule(ctx, req, candidates)
	if err != nil {
		return decision{code: http.StatusServiceUnavailable, message: err.Error()}
	}
	s.opts.Pool.RecordPick(picked[0].Key())

	// Several Dynamo instances may share an address; list each address once.
	seen := make(map[string]bool, len(picked))
	addrs := make([]string, 0, len(picked))
	for _, e := range picked {
		if !seen[e.Address()] {
			seen[e.Address()] = true
			addrs = append(addrs, e.Address())
		}
	}
	return decision{code: http.StatusOK, model: body.Model, destination: strings.Join(addrs, ","), primary: picked[0]}
}

// saturated reports whether no candidate has spare capacity (GIE's saturation detector).
func (s *Server) saturated(candidates []*backend.Endpoint) bool {
	sat := s.opts.Saturation
	now := time.Now()
	for _, e := range candidates {
		fresh := sat.MetricsStalenessThreshold <= 0 || now.Sub(e.Metrics.UpdatedAt) <= sat.MetricsStalenessThreshold
		if fresh && e.Metrics.WaitingQueueSize <= sat.QueueDepthThreshold && e.Metrics.KVCacheUsage <= sat.KVCacheUtilThreshold {
			return false
		}
	}
	return true
}

func (s *Server) routingHeaders(d decision, st *stream, withBody bool) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{overwrite(s.opts.DestinationHeader, d.destination)}}
	if s.opts.WorkerIDHeader != "" && d.primary.Info.InstanceID != "" {
		m.SetHeaders = append(m.SetHeaders, overwrite(s.opts.WorkerIDHeader, d.primary.Info.InstanceID))
	}
	if withBody && s.opts.BodyMode == BodyModeStreamed {
		// The body is sent back whole, so its length is known again.
		m.SetHeaders = append(m.SetHeaders, overwrite("content-length", strconv.Itoa(len(st.body))))
	}
	return m
}

func (s *Server) routingMetadata(destination string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		s.opts.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			s.opts.DestinationHeader: structpb.NewStringValue(destination),
		}}),
	}}
}

// subsetHint reads the endpoint subset from the request's filter metadata. It returns nil when
// no hint was sent. A list value is the protocol's form; a comma-separated string is accepted
// too.
func (s *Server) subsetHint(md *corev3.Metadata) []string {
	ns, ok := md.GetFilterMetadata()[s.opts.SubsetNamespace]
	if !ok {
		return nil
	}
	v, ok := ns.GetFields()[s.opts.SubsetKey]
	if !ok {
		return nil
	}
	out := []string{}
	switch k := v.GetKind().(type) {
	case *structpb.Value_ListValue:
		for _, item := range k.ListValue.GetValues() {
			if a := strings.TrimSpace(item.GetStringValue()); a != "" {
				out = append(out, a)
			}
		}
	case *structpb.Value_StringValue:
		for _, a := range strings.Split(k.StringValue, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

func (st *stream) send(resp *extprocv3.ProcessingResponse) error {
	if err := st.srv.Send(resp); err != nil {
		return status.Errorf(codes.Unknown, "sending to the proxy: %v", err)
	}
	return nil
}

func headerMap(h *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(h.GetHeaders()))
	for _, hv := range h.GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		out[strings.ToLower(hv.GetKey())] = v
	}
	return out
}

// overwrite sets a header, replacing any value the client sent: a client must not be able to
// pick its own destination by sending the routing header.
func overwrite(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func headersResponse(mutation *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if mutation != nil {
		common.HeaderMutation = mutation
		// The destination changed: make Envoy re-evaluate the route.
		common.ClearRouteCache = true
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: common}}}
}

// bodyPassThrough answers request body chunks that arrive after the decision (e.g. after a
// trailers-terminated body).
func bodyPassThrough(mode BodyMode, body *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if mode == BodyModeStreamed {
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
			StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body.GetBody(), EndOfStream: body.GetEndOfStream()}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: common}}}
}

// responseBodyPassThrough returns the model server's response body unchanged.
func responseBodyPassThrough(mode BodyMode, body *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if mode == BodyModeStreamed {
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
			StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body.GetBody(), EndOfStream: body.GetEndOfStream()}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: common}}}
}

// immediate builds an ImmediateResponse with an OpenAI-style JSON error body.
func immediate(code int, message string) *extprocv3.ProcessingResponse {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": message,
		"type":    http.StatusText(code),
		"code":    code,
	}})
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				overwrite("content-type", "application/json"),
			}},
			Body:    body,
			Details: message,
		},
	}}
}
