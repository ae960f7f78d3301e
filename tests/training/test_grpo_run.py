"""A real GRPO run through ``anatomy-r1 train``: TRL steps on a tiny Qwen2.5-VL, metrics, final model.

GRPO's loss is about zero by construction (advantages are centred per group), so "it trained" is checked
on the weights and the gradient norm, never on the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main


def _tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.slow
def test_grpo_run_logs_metrics_updates_weights_and_saves_final(
    tmp_path: Path,
    write_config: Callable[..., Path],
    warm_model: Path,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    cfg = write_config(out, model={"path": str(warm_model)}, grpo={"max_steps": 3, "learning_rate": 1e-3})
    assert main(["train", "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert f"final model: {out / 'final'}" in printed
    assert "3 steps, last reward" in printed and "last accuracy reward" in printed

    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]  # logging every step, no duplicates
    for r in rows:
        for key in ("reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean"):
            assert isinstance(r[key], float), key
        assert 0.0 <= r["invalid_gradient_ratio"] <= 1.0
        assert any(k.startswith("invalid_gradient_ratio/") for k in r)  # per anatomy class
        assert r["gdqa/wordings_per_group"] == 1.0  # GDQA is off by default
    # The warmed model answers in format at least sometimes, so some group has a reward spread and a
    # non-zero gradient; with a random model every reward is 0 and nothing could move.
    assert max(r["grad_norm"] for r in rows) > 0
    assert min(r["invalid_gradient_ratio"] for r in rows) < 1.0

    before, after = _tensors(warm_model), _tensors(out / "final")
    assert before.keys() == after.keys()
    changed = [k for k in before if not before[k].equal(after[k])]
    assert changed, "no weight changed in 3 GRPO steps"
    assert any("lm_head" in k or "layers" in k for k in changed)

    # final/ is a complete checkpoint: model, processor and the extra state load again.
    from anatomy_r1.models.loading import load_model, load_processor

    model = load_model(out / "final")
    processor = load_processor(out / "final")
    assert hasattr(processor, "image_processor") and model.config.model_type == "qwen2_5_vl"
    assert (out / "final" / "anatomy_r1_state.json").is_file()
    assert (out / "config.yaml").is_file()


@pytest.mark.slow
def test_random_model_run_and_output_dir_flag(
    tmp_path: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """``--output-dir`` wins over the config; a random model gives all-invalid groups and zero gradients."""
    cfg = write_config(tmp_path / "ignored", grpo={"max_steps": 2})
    out = tmp_path / "elsewhere"
    assert main(["train", "--config", str(cfg), "--output-dir", str(out)]) == 0
    assert not (tmp_path / "ignored").exists()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["invalid_gradient_ratio"] == 1.0 and r["grad_norm"] == 0.0 for r in rows)
    assert (out / "final" / "config.json").is_file()


def test_sft_alias_forces_method_sft(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    """``anatomy-r1 sft`` runs SFT even when the config says grpo (checked on the saved config)."""
    import yaml

    out = tmp_path / "sft"
    cfg = write_config(out, sft={"max_steps": 1, "per_device_train_batch_size": 2})
    assert main(["sft", "--config", str(cfg)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["method"] == "sft"
    assert (out / "final" / "config.json").is_file()
