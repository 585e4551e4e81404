// Command epp-bench measures the endpoint picker's pick rate and latency. It starts fake model
// servers (Prometheus endpoints only) and runs the real EPP binary (--epp) as its own process on
// loopback, as it is deployed, then offers picks over gRPC exactly as Envoy sends them (request
// headers, then the body in chunks, in FULL_DUPLEX_STREAMED mode) at rising open-loop rates,
// and prints picks/s and latency percentiles per rate. It ends by itself and stops what it
// started.
//
// The load generator stands in for Envoy, a C++ proxy without a garbage collector, so it runs
// with Go's collector off while it measures (with a memory limit as a safety net): otherwise its
// own GC pauses, not the EPP, would set the tail of every row.
package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
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
	"golang.org/x/sys/unix"
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
	eppBinary   string
	serveFloor  bool
	serverCPUs  string
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
	flag.StringVar(&bo.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator here (the EPP is a process of its own)")
	flag.StringVar(&bo.memProfile, "memprofile", "", "write an allocation profile of the load generator here")
	flag.BoolVar(&bo.baseline, "baseline", true, "also measure a do-nothing ext_proc server under the same load: the floor set by gRPC, the load generator and the machine")
	flag.StringVar(&bo.eppBinary, "epp", "", "the endpoint picker binary to measure (benchmarks/epp/run.sh passes the one Pants builds)")
	flag.StringVar(&bo.serverCPUs, "server-cpus", "auto",
		"CPUs the EPP and the floor run on, the load generator gets the others, as the proxy and the EPP do not share cores in a cluster: "+
			"auto (the upper half of this process's CPUs, when it has two or more), a list like 1 or 2-3, or none (all share all)")
	flag.BoolVar(&bo.serveFloor, "serve-floor", false, "internal: serve the do-nothing ext_proc server in this process (the benchmark starts itself so)")
	flag.Parse()
	if bo.serveFloor {
		if err := serveFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "epp-bench --serve-floor:", err)
			os.Exit(1)
		}
		return
	}
	if bo.eppBinary == "" {
		fmt.Fprintln(os.Stderr, "epp-bench: --epp PATH is required: the endpoint picker binary to measure (benchmarks/epp/run.sh builds and passes it)")
		os.Exit(2)
	}
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
	pin, err := newPinning(bo.serverCPUs)
	if err != nil {
		return err
	}
	servers := make([]*httptest.Server, bo.endpoints)
	var static []string
	for i := range servers {
		servers[i] = httptest.NewServer(fakeMetrics(int64(i)))
		defer servers[i].Close()
		// The fake server's own address doubles as the routing target: nothing connects to it
		// except the scraper, and everything stays on loopback.
		static = append(static, strings.TrimPrefix(servers[i].URL, "http://"))
	}

	args := []string{
		"--listen-host=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0",
		"--static-endpoints=" + strings.Join(static, ","), "--static-models=bench-model",
		"--model-server-type=vllm", "--refresh-metrics-interval=" + bo.refresh.String(), "--log-level=info",
	}
	if bo.configFile != "" {
		args = append(args, "--config-file="+bo.configFile)
	}
	epp, err := startServer("epp", pin, bo.eppBinary, args...)
	if err != nil {
		return err
	}
	defer epp.stop()
	grpcAddr, metricsAddr := epp.addrs[app.ExtProcAddrKey], epp.addrs[app.MetricsAddrKey]
	if err := waitReady(metricsAddr, bo.endpoints, 10*time.Second); err != nil {
		return err
	}

	clients, err := dial(grpcAddr, bo.conns)
	if err != nil {
		return err
	}
	bodies := makeBodies(bo.prefixes, bo.promptBytes)

	fmt.Printf("epp-bench: %s (pid %d, metrics and /debug/pprof at http://%s), %d fake endpoints, %d gRPC conns, %d CPUs, %s per rate (+%s warm-up), ~%d-byte prompts, %d shared prefixes\n",
		bo.eppBinary, epp.cmd.Process.Pid, metricsAddr, bo.endpoints, bo.conns, runtime.NumCPU(), bo.duration, bo.warmup, bo.promptBytes, bo.prefixes)
	fmt.Println(pin.describe(epp.cmd.Process.Pid))
	var floor *server
	var floorClients []extprocv3.ExternalProcessorClient
	if bo.baseline {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if floor, err = startServer("floor", pin, self, "--serve-floor"); err != nil {
			return err
		}
		defer floor.stop()
		if floorClients, err = dial(floor.addrs[app.ExtProcAddrKey], bo.conns); err != nil {
			return err
		}
		fmt.Println("server \"epp\" is the endpoint picker; \"floor\" is a do-nothing ext_proc server (its own process too) under the same\n" +
			"load right after it: the latency the gRPC transport, the load generator and this machine add anyway. cpu/pick is the\n" +
			"server process's CPU time per pick; srv-p99 the EPP's own p99 from request complete to decision.")
	}
	// The load generator stands in for Envoy, which has no garbage collector: no collection
	// while measuring (see the package comment); runtime.GC() collects between rates.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(loadGeneratorMemoryLimit)
	fmt.Printf("%-6s %9s %8s %7s %6s %8s %8s %8s %8s %9s %9s %11s\n",
		"server", "offered/s", "picks/s", "ok", "errors", "p50(ms)", "p90(ms)", "p99(ms)", "max(ms)", "lag99(ms)", "cpu/pick", "srv-p99(ms)")
	var goal, goalFloor *result
	for _, rate := range bo.rates {
		if bo.warmup > 0 {
			load(clients, bodies, rate, bo.warmup, bo.maxInFlight)
		}
		runtime.GC()
		cpuBefore := epp.cpuTime()
		histBefore, err := pickHistogram(metricsAddr)
		if err != nil {
			return err
		}
		r := load(clients, bodies, rate, bo.duration, bo.maxInFlight)
		cpuPerPick := time.Duration(0)
		if r.ok > 0 {
			cpuPerPick = (epp.cpuTime() - cpuBefore) / time.Duration(r.ok)
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
			runtime.GC()
			cpuBefore := floor.cpuTime()
			f := load(floorClients, bodies, rate, bo.duration, bo.maxInFlight)
			cpuPerPick := time.Duration(0)
			if f.ok > 0 {
				cpuPerPick = (floor.cpuTime() - cpuBefore) / time.Duration(f.ok)
			}
			printRow("floor", rate, f, fmt.Sprintf("%dus", cpuPerPick.Microseconds()), "")
			if rate == bo.goalRate {
				ff := f
				goalFloor = &ff
			}
		}
	}
	if goal != nil {
		verdict := "MET"
		if goal.pct(99) > bo.goalP99 || goal.errors > 0 {
			verdict = "MISSED"
		}
		fmt.Printf("goal: p99 <= %s at %d picks/s: p99 = %.3f ms, %d errors -> %s\n", bo.goalP99, bo.goalRate, ms(goal.pct(99)), goal.errors, verdict)
		if verdict == "MISSED" && goalFloor != nil && goalFloor.pct(99) > bo.goalP99 {
			// The control failed too: the machine, not the EPP, set the tail of this run.
			fmt.Printf("      the do-nothing floor missed it as well (p99 %.3f ms): this machine was too busy to judge; run again\n", ms(goalFloor.pct(99)))
		}
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

// pinning places the servers and the load generator on disjoint CPUs (or does nothing).
type pinning struct {
	server, loadGenerator unix.CPUSet
	enabled               bool
}

// newPinning splits this process's CPUs per --server-cpus and moves the load generator (every
// thread of this process: threads created later inherit it) onto its share.
func newPinning(spec string) (*pinning, error) {
	p := &pinning{}
	if spec == "none" || spec == "" {
		return p, nil
	}
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, fmt.Errorf("--server-cpus: reading this process's CPUs: %w", err)
	}
	var cpus []int
	for c := 0; c < len(all)*64; c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if spec == "auto" {
		if len(cpus) < 2 {
			return p, nil
		}
		for i, c := range cpus {
			if i >= len(cpus)/2 {
				p.server.Set(c)
			} else {
				p.loadGenerator.Set(c)
			}
		}
	} else {
		list, err := parseCPUList(spec)
		if err != nil {
			return nil, fmt.Errorf("--server-cpus %q: %w (want auto, none or a list like 1 or 2-3)", spec, err)
		}
		for _, c := range list {
			if !all.IsSet(c) {
				return nil, fmt.Errorf("--server-cpus %q: CPU %d is not one of this process's CPUs (%s)", spec, c, formatCPUs(all))
			}
			p.server.Set(c)
		}
		for _, c := range cpus {
			if !p.server.IsSet(c) {
				p.loadGenerator.Set(c)
			}
		}
		if p.loadGenerator.Count() == 0 {
			return nil, fmt.Errorf("--server-cpus %q leaves no CPU for the load generator (this process has %s)", spec, formatCPUs(all))
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &p.loadGenerator); err != nil {
			return nil, fmt.Errorf("--server-cpus: pinning the load generator: %w", err)
		}
	}
	p.enabled = true
	return p, nil
}

