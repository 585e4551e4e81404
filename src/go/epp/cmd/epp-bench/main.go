// Command epp-bench measures the endpoint picker's pick rate and latency. It starts fake model
// servers (Prometheus endpoints only) and the real EPP in-process on loopback, then offers
// picks over gRPC exactly as Envoy sends them (request headers, then the body in chunks, in
// FULL_DUPLEX_STREAMED mode) at rising open-loop rates, and prints picks/s and latency
// percentiles per rate. It ends by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"dynamo-images.local/epp/internal/app"
	"dynamo-images.local/epp/internal/extprocclient"
	"dynamo-images.local/epp/internal/handler"
)

type benchOptions struct {
	endpoints   int
	rates       []int
	duration    time.Duration
	warmup      time.Duration
	promptBytes int
	prefixes    int
	conns       int
	maxInFlight int
	refresh     time.Duration
	configFile  string
	goalRate    int
	goalP99     time.Duration
	failOnGoal  bool
	cpuProfile  string
	memProfile  string
	baseline    bool
}

func main() {
	var bo benchOptions
	var rates string
	flag.IntVar(&bo.endpoints, "endpoints", 8, "fake model servers")
	flag.StringVar(&rates, "rates", "250,500,1000,2000", "offered picks/s, comma-separated, run in order")
	flag.DurationVar(&bo.duration, "duration", 5*time.Second, "measurement time per rate")
	flag.DurationVar(&bo.warmup, "warmup", time.Second, "unmeasured load before each rate")
	flag.IntVar(&bo.promptBytes, "prompt-bytes", 2048, "approximate request prompt size")
	flag.IntVar(&bo.prefixes, "shared-prefixes", 16, "distinct system prompts (prefix-cache affinity)")
	flag.IntVar(&bo.conns, "conns", 2, "gRPC connections the load is spread over (Envoy keeps a few)")
	flag.IntVar(&bo.maxInFlight, "max-in-flight", 2000, "cap on outstanding picks; picks beyond it count as dropped")
	flag.DurationVar(&bo.refresh, "refresh-metrics-interval", 50*time.Millisecond, "EPP scrape interval")
	flag.StringVar(&bo.configFile, "config-file", "", "EndpointPickerConfig for the EPP (default: built-in)")
	flag.IntVar(&bo.goalRate, "goal-rate", 1000, "rate at which the p99 goal is checked")
	flag.DurationVar(&bo.goalP99, "goal-p99", time.Millisecond, "p99 pick latency goal at --goal-rate")
	flag.BoolVar(&bo.failOnGoal, "fail-on-goal", false, "exit 1 when the goal is missed")
	flag.StringVar(&bo.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (EPP and load generator) here")
	flag.StringVar(&bo.memProfile, "memprofile", "", "write an allocation profile of the whole run here")
	flag.BoolVar(&bo.baseline, "baseline", true, "also measure a do-nothing ext_proc server under the same load: the floor set by gRPC, the load generator and the machine")
	flag.Parse()
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "epp-bench: bad rate %q\n", r)
			os.Exit(2)
		}
		bo.rates = append(bo.rates, n)
	}
	if bo.cpuProfile != "" {
		f, err := os.Create(bo.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "epp-bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if bo.memProfile != "" {
		defer func() {
			f, err := os.Create(bo.memProfile)
			if err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if err := run(bo); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "epp-bench:", err)
		os.Exit(1)
	}
}

