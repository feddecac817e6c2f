"""``VehicleConnector`` over gRPC: each exchange is one ``ExecuteCommand`` call to a gateway.

The gateway is ``SOVD_GRPC_TARGET``, or the vehicle's own when its metadata names one
(``grpc_target``). One channel per gateway per process, shared by the worker's threads.
The request's deadline becomes the call's; a cancelled command cancels the call (the
gateway sees CANCELLED); a failed call raises the ``ConnectorError`` its status code maps
to (``workers.grpc_contract.STATUS_ERRORS``). Parts are released in sequence order, each
once (``workers.sequencing``). docs/grpc.md describes it for operators.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog

from common.settings import Settings
from common.vehicles import Vehicle
from workers.connector import (
    ConnectionLost,
    ConnectorError,
    DiagnosticRequest,
    ExchangeCancelled,
    ExchangeTimeout,
    ResponsePart,
)
from workers.grpc_contract import (
    METHOD,
    GatewayError,
    GatewayProtocolError,
    encode_params,
    error_for_status,
)
from workers.grpc_gen.vehicle_pb2 import CommandRequest, CommandResponse
from workers.sequencing import PartSequencer, SequenceError

__all__ = [
    "CANCEL_POLL_S",
    "FINAL_GRACE_S",
    "TARGET_METADATA_KEY",
    "GrpcConnector",
    "channel_credentials",
]

log = structlog.get_logger(__name__)

#: The vehicle metadata key naming its own gateway (``host:port``).
TARGET_METADATA_KEY = "grpc_target"
#: How often a running call checks whether its command was cancelled.
CANCEL_POLL_S = 0.05
#: After the final part, how long the gateway has to end the call before it is cancelled.
FINAL_GRACE_S = 1.0
#: Longest wait between reconnection attempts to a gateway that went away (gRPC's own
#: default grows to 120 s, so a restarted gateway could sit unused for two minutes).
MAX_RECONNECT_BACKOFF_MS = 5_000

_TARGET = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")

ExecuteCommand = Callable[..., Any]


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials from settings, or ``None`` for a plaintext channel."""
    if not settings.grpc_tls:
        return None

    def read(path: Any) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(settings.grpc_ca_file),
        private_key=read(settings.grpc_client_key_file),
        certificate_chain=read(settings.grpc_client_cert_file),
    )


