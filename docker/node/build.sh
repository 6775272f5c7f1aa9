#!/usr/bin/env bash
# Builds the node image flotilla/node:latest without a registry: the host-built flotilla
# binary, every shared library `ldd` lists and the dynamic loader in a FROM scratch image,
# entrypoint `flotilla`. docker/compose.yaml runs three of these (`make cluster-up`).
# Safe to re-run: an unchanged binary hits the build cache and the tag is simply moved to
# the same image; a rebuilt binary gives a new image.
set -euo pipefail

IMAGE="${IMAGE:-flotilla/node:latest}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/debug/flotilla}"
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { echo "[node image] $*"; }
die() { echo "[node image] ERROR: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"
[ -x "$BIN" ] || die "flotilla binary not found at $BIN: run 'make build' first (or set FLOTILLA_BIN)"
command -v ldd >/dev/null || die "ldd not found (package libc-bin)"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/lib/flotilla"
chmod 1777 "$root/tmp"
cp "$BIN" "$root/bin/flotilla"

# ldd prints `libx.so => /path (0x…)` for libraries and `/path (0x…)` for the loader;
# vdso lines have no path. Capture the whole output first (no pipe into head: SIGPIPE).
ldd_out="$(ldd "$BIN" 2>&1)" || die "ldd $BIN failed: $ldd_out"
libs=()
while read -r path; do
    [ -n "$path" ] && libs+=("$path")
done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; break } }' <<<"$ldd_out")
[ "${#libs[@]}" -gt 0 ] || die "ldd listed no libraries for $BIN (a static binary needs no build.sh tricks, but this one is unexpected): $ldd_out"
for lib in "${libs[@]}"; do
    [ -e "$lib" ] || die "ldd names $lib, which does not exist"
    mkdir -p "$root$(dirname "$lib")"
    # -L: the image gets the file itself, not a symlink into a path that is not there.
    cp -L "$lib" "$root$lib"
done
grep -q 'ld-linux' <<<"${libs[*]}" || die "no dynamic loader in the ldd output: $ldd_out"

# glibc's resolver: /etc/hosts first (compose writes it), then DNS (compose's service names).
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
cp "$HERE/Dockerfile" "$ctx/Dockerfile"

version="$("$BIN" --version 2>&1)" || die "$BIN --version failed: $version"
size="$(du -sh "$root" | cut -f1)"
log "building $IMAGE from $BIN ($version), ${#libs[@]} libraries: ${libs[*]}"
if ! build_out="$(docker build --label "org.flotilla.node=$version" -t "$IMAGE" "$ctx" 2>&1)"; then
    echo "$build_out" >&2
    die "docker build failed"
fi

out="$(docker run --rm "$IMAGE" --version 2>&1)" || die "smoke test failed: $out"
[ "$out" = "$version" ] || die "smoke test printed '$out', expected '$version'"
log "built $IMAGE ($(docker image inspect --format '{{.Id}}' "$IMAGE"), rootfs $size), smoke test passed"
