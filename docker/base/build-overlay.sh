#!/usr/bin/env bash
# Debian packages an image adds on top of the base, as a tarball of only the files that installing
# them adds or changes (Docker's ADD unpacks it into one layer), and the versions installed.
# Usage: build-overlay.sh ROOTFS_TAR PACKAGES_FILE OUT_TAR_GZ   (run as root, e.g. by Pants)
# The versions installed are in the tarball too, as /opt/dynamo/system-packages.lock.
# ROOTFS_TAR is docker/base:rootfs's runtime-rootfs.tar, whose apt sources name Debian's mirror.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

rootfs_tar=$1 list=$2 out=$3
root=$(mktemp -d "$PWD/overlay.XXXXXX")
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

packages=$(sed -e 's/#.*//' "$list" | xargs)
[[ -n "$packages" ]] || { echo "build-overlay: $list names no package" >&2; exit 1; }
tar --numeric-owner -C "$root" -xf "$rootfs_tar"
versions() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version} ${Architecture}\n' | sort; }
versions >"$root/.before"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
chroot "$root" apt-get update -qq
# ctime cannot be set by dpkg (unlike mtime), so -cnewer finds exactly what the install touched.
touch "$root/.marker"
sleep 1
# shellcheck disable=SC2086 # one package name per word
chroot "$root" apt-get install -y -qq --no-install-recommends $packages >&2
chroot "$root" apt-get clean
umount "$root/proc"
(cd "$root" && find . -cnewer .marker ! -path ./.marker ! -path ./.before ! -path './var/lib/apt/lists/*' \
  ! -path './var/cache/*' ! -path './var/log/*' ! -path ./etc/resolv.conf ! -path './tmp/*' ! -path './dev/*' | sort) >"$root/.files"
mkdir -p "$root/opt/dynamo" "$(dirname "$out")"
versions | comm -13 "$root/.before" - >"$root/opt/dynamo/system-packages.lock"
printf '%s\n' ./opt ./opt/dynamo ./opt/dynamo/system-packages.lock >>"$root/.files"
tar --numeric-owner -C "$root" --no-recursion -T "$root/.files" -c | gzip -1 -n >"$out"
echo "build-overlay: $(wc -l <"$root/opt/dynamo/system-packages.lock") packages, $(wc -l <"$root/.files") paths" >&2
