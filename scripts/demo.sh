#!/usr/bin/env bash
# `make demo`: a local 3-node cluster on 127.0.0.1:7001-7003 with the example service.
# `make demo-stop` stops it. Data and logs live in .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${FLOTILLA_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}/debug/flotilla}"
DIR=.demo
PEERS="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
export FLOTILLA_ADDR="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

stop() {
  for pidfile in "$DIR"/node*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  # The agents' containers (docker driver) outlive them by design; the demo removes its own.
  if docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=flotilla.cluster=demo)
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
  fi
}

# The page at $1:$2, path $3 (default /), through bash's /dev/tcp (no curl needed): its
# body, or a failure.
fetch() {
  local body
  exec 3<>"/dev/tcp/$1/$2" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "${3:-/}" "$1" >&3
  body=$(timeout 5 cat <&3) || { exec 3<&-; return 1; }
  exec 3<&-
  case "$body" in
    "HTTP/1."*" 200 "*) printf '%s\n' "${body##*$'\r\n\r\n'}" ;;
    *) return 1 ;;
  esac
}

case "${1:-start}" in
  stop)
    stop
    echo "demo cluster stopped (data kept in $DIR; rm -rf $DIR to start afresh)"
    ;;
  start)
    stop
    mkdir -p "$DIR"
    # The secret the three initial nodes share; node 1 creates the cluster CA, signs the
    # others' certificates and writes the admin client config into its data dir.
    if [ ! -s "$DIR/bootstrap.token" ]; then
      (umask 077; "$BIN" token generate >"$DIR/bootstrap.token")
    fi
    for i in 1 2 3; do
      "$BIN" agent --id "$i" --listen "127.0.0.1:700$i" --data-dir "$DIR/node$i" --peers "$PEERS" \
        --token-file "$DIR/bootstrap.token" \
        --cluster-name demo --driver auto --metrics-listen "127.0.0.1:910$i" --publish-addr "127.0.0.1$i" \
        >"$DIR/node$i.log" 2>&1 &
      echo $! >"$DIR/node$i.pid"
    done
    export FLOTILLA_CONFIG="$PWD/$DIR/node1/admin.yaml"
    echo "started 3 agents (logs in $DIR/node*.log); waiting for a leader..."
    for _ in $(seq 100); do [ -f "$FLOTILLA_CONFIG" ] && break; sleep 0.1; done
    for _ in $(seq 100); do
      if "$BIN" cluster status 2>/dev/null | grep -q '^Leader: [0-9]'; then break; fi
      sleep 0.2
    done
    # Place the service once every node has registered, so it spreads over all three.
    for _ in $(seq 100); do
      ready=$("$BIN" get nodes 2>/dev/null | awk '$2 == "ready"' | wc -l)
      [ "$ready" -ge 3 ] && break
      sleep 0.2
    done
    "$BIN" apply -f examples/web.yaml
    echo "waiting for the service's tasks to be healthy..."
    for _ in $(seq 150); do
      healthy=$("$BIN" get tasks --service web 2>/dev/null | awk '$5 == "running" && $6 == "healthy"' | wc -l)
      [ "$healthy" -ge 3 ] && break
      sleep 0.2
    done
    if [ "$healthy" -lt 3 ]; then
      "$BIN" get tasks --service web >&2 || true
      echo "demo: the service web did not become healthy (3 tasks) within 30 s; see $DIR/node*.log" >&2
      exit 1
    fi
    # Every node's mesh answers on its own publish address (127.0.0.11-13), each
    # connection sent to the tasks in turn.
    echo "fetching the page through every node's routing mesh:"
    for i in 1 2 3; do
      for try in 1 2; do
        page=""
        for _ in $(seq 50); do page=$(fetch "127.0.0.1$i" 8080 2>/dev/null) && break; sleep 0.2; done
        if [ -z "$page" ]; then
          echo "demo: no answer from the mesh at 127.0.0.1$i:8080 within 10 s; see $DIR/node$i.log" >&2
          exit 1
        fi
        echo "  http://127.0.0.1$i:8080/ -> $page"
      done
    done
    # The second example: a frontend that calls its backend by name, through the agents'
    # DNS server on the engine's bridge gateway (port 53: it needs root and Docker).
    if docker info >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
      "$BIN" apply --wait -f examples/two-tier.yaml
      echo "fetching the frontend, which calls http://backend:9090/ by name, through every node:"
      for i in 1 2 3; do
        page=""
        for _ in $(seq 100); do
          page=$(fetch "127.0.0.1$i" 8081 /cgi-bin/page 2>/dev/null) && case "$page" in *"backend task"*) break ;; esac
          page=""
          sleep 0.2
        done
        if [ -z "$page" ]; then
          "$BIN" get tasks >&2 || true
          echo "demo: the frontend at 127.0.0.1$i:8081 did not reach its backend by name within 20 s; see $DIR/node*.log" >&2
          exit 1
        fi
        echo "  http://127.0.0.1$i:8081/cgi-bin/page -> $(printf '%s' "$page" | tr '\n' ' ')"
      done
    else
      echo "(examples/two-tier.yaml skipped: discovery by name serves DNS on the Docker bridge's port 53, which needs root and Docker)"
    fi
    echo
    "$BIN" cluster status
    echo
    "$BIN" describe service web
    echo
    if docker info >/dev/null 2>&1; then
      docker ps --filter label=flotilla.cluster=demo --format 'table {{.Names}}\t{{.Status}}\t{{.Label "flotilla.node"}}'
      echo
    fi
    echo "admin client config (CA, admin token, addresses): $FLOTILLA_CONFIG"
    echo "use it with: export FLOTILLA_CONFIG=$FLOTILLA_CONFIG; $BIN get services"
    echo "metrics: curl -s 127.0.0.1:9101/metrics (nodes 2 and 3 on 9102, 9103; /healthz and /readyz beside)"
    echo "status page: http://127.0.0.1:9101/?token=<a viewer token: $BIN token create --role viewer>"
    echo "stop with: make demo-stop"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
