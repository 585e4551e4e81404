// Package config loads GIE's EndpointPickerConfig (apiVersion
// inference.networking.x-k8s.io/v1alpha1, kind EndpointPickerConfig) into a scheduler.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"dynamo-images.local/epp/internal/scheduling"
	"dynamo-images.local/epp/internal/scheduling/plugins"
)

const (
	APIVersion = "inference.networking.x-k8s.io/v1alpha1"
	Kind       = "EndpointPickerConfig"
)

// DefaultConfigText is used when neither --config-file nor --config-text is given. It is GIE's
// default profile: queue depth, KV-cache utilisation and prefix-cache affinity, equally
// weighted, and the max-score picker.
const DefaultConfigText = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: kv-cache-utilization-scorer
    weight: 1
  - pluginRef: prefix-cache-scorer
    weight: 1
  - pluginRef: max-score-picker
`

// EndpointPickerConfig is the YAML document.
type EndpointPickerConfig struct {
	APIVersion         string                  `yaml:"apiVersion"`
	Kind               string                  `yaml:"kind"`
	Plugins            []PluginSpec            `yaml:"plugins"`
	SchedulingProfiles []ProfileSpec           `yaml:"schedulingProfiles"`
	SaturationDetector *SaturationDetectorSpec `yaml:"saturationDetector"`
	// FeatureGates exists in GIE configs; none of GIE's gates applies here, so it is accepted
	// and ignored rather than failing a config copied from GIE.
	FeatureGates []string `yaml:"featureGates"`
}

// PluginSpec is one entry of `plugins:`.
type PluginSpec struct {
	Name       string    `yaml:"name"`
	Type       string    `yaml:"type"`
	Parameters yaml.Node `yaml:"parameters"`
}

// ProfileSpec is one entry of `schedulingProfiles:`.
type ProfileSpec struct {
	Name    string      `yaml:"name"`
	Plugins []PluginRef `yaml:"plugins"`
}

// PluginRef references a plugin by name from a profile.
type PluginRef struct {
	PluginRef string   `yaml:"pluginRef"`
	Weight    *float64 `yaml:"weight"`
}

// SaturationDetectorSpec configures when the pool counts as saturated (GIE field names).
type SaturationDetectorSpec struct {
	QueueDepthThreshold       *float64  `yaml:"queueDepthThreshold"`
	KVCacheUtilThreshold      *float64  `yaml:"kvCacheUtilThreshold"`
	MetricsStalenessThreshold *Duration `yaml:"metricsStalenessThreshold"`
}

// Duration is a time.Duration written as "200ms" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML parses Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration = v
	return nil
}

// Saturation is the resolved saturation detector configuration. An endpoint is saturated when
// its waiting queue exceeds QueueDepthThreshold or its KV cache use exceeds
// KVCacheUtilThreshold; the pool is saturated when every candidate endpoint is.
type Saturation struct {
	QueueDepthThreshold       float64
	KVCacheUtilThreshold      float64
	MetricsStalenessThreshold time.Duration
}

// DefaultSaturation matches GIE's defaults, except for the staleness threshold, which is left
// to the caller (0 = use the endpoint readiness threshold).
var DefaultSaturation = Saturation{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8}

// Loaded is a validated configuration.
type Loaded struct {
	Scheduler  *scheduling.Scheduler
	Plugins    []scheduling.Plugin
	Saturation Saturation
}

// LoadFile reads and loads a config file.
func LoadFile(path string) (*Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Load(data)
}

// Load parses and validates a config document and builds its plugins.
func Load(data []byte) (*Loaded, error) {
	var cfg EndpointPickerConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config is empty")
		}
		return nil, fmt.Errorf("parsing EndpointPickerConfig: %w", err)
	}
	if cfg.APIVersion != APIVersion {
		return nil, fmt.Errorf("apiVersion is %q, want %q", cfg.APIVersion, APIVersion)
	}
	if cfg.Kind != Kind {
		return nil, fmt.Errorf("kind is %q, want %q", cfg.Kind, Kind)
	}

	byName := map[string]scheduling.Plugin{}
	var all []scheduling.Plugin
	for i := range cfg.Plugins {
		spec := &cfg.Plugins[i]
		if spec.Type == "" {
			return nil, fmt.Errorf("plugins[%d]: type is required", i)
		}
		name := spec.Name
		if name == "" {
			name = spec.Type
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("plugins[%d]: duplicate plugin name %q", i, name)
		}
		p, err := plugins.New(spec.Type, name, strictDecoder(&spec.Parameters))
		if err != nil {
			return nil, fmt.Errorf("plugins[%d]: %w", i, err)
		}
		byName[name] = p
		all = append(all, p)
	}

	profileSpec, err := chooseProfile(cfg, all)
	if err != nil {
		return nil, err
	}
	profile, err := buildProfile(profileSpec, byName)
	if err != nil {
		return nil, err
	}
	if profile.Picker == nil {
		// GIE adds a max-score picker to profiles that name none.
		p, _ := plugins.New(plugins.MaxScorePickerType, plugins.MaxScorePickerType, nil)
		profile.Picker = p.(scheduling.Picker)
		all = append(all, p)
	}
	sched, err := scheduling.NewScheduler(profile, all)
	if err != nil {
		return nil, err
	}
	sat, err := resolveSaturation(cfg.SaturationDetector)
	if err != nil {
		return nil, err
	}
	return &Loaded{Scheduler: sched, Plugins: all, Saturation: sat}, nil
}

// chooseProfile returns the one profile to run. Without schedulingProfiles, every plugin
// forms the default profile (as in GIE).
func chooseProfile(cfg EndpointPickerConfig, all []scheduling.Plugin) (ProfileSpec, error) {
	for _, p := range all {
		if _, ok := p.(plugins.ProfileHandler); !ok {
			continue
		}
		if p.Type() != plugins.SingleProfileHandlerType {
			return ProfileSpec{}, fmt.Errorf("profile handler %q is not supported", p.Type())
		}
	}
	switch len(cfg.SchedulingProfiles) {
	case 0:
		spec := ProfileSpec{Name: "default"}
		for _, p := range all {
			if _, ok := p.(plugins.ProfileHandler); ok {
				continue
			}
			spec.Plugins = append(spec.Plugins, PluginRef{PluginRef: p.Name()})
		}
		return spec, nil
	case 1:
		return cfg.SchedulingProfiles[0], nil
	default:
		return ProfileSpec{}, fmt.Errorf("%d scheduling profiles given: only the single-profile-handler is supported, so define exactly one", len(cfg.SchedulingProfiles))
	}
}

func buildProfile(spec ProfileSpec, byName map[string]scheduling.Plugin) (*scheduling.Profile, error) {
	name := spec.Name
	if name == "" {
		name = "default"
	}
	profile := &scheduling.Profile{Name: name}
	seen := map[string]bool{}
	for i, ref := range spec.Plugins {
		p, ok := byName[ref.PluginRef]
		if !ok {
			return nil, fmt.Errorf("schedulingProfiles[%s].plugins[%d]: unknown pluginRef %q", name, i, ref.PluginRef)
		}
		if seen[ref.PluginRef] {
			return nil, fmt.Errorf("schedulingProfiles[%s]: plugin %q referenced twice", name, ref.PluginRef)
		}
		seen[ref.PluginRef] = true
		used := false
		if f, ok := p.(scheduling.Filter); ok {
			profile.Filters = append(profile.Filters, f)
			used = true
		}
		if s, ok := p.(scheduling.Scorer); ok {
			weight := 1.0
			if ref.Weight != nil {
				weight = *ref.Weight
			}
			if weight < 0 {
				return nil, fmt.Errorf("schedulingProfiles[%s]: scorer %q has negative weight", name, ref.PluginRef)
			}
			profile.Scorers = append(profile.Scorers, scheduling.WeightedScorer{Scorer: s, Weight: weight})
			used = true
		}
		if pk, ok := p.(scheduling.Picker); ok {
			if profile.Picker != nil {
				return nil, fmt.Errorf("schedulingProfiles[%s]: more than one picker (%q and %q)", name, profile.Picker.Name(), ref.PluginRef)
			}
			profile.Picker = pk
			used = true
		}
		if !used {
			return nil, fmt.Errorf("schedulingProfiles[%s]: plugin %q (type %s) is not a filter, scorer or picker", name, ref.PluginRef, p.Type())
		}
	}
	return profile, nil
}

func resolveSaturation(spec *SaturationDetectorSpec) (Saturation, error) {
	s := DefaultSaturation
	if spec == nil {
		return s, nil
	}
	if spec.QueueDepthThreshold != nil {
		if *spec.QueueDepthThreshold < 0 {
			return s, fmt.Errorf("saturationDetector.queueDepthThreshold must not be negative")
		}
		s.QueueDepthThreshold = *spec.QueueDepthThreshold
	}
	if spec.KVCacheUtilThreshold != nil {
		if v := *spec.KVCacheUtilThreshold; v < 0 || v > 1 {
			return s, fmt.Errorf("saturationDetector.kvCacheUtilThreshold must be within [0,1]")
		}
		s.KVCacheUtilThreshold = *spec.KVCacheUtilThreshold
	}
	if spec.MetricsStalenessThreshold != nil {
		s.MetricsStalenessThreshold = spec.MetricsStalenessThreshold.Duration
	}
	return s, nil
}

// strictDecoder decodes a plugin's parameters node, rejecting unknown fields.
func strictDecoder(node *yaml.Node) plugins.DecodeParams {
	return func(into any) error {
		if node.Kind == 0 || (node.Kind == yaml.ScalarNode && node.Tag == "!!null") {
			return nil
		}
		raw, err := yaml.Marshal(node)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(into); err != nil {
			return fmt.Errorf("parameters: %w", err)
		}
		return nil
	}
}
