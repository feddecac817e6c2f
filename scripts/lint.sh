#!/usr/bin/env bash
# Format check, lint and type check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test lint
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
