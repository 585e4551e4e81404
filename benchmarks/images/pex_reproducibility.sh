#!/usr/bin/env bash
# Reproducibility of a PEX (#15): two fresh clones of this checkout's HEAD (at the start), each with empty Pants
# caches (its own local store, named caches with pex's root, launcher cache) and no remote cache,
# package the same pex_binary; prints each build's time and whether every file of the two packed
# PEXes is byte-identical. Usage: benchmarks/images/pex_reproducibility.sh [TARGET] [WORK_DIR]
#   default TARGET docker/dynamo:deps (an engine's :deps downloads ~4.5 GB twice).
set -euo pipefail
target=${1:-docker/dynamo:deps}
work=${2:-$(mktemp -d /tmp/pex-repro.XXXXXX)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=benchmarks/images/fresh_build.sh
source "$repo/benchmarks/images/fresh_build.sh"
commit=$(git -C "$repo" rev-parse HEAD)
out=${target%%:*}; out=${out//\//.}/${target##*:}.pex
for n in 1 2; do
  dir=$work/$n
  start=$(date +%s)
  fresh_build "$repo" "$commit" "$dir" "$target"
  (cd "$dir/src/dist/$out" && find . -type f | sort | xargs sha256sum) >"$dir/sums"
  echo "build $n: $(($(date +%s) - start)) s, $(wc -l <"$dir/sums") files, $(du -sb "$dir/src/dist/$out" | cut -f1) bytes"
done
if diff "$work/1/sums" "$work/2/sums" >"$work/diff"; then
  echo "$target: byte-identical ($work)"
else
  echo "$target: $(grep -c '^<' "$work/diff") files differ ($work/diff)"
  exit 1
fi
