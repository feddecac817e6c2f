"""Readable one-line renderings of protocol events for a terminal."""

from __future__ import annotations

from typing import Any

__all__ = ["render_event"]


def _payload(payload: dict[str, Any]) -> str:
    kind = payload.get("type")
    if kind == "dtc":
        status = payload.get("status", {})
        state = "confirmed" if status.get("confirmedDTC") else "pending"
        return (f"DTC {payload.get('code')}  {payload.get('fault_name')}  "
                f"(severity {payload.get('severity')}, {state})")  # fmt: skip
    if kind == "dtc_summary":
        return f"{payload.get('dtc_count')} DTC(s) stored in {payload.get('ecu', {}).get('name')}"
    if kind == "dtc_cleared":
        return f"cleared {payload.get('cleared_count')} DTC(s)"
    if kind == "data":
        unit = f" {payload['unit']}" if payload.get("unit") else ""
        return f"{payload.get('name')} ({payload.get('did')}) = {payload.get('value')}{unit}"
    if kind == "negative_response":
        return f"negative response {payload.get('nrc')} {payload.get('nrc_name')}"
    return str(payload)


def render_event(event: dict[str, Any]) -> str:
    """``[seq] …`` for one event; unknown events are shown as they are."""
    seq = event.get("seq", "-")
    kind = event.get("event")
    if kind == "response":
        number = event.get("sequence_number")
        final = " (final)" if event.get("response", {}).get("is_final") else ""
        body = _payload(event.get("response", {}).get("response_payload", {}))
        return f"[{seq}] #{number} {body}{final}"
    if kind == "status":
        status = event.get("status")
        if status == "retrying":
            return (f"[{seq}] retrying after attempt {event.get('attempt')}: "
                    f"{event.get('reason')}")  # fmt: skip
        extra = f": {event['error_message']}" if event.get("error_message") else ""
        return f"[{seq}] {str(status).upper()}{extra}"
    if kind == "snapshot":
        return (f"(the event log has expired: the stored command follows, "
                f"{event.get('responses')} response(s), status {event.get('status')})")  # fmt: skip
    if kind == "error":
        return f"[{seq}] error {event.get('error_code')}: {event.get('error_message')}"
    return f"[{seq}] {event}"
