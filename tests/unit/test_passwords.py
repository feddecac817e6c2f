"""scrypt password hashes."""

from __future__ import annotations

import pytest

from common.passwords import SCRYPT_N, hash_password, verify_password

#: Low scrypt cost so the tests stay fast; the parameters travel with the hash.
FAST_N = 2**10


def test_the_right_password_verifies() -> None:
    encoded = hash_password("correct horse", n=FAST_N)

    assert verify_password("correct horse", encoded) is True


def test_a_wrong_password_does_not_verify() -> None:
    encoded = hash_password("correct horse", n=FAST_N)

    assert verify_password("correct horsE", encoded) is False


def test_an_unknown_user_never_verifies() -> None:
    assert verify_password("anything", None) is False


def test_an_empty_stored_hash_never_verifies() -> None:
    assert verify_password("", "") is False


def test_the_hash_records_its_parameters_and_uses_a_fresh_salt() -> None:
    first = hash_password("same", n=FAST_N)
    second = hash_password("same", n=FAST_N)

    assert first.split("$")[:4] == ["scrypt", str(FAST_N), "8", "1"]
    assert first != second
    assert verify_password("same", second) is True


def test_the_default_cost_is_two_to_the_fourteenth() -> None:
    assert SCRYPT_N == 2**14
    assert hash_password("pw").split("$")[1] == "16384"


@pytest.mark.parametrize(
    "encoded",
    [
        "not-a-hash",
        "scrypt$1024$8$1$c2FsdA",  # five fields
        "bcrypt$1024$8$1$c2FsdA$ZGlnZXN0",  # another scheme
        "scrypt$abc$8$1$c2FsdA$ZGlnZXN0",  # N not a number
        "scrypt$1000$8$1$c2FsdA$ZGlnZXN0",  # N not a power of two
        "scrypt$1024$0$1$c2FsdA$ZGlnZXN0",  # r of zero
        "scrypt$99999999999999999999999$8$1$c2FsdA$ZGlnZXN0",  # N out of range
        "scrypt$1024$8$1$c2FsdA$",  # empty digest
        "scrypt$1024$8$1$!!!$ZGlnZXN0",  # salt not base64
    ],
)
def test_a_malformed_hash_does_not_verify(encoded: str) -> None:
    assert verify_password("password", encoded) is False
