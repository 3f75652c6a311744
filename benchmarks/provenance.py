"""Where a benchmark record comes from: the commit it ran on, and a clean tree for every committed record.

A figure in the README must point at a record that someone can reproduce by checking out the commit it names,
so a record under benchmarks/records/ is refused from a tree with changes (tracked or untracked). Scratch output
elsewhere (benchmarks/results/, the default) may come from a dirty tree; it is then named `<commit>+dirty`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"


def commit(outside: tuple[str, ...] = ()) -> str:
    """HEAD's short commit, with `+dirty` when the tree has changes outside benchmarks/results/ (and `outside`)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results", *(f":!{path}" for path in outside)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def is_record(out: Path) -> bool:
    return Path(out).resolve().is_relative_to(RECORDS.resolve())


def commit_for(out: Path | None) -> str:
    """The commit to name in `out`; exits (status 2) when `out` is a committed record and the tree is dirty."""
    code = commit()
    if out is not None and is_record(out) and (code.endswith("+dirty") or code == "unknown"):
        print(
            f"refusing to write {out}: the tree has uncommitted changes (git status); commit them first, so the "
            "record names the code that made it, or write to benchmarks/results/",
            file=sys.stderr,
        )
        sys.exit(2)
    return code
