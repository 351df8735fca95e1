# Sourced by scripts/test.sh (bash): finds a Docker engine for the container suites, or starts a private one.
#   extsvc_engine_start   exports DOCKER_HOST when an engine answers: $DOCKER_HOST, the default socket, a
#                         private engine already running, or (root only, dockerd installed) a private dockerd
#                         it starts. Returns 1 and sets EXTSVC_ENGINE_NONE (one line: why) otherwise.
#   extsvc_engine_stop    stops the private dockerd if extsvc_engine_start started it; nothing else.
# The private engine: Debian's docker.io dockerd with its own data root (~/.cache/extsvc/docker: the base and
# service images stay cached there between runs), exec root, socket and pid file under $EXTSVC_DOCKER_RUN
# (/run/extsvc-docker), so it is apart from any other engine on the machine. Storage driver overlay2 when the
# kernel and filesystem allow it, else vfs (slow: copies whole layers); EXTSVC_DOCKER_STORAGE_DRIVER forces one.

EXTSVC_DOCKER_RUN="${EXTSVC_DOCKER_RUN:-/run/extsvc-docker}"
EXTSVC_DOCKER_DATA="${EXTSVC_DOCKER_DATA:-${EXTSVC_CACHE:-$HOME/.cache/extsvc}/docker}"
EXTSVC_ENGINE_STARTED=""
EXTSVC_ENGINE_NONE=""

_extsvc_engine_up() { DOCKER_HOST="$1" timeout 10 docker version >/dev/null 2>&1; }

extsvc_engine_start() {
  command -v docker >/dev/null || { EXTSVC_ENGINE_NONE="no docker CLI on PATH"; return 1; }
  if [ -n "${DOCKER_HOST:-}" ]; then
    _extsvc_engine_up "$DOCKER_HOST" && return 0
    EXTSVC_ENGINE_NONE="DOCKER_HOST=$DOCKER_HOST does not answer"
    return 1
  fi
  local sock
  for sock in /var/run/docker.sock "$EXTSVC_DOCKER_RUN/docker.sock"; do
    if [ -S "$sock" ] && _extsvc_engine_up "unix://$sock"; then
      export DOCKER_HOST="unix://$sock"
      return 0
    fi
  done
  if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null; then
    EXTSVC_ENGINE_NONE="no Docker engine (set DOCKER_HOST, or run as root with Debian's docker.io installed)"
    return 1
  fi
  mkdir -p "$EXTSVC_DOCKER_RUN" "$EXTSVC_DOCKER_DATA"
  local driver drivers=("${EXTSVC_DOCKER_STORAGE_DRIVER:-overlay2}")
  [ -n "${EXTSVC_DOCKER_STORAGE_DRIVER:-}" ] || drivers+=(vfs)
  for driver in "${drivers[@]}"; do
    rm -f "$EXTSVC_DOCKER_RUN/docker.sock" "$EXTSVC_DOCKER_RUN/docker.pid"
    setsid dockerd --storage-driver="$driver" --data-root="$EXTSVC_DOCKER_DATA" \
      --exec-root="$EXTSVC_DOCKER_RUN/exec" -H "unix://$EXTSVC_DOCKER_RUN/docker.sock" \
      --pidfile "$EXTSVC_DOCKER_RUN/docker.pid" >"$EXTSVC_DOCKER_RUN/dockerd.log" 2>&1 </dev/null &
    local pid=$! i
    for i in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      if _extsvc_engine_up "unix://$EXTSVC_DOCKER_RUN/docker.sock"; then
        export DOCKER_HOST="unix://$EXTSVC_DOCKER_RUN/docker.sock"
        EXTSVC_ENGINE_STARTED="$pid"
        echo "started a private dockerd (pid $pid, storage driver $driver, data root $EXTSVC_DOCKER_DATA)"
        return 0
      fi
      sleep 1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    echo "dockerd did not start with storage driver $driver: $(tail -1 "$EXTSVC_DOCKER_RUN/dockerd.log")"
  done
  EXTSVC_ENGINE_NONE="the private dockerd did not start (log: $EXTSVC_DOCKER_RUN/dockerd.log)"
  return 1
}

extsvc_engine_stop() {
  [ -n "$EXTSVC_ENGINE_STARTED" ] || return 0
  local pid="$EXTSVC_ENGINE_STARTED" i
  kill "$pid" 2>/dev/null
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -0 "$pid" 2>/dev/null && { echo "dockerd $pid did not stop on SIGTERM: SIGKILL"; kill -9 "$pid"; }
  wait "$pid" 2>/dev/null
  EXTSVC_ENGINE_STARTED=""
  unset DOCKER_HOST
}
