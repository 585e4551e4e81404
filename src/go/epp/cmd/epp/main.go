// Command epp is a Gateway API Inference Extension endpoint picker for Dynamo, vLLM, SGLang and
// TRT-LLM model servers: Envoy asks it over ext_proc which model server gets each request.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"dynamo-images.local/epp/internal/app"
)

func main() {
	opts := app.DefaultOptions()
	fs := flag.NewFlagSet("epp", flag.ExitOnError)
	opts.RegisterFlags(fs)
	version := fs.Bool("version", false, "print the version, Go toolchain and module versions, then exit")
	fs.Parse(os.Args[1:])
	if *version {
		fmt.Print(versionText(os.Getenv))
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "epp: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}

	logger, err := opts.Logger()
	if err != nil {
		fmt.Fprintln(os.Stderr, "epp:", err)
		os.Exit(2)
	}
	rt := app.ApplyRuntimeDefaults(os.Getenv, "/sys/fs/cgroup")
	logger.Info("Go runtime", "GOGC", rt.GCPercent, "memory_limit_bytes", rt.MemoryLimitBytes, "memory_limit_from", rt.MemoryLimitFrom,
		"GOMAXPROCS", runtime.GOMAXPROCS(0))
	a, err := app.New(opts, logger)
	if err != nil {
		logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		logger.Error("stopped", "err", err)
		os.Exit(1)
	}
}
