#!/usr/bin/env bash
# Runs the 3-node compose cluster (docker/compose.yaml): `make cluster-up` / `make cluster-down`.
#
#   docker/cluster.sh up              build missing images, start node1-3, wait for a leader
#   docker/cluster.sh down            stop and remove the nodes, their network and every
#                                     container labelled flotilla.cluster=compose; keep the
#                                     data volumes (the next `up` resumes the same cluster)
#   docker/cluster.sh down --volumes  the same, and delete the data volumes (a fresh cluster)
#   docker/cluster.sh status          `flotilla cluster status` through the published ports
#
# Environment (defaults in brackets; a test runs a second copy beside the operator's):
#   FLOTILLA_PROJECT [flotilla]   compose project name (containers, network, volumes)
#   FLOTILLA_CLUSTER [compose]    the flotilla.cluster label on the workload containers
#   FLOTILLA_PORT1..3 [17001..3]  the nodes' API ports on 127.0.0.1
#   FLOTILLA_BIN                  the host-built CLI [$CARGO_TARGET_DIR/debug/flotilla]
#   WAIT_SECS [60]                how long `up` waits for a leader
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export FLOTILLA_PROJECT="${FLOTILLA_PROJECT:-flotilla}"
export FLOTILLA_CLUSTER="${FLOTILLA_CLUSTER:-compose}"
export FLOTILLA_PORT1="${FLOTILLA_PORT1:-17001}"
export FLOTILLA_PORT2="${FLOTILLA_PORT2:-17002}"
export FLOTILLA_PORT3="${FLOTILLA_PORT3:-17003}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
BIN="${FLOTILLA_BIN:-$TARGET_DIR/debug/flotilla}"
WAIT_SECS="${WAIT_SECS:-60}"
if [ "$FLOTILLA_PROJECT" = flotilla ]; then
    STOP="make cluster-down (keeps the data volumes) or make cluster-down PURGE=1 (deletes them)"
else
    STOP="FLOTILLA_PROJECT=$FLOTILLA_PROJECT FLOTILLA_CLUSTER=$FLOTILLA_CLUSTER $0 down [--volumes]"
fi
ADDR="127.0.0.1:$FLOTILLA_PORT1,127.0.0.1:$FLOTILLA_PORT2,127.0.0.1:$FLOTILLA_PORT3"
# The bootstrap token and the admin client config (copied out of node1) live here.
STATE="${FLOTILLA_STATE:-$HOME/.config/flotilla/$FLOTILLA_PROJECT}"
export FLOTILLA_CONFIG="$STATE/admin.yaml"
if [ -s "$STATE/bootstrap.token" ]; then
    FLOTILLA_TOKEN="$(cat "$STATE/bootstrap.token")"
else
    FLOTILLA_TOKEN=""
fi
export FLOTILLA_TOKEN

log() { echo "[cluster] $*"; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"
# Whichever compose is installed: the `docker compose` plugin, else docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is installed"
fi
COMPOSE+=(-p "$FLOTILLA_PROJECT" -f "$HERE/compose.yaml")

node_ids() { "${COMPOSE[@]}" ps -q 2>/dev/null || true; }

image_ok() {
    docker image inspect "$1" >/dev/null 2>&1
}

# The node image is rebuilt when missing or older than the host-built binary.
ensure_images() {
    [ -x "$BIN" ] || die "flotilla binary not found at $BIN: run 'make build' first"
    if ! image_ok flotilla/busybox:latest; then
        log "workload image flotilla/busybox:latest missing; building it"
        bash "$HERE/busybox/build.sh"
    fi
    local rebuild=""
    if ! image_ok flotilla/node:latest; then
        rebuild="missing"
    else
        local created bin_mtime
        created="$(date -d "$(docker image inspect --format '{{.Created}}' flotilla/node:latest)" +%s)"
        bin_mtime="$(stat -c %Y "$BIN")"
        [ "$bin_mtime" -le "$created" ] || rebuild="older than $BIN"
    fi
    if [ -n "$rebuild" ]; then
        log "node image flotilla/node:latest $rebuild; building it"
        FLOTILLA_BIN="$BIN" bash "$HERE/node/build.sh"
    else
        log "images flotilla/node:latest and flotilla/busybox:latest are up to date"
    fi
}

# Workload containers sit on the engine's default bridge; put every node there too so
# http/tcp health checks reach them (compose cannot attach to the default bridge).
connect_bridge() {
    local id nets
    for id in $(node_ids); do
        nets="$(docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$id")"
        case " $nets " in
            *" bridge "*) ;;
            *) docker network connect bridge "$id" ;;
        esac
    done
}

