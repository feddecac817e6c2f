"""Vehicle identification numbers (ISO 3779 / FMVSS 115 check digit)."""

from __future__ import annotations

__all__ = ["check_digit", "is_valid_vin", "with_check_digit"]

_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(vin: str) -> str:
    """The check digit (``0``-``9`` or ``X``) for a 17-character VIN.

    Position 9 (the check digit itself, weight 0) is ignored and may be ``_``.
    """
    chars = vin.upper()
    if len(chars) != 17 or any(
        c not in _TRANSLITERATION for i, c in enumerate(chars) if not (i == 8 and c == "_")
    ):
        raise ValueError(f"not a 17-character VIN alphabet string: {vin!r}")
    total = sum(_TRANSLITERATION[c] * w for c, w in zip(chars, _WEIGHTS, strict=True) if c != "_")
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def with_check_digit(vin: str) -> str:
    """``vin`` with position 9 set to its correct check digit."""
    return vin[:8] + check_digit(vin[:8] + "_" + vin[9:]) + vin[9:]


def is_valid_vin(vin: str) -> bool:
    """True for 17 characters of the VIN alphabet (no I, O, Q) with a correct check digit."""
    try:
        return len(vin) == 17 and "_" not in vin and vin[8] == check_digit(vin)
    except ValueError:
        return False
