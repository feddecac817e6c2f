#!/usr/bin/env bash
# Set up and run the whole service locally: venv (installed only when pyproject.toml
# changed, so a second start works offline), embedded Valkey, demo data, and every
# Procfile process under honcho. Extra arguments go to `honcho start`
# (e.g. `bash scripts/run.sh -c worker=3`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
export PATH="$PWD/.venv/bin:$PATH"

# honcho pipes every child's output, so no process sees a terminal and `auto` would
# always pick JSON: decide here, where the terminal is visible.
if [ -t 1 ] && [ -z "${SOVD_LOG_FORMAT:-}" ]; then
    export SOVD_LOG_FORMAT=console
fi

if [ "${SOVD_ENV:-dev}" = "dev" ]; then
    api="http://${SOVD_API_HOST:-127.0.0.1}:${SOVD_API_PORT:-8000}"
    sovd-admin demo-logins
    cat <<BANNER
Web console:  $api/   (log in with a demo login above)
API docs:     $api/docs
Command line: sovd login --api-url $api --username engineer
Realtime:     ws://${SOVD_REALTIME_HOST:-127.0.0.1}:${SOVD_REALTIME_PORT:-8001}/ws/responses/{command_id}
Worker metrics: http://${dramatiq_prom_host:-127.0.0.1}:$(( ${PORT:-5000} + 200 ))/ (one port per worker copy, counting up)
Stop with Ctrl-C: the workers hand unfinished commands back, the store stops last.
BANNER
fi

if [ -t 1 ]; then
    exec honcho start "$@"
fi
# Output is a pipe or a file (`run.sh | tee log`). Ctrl-C kills the reader (tee) too;
# honcho would then die writing its "SIGINT received" line and never stop its children.
# So honcho writes to a relay that ignores SIGINT and, once nothing reads its output,
# keeps draining it, until honcho has stopped every process.
honcho start "$@" 2>&1 | {
    trap '' INT PIPE
    cat 2>/dev/null || cat >/dev/null
}
