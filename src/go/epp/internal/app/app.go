// Package app wires the endpoint picker together: flags, config, discovery, metric scraping,
// the ext_proc gRPC server, the gRPC health server and the Prometheus endpoint. cmd/epp and the
// benchmark both run it.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/config"
	"dynamo-images.local/epp/internal/datastore"
	"dynamo-images.local/epp/internal/discovery"
	"dynamo-images.local/epp/internal/handler"
	"dynamo-images.local/epp/internal/scraper"
	"dynamo-images.local/epp/internal/telemetry"
)

// Options are the command-line settings.
type Options struct {
	ListenHost     string
	GRPCPort       int
	GRPCHealthPort int
	MetricsPort    int

	ConfigFile string
	ConfigText string

	StaticEndpoints string
	StaticModels    string

	EtcdEndpoints          string
	DynamoNamespace        string
	DynamoComponent        string
	DynamoEndpoint         string
	EtcdPollInterval       time.Duration
	EtcdTargetTemplate     string
	EtcdMetricsURLTemplate string

	RefreshMetricsInterval    time.Duration
	MetricsStalenessThreshold time.Duration
	ModelServerType           string
	QueueMetric               string
	RunningMetric             string
	KVCacheMetric             string

	BodyMode          string
	DestinationHeader string
	MetadataNamespace string
	PriorityHeader    string
	WorkerIDHeader    string
	MaxBodyBytes      int

	LogLevel    string
	EnablePprof bool
}

// DefaultOptions returns the flag defaults.
func DefaultOptions() Options {
	return Options{
		GRPCPort:                  9002,
		GRPCHealthPort:            9003,
		MetricsPort:               9090,
		DynamoNamespace:           discovery.DefaultDynamoNamespace,
		DynamoComponent:           discovery.DefaultDynamoComponent,
		DynamoEndpoint:            discovery.DefaultDynamoEndpoint,
		EtcdPollInterval:          time.Second,
		EtcdTargetTemplate:        discovery.DefaultTargetTemplate,
		EtcdMetricsURLTemplate:    discovery.DefaultMetricsURLTemplate,
		RefreshMetricsInterval:    50 * time.Millisecond,
		MetricsStalenessThreshold: 2 * time.Second,
		ModelServerType:           scraper.EngineDynamo,
		BodyMode:                  string(handler.BodyModeStreamed),
		DestinationHeader:         handler.DefaultDestinationHeader,
		MetadataNamespace:         handler.DefaultMetadataNamespace,
		PriorityHeader:            handler.DefaultPriorityHeader,
		WorkerIDHeader:            handler.DefaultWorkerIDHeader,
		MaxBodyBytes:              handler.DefaultMaxBodyBytes,
		LogLevel:                  "info",
		EnablePprof:               true, // as GIE's EPP
	}
}

