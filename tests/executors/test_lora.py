"""Where the adapters go: attention alone, or every linear layer but the head the task trains whole."""

from __future__ import annotations

import pytest
import torch

from executors.models import resolve_model
from executors.tasks import make_handler
from executors.training import add_lora
from memory.records import TaskSpec, TrialConfig

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("task_type", ["classification", "token_classification"])
def test_all_linear_adapts_every_linear_layer_but_the_head(task_type: str) -> None:
    task = TaskSpec(
        task_type=task_type, train_path="x.csv", text_columns=("text",), label_column="label",
        metric="macro_f1" if task_type == "classification" else "entity_f1", direction="maximize",
    )  # fmt: skip
    labels = ["neg", "pos"] if task_type == "classification" else ["O", "B-loc", "I-loc"]
    adapted = {}
    for targets in (("attention",), ("all-linear",)):
        config = TrialConfig(model=MINILM, lora_targets=targets, lora_r=4, lora_alpha=16, use_rslora=True)
        handler = make_handler(task, config, labels)
        path = resolve_model(MINILM)
        handler.load_tokenizer(path)
        model = add_lora(handler.load_model(path, torch.float32), handler, config)
        names = [n for n, _ in model.named_parameters()]
        adapted[targets] = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in names if ".lora_A." in n}
        assert not any("classifier" in n and "lora_" in n for n in names)  # the head is trained whole
        assert any("classifier" in n and p.requires_grad for n, p in model.named_parameters())
        lora_layer = next(m for n, m in model.named_modules() if n.endswith("query"))
        assert lora_layer.scaling["default"] == pytest.approx(16 / 4**0.5)  # rsLoRA: alpha / sqrt(r)
    assert adapted[("attention",)] == {"query", "value"}
    assert adapted[("all-linear",)] == {"query", "key", "value", "dense"}
