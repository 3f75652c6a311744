"""Write docs/cli.md from the `--help` of every `autoglm` command.

Run from the repository root:  python docs/make_cli_reference.py
`tests/test_cli_reference.py` fails when docs/cli.md differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
REGENERATE = "python docs/make_cli_reference.py"
# A fixed width and no colour, so the text is the same on every machine.
HELP_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "TERMINAL_WIDTH": "100"}


def _is_group(command: Any) -> bool:
    # typer's groups are click groups, but recent typer versions ship their own click; ask for the method.
    return callable(getattr(command, "list_commands", None))


def _commands(group: Any, path: list[str]) -> list[list[str]]:
    """Every command path under `group`, in the order `--help` lists them (groups before their commands)."""
    paths: list[list[str]] = []
    ctx = group.context_class(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        paths.append([*path, name])
        if _is_group(command):
            paths.extend(_commands(command, [*path, name]))
    return paths


# typer reads these from the environment once, at import (GITHUB_ACTIONS or FORCE_COLOR force colour codes).
PLAIN_RICH = {"FORCE_TERMINAL": False, "COLOR_SYSTEM": None, "MAX_WIDTH": 100}


def _help(app: typer.Typer, args: list[str]) -> str:
    import typer.rich_utils as rich_utils

    saved = {name: getattr(rich_utils, name) for name in PLAIN_RICH if hasattr(rich_utils, name)}
    try:
        for name in saved:
            setattr(rich_utils, name, PLAIN_RICH[name])
        result = CliRunner().invoke(app, [*args, "--help"], prog_name="autoglm", env=HELP_ENV)
    finally:
        for name, value in saved.items():
            setattr(rich_utils, name, value)
    if result.exit_code != 0:
        raise RuntimeError(f"autoglm {' '.join(args)} --help exited {result.exit_code}: {result.output}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def render() -> str:
    """The text of docs/cli.md for the CLI as it is now."""
    from agent.terminal.cli import app

    root = typer.main.get_command(app)
    paths = _commands(root, []) if _is_group(root) else []
    out = [
        "# CLI reference",
        "",
        f"Generated from `--help` by `{REGENERATE}`; do not edit by hand.",
        "`tests/test_cli_reference.py` fails when this file is stale.",
        "",
        "Commands: " + ", ".join(f"[`{' '.join(p)}`](#autoglm-{'-'.join(p)})" for p in paths) + ".",
        "",
        "## autoglm",
        "",
        "```text",
        _help(app, []),
        "```",
    ]
    for path in paths:
        out += ["", f"## autoglm {' '.join(path)}", "", "```text", _help(app, path), "```"]
    return "\n".join(out) + "\n"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    CLI_MD.write_text(render(), encoding="utf-8")
    print(f"wrote {CLI_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
