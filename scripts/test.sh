#!/usr/bin/env bash
# Set up and run the whole test suite (unit, component, end-to-end, browser). Tests start
# their own Valkey server unless SOVD_TEST_REDIS_URL names one. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
# The console test drives the system Chromium; install it where we can (Debian, as root).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: /usr/bin/chromium is missing; the browser test will fail (install Debian's chromium)" >&2
    fi
fi
# The MQTT tests start their own Mosquitto (Debian's package; its binary is /usr/sbin/mosquitto).
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    else
        echo "note: mosquitto is missing; the MQTT tests will fail (install Debian's mosquitto)" >&2
    fi
fi
exec .venv/bin/python -m pytest "$@"
