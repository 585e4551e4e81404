#!/usr/bin/env bash
# Benchmarks the endpoint picker: builds the EPP (src/go/epp/cmd/epp) and its benchmark
# (src/go/epp/cmd/epp-bench) with Pants and runs the benchmark on the EPP binary. The benchmark
# starts fake model servers, runs the EPP as its own process on loopback, offers picks over
# gRPC at rising rates (open loop, as Envoy sends them) and prints picks/s and p50/p90/p99 pick
# latency per rate, the EPP's own server-side p99, and the same load against a do-nothing
# ext_proc server ("floor": what gRPC, the load generator and the machine cost anyway). The
# servers and the load generator run on separate CPUs (--server-cpus), and pantsd is stopped
# once the binaries are built (see below). It ends by itself (about 50 s with the defaults) and
# stops what it started. Arguments are passed on, e.g.:
#
#   benchmarks/epp/run.sh --rates 250,500,1000,2000 --duration 5s --endpoints 8
#   benchmarks/epp/run.sh --fail-on-goal          # exit 1 if p99 > 1 ms at 1000 picks/s
#   benchmarks/epp/run.sh --server-cpus none      # servers and load generator share all CPUs
#   GOGC=100 benchmarks/epp/run.sh                # the EPP (and floor) with Go's default GC
#   benchmarks/epp/run.sh --help
#
# EPP_BENCH_GO=/path/to/go runs it with that Go toolchain (>= 1.21) instead of Pants.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if [[ -n "${EPP_BENCH_GO:-}" ]]; then
  out="$(mktemp -d)"
  (cd src/go/epp && GOTOOLCHAIN=local "$EPP_BENCH_GO" build -o "$out/" ./cmd/epp ./cmd/epp-bench)
  bench="$out/epp-bench" epp="$out/epp"
else
  ./pants package src/go/epp/cmd/epp:epp src/go/epp/cmd/epp-bench:epp-bench >&2
  bench="dist/src.go.epp.cmd.epp-bench/epp-bench" epp="dist/src.go.epp.cmd.epp/epp"
  # pantsd extends its cache leases about every 80 s, a second or so of CPU on every core: on
  # a small machine that lands in a measurement as a 100+ ms stall. Stop it (the next ./pants
  # starts it again); EPP_BENCH_KEEP_PANTSD=1 keeps it.
  if [[ -z "${EPP_BENCH_KEEP_PANTSD:-}" ]]; then
    for pidfile in .pids/*/pantsd/pid; do
      [[ -f "$pidfile" ]] || continue
      pid="$(cat "$pidfile")"
      if [[ "$(cat "/proc/$pid/cmdline" 2>/dev/null | tr '\0' ' ')" == pantsd* ]]; then
        echo "run.sh: stopping pantsd (pid $pid) for the measurement; EPP_BENCH_KEEP_PANTSD=1 keeps it" >&2
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    done
  fi
fi
exec "$bench" --epp "$epp" "$@"
