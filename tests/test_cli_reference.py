"""docs/cli.md is the `--help` of every command; it must match the CLI as it is now."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _maker():
    spec = importlib.util.spec_from_file_location("make_cli_reference", ROOT / "docs" / "make_cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    maker = _maker()
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") if (ROOT / "docs" / "cli.md").exists() else ""
    assert written == maker.render(), f"docs/cli.md is stale: run `{maker.REGENERATE}` and commit docs/cli.md"


def test_cli_reference_is_deterministic():
    maker = _maker()
    assert maker.render() == maker.render()
