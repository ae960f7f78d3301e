"""The tiny Qwen2.5-VL's position encoding: the 3x3 grid must be tellable apart by rotary position."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def _axis_frequencies(model_dir: Path) -> dict[str, torch.Tensor]:
    """The rotary frequencies M-RoPE gives each axis (temporal, height, width), read from the saved config."""
    cfg = json.loads((model_dir / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    rope = text["rope_parameters"]
    dim = text["hidden_size"] // text["num_attention_heads"]
    inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    t, h, w = inv_freq.split(rope["mrope_section"])
    return {"t": t, "h": h, "w": w}


def test_every_image_axis_gets_a_frequency_that_separates_neighbouring_cells(tiny_model: Path) -> None:
    freqs = _axis_frequencies(tiny_model)
    # One cell apart must rotate some frequency of the axis by a usable angle, else attention from the
    # answer tokens cannot pick a row or column by position.
    assert freqs["h"].max() > 0.3
    assert freqs["w"].max() > 0.1


def test_rope_theta_is_part_of_the_spec(tmp_path: Path) -> None:
    from anatomy_r1.models.tiny import TinySpec, build_tiny_model

    spec = TinySpec(rope_theta=500.0)
    out = build_tiny_model(tmp_path / "m", ["What anatomy is at the top-left?", "<think></think>"], spec)
    text = json.loads((out / "config.json").read_text())
    text = text.get("text_config", text)
    assert text["rope_parameters"]["rope_theta"] == 500.0
    assert TinySpec(rope_theta=500.0).key() != TinySpec().key()
