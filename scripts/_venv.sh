# Shared by scripts/*.sh: create .venv and install the project (plus optional groups).
ensure_venv() {
    local python=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    # Dependency groups need pip >= 25.1.
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"
    local groups=()
    for group in "$@"; do groups+=(--group "$group"); done
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[local]" ${groups[@]+"${groups[@]}"}
}
