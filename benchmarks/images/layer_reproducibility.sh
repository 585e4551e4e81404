#!/usr/bin/env bash
# Reproducibility of an image's layers (#15): two fresh clones of this checkout's HEAD (at the start), each with
# empty Pants caches (as pex_reproducibility.sh) and its own new Docker engine (a dockerd with an
# empty data root under WORK_DIR: no build cache, no images), package the same image; prints, per
# layer, whether the two builds gave the same diff ID, and the instruction.
# Usage: benchmarks/images/layer_reproducibility.sh [TARGET] [WORK_DIR]   (as root)
#   default TARGET docker/dynamo:runtime (an engine image would download its wheels twice).
set -euo pipefail
target=${1:-docker/dynamo:runtime}
work=${2:-$(mktemp -d /tmp/layer-repro.XXXXXX)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=benchmarks/images/fresh_build.sh
source "$repo/benchmarks/images/fresh_build.sh"
commit=$(git -C "$repo" rev-parse HEAD)
info=${target%%:*}; info=${info//\//.}/${target##*:}.docker-info.json
# The builds' engines share a bridge of their own: a dockerd started with --bridge=none would
# delete docker0, the machine's own engine's bridge, from under it.
bridge=dynrepro0
ip link add "$bridge" type bridge 2>/dev/null || true
ip addr replace 172.31.254.1/24 dev "$bridge"
ip link set "$bridge" up
pids=()
stop_engines() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 1; done; done
}
trap 'stop_engines; ip link delete "$bridge" 2>/dev/null || true' EXIT
for n in 1 2; do
  dir=$work/$n
  mkdir -p "$dir"
  # Its own engine: state under $dir, no iptables rules (builds need no network).
  /usr/sbin/dockerd --data-root "$dir/docker" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" --bridge="$bridge" --iptables=false --ip-masq=false \
    >"$dir/dockerd.log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST=unix://$dir/docker.sock
  for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
  start=$(date +%s)
  fresh_build "$repo" "$commit" "$dir" "$target"
  image=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["image_id"])' "$dir/src/dist/$info")
  /usr/bin/docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$image" | sed '/^$/d' >"$dir/layers"
  # Instructions of the filesystem layers, oldest first (history also lists metadata-only steps).
  /usr/bin/docker history --no-trunc --format '{{.CreatedBy}}' "$image" | tac \
    | grep -E '^(COPY|ADD|RUN|WORKDIR|/bin/sh|\|)' | sed 's/ # buildkit$//' | cut -c1-90 >"$dir/steps"
  echo "build $n: $(($(date +%s) - start)) s, $(wc -l <"$dir/layers") layers, $(wc -l <"$dir/steps") filesystem steps"
  stop_engines; pids=()
  rm -rf "$dir/docker" "$dir/store" "$dir/named"
done
same=0
total=$(wc -l <"$work/1/layers")
while IFS=$'\t' read -r a b step; do
  if [[ "$a" == "$b" ]]; then same=$((same + 1)); verdict=same; else verdict=DIFFERS; fi
  printf '%-8s %s  %s\n' "$verdict" "${a:7:12}" "$step"
done < <(paste "$work/1/layers" "$work/2/layers" "$work/1/steps")
echo "$target: $same of $total layers have the same diff ID in both builds ($work)"
