"""The prepared GPU check: its 3B architecture is Qwen2.5-VL-3B's, and its CPU dry run completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


def test_architecture_is_qwen2_5_vl_3b() -> None:
    """Built on the meta device (no memory): the parameter count is the released model's 3.75 B."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from anatomy_r1.models.tiny import train_tokenizer

    tok = train_tokenizer(["<think>the liver</think> <answer>A</answer>"] * 10, 400)
    cfg = gpu_check.qwen_config(gpu_check.QWEN2_5_VL_3B, tok)
    assert cfg.text_config.vocab_size == 151936 and cfg.text_config.hidden_size == 2048
    assert cfg.text_config.num_hidden_layers == 36 and cfg.text_config.num_key_value_heads == 2
    assert cfg.vision_config.depth == 32 and cfg.vision_config.out_hidden_size == 2048
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tied, as released


@pytest.mark.slow
def test_dry_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    r = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["dry_run"] is True and result["settings"]["dtype"] == "fp32"
    assert set(result["runs"]) == {"anatomy_r1_full", "anatomy_r1_lora", "trl_full"}
    for name, run in result["runs"].items():
        assert run["steps"] == 2, name
        assert run["step_time_median_s"] > 0 and run["tokens_per_s"] > 0
        assert run["peak_gpu_memory_gib"] is None  # no GPU in a dry run
    lora, full = result["runs"]["anatomy_r1_lora"], result["runs"]["anatomy_r1_full"]
    assert 0 < lora["trainable_parameters"] < full["trainable_parameters"]
    assert result["ratio_anatomy_r1_over_trl"] > 0
    assert result["eval"]["items"] == 4 and result["eval"]["completions"] == 4 * 3
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check") and "DRY RUN" in md and "Anatomy-R1 / TRL step-time ratio" in md
    assert not (out / "model").exists()  # the saved weights are removed unless --keep-model
    assert "{'loss'" not in r.stdout  # no per-step dict dumps


def test_without_a_gpu_the_full_check_refuses_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "o")]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
