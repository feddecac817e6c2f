"""Where the CLI keeps its session: one JSON file, readable by its owner only."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Credentials", "config_dir", "load", "remove", "save"]


@dataclass
class Credentials:
    api_url: str
    username: str
    access_token: str
    refresh_token: str
    #: Epoch seconds after which the access token must be refreshed.
    expires_at: float


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sovd"


def _path() -> Path:
    return config_dir() / "credentials.json"


def load() -> Credentials | None:
    try:
        return Credentials(**json.loads(_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(credentials: Credentials) -> Path:
    """Write atomically with mode 0600 (the folder 0700): tokens are secrets."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = _path()
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(credentials), out)
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)
    return target


def remove() -> None:
    _path().unlink(missing_ok=True)