class GrpcConnector:
    """Runs exchanges on vehicle gateways; build one per process (it owns the channels)."""

    def __init__(self, settings: Settings) -> None:
        self._default_target = settings.grpc_target
        self._credentials = channel_credentials(settings)
        self._options: list[tuple[str, Any]] = [
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ]
        if settings.grpc_keepalive_s > 0:
            self._options += [
                ("grpc.keepalive_time_ms", int(settings.grpc_keepalive_s * 1000)),
                ("grpc.keepalive_timeout_ms", 10_000),
            ]
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, ExecuteCommand]] = {}

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            channel.close()

    def target_for(self, vehicle: Vehicle) -> str:
        """The gateway address for ``vehicle``: its metadata's, else the default."""
        target = vehicle.metadata.get(TARGET_METADATA_KEY)
        if target is None:
            return self._default_target
        if not isinstance(target, str) or not _TARGET.fullmatch(target):
            raise GatewayError(f"Vehicle {vehicle.vin} names an invalid gRPC gateway address")
        return target

    def _method(self, target: str) -> ExecuteCommand:
        with self._lock:
            entry = self._channels.get(target)
            if entry is None:
                if self._credentials is None:
                    channel = grpc.insecure_channel(target, options=self._options)
                else:
                    channel = grpc.secure_channel(target, self._credentials, self._options)
                method = channel.unary_stream(
                    METHOD,
                    request_serializer=CommandRequest.SerializeToString,
                    response_deserializer=CommandResponse.FromString,
                )
                entry = self._channels[target] = (channel, method)
            return entry[1]

    def execute(self, request: DiagnosticRequest) -> Iterator[ResponsePart]:
        if request.cancelled():
            raise ExchangeCancelled("Cancelled before the exchange")
        remaining = request.deadline - time.monotonic()
        if remaining <= 0:
            raise ExchangeTimeout(
                f"Vehicle {request.vehicle.vin} did not answer within the time limit"
            )
        target = self.target_for(request.vehicle)
        message = CommandRequest(
            command_id=request.command_id,
            vehicle_id=request.vehicle.vehicle_id,
            command_name=request.command_name,
            command_params=encode_params(request.params),
        )
        call = self._method(target)(
            message, timeout=None if math.isinf(remaining) else remaining, wait_for_ready=False
        )
        watch = _CancelWatch(call, request.cancelled)
        sequencer: PartSequencer[ResponsePart] = PartSequencer()
        try:
            for answer in call:
                if sequencer.done:  # the answer is whole; only the call's end is awaited
                    sequencer.duplicates += 1
                    continue
                part = _part(request, answer)
                ready = sequencer.accept(answer.sequence_number, part, is_final=answer.is_final)
                yield from ready
                if ready and ready[-1].is_final:
                    watch.end_by(time.monotonic() + FINAL_GRACE_S)
            if not sequencer.done:
                gap = f" (part {sequencer.missing[0]} never came)" if sequencer.missing else ""
                raise ConnectionLost(f"The vehicle gateway ended the answer early{gap}")
        except grpc.RpcError as exc:
            if sequencer.done:  # ended (or cut) after the final part: nothing is missing
                log.warning("grpc_call_ended_after_final_part", target=target, status=str(exc))
                return
            raise _error_of(exc, target, watch.cancelled, sequencer.next_number > 0) from None
        except SequenceError as exc:
            raise GatewayProtocolError(
                f"The vehicle gateway's answer is out of order: {exc}"
            ) from None
        finally:
            watch.stop()
            call.cancel()  # no-op once the call ended; otherwise the gateway stops too
            if sequencer.duplicates:
                log.warning("grpc_duplicate_parts", count=sequencer.duplicates, target=target)


def _part(request: DiagnosticRequest, answer: CommandResponse) -> ResponsePart:
    if answer.command_id and answer.command_id != request.command_id:
        raise GatewayProtocolError("The vehicle gateway answered for another command")
    try:
        payload = json.loads(answer.response_payload)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise GatewayProtocolError(
            f"Part {answer.sequence_number} of the vehicle gateway's answer is not a JSON object"
        )
    return ResponsePart(payload, is_final=answer.is_final)


def _error_of(
    exc: grpc.RpcError, target: str, cancelled_here: bool, mid_answer: bool
) -> ConnectorError:
    call: Any = exc  # a failed call's error is also the call (grpc.Call)
    code: grpc.StatusCode = call.code()
    details: str | None = call.details()
    trailers = call.trailing_metadata()
    log.warning("grpc_call_failed", target=target, status=code.name, details=details)
    return error_for_status(
        code, details, trailers, cancelled_here=cancelled_here, mid_answer=mid_answer
    )


class _CancelWatch:
    """Cancels ``call`` from a helper thread as soon as ``cancelled()`` turns true, so a
    cancel reaches the gateway while the worker's thread waits for the next part."""

    def __init__(self, call: Any, cancelled: Callable[[], bool]) -> None:
        self._call = call
        self._check = cancelled
        self._done = threading.Event()
        self._end_by = float("inf")
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name="grpc-cancel-watch", daemon=True)
        self._thread.start()

    def end_by(self, deadline: float) -> None:
        """Cancel the call at ``deadline`` (a ``time.monotonic()`` value) if it still runs;
        the command's own cancel is no longer watched."""
        self._end_by = deadline

    def _run(self) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            if self._end_by != float("inf"):
                if time.monotonic() >= self._end_by:
                    self._call.cancel()
                    return
                continue
            try:
                requested = self._check()
            except Exception:  # a Redis blip: look again at the next poll
                log.warning("grpc_cancel_check_failed", exc_info=True)
                continue
            if requested:
                self.cancelled = True
                self._call.cancel()
                return

    def stop(self) -> None:
        self._done.set()