// start starts cmd on the server CPUs: the child inherits the affinity of the thread that
// forks it, so that thread holds the server CPUs just while it does. (Go sizes GOMAXPROCS by
// the CPUs a process may use, so an EPP on one CPU runs with GOMAXPROCS=1.)
func (p *pinning) start(cmd *exec.Cmd) error {
	if !p.enabled {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.SchedSetaffinity(0, &p.server); err != nil {
		return err
	}
	err := cmd.Start()
	if err2 := unix.SchedSetaffinity(0, &p.loadGenerator); err == nil {
		err = err2
	}
	return err
}

// describe says where the processes run, as the kernel reports it.
func (p *pinning) describe(serverPid int) string {
	if !p.enabled {
		return "CPUs: not pinned, the servers and the load generator share all of them (--server-cpus)"
	}
	var got unix.CPUSet
	if err := unix.SchedGetaffinity(serverPid, &got); err != nil {
		return fmt.Sprintf("CPUs: reading the EPP's affinity: %v", err)
	}
	return fmt.Sprintf("CPUs: EPP and floor on %s, load generator on %s (--server-cpus; in a cluster the proxy and the EPP do not share cores)",
		formatCPUs(got), formatCPUs(p.loadGenerator))
}

func formatCPUs(set unix.CPUSet) string {
	var out []string
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			out = append(out, strconv.Itoa(c))
		}
	}
	return strings.Join(out, ",")
}

