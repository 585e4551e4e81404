// Package plugins implements the scheduling plugins that an EndpointPickerConfig can name,
// using the plugin type names of the Gateway API Inference Extension where one exists.
package plugins

import (
	"fmt"
	"sort"

	"dynamo-images.local/epp/internal/scheduling"
)

// DecodeParams decodes a plugin's `parameters:` block into the given struct pointer. It must
// reject unknown fields so that typos in a config fail loudly. It is a no-op when the config
// has no parameters for the plugin.
type DecodeParams func(into any) error

// Factory builds a plugin instance named name from its parameters.
type Factory func(name string, decode DecodeParams) (scheduling.Plugin, error)

// Plugin type names, as written in `plugins[].type`.
const (
	QueueScorerType          = "queue-scorer"
	KVCacheScorerType        = "kv-cache-utilization-scorer"
	PrefixCacheScorerType    = "prefix-cache-scorer"
	LeastQueueFilterType     = "least-queue-filter"
	LeastKVCacheFilterType   = "least-kv-cache-filter"
	LowQueueFilterType       = "low-queue-filter"
	MaxScorePickerType       = "max-score-picker"
	RandomPickerType         = "random-picker"
	SingleProfileHandlerType = "single-profile-handler"
)

var registry = map[string]Factory{
	QueueScorerType:          newQueueScorer,
	KVCacheScorerType:        newKVCacheScorer,
	PrefixCacheScorerType:    newPrefixCacheScorer,
	LeastQueueFilterType:     newLeastQueueFilter,
	LeastKVCacheFilterType:   newLeastKVCacheFilter,
	LowQueueFilterType:       newLowQueueFilter,
	MaxScorePickerType:       newMaxScorePicker,
	RandomPickerType:         newRandomPicker,
	SingleProfileHandlerType: newSingleProfileHandler,
	// GIE's older name for the KV-cache utilization scorer.
	"kv-cache-scorer": newKVCacheScorer,
}

// New builds a plugin of type typ.
func New(typ, name string, decode DecodeParams) (scheduling.Plugin, error) {
	factory, ok := registry[typ]
	if !ok {
		return nil, fmt.Errorf("unknown plugin type %q (known types: %v)", typ, Types())
	}
	if name == "" {
		name = typ
	}
	if decode == nil {
		decode = func(any) error { return nil }
	}
	p, err := factory(name, decode)
	if err != nil {
		return nil, fmt.Errorf("plugin %q (type %s): %w", name, typ, err)
	}
	return p, nil
}

// Types lists the known plugin types, sorted.
func Types() []string {
	types := make([]string, 0, len(registry))
	for t := range registry {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// base implements scheduling.Plugin for embedding.
type base struct {
	typ  string
	name string
}

func (b base) Type() string { return b.typ }
func (b base) Name() string { return b.name }

// ProfileHandler marks plugins that choose between scheduling profiles. Only the single-profile
// handler exists: it runs the one profile the config defines.
type ProfileHandler interface {
	scheduling.Plugin
	profileHandler()
}

type singleProfileHandler struct{ base }

func (singleProfileHandler) profileHandler() {}

func newSingleProfileHandler(name string, decode DecodeParams) (scheduling.Plugin, error) {
	if err := decode(&struct{}{}); err != nil {
		return nil, err
	}
	return singleProfileHandler{base{SingleProfileHandlerType, name}}, nil
}
