"""WebSocket clients for ``bench/realtime.py``, spread over several processes.

One process cannot hold more sockets than its descriptor limit (20,000 here), and one
Python client process is slower at handshakes than the relay it measures, so the
clients live in ``processes`` workers (``python -m bench.ws_clients``), each driven by
JSON lines on its stdin and answering one JSON line per command on its stdout.

Commands: ``connect`` (open sockets, time each handshake up to the first message),
``expect`` / ``wait`` (count deliveries, record publish -> client latency), and the
reconnect storm: ``storm`` (clients that follow one command each and reconnect with
``since`` = the last ``seq`` they saw whenever they are closed), ``mark`` (from now on
count who is back), ``status`` and ``report`` (every ``seq`` seen once, in order?).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

__all__ = ["ClientPool"]

#: Tries per client in ``connect`` (a refusal such as 1013 says: try again later).
CONNECT_TRIES = 3
#: Reconnect back-off of a storm client, doubled per failed try (s).
STORM_BACKOFF_S = (0.05, 2.0)


# -- the parent side -------------------------------------------------------------------


class ClientPool:
    """``processes`` client workers; every call goes to all of them and gathers answers."""

    def __init__(self, processes: int, cwd: str) -> None:
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.ws_clients"],
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for _ in range(processes)
        ]

    def _all(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for worker, command in zip(self.workers, commands, strict=True):
            assert worker.stdin is not None
            worker.stdin.write(json.dumps(command) + "\n")
            worker.stdin.flush()
        answers = []
        for worker in self.workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if not line:
                raise RuntimeError("a client worker died")
            answers.append(json.loads(line))
        return answers

    def _same(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self._all([command] * len(self.workers))

    def _split(self, urls: list[str]) -> list[list[str]]:
        count = len(self.workers)
        return [urls[i::count] for i in range(count)]

    def connect(
        self, urls: list[str], *, concurrency: int, open_timeout_s: float
    ) -> tuple[list[float], int, dict[str, int]]:
        """Open every socket; each handshake's time (ms) up to the first message, how
        many clients failed even after their retries, and every failed try by error."""
        per = max(1, concurrency // len(self.workers))
        answers = self._all(
            [
                {"op": "connect", "urls": part, "concurrency": per, "open_timeout": open_timeout_s}
                for part in self._split(urls)
            ]
        )
        errors: dict[str, int] = {}
        for answer in answers:
            for kind, count in answer["errors"].items():
                errors[kind] = errors.get(kind, 0) + count
        handshakes = [t for a in answers for t in a["handshakes"]]
        return handshakes, sum(a["failed"] for a in answers), errors

    def expect(self, per_client: int, *, record: bool) -> None:
        """Count deliveries from now on until each client had ``per_client``."""
        self._same({"op": "expect", "per_client": per_client, "record": record})

    def expect_on(self, clients: list[int], *, record: bool) -> None:
        """Count deliveries until one per entry of ``clients`` arrived (each the index
        of a client in the list given to ``connect``, which tells its worker)."""
        count = len(self.workers)
        totals = [0] * count
        for index in clients:
            totals[index % count] += 1
        self._all([{"op": "expect", "total": t, "record": record} for t in totals])

    def wait(self, timeout_s: float) -> tuple[int, list[float]]:
        answers = self._same({"op": "wait", "timeout": timeout_s})
        return sum(a["received"] for a in answers), [x for a in answers for x in a["latencies"]]

    def storm(self, urls: list[str], *, concurrency: int) -> list[float]:
        per = max(1, concurrency // len(self.workers))
        answers = self._all(
            [{"op": "storm", "urls": part, "concurrency": per} for part in self._split(urls)]
        )
        return [t for a in answers for t in a["handshakes"]]

    def mark(self) -> None:
        self._same({"op": "mark"})

    def status(self) -> dict[str, int]:
        answers = self._same({"op": "status"})
        return {key: sum(a[key] for a in answers) for key in answers[0]}

    def report(self, last_seqs: dict[str, int]) -> dict[str, int]:
        answers = self._same({"op": "report", "last_seqs": last_seqs})
        return {key: sum(a[key] for a in answers) for key in answers[0]}

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None and worker.stdin is not None:
                try:
                    worker.stdin.write(json.dumps({"op": "exit"}) + "\n")
                    worker.stdin.flush()
                except BrokenPipeError:
                    pass
        for worker in self.workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()


# -- the worker side --------------------------------------------------------------------


@dataclass
class _Follower:
    """A storm client: one command, every ``seq`` it saw, how often it came back."""

    url: str
    command_id: str
    seqs: list[int] = field(default_factory=list)
    back: bool = False  # connected (welcome received) since the last ``mark``
    connects: int = 0
    refused: int = 0


@dataclass
class _Worker:
    sockets: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    received: int = 0
    target: int = 0
    record: bool = False
    latencies: list[float] = field(default_factory=list)
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    followers: list[_Follower] = field(default_factory=list)
    stopping: bool = False

    # -- plain clients --------------------------------------------------------------------

    async def _read(self, ws: Any) -> None:
        async for message in ws:
            now = time.time()
            event = json.loads(message)
            if event.get("event") != "response":
                continue
            if self.record:
                self.latencies.append((now - event["response"]["response_payload"]["t"]) * 1000)
            self.received += 1
            if self.received >= self.target:
                self.reached.set()

    async def connect(self, urls: list[str], concurrency: int, open_timeout: float) -> Any:
        limit = asyncio.Semaphore(concurrency)
        times: list[float] = []
        failed = 0

        errors: dict[str, int] = {}

        async def one(url: str) -> None:
            nonlocal failed
            for attempt in range(CONNECT_TRIES):
                async with limit:
                    start = time.perf_counter()
                    try:
                        ws = await connect(
                            url,
                            compression=None,
                            ping_interval=None,
                            open_timeout=open_timeout,
                            max_queue=None,
                        )
                        await ws.recv()  # welcome (relay) or subscribed (naive): it is live
                    except Exception as exc:  # refused, timed out, or closed at once
                        kind = repr(exc)[:120]
                        errors[kind] = errors.get(kind, 0) + 1
                        if attempt == CONNECT_TRIES - 1:
                            failed += 1
                            return
                    else:
                        times.append((time.perf_counter() - start) * 1000)
                        self.sockets.append(ws)
                        self.tasks.append(asyncio.create_task(self._read(ws)))
                        return
                await asyncio.sleep(0.2 * (attempt + 1))  # back off before trying again

        await asyncio.gather(*(one(url) for url in urls))
        return {"handshakes": times, "failed": failed, "errors": errors}

    def expect(self, per_client: int | None, total: int | None, record: bool) -> Any:
        self.received, self.record = 0, record
        clients = max(len(self.sockets), len(self.followers))
        self.target = total if total is not None else (per_client or 0) * clients
        self.latencies = []
        self.reached.clear()
        if self.target == 0:
            self.reached.set()
        return {}

    async def wait(self, timeout_s: float) -> Any:
        async with asyncio.timeout(timeout_s):
            await self.reached.wait()
        return {"received": self.received, "latencies": self.latencies}

    # -- the reconnect storm --------------------------------------------------------------

    async def _follow(self, follower: _Follower, first: asyncio.Future[float]) -> None:
        backoff = STORM_BACKOFF_S[0]
        while True:
            since = follower.seqs[-1] if follower.seqs else 0
            start = time.perf_counter()
            try:
                async with connect(
                    f"{follower.url}&since={since}",
                    compression=None,
                    ping_interval=None,
                    open_timeout=30,
                    max_queue=None,
                ) as ws:
                    async for message in ws:
                        event = json.loads(message)
                        kind = event.get("event")
                        if kind == "welcome":
                            follower.connects += 1
                            follower.back = True
                            backoff = STORM_BACKOFF_S[0]
                            if not first.done():
                                first.set_result((time.perf_counter() - start) * 1000)
                        elif isinstance(event.get("seq"), int):
                            follower.seqs.append(event["seq"])
                            self.received += 1
                            if self.received >= self.target:
                                self.reached.set()
            except Exception:  # refused, reset, or closed with an error code: try again
                follower.refused += 1
            # Closed (1001 going away, 1012, 1013, a refused handshake): back off, resume.
            await asyncio.sleep(backoff * (0.5 + random.random()))  # jitter: no thundering herd
            backoff = min(backoff * 2, STORM_BACKOFF_S[1])

    async def storm(self, urls: list[str], concurrency: int) -> Any:
        limit = asyncio.Semaphore(concurrency)
        firsts: list[asyncio.Future[float]] = []
        loop = asyncio.get_running_loop()

        async def start(url: str) -> None:
            command_id = url.split("/ws/responses/", 1)[1].split("?", 1)[0]
            follower = _Follower(url, command_id)
            self.followers.append(follower)
            first: asyncio.Future[float] = loop.create_future()
            firsts.append(first)
            async with limit:
                self.tasks.append(asyncio.create_task(self._follow(follower, first)))
                await asyncio.shield(first)

        await asyncio.gather(*(start(url) for url in urls))
        return {"handshakes": [f.result() for f in firsts]}

    def mark(self) -> Any:
        for follower in self.followers:
            follower.back = False
        return {}

    def status(self) -> Any:
        return {
            "clients": len(self.followers),
            "back": sum(f.back for f in self.followers),
            "connects": sum(f.connects for f in self.followers),
            "refused": sum(f.refused for f in self.followers),
            "received": self.received,
        }

    def report(self, last_seqs: dict[str, int]) -> Any:
        lost = duplicates = out_of_order = complete = 0
        for follower in self.followers:
            seqs = follower.seqs
            expected = last_seqs.get(follower.command_id, 0)
            unique = set(seqs)
            lost += len(set(range(1, expected + 1)) - unique)
            duplicates += len(seqs) - len(unique)
            out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
            complete += unique == set(range(1, expected + 1))
        return {
            "lost": lost,
            "duplicates": duplicates,
            "out_of_order": out_of_order,
            "complete_clients": complete,
        }

    async def close(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def _serve() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    worker = _Worker()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            break
        if op == "connect":
            answer = await worker.connect(
                command["urls"], command["concurrency"], command["open_timeout"]
            )
        elif op == "expect":
            answer = worker.expect(
                command.get("per_client"), command.get("total"), command["record"]
            )
        elif op == "wait":
            answer = await worker.wait(command["timeout"])
        elif op == "storm":
            answer = await worker.storm(command["urls"], command["concurrency"])
        elif op == "mark":
            answer = worker.mark()
        elif op == "status":
            answer = worker.status()
        elif op == "report":
            answer = worker.report(command["last_seqs"])
        else:
            raise ValueError(f"unknown op {op!r}")
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    await worker.close()


if __name__ == "__main__":
    asyncio.run(_serve())
