# Shared by scripts/*.sh: create .venv and install the project (plus optional groups).
#
# The install runs only when pyproject.toml changed since the last one (or a group was
# never installed): a stamp per group in .venv holds the hash of pyproject.toml it was
# installed from. A second start therefore needs no package index (it works offline).
# SOVD_REINSTALL=1 forces the install.
_pyproject_hash() {
    "$1" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())'
}

ensure_venv() {
    local python=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local hash stamp missing=0
    hash=$(_pyproject_hash .venv/bin/python)
    for stamp in base "$@"; do
        if [ "$(cat ".venv/.sovd-installed-$stamp" 2>/dev/null)" != "$hash" ]; then
            missing=1
        fi
    done
    if [ "$missing" = 0 ] && [ "${SOVD_REINSTALL:-0}" != 1 ]; then
        return 0
    fi
    # Dependency groups need pip >= 25.1.
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"
    local groups=()
    for group in "$@"; do groups+=(--group "$group"); done
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[local]" ${groups[@]+"${groups[@]}"}
    for stamp in base "$@"; do
        echo "$hash" > ".venv/.sovd-installed-$stamp"
    done
}
