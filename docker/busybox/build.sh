#!/usr/bin/env bash
# Builds the workload image flotilla/busybox:latest without a registry: Debian's static
# busybox in a FROM scratch image, every applet linked into /bin, default CMD ["sh"].
# Tests and the demo run their workloads in it. Safe to re-run: the build is cached and
# the tag is simply moved to the same image.
set -euo pipefail

IMAGE="${IMAGE:-flotilla/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { echo "[busybox image] $*"; }
die() { echo "[busybox image] ERROR: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"

if [ ! -x "$BUSYBOX" ]; then
    [ "$(id -u)" = 0 ] || die "$BUSYBOX missing: run 'apt-get install -y busybox-static' as root"
    log "installing busybox-static"
    apt-get install -y busybox-static >/dev/null || {
        apt-get update >/dev/null && apt-get install -y busybox-static >/dev/null
    } || die "apt-get install busybox-static failed"
fi
[ -x "$BUSYBOX" ] || die "$BUSYBOX still missing after installing busybox-static"
# A dynamically linked busybox would start in the image and die at once: no libc there.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
count=0
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] && continue
    ln -s busybox "$root/bin/$applet"
    count=$((count + 1))
done
# Some applets (id, httpd, whoami) look users up; give them root and nobody.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
cp "$HERE/Dockerfile" "$ctx/Dockerfile"

version="$( ("$BUSYBOX" || true) | head -n 1 | sed 's/ multi-call binary\.$//')"
log "building $IMAGE from $BUSYBOX ($version), $count applets"
# The legacy builder's deprecation notice is noise here: show the output only on failure.
if ! build_out="$(docker build --label "org.flotilla.busybox=$version" -t "$IMAGE" "$ctx" 2>&1)"; then
    echo "$build_out" >&2
    die "docker build failed"
fi

out="$(docker run --rm "$IMAGE" sh -c 'trap "" TERM; echo ok' 2>&1)" || die "smoke test failed: $out"
[ "$out" = ok ] || die "smoke test printed '$out', expected 'ok'"
log "built $IMAGE ($(docker image inspect --format '{{.Id}}' "$IMAGE")), smoke test passed"
