"""One thread driving the network I/O of many paho clients, with epoll.

paho's own loop (``loop_start``) runs a thread per client around ``select()``, which
cannot watch descriptors above 1023: one process stalled at ~340 vehicles (measured,
docs/benchmarks.md). Here every client's socket sits in one ``selectors`` selector
(epoll on Linux) through paho's external-loop hooks: the loop thread reads, writes and
runs each client's keepalive; (re)connects run on a small pool, with back-off.

Selector changes requested from other threads (a publish from an exchange thread wants
to write) are queued and applied by the loop thread, which a socket pair wakes.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from common.mqtt_client import RECONNECT_DELAY_S, no_delay

__all__ = ["ClientLoop"]

log = structlog.get_logger(__name__)

#: How often every client's keepalive and reconnect state is looked after.
MISC_INTERVAL_S = 1.0

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class ClientLoop:
    """``add(client)`` after ``connect_async``; ``remove(client)`` disconnects it."""

    def __init__(self, *, connect_threads: int = 8) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r.fileno(), _READ, None)
        self._changes: collections.deque[tuple[str, int, mqtt.Client | None]] = collections.deque()
        self._lock = threading.Lock()
        self._clients: set[mqtt.Client] = set()
        self._delay: dict[mqtt.Client, float] = {}
        self._due: list[tuple[float, int, mqtt.Client]] = []
        self._order = itertools.count()
        self._connectors = ThreadPoolExecutor(connect_threads, thread_name_prefix="mqtt-connect")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-io", daemon=True)
        self._thread.start()

    # -- clients -------------------------------------------------------------------------

    def add(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing
        with self._lock:
            self._clients.add(client)
            self._delay[client] = RECONNECT_DELAY_S[0]
        self._schedule(client, 0.0)

    def remove(self, client: mqtt.Client) -> None:
        with self._lock:
            self._clients.discard(client)
            self._delay.pop(client, None)
        client.disconnect()  # written by the loop; the socket then closes

    def close(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)
        self._connectors.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- paho's external-loop hooks (any thread) -------------------------------------------

    def _opened(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        no_delay(client, userdata, sock)
        self._change("open", sock.fileno(), client)

    def _closed(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._change("close", sock.fileno(), None)
        with self._lock:
            wanted = client in self._clients
            delay = self._delay.get(client, RECONNECT_DELAY_S[0])
            if wanted:
                self._delay[client] = min(delay * 2, RECONNECT_DELAY_S[1])
        if wanted:
            self._schedule(client, delay)

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._change("write", sock.fileno(), client)

    def _done_writing(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._change("read", sock.fileno(), client)

    def _change(self, kind: str, fd: int, client: mqtt.Client | None) -> None:
        self._changes.append((kind, fd, client))
        if threading.current_thread() is not self._thread:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _schedule(self, client: mqtt.Client, delay_s: float) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._order), client))
        self._wake()

    # -- the loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_INTERVAL_S
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                first_due = self._due[0][0] if self._due else next_misc
            timeout = max(0.0, min(next_misc, first_due) - now)
            for key, mask in self._selector.select(timeout):
                client = key.data
                if client is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                    continue
                try:
                    if mask & _READ:
                        client.loop_read()
                    if mask & _WRITE:
                        client.loop_write()
                except Exception as exc:  # one client's fault must not stop the others
                    log.warning("mqtt_client_io_failed", error=repr(exc))
            self._apply_changes()
            self._start_due()
            if time.monotonic() >= next_misc:
                self._misc()
                next_misc = time.monotonic() + MISC_INTERVAL_S

    def _apply_changes(self) -> None:
        while self._changes:
            kind, fd, client = self._changes.popleft()
            with contextlib.suppress(KeyError, ValueError, OSError):
                if kind == "close":
                    self._selector.unregister(fd)
                elif kind == "open":
                    with contextlib.suppress(KeyError):
                        self._selector.unregister(fd)  # a number reused before its close
                    self._selector.register(fd, _READ, client)
                else:
                    events = _READ | _WRITE if kind == "write" else _READ
                    self._selector.modify(fd, events, client)

    def _start_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > now:
                    return
                _, _, client = heapq.heappop(self._due)
                wanted = client in self._clients
            if wanted:
                self._connectors.submit(self._connect, client)

    def _connect(self, client: mqtt.Client) -> None:
        try:
            client.reconnect()
        except (OSError, ValueError) as exc:
            with self._lock:
                wanted = client in self._clients
                delay = self._delay.get(client, RECONNECT_DELAY_S[0])
                if wanted:
                    self._delay[client] = min(delay * 2, RECONNECT_DELAY_S[1])
            if wanted:
                log.info("mqtt_connect_failed", error=str(exc), retry_in_s=delay)
                self._schedule(client, delay)

    def _misc(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.loop_misc()
            except Exception as exc:
                log.warning("mqtt_client_misc_failed", error=repr(exc))
            if client.is_connected():
                with self._lock:
                    if client in self._delay:
                        self._delay[client] = RECONNECT_DELAY_S[0]
