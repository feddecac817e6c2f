#!/usr/bin/env bash
# Set up and run the whole service locally: venv, install, embedded Valkey, demo data,
# and every Procfile process under honcho. Extra arguments go to `honcho start`
# (e.g. `bash scripts/run.sh -c worker=3`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
export PATH="$PWD/.venv/bin:$PATH"
if [ "${SOVD_ENV:-dev}" = "dev" ]; then
    sovd-admin demo-logins
    echo "API: http://${SOVD_API_HOST:-127.0.0.1}:${SOVD_API_PORT:-8000}/docs   realtime: ws://${SOVD_REALTIME_HOST:-127.0.0.1}:${SOVD_REALTIME_PORT:-8001}/ws/responses/{command_id}?token=..."
fi
exec honcho start "$@"