func run(bo benchOptions) error {
	servers := make([]*httptest.Server, bo.endpoints)
	var static []string
	for i := range servers {
		servers[i] = httptest.NewServer(fakeMetrics(int64(i)))
		defer servers[i].Close()
		// The fake server's own address doubles as the routing target: nothing connects to it
		// except the scraper, and everything stays on loopback.
		static = append(static, strings.TrimPrefix(servers[i].URL, "http://"))
	}

	opts := app.DefaultOptions()
	opts.ListenHost = "127.0.0.1"
	opts.GRPCPort, opts.GRPCHealthPort, opts.MetricsPort = 0, 0, 0
	opts.StaticEndpoints = strings.Join(static, ",")
	opts.StaticModels = "bench-model"
	opts.ModelServerType = "vllm"
	opts.RefreshMetricsInterval = bo.refresh
	opts.ConfigFile = bo.configFile
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	epp, err := app.New(opts, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- epp.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(10 * time.Second)
	for len(epp.Store().Candidates()) < bo.endpoints {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d fake endpoints became ready", len(epp.Store().Candidates()), bo.endpoints)
		}
		time.Sleep(10 * time.Millisecond)
	}

	grpcAddr, _, _ := epp.Addrs()
	clients := make([]extprocv3.ExternalProcessorClient, bo.conns)
	for i := range clients {
		conn, err := grpc.NewClient(grpcAddr, extprocclient.DialOptions()...)
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = extprocv3.NewExternalProcessorClient(conn)
	}
	bodies := makeBodies(bo.prefixes, bo.promptBytes)

	fmt.Printf("epp-bench: %d fake endpoints, %d gRPC conns, GOMAXPROCS=%d, %s per rate (+%s warm-up), ~%d-byte prompts, %d shared prefixes\n",
		bo.endpoints, bo.conns, runtime.GOMAXPROCS(0), bo.duration, bo.warmup, bo.promptBytes, bo.prefixes)
	_, _, metricsAddr := epp.Addrs()
	var floorClients []extprocv3.ExternalProcessorClient
	if bo.baseline {
		var stop func()
		floorClients, stop, err = startBaseline(bo.conns)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Println("server \"epp\" is the endpoint picker; \"floor\" is a do-nothing ext_proc server under the same load right after it:\n" +
			"the latency the gRPC transport, the load generator and this machine add anyway.")
	}
	fmt.Printf("%-6s %9s %8s %7s %6s %8s %8s %8s %8s %9s %9s %11s\n",
		"server", "offered/s", "picks/s", "ok", "errors", "p50(ms)", "p90(ms)", "p99(ms)", "max(ms)", "lag99(ms)", "cpu/pick", "srv-p99(ms)")
	var goal *result
	for _, rate := range bo.rates {
		if bo.warmup > 0 {
			load(clients, bodies, rate, bo.warmup, bo.maxInFlight)
		}
		cpuBefore := cpuTime()
		histBefore, err := pickHistogram(metricsAddr)
		if err != nil {
			return err
		}
		r := load(clients, bodies, rate, bo.duration, bo.maxInFlight)
		cpuPerPick := time.Duration(0)
		if r.ok > 0 {
			cpuPerPick = (cpuTime() - cpuBefore) / time.Duration(r.ok)
		}
		histAfter, err := pickHistogram(metricsAddr)
		if err != nil {
			return err
		}
		printRow("epp", rate, r, fmt.Sprintf("%dus", cpuPerPick.Microseconds()), histAfter.sub(histBefore).quantileBound(0.99))
		if rate == bo.goalRate {
			rr := r
			goal = &rr
		}
		if floorClients != nil {
			if bo.warmup > 0 {
				load(floorClients, bodies, rate, bo.warmup, bo.maxInFlight)
			}
			cpuBefore := cpuTime()
			f := load(floorClients, bodies, rate, bo.duration, bo.maxInFlight)
			cpuPerPick := time.Duration(0)
			if f.ok > 0 {
				cpuPerPick = (cpuTime() - cpuBefore) / time.Duration(f.ok)
			}
			printRow("floor", rate, f, fmt.Sprintf("%dus", cpuPerPick.Microseconds()), "")
		}
	}
	if goal != nil {
		verdict := "MET"
		if goal.pct(99) > bo.goalP99 || goal.errors > 0 {
			verdict = "MISSED"
		}
		fmt.Printf("goal: p99 <= %s at %d picks/s: p99 = %.3f ms, %d errors -> %s\n", bo.goalP99, bo.goalRate, ms(goal.pct(99)), goal.errors, verdict)
		if verdict == "MISSED" && bo.failOnGoal {
			return errors.New("latency goal missed")
		}
	}
	return nil
}

// histogram is the EPP's epp_pick_duration_seconds histogram: cumulative counts by upper bound.
type histogram struct {
	bounds []float64
	counts []float64
}

