package scheduling

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"dynamo-images.local/epp/internal/backend"
)

type named struct{ name string }

func (n named) Type() string { return "test" }
func (n named) Name() string { return n.name }

// dropFilter removes the listed keys.
type dropFilter struct {
	named
	drop map[string]bool
	seen *[]string
}

func (f dropFilter) Filter(_ context.Context, _ *CycleState, _ *Request, eps []*backend.Endpoint) []*backend.Endpoint {
	var out []*backend.Endpoint
	for _, e := range eps {
		*f.seen = append(*f.seen, f.name+":"+e.Key())
		if !f.drop[e.Key()] {
			out = append(out, e)
		}
	}
	return out
}

// fixedScorer returns preset scores by key and records into the cycle state.
type fixedScorer struct {
	named
	scores map[string]float64
}

func (s fixedScorer) Score(_ context.Context, c *CycleState, _ *Request, eps []*backend.Endpoint) []float64 {
	c.Write("scored-by-"+s.name, true)
	out := make([]float64, len(eps))
	for i, e := range eps {
		out[i] = s.scores[e.Key()]
	}
	return out
}

// bestPicker returns all endpoints by descending score and remembers what it was given.
type bestPicker struct {
	named
	got *[]ScoredEndpoint
}

func (p bestPicker) Pick(_ context.Context, _ *CycleState, scored []ScoredEndpoint) []*backend.Endpoint {
	*p.got = append([]ScoredEndpoint(nil), scored...)
	best := 0
	for i := range scored {
		if scored[i].Score > scored[best].Score {
			best = i
		}
	}
	return []*backend.Endpoint{scored[best].Endpoint}
}

// recorder is a PostPicker and EndpointRemovedListener.
type recorder struct {
	named
	picked   []string
	cycleOK  bool
	removed  []string
	requests []*Request
}

func (r *recorder) PostPick(_ context.Context, c *CycleState, req *Request, picked []*backend.Endpoint) {
	_, r.cycleOK = c.Read("scored-by-s1")
	r.requests = append(r.requests, req)
	for _, p := range picked {
		r.picked = append(r.picked, p.Key())
	}
}
func (r *recorder) EndpointRemoved(key string) { r.removed = append(r.removed, key) }

func eps(keys ...string) []*backend.Endpoint {
	out := make([]*backend.Endpoint, len(keys))
	for i, k := range keys {
		out[i] = &backend.Endpoint{Info: &backend.EndpointInfo{Key: k}}
	}
	return out
}

func TestScheduleRunsFiltersScorersPickerAndPostPick(t *testing.T) {
	var seen []string
	var got []ScoredEndpoint
	rec := &recorder{named: named{"rec"}}
	f1 := dropFilter{named{"f1"}, map[string]bool{"c": true}, &seen}
	f2 := dropFilter{named{"f2"}, map[string]bool{}, &seen}
	s1 := fixedScorer{named{"s1"}, map[string]float64{"a": 1, "b": 0, "c": 1}}
	s2 := fixedScorer{named{"s2"}, map[string]float64{"a": 0, "b": 1, "c": 1}}
	// NaN and out-of-range scores are clamped into [0,1].
	s3 := fixedScorer{named{"s3"}, map[string]float64{"a": math.NaN(), "b": 7}}
	profile := &Profile{
		Name:    "p",
		Filters: []Filter{f1, f2},
		Scorers: []WeightedScorer{{s1, 1}, {s2, 3}, {s3, 0.5}},
		Picker:  bestPicker{named{"pick"}, &got},
	}
	sched, err := NewScheduler(profile, []Plugin{f1, f2, s1, s2, s3, rec})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Model: "m"}
	picked, err := sched.Schedule(context.Background(), req, eps("a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(picked) != 1 || picked[0].Key() != "b" {
		t.Fatalf("picked %v", picked)
	}
	// f2 only saw what f1 kept.
	if want := []string{"f1:a", "f1:b", "f1:c", "f2:a", "f2:b"}; !reflect.DeepEqual(seen, want) {
		t.Fatalf("filter calls %v", seen)
	}
	if len(got) != 2 || got[0].Score != 1 || got[1].Score != 3.5 {
		t.Fatalf("weighted scores %+v", got)
	}
	if !reflect.DeepEqual(rec.picked, []string{"b"}) || !rec.cycleOK || rec.requests[0] != req {
		t.Fatalf("post-pick: %+v", rec)
	}
	sched.EndpointRemoved("a")
	if !reflect.DeepEqual(rec.removed, []string{"a"}) {
		t.Fatalf("removed: %v", rec.removed)
	}
}

func TestScheduleFailsWhenFiltersRemoveEverything(t *testing.T) {
	var seen, got = []string{}, []ScoredEndpoint{}
	f := dropFilter{named{"strict"}, map[string]bool{"a": true}, &seen}
	sched, err := NewScheduler(&Profile{Filters: []Filter{f}, Picker: bestPicker{named{"p"}, &got}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sched.Schedule(context.Background(), &Request{}, eps("a"))
	if !errors.Is(err, ErrNoEndpoints) || !strings.Contains(err.Error(), "strict") {
		t.Fatalf("err = %v", err)
	}
	if _, err := sched.Schedule(context.Background(), &Request{}, nil); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("no candidates: err = %v", err)
	}
}

func TestNewSchedulerNeedsAPicker(t *testing.T) {
	if _, err := NewScheduler(&Profile{}, nil); err == nil {
		t.Fatal("profile without picker accepted")
	}
}
