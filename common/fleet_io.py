"""Fleet import and export (``sovd-admin import-fleet`` / ``export-fleet``), CSV or JSON.

A file holds registry data only (``vin``, ``make``, ``model``, ``year``, ``metadata``,
optionally ``vehicle_id``), never presence. Import validates every row on its own
(``common.registry.VehicleSpec``, as the REST API does) and is idempotent on the VIN:
a new VIN is registered, a known one updated when its fields differ, else left as it
is. Refused rows are reported with their row number and reason; the others are
imported. An export imports back unchanged.

CSV: a header row with those column names; ``metadata`` is a JSON object (or empty).
JSON: a list of objects, or an object whose ``vehicles`` is that list.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from common.registry import Registry, VehicleSpec, VehicleUpdate
from common.vehicles import Vehicle, VehicleStore

__all__ = [
    "COLUMNS",
    "Format",
    "ImportReport",
    "Refusal",
    "dump_fleet",
    "import_fleet",
    "parse_rows",
]

Format = Literal["csv", "json"]

#: The columns of a fleet file, in export order.
COLUMNS = ("vin", "make", "model", "year", "metadata", "vehicle_id")
#: The most rows one import takes.
MAX_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Row ``row`` (1 = the first data row) was not imported, because of ``reason``."""

    row: int
    vin: str | None
    reason: str


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"created {len(self.created)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, refused {len(self.refused)}"
        )


@dataclass(frozen=True, slots=True)
class _Row:
    number: int
    spec: VehicleSpec
    vehicle_id: str | None


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "row"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _records(text: str, fmt: Format) -> list[Any]:
    if fmt == "json":
        data = json.loads(text)
        if isinstance(data, dict) and "vehicles" in data:
            data = data["vehicles"]
        if not isinstance(data, list):
            raise ValueError("a JSON fleet file is a list of vehicles (or {'vehicles': [...]})")
        return data
    reader = csv.DictReader(io.StringIO(text))
    missing = {"vin", "make", "model", "year"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"the CSV header lacks {', '.join(sorted(missing))}")
    rows: list[Any] = []
    for raw in reader:
        if None in raw:
            rows.append({"__error__": "more values than header columns"})
            continue
        row: dict[str, Any] = {k: v for k, v in raw.items() if k and v is not None}
        metadata = row.pop("metadata", "") or ""
        try:
            row["metadata"] = json.loads(metadata) if metadata.strip() else {}
        except json.JSONDecodeError as exc:
            rows.append({"__error__": f"metadata: not JSON ({exc.msg})", "vin": row.get("vin")})
            continue
        if not row.get("vehicle_id"):
            row.pop("vehicle_id", None)
        rows.append(row)
    return rows


def parse_rows(text: str, fmt: Format) -> tuple[list[_Row], list[Refusal]]:
    """Every row validated on its own: the valid ones and the refusals.

    ``ValueError`` when the file as a whole cannot be read (bad JSON, CSV header).
    """
    records = _records(text, fmt)
    if len(records) > MAX_ROWS:
        raise ValueError(f"{len(records)} rows; one import takes at most {MAX_ROWS}")
    rows, refused = [], []
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            refused.append(Refusal(number, None, "row: not an object"))
            continue
        vin = record.get("vin") if isinstance(record.get("vin"), str) else None
        if "__error__" in record:
            refused.append(Refusal(number, vin, record["__error__"]))
            continue
        values = dict(record)
        vehicle_id = values.pop("vehicle_id", None)
        if vehicle_id is not None:
            try:
                vehicle_id = str(uuid.UUID(str(vehicle_id)))
            except ValueError:
                refused.append(Refusal(number, vin, "vehicle_id: not a UUID"))
                continue
        try:
            spec = VehicleSpec.model_validate(values)
        except ValidationError as exc:
            refused.append(Refusal(number, vin, _reason(exc)))
            continue
        if spec.vin in seen:
            refused.append(Refusal(number, spec.vin, f"vin: repeats row {seen[spec.vin]}"))
            continue
        seen[spec.vin] = number
        rows.append(_Row(number, spec, vehicle_id))
    return rows, refused


async def import_fleet(
    text: str,
    fmt: Format,
    *,
    vehicles: VehicleStore,
    registry: Registry,
    dry_run: bool = False,
    **actor: Any,
) -> ImportReport:
    """Import a fleet file; ``dry_run`` validates and reports without writing."""
    rows, refused = parse_rows(text, fmt)
    report = ImportReport(refused=refused)
    for row in rows:
        existing = await vehicles.by_vin(row.spec.vin)
        if existing is None:
            if row.vehicle_id is not None and await vehicles.get(row.vehicle_id) is not None:
                reason = f"vehicle_id: {row.vehicle_id} belongs to another VIN"
                report.refused.append(Refusal(row.number, row.spec.vin, reason))
                continue
            if not dry_run:
                await registry.register(row.spec, vehicle_id=row.vehicle_id, **actor)
            report.created.append(row.spec.vin)
            continue
        if row.vehicle_id is not None and row.vehicle_id != existing.vehicle_id:
            reason = f"vehicle_id: the VIN is registered as {existing.vehicle_id}"
            report.refused.append(Refusal(row.number, row.spec.vin, reason))
            continue
        update = VehicleUpdate(
            make=row.spec.make, model=row.spec.model, year=row.spec.year,
            metadata=row.spec.metadata,
        )  # fmt: skip
        if all(getattr(existing, k) == v for k, v in update.changes().items()):
            report.unchanged.append(row.spec.vin)
            continue
        if not dry_run:
            await registry.update(existing.vehicle_id, update, **actor)
        report.updated.append(row.spec.vin)
    report.refused.sort(key=lambda r: r.row)
    return report


def _record(vehicle: Vehicle) -> dict[str, Any]:
    return {
        "vin": vehicle.vin,
        "make": vehicle.make,
        "model": vehicle.model,
        "year": vehicle.year,
        "metadata": vehicle.metadata,
        "vehicle_id": vehicle.vehicle_id,
    }


def dump_fleet(fleet: list[Vehicle], fmt: Format) -> str:
    """The fleet as a file ``import_fleet`` reads back (registry fields only)."""
    records = [_record(v) for v in fleet]
    if fmt == "json":
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        metadata = record["metadata"]
        writer.writerow(
            {**record, "metadata": json.dumps(metadata, ensure_ascii=False) if metadata else ""}
        )
    return out.getvalue()