// RegisterFlags binds o to command-line flags; the current values are the defaults.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ListenHost, "listen-host", o.ListenHost, "address the servers bind to (empty: all interfaces)")
	fs.IntVar(&o.GRPCPort, "grpc-port", o.GRPCPort, "Envoy ext_proc gRPC port")
	fs.IntVar(&o.GRPCHealthPort, "grpc-health-port", o.GRPCHealthPort, "gRPC health-check port")
	fs.IntVar(&o.MetricsPort, "metrics-port", o.MetricsPort, "HTTP port for /metrics, /healthz and /debug/endpoints")

	fs.StringVar(&o.ConfigFile, "config-file", o.ConfigFile, "EndpointPickerConfig YAML file")
	fs.StringVar(&o.ConfigText, "config-text", o.ConfigText, "EndpointPickerConfig YAML text (instead of --config-file)")

	fs.StringVar(&o.StaticEndpoints, "static-endpoints", o.StaticEndpoints,
		"comma-separated model servers: host:port (metrics at http://host:port/metrics) or host:port=METRICS_URL")
	fs.StringVar(&o.StaticModels, "static-models", o.StaticModels,
		"comma-separated model names the static endpoints serve (empty: any model)")

	fs.StringVar(&o.EtcdEndpoints, "etcd-endpoints", o.EtcdEndpoints,
		"comma-separated etcd client URLs holding the Dynamo registry (enables etcd discovery)")
	fs.StringVar(&o.DynamoNamespace, "dynamo-namespace", o.DynamoNamespace, "Dynamo namespace of the workers")
	fs.StringVar(&o.DynamoComponent, "dynamo-component", o.DynamoComponent, "Dynamo component of the workers")
	fs.StringVar(&o.DynamoEndpoint, "dynamo-endpoint", o.DynamoEndpoint, "Dynamo endpoint of the workers")
	fs.DurationVar(&o.EtcdPollInterval, "etcd-poll-interval", o.EtcdPollInterval, "time between two reads of the Dynamo registry")
	fs.StringVar(&o.EtcdTargetTemplate, "etcd-target-template", o.EtcdTargetTemplate,
		"address the gateway routes a Dynamo instance's requests to; placeholders {host} {port} (request-plane address) {instance_id} {instance_hex} {namespace} {component} {endpoint}")
	fs.StringVar(&o.EtcdMetricsURLTemplate, "etcd-metrics-url-template", o.EtcdMetricsURLTemplate,
		"metrics URL of a Dynamo instance (its system port, DYN_SYSTEM_PORT); same placeholders")

	fs.DurationVar(&o.RefreshMetricsInterval, "refresh-metrics-interval", o.RefreshMetricsInterval, "time between two scrapes of one endpoint")
	fs.DurationVar(&o.MetricsStalenessThreshold, "metrics-staleness-threshold", o.MetricsStalenessThreshold,
		"an endpoint whose last successful scrape is older is not routed to")
	fs.StringVar(&o.ModelServerType, "model-server-type", o.ModelServerType,
		"metric names to read: "+strings.Join(scraper.Engines(), ", "))
	fs.StringVar(&o.QueueMetric, "total-queued-requests-metric", o.QueueMetric,
		`override the waiting-queue metric(s), comma-separated, e.g. 'my_queue{kind="wait"}'`)
	fs.StringVar(&o.RunningMetric, "total-running-requests-metric", o.RunningMetric, "override the running-requests metric(s)")
	fs.StringVar(&o.KVCacheMetric, "kv-cache-usage-percentage-metric", o.KVCacheMetric, "override the KV-cache utilisation metric(s) (fraction 0..1)")

	fs.StringVar(&o.BodyMode, "body-mode", o.BodyMode,
		"Envoy ext_proc request/response body mode: streamed (FULL_DUPLEX_STREAMED) or buffered (BUFFERED)")
	fs.StringVar(&o.DestinationHeader, "destination-endpoint-hint-key", o.DestinationHeader, "routing header and dynamic-metadata key")
	fs.StringVar(&o.MetadataNamespace, "destination-endpoint-hint-metadata-namespace", o.MetadataNamespace, "dynamic-metadata namespace of the routing key")
	fs.StringVar(&o.PriorityHeader, "priority-header", o.PriorityHeader, "request header with an integer priority; negative = sheddable when saturated")
	fs.StringVar(&o.WorkerIDHeader, "worker-id-header", o.WorkerIDHeader, "header set to the picked Dynamo instance id (etcd endpoints only; empty disables)")
	fs.IntVar(&o.MaxBodyBytes, "max-request-body-bytes", o.MaxBodyBytes, "larger request bodies are rejected with 413")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&o.EnablePprof, "enable-pprof", o.EnablePprof, "serve Go's profiles at /debug/pprof/ on the metrics port")
}

// Logger returns the logger the options ask for.
func (o *Options) Logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// App is a configured, listening endpoint picker.
type App struct {
	opts    Options
	logger  *slog.Logger
	store   *datastore.Store
	etcd    *discovery.Etcd
	metrics *telemetry.Metrics

	grpcServer   *grpc.Server
	healthServer *grpc.Server
	health       *health.Server
	httpServer   *http.Server

	grpcLis, healthLis, metricsLis net.Listener
}

