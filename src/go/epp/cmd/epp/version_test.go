package main

import (
	"runtime"
	"testing"
)

func TestVersionText(t *testing.T) {
	saved := modules
	defer func() { modules = saved }()
	modules = "google.golang.org/grpc@v1.67.3,gopkg.in/yaml.v3@v3.0.1"
	env := map[string]string{"DYNAMO_VERSION": "v1.2.3", "DYNAMO_COMMIT_SHA": "abc"}
	got := versionText(func(k string) string { return env[k] })
	want := "epp v1.2.3 (commit abc)\ngo " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH +
		"\nmodule google.golang.org/grpc@v1.67.3\nmodule gopkg.in/yaml.v3@v3.0.1\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	modules = ""
	if got := versionText(func(string) string { return "" }); got != "epp unversioned (commit unknown)\ngo "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n" {
		t.Fatalf("without metadata: %q", got)
	}
}
