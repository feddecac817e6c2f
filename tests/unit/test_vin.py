"""VIN check digits (ISO 3779 / FMVSS 115)."""

from __future__ import annotations

import pytest

from common.vin import check_digit, is_valid_vin, with_check_digit


@pytest.mark.parametrize(
    ("vin", "digit"),
    [("1M8GDM9AXKP042788", "X"), ("11111111111111111", "1"), ("WVWZZZ1K_MW123456", "3")],
)
def test_check_digit_of_known_vins(vin: str, digit: str) -> None:
    assert check_digit(vin) == digit


@pytest.mark.parametrize("vin", ["1M8GDM9AXKP042788", "11111111111111111"])
def test_known_valid_vins_are_valid(vin: str) -> None:
    assert is_valid_vin(vin) is True


@pytest.mark.parametrize(
    "vin",
    [
        "1M8GDM9A1KP042788",  # wrong check digit
        "1M8GDM9AXKP042789",  # one character changed after the check digit
        "11111111211111111",  # wrong check digit
        "1M8GDM9AXKP04278",  # 16 characters
        "1M8GDM9AXKP0427888",  # 18 characters
        "",
        "1M8GDM9AXKP04278-",  # not in the alphabet
    ],
)
def test_invalid_vins_are_rejected(vin: str) -> None:
    assert is_valid_vin(vin) is False


@pytest.mark.parametrize("letter", ["I", "O", "Q"])
def test_letters_i_o_and_q_are_rejected(letter: str) -> None:
    vin = "1M8GDM9AXKP" + letter + "42788"

    assert is_valid_vin(vin) is False
    with pytest.raises(ValueError, match="not a 17-character VIN"):
        check_digit(vin)


def test_the_check_digit_placeholder_is_not_a_valid_vin_character() -> None:
    """``_`` only marks the check digit position for ``with_check_digit``; it is no VIN letter.

    ``1M8GDM9AXKP042788`` has a ``0`` (value 0) at position 12; replacing it by ``_``
    must not leave a valid VIN.
    """
    assert is_valid_vin("1M8GDM9AXKP_42788") is False


def test_check_digit_rejects_a_string_that_is_not_17_characters_long() -> None:
    with pytest.raises(ValueError, match="not a 17-character VIN"):
        check_digit("1M8GDM9AXKP04278")


def test_with_check_digit_fills_the_placeholder() -> None:
    assert with_check_digit("1M8GDM9A_KP042788") == "1M8GDM9AXKP042788"


def test_with_check_digit_corrects_a_wrong_check_digit() -> None:
    assert with_check_digit("1M8GDM9A7KP042788") == "1M8GDM9AXKP042788"


def test_with_check_digit_yields_a_valid_vin() -> None:
    vin = with_check_digit("5YJ3E1EA_PF400123")

    assert is_valid_vin(vin) is True
    assert vin[:8] + vin[9:] == "5YJ3E1EAPF400123"
