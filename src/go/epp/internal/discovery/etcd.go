package discovery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"dynamo-images.local/epp/internal/backend"
)

// EtcdSource is the source name of etcd discovery.
const EtcdSource = "etcd"

// Template placeholders for the target address and metrics URL of a Dynamo instance.
const (
	PlaceholderHost        = "{host}"        // host of the instance's request-plane address; IPv6 in brackets
	PlaceholderPort        = "{port}"        // port of the instance's request-plane address
	PlaceholderInstanceID  = "{instance_id}" // etcd lease id, decimal
	PlaceholderInstanceHex = "{instance_hex}"
	PlaceholderNamespace   = "{namespace}"
	PlaceholderComponent   = "{component}"
	PlaceholderEndpoint    = "{endpoint}"
)

// Defaults for etcd discovery.
const (
	DefaultDynamoNamespace    = "dynamo"
	DefaultDynamoComponent    = "backend"
	DefaultDynamoEndpoint     = "generate"
	DefaultTargetTemplate     = "{host}:{port}"
	DefaultMetricsURLTemplate = "http://{host}:8081/metrics"
)

// EtcdOptions configure etcd discovery.
type EtcdOptions struct {
	// Endpoints are etcd client URLs ("http://etcd:2379"); they are tried in order.
	Endpoints []string
	Namespace string
	Component string
	Endpoint  string
	// PollInterval is the time between two reads of the registry.
	PollInterval time.Duration
	// TargetTemplate builds the address the gateway routes to; MetricsURLTemplate the URL that
	// is scraped. Dynamo's registry only holds the worker's request-plane TCP address, so both
	// are derived from it with the placeholders above.
	TargetTemplate     string
	MetricsURLTemplate string
	Client             *http.Client
	Logger             *slog.Logger
}

// Etcd discovers Dynamo worker instances in etcd through etcd's v3 JSON gateway
// (POST /v3/kv/range), which etcd 3.4 and later serve on the client port. Polling a prefix range
// keeps this independent of the etcd Go client; lease expiry deletes a dead worker's keys, so
// the next poll drops it.
type Etcd struct {
	opts EtcdOptions
	// preferred is the index of the etcd endpoint that answered last.
	preferred int
}

