#!/usr/bin/env bash
# Reproducibility of an image's layers (#15): two fresh clones of this checkout's HEAD, each with
# empty Pants caches (as pex_reproducibility.sh) and its own new Docker engine (a dockerd with an
# empty data root under WORK_DIR: no build cache, no images), package the same image; prints, per
# layer, whether the two builds gave the same diff ID, and the instruction.
# Usage: benchmarks/images/layer_reproducibility.sh [TARGET] [WORK_DIR]   (as root)
#   default TARGET docker/dynamo:runtime (an engine image would download its wheels twice).
set -euo pipefail
target=${1:-docker/dynamo:runtime}
work=${2:-$(mktemp -d /tmp/layer-repro.XXXXXX)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
info=${target%%:*}; info=${info//\//.}/${target##*:}.docker-info.json
pids=()
stop_engines() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 1; done; done
}
trap stop_engines EXIT
for n in 1 2; do
  dir=$work/$n
  mkdir -p "$dir"
  git clone -q "$repo" "$dir/src"
  # Its own engine: no bridge or iptables (builds need neither), state under $dir.
  /usr/sbin/dockerd --data-root "$dir/docker" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" --bridge=none --iptables=false --ip-masq=false \
    >"$dir/dockerd.log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST=unix://$dir/docker.sock
  for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
  start=$(date +%s)
  (
    cd "$dir/src"
    DYNAMO_IMAGES_CACHE=$dir/launcher PANTS_LOCAL_STORE_DIR=$dir/store \
      PANTS_NAMED_CACHES_DIR=$dir/named DYNAMO_SKIP_DISK_CHECK=1 \
      ./pants --no-pantsd --no-remote-cache-read --no-remote-cache-write package "$target" \
      >"$dir/log" 2>&1 || { tail -20 "$dir/log" >&2; exit 1; }
  )
  image=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["image_id"])' "$dir/src/dist/$info")
  /usr/bin/docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$image" | sed '/^$/d' >"$dir/layers"
  # Instructions of the filesystem layers, oldest first (history also lists metadata-only steps).
  /usr/bin/docker history --no-trunc --format '{{.CreatedBy}}' "$image" | tac \
    | grep -E '^(COPY|ADD|RUN|WORKDIR|/bin/sh|\|)' | sed 's/ # buildkit$//' | cut -c1-90 >"$dir/steps"
  echo "build $n: $(($(date +%s) - start)) s, $(wc -l <"$dir/layers") layers"
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
