#!/usr/bin/env bash
# Benchmarks the endpoint picker: builds src/go/epp/cmd/epp-bench with Pants and runs it. The
# benchmark starts fake model servers and the real EPP in-process on loopback, offers picks over
# gRPC at rising rates (open loop, as Envoy sends them) and prints picks/s and p50/p90/p99 pick
# latency per rate, the EPP's own server-side p99, and the same load against a do-nothing
# ext_proc server ("floor": what gRPC, the load generator and the machine cost anyway). It ends
# by itself (about 50 s with the defaults). Arguments are passed on, e.g.:
#
#   benchmarks/epp/run.sh --rates 250,500,1000,2000 --duration 5s --endpoints 8
#   benchmarks/epp/run.sh --fail-on-goal          # exit 1 if p99 > 1 ms at 1000 picks/s
#   benchmarks/epp/run.sh --help
#
# EPP_BENCH_GO=/path/to/go runs it with that Go toolchain (>= 1.21) instead of Pants.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if [[ -n "${EPP_BENCH_GO:-}" ]]; then
  bin="$(mktemp -d)/epp-bench"
  (cd src/go/epp && GOTOOLCHAIN=local "$EPP_BENCH_GO" build -o "$bin" ./cmd/epp-bench)
else
  ./pants package src/go/epp/cmd/epp-bench:epp-bench >&2
  bin="dist/src.go.epp.cmd.epp-bench/epp-bench"
fi
exec "$bin" "$@"
