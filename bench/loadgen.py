"""A small HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

Run as its own process so it has its own core and GIL (``wrk -t1 -cN`` in spirit):

    .venv/bin/python -m bench.loadgen URL --method POST --body '{...}' --header 'A: b'

Prints one JSON line: requests/s over the measured window, the status counts and the
latency percentiles. Requests are prebuilt bytes and responses are parsed by
``Content-Length`` only, so the client costs far less per request than the servers it
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from urllib.parse import urlsplit

__all__ = ["build_request", "run", "send_all"]


def build_request(method: str, url: str, headers: list[str], body: str | None) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += headers
    payload = (body or "").encode()
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _connection(
    host: str,
    port: int,
    request: bytes,
    stop_at: float,
    measure_from: float,
    statuses: Counter[int],
    latencies: list[float],
    sent: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            sent[0] += 1
            if started >= measure_from:
                statuses[int(head[9:12])] += 1
                latencies.append(done - started)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), (await reader.readexactly(length) if length else b"")


async def send_all(url: str, requests: list[bytes], *, connections: int) -> list[bytes]:
    """Send every prebuilt request once over ``connections`` keep-alive connections (one
    in flight each); the response bodies, in the order of ``requests``. Raises on a
    status of 400 or more."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    bodies: list[bytes] = [b""] * len(requests)
    pending = iter(range(len(requests)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in pending:
                writer.write(requests[index])
                status, body = await _read_response(reader)
                if status >= 400:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                bodies[index] = body
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return bodies


async def run(
    url: str, request: bytes, *, connections: int, duration_s: float, warmup_s: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    sent = [0]
    now = time.perf_counter()
    measure_from, stop_at = now + warmup_s, now + warmup_s + duration_s
    await asyncio.gather(
        *(
            _connection(host, port, request, stop_at, measure_from, statuses, latencies, sent)
            for _ in range(connections)
        )
    )
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    total = sum(statuses.values())
    return {
        "rps": total / duration_s,
        #: Every response, warm-up included (for CPU per request).
        "requests": sent[0],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": pct(50) if latencies else None,
        "p99_ms": pct(99) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    request = build_request(args.method, args.url, args.header, args.body)
    result = asyncio.run(
        run(
            args.url,
            request,
            connections=args.connections,
            duration_s=args.duration,
            warmup_s=args.warmup,
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
