"""A decoding config saved beside a model as `generation_config.json`, and read back: transformers' own file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory.records import DecodingConfig

GENERATION_CONFIG_FILE = "generation_config.json"  # transformers' own name: GenerationConfig.from_pretrained reads it
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}  # what generate() uses when a config says nothing


def save_generation_config(config: DecodingConfig, folder: str | Path) -> Path:
    """Write `config` as the folder's `generation_config.json`, which `GenerationConfig.from_pretrained` reads."""
    from transformers import GenerationConfig

    values = {k: v for k, v in config.generate_kwargs().items() if v is not None}
    GenerationConfig(**values).save_pretrained(str(folder))
    return Path(folder) / GENERATION_CONFIG_FILE


def decoding_from_generation_config(generation: Any, max_new_tokens: int) -> DecodingConfig | None:
    """A transformers `GenerationConfig` as a DecodingConfig, with generate()'s defaults filled in; None if unfit.

    `max_new_tokens` stands in when the config sets none: a bare `max_length` counts the prompt too, and
    would say more about the prompt's length than about decoding.
    """
    sample = bool(getattr(generation, "do_sample", False))
    values: dict[str, Any] = {
        "do_sample": sample,
        "num_beams": 1 if sample else int(getattr(generation, "num_beams", None) or 1),
        "max_new_tokens": int(getattr(generation, "max_new_tokens", None) or max_new_tokens),
        "repetition_penalty": float(getattr(generation, "repetition_penalty", None) or 1.0),
    }
    if sample:
        for name, default in SAMPLING_DEFAULTS.items():
            value = getattr(generation, name, None)
            values[name] = default if value is None else value
    try:
        return DecodingConfig(**values)
    except ValueError:
        return None


def read_generation_config(folder: str | Path, max_new_tokens: int = 32) -> DecodingConfig | None:
    """The folder's `generation_config.json` as a DecodingConfig, or None when it has none (or one we cannot use)."""
    if not (Path(folder) / GENERATION_CONFIG_FILE).is_file():
        return None
    from transformers import GenerationConfig

    return decoding_from_generation_config(GenerationConfig.from_pretrained(str(folder)), max_new_tokens)
