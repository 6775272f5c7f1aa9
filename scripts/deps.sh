#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test flotilla. Idempotent.
set -euo pipefail

need_apt=()
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
if ! compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null && ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null; then
  need_apt+=(libclang-dev clang)
fi
command -v clang >/dev/null || need_apt+=(clang)
# The workload image is built offline from Debian's static busybox.
[ -x /bin/busybox ] || need_apt+=(busybox-static)
# The chaos runner's network partitions are iptables rules on the loopback.
command -v iptables >/dev/null || need_apt+=(iptables)

# The status page test loads the page in headless Chromium; under CI it must be there.
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "deps: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# The Docker engine is required for the executor's tests; under CI it must be there.
if ! docker info >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "deps: the Docker engine is not reachable (docker info failed); CI requires it" >&2
    exit 1
  fi
  echo "deps: warning: no Docker engine reachable; Docker tests will be skipped" >&2
fi
