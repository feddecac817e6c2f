#!/usr/bin/env bash
# Set up and run the whole test suite (unit, component, end-to-end). Tests start their
# own Valkey server unless SOVD_TEST_REDIS_URL names one. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
exec .venv/bin/python -m pytest "$@"