// pickHistogram reads the EPP's own measurement of each pick (complete request to decision,
// inside the server), which client-side contention does not inflate.
func pickHistogram(metricsAddr string) (histogram, error) {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return histogram{}, err
	}
	var h histogram
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, "epp_pick_duration_seconds_bucket{le=\"") {
			continue
		}
		rest := strings.TrimPrefix(line, "epp_pick_duration_seconds_bucket{le=\"")
		le, count, ok := strings.Cut(rest, "\"} ")
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err1 != nil || err2 != nil {
			return histogram{}, fmt.Errorf("bad histogram line %q", line)
		}
		h.bounds = append(h.bounds, bound)
		h.counts = append(h.counts, n)
	}
	if len(h.bounds) == 0 {
		return histogram{}, fmt.Errorf("no epp_pick_duration_seconds histogram at %s", metricsAddr)
	}
	return h, nil
}

func (h histogram) sub(before histogram) histogram {
	out := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(before.counts) {
			out.counts[i] -= before.counts[i]
		}
	}
	return out
}

// quantileBound names the histogram bucket holding quantile q, as "<=bound" in ms.
func (h histogram) quantileBound(q float64) string {
	total := h.counts[len(h.counts)-1]
	if total == 0 {
		return "-"
	}
	for i, c := range h.counts {
		if c >= q*total {
			if math.IsInf(h.bounds[i], 1) {
				return fmt.Sprintf(">%g", h.bounds[i-1]*1000)
			}
			return fmt.Sprintf("<=%g", h.bounds[i]*1000)
		}
	}
	return "-"
}

// cpuTime is the user+system CPU time of this process (EPP, fake servers and load generator).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startBaseline serves an ext_proc server that answers every request with a fixed destination
// without parsing or scheduling anything, and returns clients for it.
func startBaseline(conns int) ([]extprocv3.ExternalProcessorClient, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	// The EPP's own gRPC settings: the floor is what this transport costs.
	srv := grpc.NewServer(app.ExtProcServerOptions(handler.DefaultMaxBodyBytes)...)
	extprocv3.RegisterExternalProcessorServer(srv, echoProcessor{})
	go srv.Serve(lis)
	var closers []func() error
	clients := make([]extprocv3.ExternalProcessorClient, conns)
	for i := range clients {
		conn, err := grpc.NewClient(lis.Addr().String(), extprocclient.DialOptions()...)
		if err != nil {
			srv.Stop()
			return nil, nil, err
		}
		closers = append(closers, conn.Close)
		clients[i] = extprocv3.NewExternalProcessorClient(conn)
	}
	return clients, func() {
		for _, c := range closers {
			c()
		}
		srv.Stop()
	}, nil
}

func printRow(server string, rate int, r result, cpu, srvP99 string) {
	fmt.Printf("%-6s %9d %8.0f %7d %6d %8.3f %8.3f %8.3f %8.3f %9.3f %9s %11s\n",
		server, rate, r.achieved, r.ok, r.errors, ms(r.pct(50)), ms(r.pct(90)), ms(r.pct(99)), ms(r.pct(100)), ms(r.lag99), cpu, srvP99)
	if r.firstErr != nil {
		fmt.Printf("%-6s first error: %v\n", "", r.firstErr)
	}
}

// echoProcessor answers like the EPP in streamed mode, with a fixed destination.
type echoProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (echoProcessor) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var body []byte
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		b := req.GetRequestBody()
		if b == nil {
			continue
		}
		body = append(body, b.GetBody()...)
		if !b.GetEndOfStream() {
			continue
		}
		srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: extprocclient.DestinationHeader, RawValue: []byte("127.0.0.1:1")}}}}}}}})
		srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
					StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: true}}}}}}})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fakeMetrics serves a vLLM-like exposition whose load figures change on every scrape, padded
// with the histogram series a real server exports so that parsing cost is realistic.
func fakeMetrics(seed int64) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewSource(seed))
	var padding strings.Builder
	for _, h := range []string{"time_to_first_token_seconds", "e2e_request_latency_seconds", "request_prompt_tokens", "request_generation_tokens"} {
		fmt.Fprintf(&padding, "# HELP vllm:%s histogram\n# TYPE vllm:%s histogram\n", h, h)
		for _, le := range []string{"0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "10", "50", "100", "+Inf"} {
			fmt.Fprintf(&padding, "vllm:%s_bucket{engine=\"0\",le=\"%s\",model_name=\"bench-model\"} %d\n", h, le, rng.Intn(10000))
		}
	}
	pad := padding.String()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		waiting, running, kv := rng.Intn(8), 4+rng.Intn(28), rng.Float64()*0.7
		mu.Unlock()
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\",model_name=\"bench-model\"} %d\n"+
			"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"bench-model\"} %d\n"+
			"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"bench-model\"} %f\n%s",
			waiting, running, kv, pad)
	})
}

