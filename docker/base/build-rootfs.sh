#!/usr/bin/env bash
# Build the base images' root filesystems from Debian packages, since no registry is reachable:
#   runtime-rootfs.tar  debootstrap minbase + runtime-packages.txt (+ security updates)
#   dev-overlay.tar     only the files that installing dev-packages.txt adds or changes
#   packages.lock       the package versions of both, compared with the committed lock
# Usage: build-rootfs.sh SUITE MIRROR SECURITY_MIRROR OUT_DIR   (run as root, e.g. by Pants)
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

suite=$1 mirror=$2 security_mirror=$3 out=$4
here=$(dirname "$0")
root=$(mktemp -d "$PWD/rootfs.XXXXXX")
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

packages() { sed -e 's/#.*//' "$1" | xargs; }
in_root() { chroot "$root" "$@"; }
versions() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version} ${Architecture}\n' | sort; }
# Paths that Docker provides at run time or that only hold caches.
tar_excludes=(--exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./tmp/*
  --exclude=./var/cache/apt/* --exclude=./var/lib/apt/lists/* --exclude=./etc/resolv.conf --exclude=./etc/hostname)

debootstrap --variant=minbase --include="$(packages "$here/runtime-packages.txt" | tr ' ' ,)" \
  "$suite" "$root" "$mirror" >&2
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
in_root apt-get update -qq
in_root apt-get -y -qq upgrade >&2
in_root apt-get clean

mkdir -p "$out"
{ echo "## runtime"; versions; } >"$out/packages.lock.runtime"
tar --numeric-owner -C "$root" "${tar_excludes[@]}" -cf "$out/runtime-rootfs.tar" .

# ctime cannot be set by dpkg (unlike mtime), so -cnewer finds exactly what the dev install touched.
touch "$root/.dev-marker"
sleep 1
in_root apt-get install -y -qq --no-install-recommends $(packages "$here/dev-packages.txt") >&2
in_root apt-get clean
umount "$root/proc"
(cd "$root" && find . -cnewer .dev-marker ! -path ./.dev-marker ! -path './var/lib/apt/lists/*' \
  ! -path './var/cache/*' ! -path ./etc/resolv.conf ! -path './tmp/*' ! -path './dev/*' | sort) >"$root/.dev-files"
tar --numeric-owner -C "$root" --no-recursion -T "$root/.dev-files" -cf "$out/dev-overlay.tar"
{ cat "$out/packages.lock.runtime"; echo "## dev"; versions | comm -13 <(sed 1d "$out/packages.lock.runtime") -; } >"$out/packages.lock"
rm "$out/packages.lock.runtime"

# Debian moves within a suite (point releases, security fixes): report drift, do not fail.
if ! diff -u "$here/packages.lock" "$out/packages.lock" >"$out/packages.lock.diff"; then
  echo "WARNING: Debian package versions differ from docker/base/packages.lock (diff below)." >&2
  echo "To record them: ./pants export-codegen docker/base:rootfs && cp dist/codegen/docker/base/rootfs/packages.lock docker/base/" >&2
  cat "$out/packages.lock.diff" >&2
fi
