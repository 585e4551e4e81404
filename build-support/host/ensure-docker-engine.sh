#!/usr/bin/env bash
# Make a Docker engine reachable, idempotently. Reuses a running engine; otherwise, on Debian as
# root, installs Debian's docker.io (the only engine source reachable here) and starts dockerd in
# the background, logging to $DOCKERD_LOG. Anywhere else it says what is missing and fails.
set -euo pipefail

log="${DOCKERD_LOG:-/var/log/dockerd.log}"
# Debian's CLI has BuildKit built in, which Pants' docker backend uses (pants.toml [docker]).
docker_cli=/usr/bin/docker

engine_up() { [[ -x "$docker_cli" ]] && "$docker_cli" info >/dev/null 2>&1; }
# Builds and test containers use the default bridge; a second dockerd started with
# --bridge=none deletes docker0 from under a running engine, which a restart recreates.
bridge_ok() { [[ -n "${DOCKER_HOST:-}" ]] || ! command -v ip >/dev/null || ip link show docker0 >/dev/null 2>&1; }
die() { echo "ensure-docker-engine: $*" >&2; exit 1; }

if engine_up && bridge_ok; then exit 0; fi
pidfile=/var/run/docker.pid
if engine_up && [[ "$(id -u)" == 0 && -s "$pidfile" ]]; then
  echo "ensure-docker-engine: the docker0 bridge is gone; restarting dockerd" >&2
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
fi

if [[ -n "${DOCKER_HOST:-}" ]]; then
  die "DOCKER_HOST=$DOCKER_HOST is set but no engine answers there (and $docker_cli must exist)"
fi
[[ -r /etc/debian_version ]] || die "no Docker engine answers and this is not Debian: install Docker (engine + CLI at $docker_cli) and start it"
[[ "$(id -u)" == 0 ]] || die "no Docker engine answers; as root run: $0 (installs Debian's docker.io and starts dockerd)"

if ! command -v dockerd >/dev/null || [[ ! -x "$docker_cli" ]]; then
  echo "ensure-docker-engine: installing Debian's docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! { [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
  echo "ensure-docker-engine: starting dockerd (log: $log)" >&2
  mkdir -p "$(dirname "$log")"
  # setsid: the engine outlives the caller's process group (CI kills it between steps).
  setsid nohup dockerd >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 60); do
  engine_up && bridge_ok && exit 0
  sleep 1
done
die "dockerd did not answer within 60 s; last lines of $log: $(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
