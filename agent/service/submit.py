"""A submission's settings: the keys of a study file, validated as `autoglm tune --config` validates them.

The server decides where the database and run folders are; a data path is read only inside the data root (or
the server's own uploads folder), so `../` and symlinks out of it are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.service.config import ServiceConfig
from agent.study.settings import check_options, options_from, study_name
from memory.errors import UserError
from memory.records import TuneOptions

DATA_KEYS = ("data", "validation_data", "test_data")
SERVER_KEYS = ("db", "runs_dir")  # the server's own: a client cannot point a study elsewhere
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def inside(root: Path, given: str | Path, what: str) -> Path:
    """`given` (relative to `root`, or absolute) resolved, symlinks followed, and proven to lie inside `root`.

    Raises:
        UserError: it points outside the root, or does not exist.
    """
    root = root.resolve()
    path = (root / given).resolve()  # an absolute `given` replaces root; resolve() follows every symlink
    if not path.is_relative_to(root):
        raise UserError(f"{what} {str(given)!r} is outside the data root; name a file under {root}")
    if not path.exists():
        raise UserError(f"{what} {str(given)!r} does not exist under the data root {root}")
    return path


def resolve_paths(settings: dict[str, Any], config: ServiceConfig, uploaded: Mapping[str, Path]) -> dict[str, Any]:
    """Data paths made absolute inside the data root; an uploaded file stands in for the key it was sent as."""
    for key in DATA_KEYS:
        if key in uploaded:
            settings[key] = str(uploaded[key])
        elif isinstance(settings.get(key), str):
            settings[key] = str(inside(config.data_root, settings[key], key))
    models = settings.get("models")
    for model in [models] if isinstance(models, str) else models or []:
        # A hub id or a packaged alias is a name; a path is a folder that must be the data root's.
        if isinstance(model, str) and (model.startswith((".", "/", "~")) or (config.data_root / model).exists()):
            inside(config.data_root, model, "model")
    return settings


def study_settings(
    body: Mapping[str, Any], config: ServiceConfig, uploaded: Mapping[str, Path] | None = None, taken: Any = None
) -> tuple[str, TuneOptions]:
    """The study's name and validated settings, as `autoglm tune --config` would run them.

    Args:
        body: the study file's keys, as JSON.
        config: the server's folders.
        uploaded: data files sent with the request, by the key they stand for (`data`, `validation_data`, ...).
        taken: called with a name, says whether a study or submission already has it.

    Raises:
        UserError: the same one line the CLI prints for the same mistake, or a path outside the data root.
    """
    if not isinstance(body, Mapping):
        raise UserError('the study settings must be a JSON object, like {"data": "reviews.csv", "trials": 4}')
    for key in SERVER_KEYS:
        if key in body:
            raise UserError(f"the study settings: {key!r} is set by the server; leave it out")
    settings = dict(body)
    options_from(settings, "the study settings")  # unknown keys and wrong values first, named as the CLI names them
    settings = resolve_paths(settings, config, uploaded or {})
    settings |= {"db": str(config.db), "runs_dir": str(config.runs_dir)}
    options = options_from(settings, "the study settings")
    check_options(options)
    name = options.name
    if name is not None and not NAME.match(name):
        raise UserError(f"the study settings: name {name!r} is not allowed; use letters, digits, '.', '_' and '-'")
    if name is None:
        base, n = study_name(options), 1
        name = base
        while taken is not None and taken(name):
            n += 1
            name = f"{base}-{n}"
    elif taken is not None and taken(name):
        raise UserError(f"a study named {name!r} already exists; pick another name")
    return name, options.model_copy(update={"name": name})
