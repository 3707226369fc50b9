#!/usr/bin/env bash
# Builds (once) the Debian bookworm root filesystems that stand in for the official
# node:20-bookworm and node:20-bookworm-slim images, which cannot be pulled here.
# Output: $CACHE/bookworm-minbase.tar and $CACHE/bookworm-build.tar (plain rootfs tarballs,
# reused across runs; test/deploy/image.test.ts adds this machine's Node on top).
# Usage: base-rootfs.sh CACHE_DIR [MIRROR]
set -euo pipefail
CACHE=${1:?cache dir}
MIRROR=${2:-http://deb.debian.org/debian}
mkdir -p "$CACHE"

build() { # name, extra debootstrap args...
  local name=$1; shift
  local out="$CACHE/$name.tar"
  [ -s "$out" ] && return 0
  local work
  work=$(mktemp -d "$CACHE/.work-$name.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  debootstrap --variant=minbase "$@" bookworm "$work/root" "$MIRROR" >"$work/log" 2>&1 || {
    tail -n 30 "$work/log" >&2
    return 1
  }
  # Smaller image: no apt lists, no docs (like the official slim images).
  rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/var/cache/apt/archives/"*.deb \
    "$work/root/usr/share/doc/"* "$work/root/usr/share/man/"* "$work/root/usr/share/locale/"*
  tar --numeric-owner -C "$work/root" -cf "$work/out.tar" .
  mv "$work/out.tar" "$out"
}

# Two independent debootstraps in parallel (separate work dirs; the build one needs a compiler
# for better-sqlite3's node-gyp build, like the official node:20-bookworm image has).
build bookworm-minbase &
p1=$!
build bookworm-build --include=python3,make,g++,ca-certificates &
p2=$!
rc=0
wait "$p1" || rc=1
wait "$p2" || rc=1
exit "$rc"