// New validates opts, builds every component and binds the three listeners (port 0 picks a
// free port; see Addrs).
func New(opts Options, logger *slog.Logger) (*App, error) {
	if logger == nil {
		logger = slog.Default()
	}
	a := &App{opts: opts, logger: logger}

	loaded, err := loadConfig(opts)
	if err != nil {
		return nil, err
	}
	mapping, err := metricMapping(opts)
	if err != nil {
		return nil, err
	}
	if opts.StaticEndpoints == "" && opts.EtcdEndpoints == "" {
		return nil, errors.New("no endpoint source: give --static-endpoints and/or --etcd-endpoints")
	}
	var static []backend.EndpointInfo
	if opts.StaticEndpoints != "" {
		static, err = discovery.ParseStatic(opts.StaticEndpoints, splitList(opts.StaticModels))
		if err != nil {
			return nil, fmt.Errorf("--static-endpoints: %w", err)
		}
	}
	if opts.EtcdEndpoints != "" {
		a.etcd, err = discovery.NewEtcd(discovery.EtcdOptions{
			Endpoints:          splitList(opts.EtcdEndpoints),
			Namespace:          opts.DynamoNamespace,
			Component:          opts.DynamoComponent,
			Endpoint:           opts.DynamoEndpoint,
			PollInterval:       opts.EtcdPollInterval,
			TargetTemplate:     opts.EtcdTargetTemplate,
			MetricsURLTemplate: opts.EtcdMetricsURLTemplate,
			Logger:             logger,
		})
		if err != nil {
			return nil, fmt.Errorf("etcd discovery: %w", err)
		}
	}

	sc := scraper.NewHTTPScraper(mapping)
	a.store = datastore.New(datastore.Options{
		Scrape:             sc.Scrape,
		RefreshInterval:    opts.RefreshMetricsInterval,
		StalenessThreshold: opts.MetricsStalenessThreshold,
		Logger:             logger,
	})
	a.store.OnRemove(loaded.Scheduler.EndpointRemoved)
	a.metrics = telemetry.New(a.store)

	ext, err := handler.New(handler.Options{
		Pool:              a.store,
		Scheduler:         loaded.Scheduler,
		Saturation:        loaded.Saturation,
		BodyMode:          handler.BodyMode(opts.BodyMode),
		DestinationHeader: opts.DestinationHeader,
		MetadataNamespace: opts.MetadataNamespace,
		PriorityHeader:    opts.PriorityHeader,
		WorkerIDHeader:    opts.WorkerIDHeader,
		MaxBodyBytes:      opts.MaxBodyBytes,
		Metrics:           a.metrics,
		Logger:            logger,
	})
	if err != nil {
		a.store.Close()
		return nil, err
	}

	a.grpcServer = grpc.NewServer(ExtProcServerOptions(opts.MaxBodyBytes)...)
	extprocv3.RegisterExternalProcessorServer(a.grpcServer, ext)

	a.health = health.NewServer()
	a.healthServer = grpc.NewServer()
	healthpb.RegisterHealthServer(a.healthServer, a.health)

	mux := http.NewServeMux()
	mux.Handle("/metrics", a.metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/debug/endpoints", a.serveEndpoints)
	if opts.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	if err := a.listen(); err != nil {
		a.store.Close()
		return nil, err
	}
	if static != nil {
		a.store.SetSource(discovery.StaticSource, static)
	}
	return a, nil
}

// ExtProcServerOptions are the gRPC settings of the ext_proc server.
func ExtProcServerOptions(maxBodyBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxBodyBytes + (1 << 20)),
		// Each ext_proc stream is one HTTP request: serve them from a pool of goroutines with
		// already-grown stacks instead of a fresh goroutine each (about 10% less CPU per pick).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		// Envoy may keep idle ext_proc connections alive with pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Fixed HTTP/2 flow-control windows. Left unset, gRPC sizes them by bandwidth-delay
		// estimation, which sends a PING after received data whenever none is in flight: with
		// one short stream per request that is close to a ping (and its ack) per request.
		grpc.InitialWindowSize(extProcWindowBytes),
		grpc.InitialConnWindowSize(extProcWindowBytes),
	}
}

// extProcWindowBytes is how much a proxy may send per stream (and per connection) before the
// EPP has read it; request bodies are read as they arrive, so it bounds nothing but bursts.
const extProcWindowBytes = 4 << 20

func (a *App) listen() error {
	var err error
	bind := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(a.opts.ListenHost, strconv.Itoa(port)))
	}
	if a.grpcLis, err = bind(a.opts.GRPCPort); err != nil {
		return fmt.Errorf("--grpc-port: %w", err)
	}
	if a.healthLis, err = bind(a.opts.GRPCHealthPort); err != nil {
		a.grpcLis.Close()
		return fmt.Errorf("--grpc-health-port: %w", err)
	}
	if a.metricsLis, err = bind(a.opts.MetricsPort); err != nil {
		a.grpcLis.Close()
		a.healthLis.Close()
		return fmt.Errorf("--metrics-port: %w", err)
	}
	return nil
}

// The startup log line that names the bound addresses (with port 0 the only way another
// process learns them; the benchmark reads it).
const (
	ServingMessage = "endpoint picker serving"
	ExtProcAddrKey = "ext_proc"
	HealthAddrKey  = "health"
	MetricsAddrKey = "metrics"
)

