# shellcheck shell=bash
# Sourced by pex_reproducibility.sh and layer_reproducibility.sh.
# fresh_build REPO COMMIT DIR TARGET: clones REPO at COMMIT into DIR/src (every build of one run
# at the same commit, whatever REPO's HEAD does meanwhile) and packages TARGET there with empty
# Pants caches (its own local store, named caches with pex's root, launcher cache) and no remote
# cache, logging to DIR/log; on failure prints the log's last lines and returns 1. The Docker
# engine is whichever DOCKER_HOST names.
fresh_build() {
  local repo=$1 commit=$2 dir=$3 target=$4
  mkdir -p "$dir"
  git clone -q "$repo" "$dir/src"
  git -C "$dir/src" checkout -q --detach "$commit"
  (
    cd "$dir/src"
    DYNAMO_IMAGES_CACHE=$dir/launcher PANTS_LOCAL_STORE_DIR=$dir/store \
      PANTS_NAMED_CACHES_DIR=$dir/named DYNAMO_SKIP_DISK_CHECK=1 \
      ./pants --no-pantsd --no-remote-cache-read --no-remote-cache-write package "$target" \
      >"$dir/log" 2>&1
  ) || { tail -20 "$dir/log" >&2; return 1; }
}
