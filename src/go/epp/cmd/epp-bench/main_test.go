package main

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"dynamo-images.local/epp/internal/app"
)

func TestParseCPUList(t *testing.T) {
	for spec, want := range map[string][]int{"1": {1}, "2-3": {2, 3}, "0,2-4": {0, 2, 3, 4}} {
		if got, err := parseCPUList(spec); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "3-1", "-1", "1-"} {
		if got, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", bad, got)
		}
	}
}

// The EPP's real startup line, from its logger.
func TestServingAddrs(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info(app.ServingMessage,
		app.ExtProcAddrKey, "127.0.0.1:40423", app.HealthAddrKey, "127.0.0.1:41257", app.MetricsAddrKey, "127.0.0.1:46735")
	got := servingAddrs(strings.TrimSpace(buf.String()))
	if got["ext_proc"] != "127.0.0.1:40423" || got["metrics"] != "127.0.0.1:46735" {
		t.Errorf("servingAddrs = %v", got)
	}
	if got := servingAddrs(`time=x level=INFO msg="endpoint added" key=static/a address=a`); got != nil {
		t.Errorf("a line without addresses gave %v", got)
	}
}
