"""The command line's habits: --version, python -m audiomoment, an example in every --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audiomoment import __version__
from audiomoment.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def test_every_command_is_listed() -> None:
    assert {"predict", "evaluate", "report", "package-submission", "search", "index",
            "serve", "extract-features", "simulate", "demo"} <= set(commands())


@pytest.mark.parametrize("command", commands())
def test_every_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"audiomoment {command}" in out.split("example", 1)[1]


def test_version_and_python_m() -> None:
    proc = subprocess.run([sys.executable, "-m", "audiomoment", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"audiomoment {__version__}"
    proc = subprocess.run([sys.executable, "-m", "audiomoment", "evaluate"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--annotations" in proc.stderr
