"""docs/cli.md is the `--help` of every command; it must match the CLI as it is now."""

import difflib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"


def _maker():
    spec = importlib.util.spec_from_file_location("make_cli_reference", ROOT / "docs" / "make_cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    maker = _maker()
    written = CLI_MD.read_text(encoding="utf-8") if CLI_MD.exists() else ""
    expected = maker.render()
    if written != expected:
        diff = difflib.unified_diff(
            written.splitlines(), expected.splitlines(), "docs/cli.md", "--help now", lineterm="", n=1
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/cli.md is stale: run `{maker.REGENERATE}` and commit docs/cli.md\n{shown}", pytrace=False)


def test_cli_reference_is_deterministic() -> None:
    maker = _maker()
    assert maker.render() == maker.render()