// NewEtcd validates opts.
func NewEtcd(opts EtcdOptions) (*Etcd, error) {
	if len(opts.Endpoints) == 0 {
		return nil, fmt.Errorf("no etcd endpoint given")
	}
	for i, ep := range opts.Endpoints {
		ep = strings.TrimRight(strings.TrimSpace(ep), "/")
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		if err := validateHTTPURL(ep); err != nil {
			return nil, fmt.Errorf("etcd endpoint: %w", err)
		}
		opts.Endpoints[i] = ep
	}
	for _, part := range []*string{&opts.Namespace, &opts.Component, &opts.Endpoint} {
		if *part == "" || strings.Contains(*part, "/") {
			return nil, fmt.Errorf("dynamo namespace, component and endpoint must be non-empty and contain no '/'")
		}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.TargetTemplate == "" {
		opts.TargetTemplate = DefaultTargetTemplate
	}
	if opts.MetricsURLTemplate == "" {
		opts.MetricsURLTemplate = DefaultMetricsURLTemplate
	}
	probe := instance{host: "10.0.0.1", port: "1", id: 1}
	if err := validateHostPort(probe.expand(opts.TargetTemplate, opts)); err != nil {
		return nil, fmt.Errorf("target template %q must expand to host:port: %w", opts.TargetTemplate, err)
	}
	if err := validateHTTPURL(probe.expand(opts.MetricsURLTemplate, opts)); err != nil {
		return nil, fmt.Errorf("metrics URL template %q: %w", opts.MetricsURLTemplate, err)
	}
	if opts.Client == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.Proxy = nil
		opts.Client = &http.Client{Transport: transport, Timeout: 5 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Etcd{opts: opts}, nil
}

// Run polls etcd until ctx ends and reports every successful read to sink. A failed read keeps
// the last known pool: a short etcd outage must not empty the pool, and dead workers are
// dropped by failing metrics scrapes anyway.
func (e *Etcd) Run(ctx context.Context, sink Sink) {
	ticker := time.NewTicker(e.opts.PollInterval)
	defer ticker.Stop()
	failing := false
	for {
		infos, err := e.Poll(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				e.opts.Logger.Warn("reading the Dynamo registry from etcd failed; keeping the last known endpoints", "err", err)
			}
			failing = true
		case err == nil:
			if failing {
				e.opts.Logger.Info("reading the Dynamo registry from etcd works again")
			}
			failing = false
			sink.SetSource(EtcdSource, infos)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (e *Etcd) prefix(bucket string) string {
	return fmt.Sprintf("v1/%s/%s/%s/%s/", bucket, e.opts.Namespace, e.opts.Component, e.opts.Endpoint)
}

// Poll reads the instances and model cards of the configured Dynamo endpoint once.
func (e *Etcd) Poll(ctx context.Context) ([]backend.EndpointInfo, error) {
	instPrefix := e.prefix("instances")
	mdcPrefix := e.prefix("mdc")
	instKVs, err := e.rangePrefix(ctx, instPrefix)
	if err != nil {
		return nil, err
	}
	mdcKVs, err := e.rangePrefix(ctx, mdcPrefix)
	if err != nil {
		return nil, err
	}

	// Model cards by lease (hex key segment); LoRA adapters add "<lease>/<suffix>" keys.
	models := map[string][]card{}
	for _, kv := range mdcKVs {
		lease, _, _ := strings.Cut(strings.TrimPrefix(kv.key, mdcPrefix), "/")
		c, err := parseCard(kv.value)
		if err != nil {
			e.opts.Logger.Warn("ignoring unreadable model card", "key", kv.key, "err", err)
			continue
		}
		models[lease] = append(models[lease], c)
	}

	var out []backend.EndpointInfo
	for _, kv := range instKVs {
		leaseHex := strings.TrimPrefix(kv.key, instPrefix)
		if leaseHex == "" || strings.Contains(leaseHex, "/") {
			continue
		}
		inst, err := parseInstance(kv.value, leaseHex)
		if err != nil {
			e.opts.Logger.Warn("ignoring unusable Dynamo instance", "key", kv.key, "err", err)
			continue
		}
		info := backend.EndpointInfo{
			Key:        EtcdSource + "/" + leaseHex,
			Address:    inst.expand(e.opts.TargetTemplate, e.opts),
			MetricsURL: inst.expand(e.opts.MetricsURLTemplate, e.opts),
			InstanceID: strconv.FormatUint(inst.id, 10),
		}
		names := map[string]bool{}
		for _, c := range models[leaseHex] {
			if c.name != "" && !names[c.name] {
				names[c.name] = true
				info.Models = append(info.Models, c.name)
			}
			info.KVCacheBlockSize = max(info.KVCacheBlockSize, c.kvBlockSize)
			info.TotalKVBlocks = max(info.TotalKVBlocks, c.totalKVBlocks)
			info.MaxNumSeqs = max(info.MaxNumSeqs, c.maxNumSeqs)
		}
		sort.Strings(info.Models)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type keyValue struct {
	key   string
	value []byte
}

// rangePrefix reads every key under prefix, trying the etcd endpoints in turn.
func (e *Etcd) rangePrefix(ctx context.Context, prefix string) ([]keyValue, error) {
	body, _ := json.Marshal(map[string]string{
		"key":       base64.StdEncoding.EncodeToString([]byte(prefix)),
		"range_end": base64.StdEncoding.EncodeToString(prefixEnd([]byte(prefix))),
	})
	var errs []string
	n := len(e.opts.Endpoints)
	for i := 0; i < n; i++ {
		idx := (e.preferred + i) % n
		kvs, err := e.rangeAt(ctx, e.opts.Endpoints[idx], body)
		if err == nil {
			e.preferred = idx
			return kvs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("etcd range %q: %s", prefix, strings.Join(errs, "; "))
}

func (e *Etcd) rangeAt(ctx context.Context, endpoint string, body []byte) ([]keyValue, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/v3/kv/range", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", endpoint, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	// The gateway encodes bytes as base64 and int64 as strings.
	var parsed struct {
		Kvs []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(data, &parsed); err != nil {
		return nil, fmt.Errorf("%s: decoding range response: %w", endpoint, err)
	}
	out := make([]keyValue, 0, len(parsed.Kvs))
	for _, kv := range parsed.Kvs {
		k, err := base64.StdEncoding.DecodeString(kv.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: bad key encoding: %w", endpoint, err)
		}
		v, err := base64.StdEncoding.DecodeString(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: bad value encoding: %w", endpoint, err)
		}
		out = append(out, keyValue{key: string(k), value: v})
	}
	return out, nil
}

// prefixEnd is the etcd range_end that selects every key starting with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0} // all keys
}

// instance is the routable part of a Dynamo endpoint instance.
type instance struct {
	host string // bracketed when IPv6
	port string
	id   uint64
}

func (in instance) expand(template string, opts EtcdOptions) string {
	return strings.NewReplacer(
		PlaceholderHost, in.host,
		PlaceholderPort, in.port,
		PlaceholderInstanceID, strconv.FormatUint(in.id, 10),
		PlaceholderInstanceHex, strconv.FormatUint(in.id, 16),
		PlaceholderNamespace, opts.Namespace,
		PlaceholderComponent, opts.Component,
		PlaceholderEndpoint, opts.Endpoint,
	).Replace(template)
}

// parseInstance reads the value Dynamo writes under v1/instances/...: a JSON object with
// "instance_id" and "transport", where transport is {"tcp": "host:port/<path>"} (the TCP
// request plane) or {"http": "http://host:port/..."}. A NATS-only transport has no address.
func parseInstance(value []byte, leaseHex string) (instance, error) {
	var raw struct {
		InstanceID *uint64                    `json:"instance_id"`
		Transport  map[string]json.RawMessage `json:"transport"`
	}
	if err := json.Unmarshal(value, &raw); err != nil {
		return instance{}, fmt.Errorf("decoding instance: %w", err)
	}
	var in instance
	if raw.InstanceID != nil {
		in.id = *raw.InstanceID
	} else {
		id, err := strconv.ParseUint(leaseHex, 16, 64)
		if err != nil {
			return instance{}, fmt.Errorf("no instance_id and key segment %q is not a hex lease id", leaseHex)
		}
		in.id = id
	}
	var hostPort string
	for kind, v := range raw.Transport {
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue
		}
		switch strings.ToLower(kind) {
		case "tcp":
			hostPort, _, _ = strings.Cut(strings.TrimPrefix(s, "tcp://"), "/")
		case "http":
			if u, err := url.Parse(s); err == nil {
				hostPort = u.Host
			}
		}
	}
	if hostPort == "" {
		return instance{}, fmt.Errorf("transport %s has no tcp or http address", transportKinds(raw.Transport))
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return instance{}, fmt.Errorf("transport address %q: %w", hostPort, err)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	in.host, in.port = host, port
	return in, nil
}

func transportKinds(t map[string]json.RawMessage) string {
	kinds := make([]string, 0, len(t))
	for k := range t {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return "[" + strings.Join(kinds, ",") + "]"
}

type card struct {
	name          string
	kvBlockSize   int
	totalKVBlocks int
	maxNumSeqs    int
}

// parseCard reads a model deployment card. Dynamo stores it either bare or wrapped in the
// discovery envelope {"type":"Model",...,"card_json":{...}}.
func parseCard(value []byte) (card, error) {
	type mdc struct {
		CardJSON         json.RawMessage `json:"card_json"`
		DisplayName      string          `json:"display_name"`
		Name             string          `json:"name"`
		ServiceName      string          `json:"service_name"`
		KVCacheBlockSize int             `json:"kv_cache_block_size"`
		RuntimeConfig    *struct {
			TotalKVBlocks *int `json:"total_kv_blocks"`
			MaxNumSeqs    *int `json:"max_num_seqs"`
		} `json:"runtime_config"`
	}
	var m mdc
	if err := json.Unmarshal(value, &m); err != nil {
		return card{}, err
	}
	if len(m.CardJSON) > 0 && string(m.CardJSON) != "null" {
		var inner mdc
		if err := json.Unmarshal(m.CardJSON, &inner); err != nil {
			return card{}, fmt.Errorf("card_json: %w", err)
		}
		m = inner
	}
	c := card{kvBlockSize: m.KVCacheBlockSize}
	for _, n := range []string{m.DisplayName, m.Name, m.ServiceName} {
		if n != "" {
			c.name = n
			break
		}
	}
	if m.RuntimeConfig != nil {
		if m.RuntimeConfig.TotalKVBlocks != nil {
			c.totalKVBlocks = *m.RuntimeConfig.TotalKVBlocks
		}
		if m.RuntimeConfig.MaxNumSeqs != nil {
			c.maxNumSeqs = *m.RuntimeConfig.MaxNumSeqs
		}
	}
	if c.name == "" {
		return card{}, fmt.Errorf("model card has no display_name")
	}
	return c, nil
}
