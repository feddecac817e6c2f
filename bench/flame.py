"""Summaries of a py-spy ``raw`` profile: the top frames by own time and by inclusive time.

``py-spy record -f raw`` writes one line per distinct stack, ``frame;frame;... count``.
``top_frames`` folds each frame to ``function (file)`` and prints the share of samples
in which it is the leaf (own time) and in which it appears anywhere (inclusive), over
the stacks that contain ``thread_needle`` (for example the event loop's thread).

    .venv/bin/python -m bench.flame PROFILE.txt [--needle uvicorn/server.py] [--top 25]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

__all__ = ["py_spy", "top_frames"]


def py_spy() -> str:
    """The py-spy next to this interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else (shutil.which("py-spy") or "py-spy")


def _fold(frame: str) -> str:
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/"):
        path = path.split(marker)[-1]
    return f"{function} ({path})" if where else function


def top_frames(path: Path, *, thread_needle: str = "", top: int = 25) -> list[str]:
    """Lines of a summary: samples, then own and inclusive shares of the top frames."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or thread_needle not in stack:
            continue
        count = int(count_text)
        samples += count
        frames = [_fold(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not samples:
        return ["(no samples)"]
    lines = [f"{samples} samples", "own time:"]
    lines += [f"  {n / samples:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n / samples:6.1%}  {frame}" for frame, n in inclusive.most_common(top * 2)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--needle", default="")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n".join(top_frames(args.profile, thread_needle=args.needle, top=args.top)))


if __name__ == "__main__":
    main()
