"""The README against the code: its configuration table and every command it shows."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess

import dramatiq.cli
import pytest

from cli.main import build_parser as sovd_parser
from common.admin import build_parser as admin_parser
from common.settings import Settings
from tests.support import ROOT

README = (ROOT / "README.md").read_text()
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


def _configuration_rows() -> list[str]:
    """The first cell of every row of the table under "## Configuration"."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [row.split("|")[1] for row in rows]


def _documented_settings() -> set[str]:
    """Settings fields named by ``SOVD_*`` variables in the table (``A`` / ``B`` rows too)."""
    names = set()
    for cell in _configuration_rows():
        for variable in re.findall(r"`([A-Za-z_]+)`", cell):
            if variable.startswith("SOVD_"):
                names.add(variable.removeprefix("SOVD_").lower())
    return names


def test_every_setting_has_a_row_in_the_readme_configuration_table() -> None:
    missing = sorted(set(Settings.model_fields) - _documented_settings())
    assert missing == [], "add a README configuration row for " + ", ".join(
        f"SOVD_{name.upper()}" for name in missing
    )


def test_every_sovd_row_of_the_readme_configuration_table_is_a_setting() -> None:
    unknown = sorted(_documented_settings() - set(Settings.model_fields))
    assert unknown == [], "the README documents settings that do not exist: " + ", ".join(
        f"SOVD_{name.upper()}" for name in unknown
    )


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)


def _commands() -> list[list[str]]:
    """Every command line of the README's shell blocks and inline code, as words, without
    leading ``NAME=value`` assignments and trailing comments."""
    lines = []
    for block in _shell_blocks():
        lines.extend(block.replace("\\\n", " ").splitlines())
    lines.extend(re.findall(r"`((?:sovd |sovd-admin |bash scripts/)[^`]*)`", README))
    commands = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # part of a multi-line construct; the block's syntax is checked whole
        while words and _ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def test_the_readme_shell_blocks_are_valid_shell() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for block in _shell_blocks():
        # <command_id> is a placeholder for the reader to fill in, not a redirection.
        filled = re.sub(r"<([a-z_]+)>", r"\1", block)
        checked = subprocess.run([bash, "-n"], input=filled, capture_output=True, text=True)
        assert checked.returncode == 0, f"{checked.stderr}\n{block}"


def _parses(words: list[str]) -> None:
    program, args = words[0], words[1:]
    if program == "sovd":
        if args != ["--version"]:
            sovd_parser().parse_args(args)
    elif program == "sovd-admin":
        admin_parser().parse_args(args)
    elif program == "dramatiq":
        dramatiq.cli.make_argument_parser().parse_args(args)
    elif program == "python" and args[:1] == ["-m"]:
        assert importlib.util.find_spec(args[1]) is not None, args[1]
    elif program == "bash":
        assert (ROOT / args[0]).is_file(), args[0]
    else:
        raise AssertionError(f"no check for {program!r}")


#: Programs the README runs that are not this project's (their lines are checked as shell).
OTHERS = {"curl", "TOKEN=$(curl", "VEHICLE=$(curl", "-H", "-d", "|", "python3"}


@pytest.mark.parametrize(
    "words",
    [w for w in _commands() if w[0] not in OTHERS and not w[0].startswith(("$", "-", "|"))],
    ids=lambda words: " ".join(words)[:60],
)
def test_every_command_the_readme_shows_parses(words: list[str]) -> None:
    _parses(words)


def test_the_readme_shows_the_commands_a_newcomer_needs() -> None:
    shown = {" ".join(w[:2]) for w in _commands()}
    expected = {"bash scripts/run.sh", "bash scripts/test.sh", "sovd login", "sovd run",
                "sovd watch", "sovd show", "sovd cancel", "sovd types", "sovd whoami"}  # fmt: skip
    assert expected <= shown, expected - shown
