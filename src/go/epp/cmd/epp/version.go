package main

import (
	"fmt"
	"runtime"
	"strings"
)

// modules is set at link time (BUILD: -X main.modules=...) to go.mod's requirements, as
// path@version separated by commas.
var modules string

// versionText is what `epp --version` prints: the image's version and commit (its environment,
// which docker/epp/Dockerfile sets from the build metadata), the Go toolchain and every module.
func versionText(getenv func(string) string) string {
	or := func(v, fallback string) string {
		if v == "" {
			return fallback
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "epp %s (commit %s)\n", or(getenv("DYNAMO_VERSION"), "unversioned"), or(getenv("DYNAMO_COMMIT_SHA"), "unknown"))
	fmt.Fprintf(&b, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, m := range strings.Split(modules, ",") {
		if m != "" {
			fmt.Fprintf(&b, "module %s\n", m)
		}
	}
	return b.String()
}