// Addrs returns the bound ext_proc, health and metrics addresses.
func (a *App) Addrs() (grpcAddr, healthAddr, metricsAddr string) {
	return a.grpcLis.Addr().String(), a.healthLis.Addr().String(), a.metricsLis.Addr().String()
}

// Store exposes the endpoint pool (for tests and the benchmark).
func (a *App) Store() *datastore.Store { return a.store }

// Run serves until ctx is cancelled or a server fails, then shuts everything down.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	serve := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- fmt.Errorf("%s server: %w", name, err)
			}
		}()
	}
	if a.etcd != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.etcd.Run(ctx, a.store)
		}()
	}
	serve("ext_proc", func() error { return a.grpcServer.Serve(a.grpcLis) })
	serve("health", func() error { return a.healthServer.Serve(a.healthLis) })
	serve("metrics", func() error { return a.httpServer.Serve(a.metricsLis) })
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	grpcAddr, healthAddr, metricsAddr := a.Addrs()
	a.logger.Info(ServingMessage, ExtProcAddrKey, grpcAddr, HealthAddrKey, healthAddr, MetricsAddrKey, metricsAddr)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	a.health.Shutdown()
	cancel()
	stopped := make(chan struct{})
	go func() {
		a.grpcServer.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		a.grpcServer.Stop()
	}
	a.healthServer.Stop()
	shutdownCtx, shutdownCancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.httpServer.Shutdown(shutdownCtx)
	shutdownCancel()
	wg.Wait()
	a.store.Close()
	return runErr
}

func (a *App) serveEndpoints(w http.ResponseWriter, _ *http.Request) {
	type endpoint struct {
		Key        string   `json:"key"`
		Source     string   `json:"source"`
		Address    string   `json:"address"`
		MetricsURL string   `json:"metricsURL"`
		Models     []string `json:"models,omitempty"`
		InstanceID string   `json:"instanceID,omitempty"`
		Ready      bool     `json:"ready"`
		Queue      *float64 `json:"waitingQueue,omitempty"`
		Running    *float64 `json:"running,omitempty"`
		KVCache    *float64 `json:"kvCacheUsage,omitempty"`
		Picks      uint64   `json:"picks"`
		LastError  string   `json:"lastError,omitempty"`
	}
	var out []endpoint
	for _, st := range a.store.Statuses() {
		e := endpoint{Key: st.Info.Key, Source: st.Source, Address: st.Info.Address, MetricsURL: st.Info.MetricsURL,
			Models: st.Info.Models, InstanceID: st.Info.InstanceID, Ready: st.Ready, Picks: st.Picks, LastError: st.LastError}
		if st.Metrics != nil {
			e.Queue, e.Running, e.KVCache = &st.Metrics.WaitingQueueSize, &st.Metrics.RunningRequests, &st.Metrics.KVCacheUsage
		}
		out = append(out, e)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

func loadConfig(opts Options) (*config.Loaded, error) {
	switch {
	case opts.ConfigFile != "" && opts.ConfigText != "":
		return nil, errors.New("give --config-file or --config-text, not both")
	case opts.ConfigFile != "":
		l, err := config.LoadFile(opts.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config-file %s: %w", opts.ConfigFile, err)
		}
		return l, nil
	case opts.ConfigText != "":
		l, err := config.Load([]byte(opts.ConfigText))
		if err != nil {
			return nil, fmt.Errorf("--config-text: %w", err)
		}
		return l, nil
	default:
		return config.Load([]byte(config.DefaultConfigText))
	}
}

func metricMapping(opts Options) (scraper.MetricMapping, error) {
	mapping, ok := scraper.DefaultMappings[opts.ModelServerType]
	if !ok {
		return mapping, fmt.Errorf("--model-server-type %q: want one of %s", opts.ModelServerType, strings.Join(scraper.Engines(), ", "))
	}
	overrides := []struct {
		flag, value string
		target      *[]scraper.MetricSpec
	}{
		{"--total-queued-requests-metric", opts.QueueMetric, &mapping.WaitingQueue},
		{"--total-running-requests-metric", opts.RunningMetric, &mapping.Running},
		{"--kv-cache-usage-percentage-metric", opts.KVCacheMetric, &mapping.KVCacheUsage},
	}
	for _, o := range overrides {
		if o.value == "" {
			continue
		}
		specs, err := scraper.ParseMetricSpecList(o.value)
		if err != nil {
			return mapping, fmt.Errorf("%s: %w", o.flag, err)
		}
		*o.target = specs
	}
	return mapping, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