// makeBodies builds chat requests: one of `prefixes` long system prompts plus a unique user turn.
func makeBodies(prefixes, promptBytes int) [][]byte {
	rng := rand.New(rand.NewSource(1))
	words := []string{"inference", "gateway", "cache", "token", "prefix", "decode", "prefill", "worker", "router", "latency"}
	system := make([]string, prefixes)
	for i := range system {
		var b strings.Builder
		fmt.Fprintf(&b, "System prompt %d.", i)
		for b.Len() < promptBytes*3/4 {
			b.WriteString(" " + words[rng.Intn(len(words))])
		}
		system[i] = b.String()
	}
	bodies := make([][]byte, 4096)
	for i := range bodies {
		var user strings.Builder
		fmt.Fprintf(&user, "Question %d:", i)
		for user.Len() < promptBytes/4 {
			user.WriteString(" " + words[rng.Intn(len(words))])
		}
		bodies[i] = []byte(fmt.Sprintf(`{"model":"bench-model","stream":true,"max_tokens":128,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`,
			system[rng.Intn(len(system))], user.String()))
	}
	return bodies
}

type result struct {
	latencies []time.Duration
	achieved  float64
	ok        int
	errors    int
	firstErr  error
	lag99     time.Duration
}

func (r result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*p/100+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(r.latencies) {
		i = len(r.latencies) - 1
	}
	return r.latencies[i]
}

// load offers picks at rate for d (open loop: a pick starts at its scheduled time whether or
// not earlier ones finished) and measures each from stream open to the routing answer.
func load(clients []extprocv3.ExternalProcessorClient, bodies [][]byte, rate int, d time.Duration, maxInFlight int) result {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	latencies := make([]time.Duration, total)
	lags := make([]time.Duration, total)
	ok := make([]bool, total)
	var errCount atomic.Int64
	var firstErr atomic.Pointer[error]
	var inFlight atomic.Int64
	var wg sync.WaitGroup

	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		lags[i] = time.Since(due)
		if inFlight.Load() >= int64(maxInFlight) {
			errCount.Add(1)
			e := fmt.Errorf("more than %d picks outstanding", maxInFlight)
			firstErr.CompareAndSwap(nil, &e)
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer inFlight.Add(-1)
			lat, err := pickOnce(clients[i%len(clients)], bodies[i%len(bodies)], i)
			if err != nil {
				errCount.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			latencies[i], ok[i] = lat, true
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)

	r := result{errors: int(errCount.Load())}
	for i := range latencies {
		if ok[i] {
			r.latencies = append(r.latencies, latencies[i])
		}
	}
	r.ok = len(r.latencies)
	r.achieved = float64(r.ok) / elapsed.Seconds()
	sort.Slice(r.latencies, func(a, b int) bool { return r.latencies[a] < r.latencies[b] })
	sort.Slice(lags, func(a, b int) bool { return lags[a] < lags[b] })
	if len(lags) > 0 {
		r.lag99 = lags[min(len(lags)-1, len(lags)*99/100)]
	}
	if p := firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	return r
}

// pickOnce runs one ext_proc exchange as Envoy does for a POST with a JSON body (headers,
// the body in two chunks) and returns the time from stream open to the routing answer.
func pickOnce(client extprocv3.ExternalProcessorClient, body []byte, id int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := extprocclient.Exchange(ctx, client, extprocclient.Request{
		Headers: []extprocclient.Header{
			{Key: ":method", Value: "POST"},
			{Key: ":path", Value: "/v1/chat/completions"},
			{Key: "content-type", Value: "application/json"},
			{Key: "x-request-id", Value: strconv.Itoa(id)},
		},
		Body:   body,
		Chunks: 2,
	})
	if err != nil {
		return 0, err
	}
	if ir := res.Immediate; ir != nil {
		return 0, fmt.Errorf("immediate response %d: %s", ir.GetStatus().GetCode(), ir.GetBody())
	}
	if res.Destination() == "" {
		return 0, fmt.Errorf("answer without a destination: %v", res.Routing)
	}
	return res.Latency, nil
}
