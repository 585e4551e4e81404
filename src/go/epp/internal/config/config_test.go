package config

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"dynamo-images.local/epp/internal/scheduling"
	"dynamo-images.local/epp/internal/scheduling/plugins"
)

type scorerView struct {
	typ, name string
	weight    float64
}

func describe(p *scheduling.Profile) (filters []string, scorers []scorerView, picker string) {
	for _, f := range p.Filters {
		filters = append(filters, f.Name())
	}
	for _, s := range p.Scorers {
		scorers = append(scorers, scorerView{s.Type(), s.Name(), s.Weight})
	}
	return filters, scorers, p.Picker.Type()
}

func TestDefaultConfig(t *testing.T) {
	l, err := Load([]byte(DefaultConfigText))
	if err != nil {
		t.Fatal(err)
	}
	filters, scorers, picker := describe(l.Scheduler.Profile())
	want := []scorerView{
		{plugins.QueueScorerType, plugins.QueueScorerType, 1},
		{plugins.KVCacheScorerType, plugins.KVCacheScorerType, 1},
		{plugins.PrefixCacheScorerType, plugins.PrefixCacheScorerType, 1},
	}
	if len(filters) != 0 || picker != plugins.MaxScorePickerType || !equalScorers(scorers, want) {
		t.Fatalf("filters=%v scorers=%v picker=%s", filters, scorers, picker)
	}
	if l.Saturation != DefaultSaturation {
		t.Fatalf("saturation = %+v", l.Saturation)
	}
}

func equalScorers(a, b []scorerView) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFullConfig(t *testing.T) {
	text := `
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [dataLayer]
plugins:
- name: prefix
  type: prefix-cache-scorer
  parameters:
    hashBlockSize: 32
    lruCapacityPerServer: 1000
- type: queue-scorer
- type: least-kv-cache-filter
- name: picker
  type: max-score-picker
  parameters:
    maxNumOfEndpoints: 2
- type: single-profile-handler
schedulingProfiles:
- name: mine
  plugins:
  - pluginRef: least-kv-cache-filter
  - pluginRef: prefix
    weight: 3
  - pluginRef: queue-scorer
  - pluginRef: picker
saturationDetector:
  queueDepthThreshold: 8
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 300ms
`
	l, err := Load([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := l.Scheduler.Profile()
	filters, scorers, picker := describe(p)
	want := []scorerView{{plugins.PrefixCacheScorerType, "prefix", 3}, {plugins.QueueScorerType, plugins.QueueScorerType, 1}}
	if p.Name != "mine" || len(filters) != 1 || filters[0] != "least-kv-cache-filter" || picker != plugins.MaxScorePickerType || !equalScorers(scorers, want) {
		t.Fatalf("profile %s: filters=%v scorers=%v picker=%s", p.Name, filters, scorers, picker)
	}
	if want := (Saturation{8, 0.9, 300 * time.Millisecond}); l.Saturation != want {
		t.Fatalf("saturation = %+v", l.Saturation)
	}
	if len(l.Plugins) != 5 {
		t.Fatalf("plugins = %d", len(l.Plugins))
	}
}

func TestProfileDefaults(t *testing.T) {
	// Without schedulingProfiles every plugin joins one profile; without a picker the
	// max-score picker is added.
	l, err := Load([]byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: kv-cache-utilization-scorer
- type: low-queue-filter
  parameters: {threshold: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	filters, scorers, picker := describe(l.Scheduler.Profile())
	if len(filters) != 1 || len(scorers) != 1 || scorers[0].weight != 1 || picker != plugins.MaxScorePickerType {
		t.Fatalf("filters=%v scorers=%v picker=%s", filters, scorers, picker)
	}
}

func TestConfigErrors(t *testing.T) {
	head := "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
	cases := map[string]string{
		"": "empty",
		"kind: EndpointPickerConfig\napiVersion: v1\n":                                                                          "apiVersion",
		"apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: Other\n":                                                     "kind",
		head + "plugins:\n- type: nope\n":                                                                                       "unknown plugin type",
		head + "plugins:\n- name: x\n":                                                                                          "type is required",
		head + "plugins:\n- type: queue-scorer\n- type: queue-scorer\n":                                                         "duplicate plugin name",
		head + "plugins:\n- type: queue-scorer\n  parameters: {bogus: 1}\n":                                                     "bogus",
		head + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- plugins:\n  - pluginRef: missing\n":                      "unknown pluginRef",
		head + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- plugins:\n  - pluginRef: queue-scorer\n    weight: -1\n": "negative weight",
		head + "plugins:\n- {type: max-score-picker, name: a}\n- {type: random-picker, name: b}\nschedulingProfiles:\n- plugins: [{pluginRef: a}, {pluginRef: b}]\n": "more than one picker",
		head + "plugins:\n- type: single-profile-handler\nschedulingProfiles:\n- plugins: [{pluginRef: single-profile-handler}]\n":                                   "not a filter, scorer or picker",
		head + "schedulingProfiles:\n- name: a\n- name: b\n":             "exactly one",
		head + "unknownField: 1\n":                                       "unknownField",
		head + "saturationDetector: {kvCacheUtilThreshold: 2}\n":         "kvCacheUtilThreshold",
		head + "saturationDetector: {metricsStalenessThreshold: soon}\n": "soon",
	}
	for text, want := range cases {
		_, err := Load([]byte(text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want it to mention %q", text, err, want)
		}
	}
}

const (
	exampleConfigPath = "../../../../../deploy/k8s/epp/epp-config.yaml"
	manifestPath      = "../../../../../deploy/k8s/epp/epp.yaml"
)

// The example config shipped with the image and the manifests must load.
func TestExampleConfigLoads(t *testing.T) {
	if _, err := LoadFile(exampleConfigPath); err != nil {
		t.Fatalf("%v (the file is a BUILD dependency of this package)", err)
	}
}

// The manifest's ConfigMap must carry exactly the example config.
func TestManifestConfigMapMatchesExample(t *testing.T) {
	want, err := os.ReadFile(exampleConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]bool{}
	for {
		var doc struct {
			Kind     string                `yaml:"kind"`
			Metadata struct{ Name string } `yaml:"metadata"`
			Data     map[string]string     `yaml:"data"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kinds[doc.Kind] = true
		if doc.Kind == "ConfigMap" && doc.Data["config.yaml"] != string(want) {
			t.Fatalf("ConfigMap %s config.yaml differs from %s", doc.Metadata.Name, exampleConfigPath)
		}
	}
	for _, k := range []string{"ConfigMap", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("manifest has no %s", k)
		}
	}
}
