package plugins

import (
	"context"
	"fmt"
	"math/rand"
	"sort"

	"dynamo-images.local/epp/internal/backend"
	"dynamo-images.local/epp/internal/scheduling"
)

type pickerParams struct {
	// MaxNumOfEndpoints is how many endpoints to return: the pick plus fallbacks.
	MaxNumOfEndpoints int `yaml:"maxNumOfEndpoints"`
}

func decodePickerParams(decode DecodeParams) (int, error) {
	p := pickerParams{MaxNumOfEndpoints: 1}
	if err := decode(&p); err != nil {
		return 0, err
	}
	if p.MaxNumOfEndpoints < 1 {
		return 0, fmt.Errorf("maxNumOfEndpoints must be at least 1")
	}
	return p.MaxNumOfEndpoints, nil
}

// maxScorePicker returns the best-scored endpoints; endpoints with equal scores are ordered at
// random so that ties spread the load instead of always hitting the first endpoint.
type maxScorePicker struct {
	base
	max int
}

func newMaxScorePicker(name string, decode DecodeParams) (scheduling.Plugin, error) {
	n, err := decodePickerParams(decode)
	if err != nil {
		return nil, err
	}
	return &maxScorePicker{base: base{MaxScorePickerType, name}, max: n}, nil
}

func (p *maxScorePicker) Pick(_ context.Context, _ *scheduling.CycleState, scored []scheduling.ScoredEndpoint) []*backend.Endpoint {
	if len(scored) == 0 {
		return nil
	}
	if p.max == 1 {
		// Fast path: a single pass with reservoir sampling among the tied best.
		best, ties := 0, 1
		for i := 1; i < len(scored); i++ {
			switch {
			case scored[i].Score > scored[best].Score:
				best, ties = i, 1
			case scored[i].Score == scored[best].Score:
				ties++
				if rand.Intn(ties) == 0 {
					best = i
				}
			}
		}
		return []*backend.Endpoint{scored[best].Endpoint}
	}
	shuffled := append([]scheduling.ScoredEndpoint(nil), scored...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	sort.SliceStable(shuffled, func(i, j int) bool { return shuffled[i].Score > shuffled[j].Score })
	return topEndpoints(shuffled, p.max)
}

// randomPicker ignores scores and returns random endpoints.
type randomPicker struct {
	base
	max int
}

func newRandomPicker(name string, decode DecodeParams) (scheduling.Plugin, error) {
	n, err := decodePickerParams(decode)
	if err != nil {
		return nil, err
	}
	return &randomPicker{base: base{RandomPickerType, name}, max: n}, nil
}

func (p *randomPicker) Pick(_ context.Context, _ *scheduling.CycleState, scored []scheduling.ScoredEndpoint) []*backend.Endpoint {
	shuffled := append([]scheduling.ScoredEndpoint(nil), scored...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	return topEndpoints(shuffled, p.max)
}

func topEndpoints(scored []scheduling.ScoredEndpoint, n int) []*backend.Endpoint {
	if n > len(scored) {
		n = len(scored)
	}
	out := make([]*backend.Endpoint, n)
	for i := range out {
		out[i] = scored[i].Endpoint
	}
	return out
}