// parseCPUList reads a list like "1", "2-3" or "0,2-3".
func parseCPUList(spec string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad CPU %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU range %q", part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// loadGeneratorMemoryLimit bounds the load generator's heap while its collector is off.
const loadGeneratorMemoryLimit = 4 << 30

// server is a process the benchmark started and stops: the EPP or the floor.
type server struct {
	name  string
	cmd   *exec.Cmd
	addrs map[string]string // from its "serving" log line: ext_proc, health, metrics
}

// startServer runs bin and waits for the log line in which it names its bound addresses
// (app.ServingMessage or floorServingMessage); its later warnings and errors go to stderr.
func startServer(name string, pin *pinning, bin string, args ...string) (*server, error) {
	cmd := exec.Command(bin, args...)
	// The servers must not outlive the benchmark, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := pin.start(cmd); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd}
	found := make(chan map[string]string, 1)
	var early strings.Builder // what it logged before, for the error when it fails to start
	go func() {
		pending := found // nil once the addresses are reported
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if pending == nil {
				// Warnings and errors only: endpoints coming and going are expected here.
				if !strings.Contains(line, " level=INFO ") && !strings.Contains(line, " level=DEBUG ") {
					fmt.Fprintf(os.Stderr, "%s: %s\n", name, line)
				}
			} else if addrs := servingAddrs(line); addrs != nil {
				pending <- addrs
				pending = nil
			} else {
				early.WriteString(line + "\n")
			}
		}
		if pending != nil {
			close(pending)
		}
	}()
	select {
	case addrs, ok := <-found:
		if ok {
			s.addrs = addrs
			return s, nil
		}
		cmd.Wait()
		return nil, fmt.Errorf("%s (%s) exited before serving: %s\n%s", name, bin, cmd.ProcessState, early.String())
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s (%s) did not log its addresses within 10s", name, bin)
	}
}

// floorServingMessage is the floor's startup log line, like the EPP's app.ServingMessage.
const floorServingMessage = "floor serving"

// servingAddrs parses the key=value fields of the slog text line in which the EPP or the floor
// reports its bound addresses; nil for any other line.
func servingAddrs(line string) map[string]string {
	if !strings.Contains(line, `msg="`+app.ServingMessage+`"`) && !strings.Contains(line, `msg="`+floorServingMessage+`"`) {
		return nil
	}
	addrs := map[string]string{}
	for _, field := range strings.Fields(line) {
		if k, v, ok := strings.Cut(field, "="); ok {
			addrs[k] = v
		}
	}
	if addrs[app.ExtProcAddrKey] == "" {
		return nil
	}
	return addrs
}

// stop ends the server with SIGTERM (SIGKILL after 5 s) and reaps it.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the server process's user+system CPU time, from /proc/PID/stat (clock ticks of
// 10 ms, Linux's fixed USER_HZ; a few thousand picks per reading make that precise enough).
func (s *server) cpuTime() time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
	_, rest, ok := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// waitReady polls the EPP's /debug/endpoints until n endpoints are ready to be routed to.
func waitReady(metricsAddr string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ready := 0
	for time.Now().Before(deadline) {
		var eps []struct {
			Ready bool `json:"ready"`
		}
		if resp, err := http.Get("http://" + metricsAddr + "/debug/endpoints"); err == nil {
			json.NewDecoder(resp.Body).Decode(&eps)
			resp.Body.Close()
		}
		ready = 0
		for _, e := range eps {
			if e.Ready {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("only %d of %d fake endpoints became ready within %s", ready, n, timeout)
}

func dial(addr string, conns int) ([]extprocv3.ExternalProcessorClient, error) {
	clients := make([]extprocv3.ExternalProcessorClient, conns)
	for i := range clients {
		// Closed when the benchmark exits.
		conn, err := grpc.NewClient(addr, extprocclient.DialOptions()...)
		if err != nil {
			return nil, err
		}
		clients[i] = extprocv3.NewExternalProcessorClient(conn)
	}
	return clients, nil
}

// serveFloor serves an ext_proc server that answers every request with a fixed destination
// without parsing or scheduling anything, with the EPP's gRPC and runtime settings (the floor
// is what this transport costs), until SIGTERM.
func serveFloor() error {
	// The EPP's garbage-collector settings too: the floor differs from it only in what it does.
	app.ApplyRuntimeDefaults(os.Getenv, "/sys/fs/cgroup")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(app.ExtProcServerOptions(handler.DefaultMaxBodyBytes)...)
	extprocv3.RegisterExternalProcessorServer(srv, echoProcessor{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info(floorServingMessage, app.ExtProcAddrKey, lis.Addr().String())
	return srv.Serve(lis)
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
	res, err := extprocclient.Exchange(ctx, client, extprocclient.NewRequest("POST", "/v1/chat/completions", strconv.Itoa(id), body, 2))
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