status() {
    "$BIN" --addr "$ADDR" --timeout 3s cluster status "$@"
}

# Copies node1's admin config out once node1 has written it.
fetch_config() {
    local id
    id="$("${COMPOSE[@]}" ps -q node1)"
    [ -n "$id" ] || return 1
    docker cp "$id:/var/lib/flotilla/admin.yaml" "$STATE/admin.yaml.new" >/dev/null 2>&1 || return 1
    chmod 600 "$STATE/admin.yaml.new"
    mv "$STATE/admin.yaml.new" "$STATE/admin.yaml"
}

up() {
    ensure_images
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    if [ -z "$FLOTILLA_TOKEN" ]; then
        (umask 077; "$BIN" token generate >"$STATE/bootstrap.token")
        FLOTILLA_TOKEN="$(cat "$STATE/bootstrap.token")"
        export FLOTILLA_TOKEN
    fi
    log "starting node1-3 (project $FLOTILLA_PROJECT, cluster label $FLOTILLA_CLUSTER, API on $ADDR)"
    "${COMPOSE[@]}" up -d
    connect_bridge
    local start=$SECONDS out=""
    while :; do
        # A leader is elected once a majority answers; the table's LEADER column names it.
        if fetch_config && out="$(status -o json 2>&1)" && grep -q '"leader": *[1-9]' <<<"$out"; then
            break
        fi
        if [ $((SECONDS - start)) -ge "$WAIT_SECS" ]; then
            echo "$out" >&2
            "${COMPOSE[@]}" logs --tail 20 >&2 || true
            die "no leader after ${WAIT_SECS}s (logs above)"
        fi
        sleep 1
    done
    log "leader elected after $((SECONDS - start))s"
    status
    cat <<EOM

Use it from this host (the admin config holds the cluster CA and an admin token):
  export FLOTILLA_CONFIG=$FLOTILLA_CONFIG FLOTILLA_ADDR=$ADDR
  $BIN get nodes
  $BIN apply -f examples/web.yaml      # tasks run as sibling containers on this engine
  docker ps --filter label=flotilla.cluster=$FLOTILLA_CLUSTER
Node containers: $("${COMPOSE[@]}" ps --services | tr '\n' ' ')(docker kill / docker start them by id:
  docker kill \$(${COMPOSE[*]} ps -q node2))
Stop: $STOP
EOM
}

down() {
    # compose wants every variable of the file, even to stop: the token is not used here.
    export FLOTILLA_TOKEN="${FLOTILLA_TOKEN:-none}"
    local volumes=()
    [ "${1:-}" = "--volumes" ] && volumes=(--volumes)
    # Nodes first, so no agent starts a workload while its containers are removed.
    "${COMPOSE[@]}" down --remove-orphans "${volumes[@]}"
    local left
    left="$(docker ps -aq --filter "label=flotilla.cluster=$FLOTILLA_CLUSTER")"
    if [ -n "$left" ]; then
        log "removing $(wc -w <<<"$left") workload container(s) labelled flotilla.cluster=$FLOTILLA_CLUSTER"
        # shellcheck disable=SC2086
        docker rm -f $left >/dev/null
    fi
    if [ ${#volumes[@]} -gt 0 ]; then
        rm -rf "$STATE"
        log "cluster $FLOTILLA_PROJECT removed, data volumes and $STATE deleted"
    else
        log "cluster $FLOTILLA_PROJECT stopped; data volumes kept ('make cluster-down PURGE=1' deletes them)"
    fi
}

case "${1:-}" in
    up) up ;;
    down) shift; down "$@" ;;
    status) shift; status "$@" ;;
    *) echo "usage: $0 up | down [--volumes] | status [-o json]" >&2; exit 2 ;;
esac
