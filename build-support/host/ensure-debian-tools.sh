#!/usr/bin/env bash
# Install the host tools that image targets run (docker/base builds its root filesystems with
# debootstrap), idempotently. On Debian as root it installs what is missing from Debian's mirror;
# anywhere else it names what is missing and fails.
set -euo pipefail

# docker-registry: the real registry that the publish tests push to (tests/cli); chromium: the
# real browser that loads the docs image's site (tests/docs).
tools=(debootstrap docker-registry chromium)
missing=()
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
done
((${#missing[@]} == 0)) && exit 0

die() { echo "ensure-debian-tools: $*" >&2; exit 1; }
[[ -r /etc/debian_version ]] || die "missing ${missing[*]}: install it with your package manager (image root filesystems are built with Debian's debootstrap)"
[[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; as root run: apt-get install ${missing[*]}"
echo "ensure-debian-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
