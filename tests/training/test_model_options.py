"""The ``model:`` section: LoRA through TRL's ``peft_config``, attention back-end, a frozen vision tower and
the image processor's pixel range, each checked on the tiny Qwen2.5-VL and, where it matters, in real TRL
steps.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from anatomy_r1.cli import main
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import ATTN_IMPLEMENTATIONS, load_config

VISION = "model.visual"
# Module names in both halves of the tiny Qwen2.5-VL: q_proj/v_proj/gate_proj in the language model,
# qkv and gate_proj in the vision blocks, so only an exclusion keeps adapters off the vision tower.
BOTH_HALVES = ["q_proj", "v_proj", "gate_proj", "qkv"]


@pytest.fixture
def model_cfg(tmp_path: Path, write_config: Callable[..., Path]) -> Callable[..., Any]:
    """``model_cfg(**model)``: the shared tiny GRPO config with these ``model:`` settings, loaded."""
    return lambda **model: load_config(write_config(tmp_path / "run", model=model))


def _image_tokens(processor: Any, size: int = 84) -> int:
    from PIL import Image

    enc = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|> where?"],
        images=[Image.new("RGB", (size, size), (120, 60, 30))],
        return_tensors="pt",
    )
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((enc["input_ids"] == pad).sum())


# ----------------------------------------------------------------------------- model.lora: the config


def test_misspelled_lora_key_is_refused_naming_the_closest_peft_field() -> None:
    named = r"model\.lora: 'alpha' is not a field of peft\.LoraConfig; did you mean 'lora_alpha'"
    with pytest.raises(ConfigError, match=named):
        load_config(None, ["model.lora={r: 8, alpha: 16}"])
    with pytest.raises(ConfigError, match=r"'lora_dropuot' .*did you mean 'lora_dropout'"):
        load_config(None, ["model.lora={lora_dropuot: 0.1}"])
    with pytest.raises(ConfigError, match=r"task_type is set by the trainer"):
        load_config(None, ["model.lora={task_type: SEQ_CLS}"])


def test_lora_keys_are_peft_fields_and_pass_through(tmp_path: Path) -> None:
    from peft import LoraConfig

    from anatomy_r1.models.loading import lora_config
    from anatomy_r1.training.config import LORA_OWNED_ELSEWHERE
    from anatomy_r1.training.trl_fields import lora_config_fields

    assert set(lora_config_fields()) == {f.name for f in dataclasses.fields(LoraConfig)}
    assert set(LORA_OWNED_ELSEWHERE) <= set(lora_config_fields())
    cfg = load_config(None, ["model.lora={r: 4, lora_alpha: 8, use_rslora: true, bias: lora_only}"])
    pc = lora_config(cfg.model.lora.model_dump())
    assert isinstance(pc, LoraConfig)
    assert (pc.r, pc.lora_alpha, pc.use_rslora, pc.bias) == (4, 8, True, "lora_only")
    assert set(pc.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}  # our default
    with pytest.raises(ConfigError, match=r"model\.lora rejected by peft: When `layers_pattern`"):
        lora_config(load_config(None, ["model.lora={layers_pattern: layers}"]).model.lora.model_dump())
    # The dumped config.yaml reads back to the same settings.
    from anatomy_r1.training.config import dump_config

    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


# ----------------------------------------------------------------------------- model.lora: through TRL


@pytest.mark.slow
def test_lora_with_beta_uses_the_base_as_reference_and_makes_no_adapter_copy(
    tiny_data: Path, model_cfg: Callable[..., Any]
) -> None:
    """With beta > 0, TRL's reference for a *new* adapter is the base model with the adapter disabled.

    A hand-wrapped PeftModel looks to TRL like a pretrained adapter, so it adds a second ("ref") copy
    and takes the reference from that copy. ``init_lora_weights: false`` gives the adapter random
    weights, so the adapted model differs from the base and the two references are told apart.
    """
    import torch
    from peft import PeftModel

    from anatomy_r1.data.io import read_records
    from anatomy_r1.training.grpo import build_grpo_trainer
    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    class Probe(AnatomyR1GRPOTrainer):
        """Records, per generation batch, TRL's reference log-probs and the same forward pass recomputed
        with the adapter disabled and enabled."""

        seen: list[tuple[Any, Any, Any]]

        def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
            out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if getattr(self, "_calls", None) is not None:
                self._calls.append((args, kwargs))
            return out

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            self._calls: list[Any] | None = []
            try:
                out = super()._generate_and_score_completions(inputs)
                (args, kwargs) = self._calls[-1]
            finally:
                self._calls = None
            logps = super()._get_per_token_logps_and_entropies
            peft_model = self.accelerator.unwrap_model(self.model)
            with torch.no_grad():
                with peft_model.disable_adapter():
                    base = logps(*args, **kwargs)[0]
                adapted = logps(*args, **kwargs)[0]
            self.seen = [*getattr(self, "seen", []), (out["ref_per_token_logps"], base, adapted)]
            return out

    cfg = model_cfg(lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "init_lora_weights": False})
    cfg.grpo.update(beta=0.04, max_steps=1)
    records = read_records(tiny_data / "train.jsonl")
    trainer = build_grpo_trainer(cfg, records, str(tiny_data), trainer_cls=Probe)

    assert trainer.ref_model is None
    assert isinstance(trainer.model, PeftModel)
    assert list(trainer.model.peft_config) == ["default"]
    assert not [n for n, _ in trainer.model.named_parameters() if ".ref." in n]
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    trainer.train()
    assert len(trainer.seen) == 1
    ref, base, adapted = trainer.seen[0]
    assert ref is not None and ref.shape == base.shape
    assert torch.allclose(ref, base, atol=1e-6)
    assert (ref - adapted).abs().max() > 1e-3  # the adapter changes the model, so the check has teeth


@pytest.mark.slow
def test_lora_run_saves_an_adapter_that_eval_loads(
    tmp_path: Path, write_config: Callable[..., Path], tiny_data: Path
) -> None:
    """GRPO and SFT with ``model.lora`` go through TRL's ``peft_config``; ``final/`` holds the adapter,
    and ``load_model`` (what ``eval`` uses) merges it onto its local base model."""
    from anatomy_r1.models.loading import load_model

    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    for cmd in ("train", "sft"):
        out = tmp_path / cmd
        extra = ["--set", f"data.train={tiny_data / 'warm.jsonl'}", "--set", "sft.max_steps=2"]
        cfg = write_config(out, model={"lora": lora}, grpo={"max_steps": 2})
        assert main([cmd, "--config", str(cfg), *(extra if cmd == "sft" else [])]) == 0
        final = out / "final"
        adapter = json.loads((final / "adapter_config.json").read_text())
        assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
        assert not (final / "config.json").exists()
        model = load_model(final)
        assert model.config.model_type == "qwen2_5_vl"
        assert not any("lora_" in n for n, _ in model.named_parameters())  # merged for inference


# ----------------------------------------------------------------------------- model.attn_implementation


def test_attn_implementations_are_the_ones_transformers_accepts() -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert set(ATTN_IMPLEMENTATIONS) <= {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}
    with pytest.raises(ConfigError, match=r"model\.attn_implementation"):
        load_config(None, ["model.attn_implementation=flash_attn2"])


def test_attn_implementation_reaches_from_pretrained(model_cfg: Callable[..., Any]) -> None:
    from anatomy_r1.training.run import training_model

    for impl in ("eager", "sdpa"):
        model, _ = training_model(model_cfg(attn_implementation=impl))
        assert model.config._attn_implementation == impl
        assert model.config.vision_config._attn_implementation == impl


# ----------------------------------------------------------------------------- model.freeze_vision


def test_freeze_vision_freezes_the_tower_and_keeps_lora_off_it(model_cfg: Callable[..., Any]) -> None:
    from peft import get_peft_model

    from anatomy_r1.training.run import training_model

    model, peft_config = training_model(model_cfg(freeze_vision=True))
    assert peft_config is None
    params = dict(model.named_parameters())
    assert any(n.startswith(VISION + ".") for n in params)
    for n, p in params.items():
        assert p.requires_grad == (not n.startswith(VISION + ".")), n

    # LoRA on module names both halves use: the vision tower gets adapters unless it is frozen.
    lora = {"r": 4, "target_modules": BOTH_HALVES}
    for freeze in (False, True):
        model, peft_config = training_model(model_cfg(freeze_vision=freeze, lora=lora))
        names = [n for n, _ in get_peft_model(model, peft_config).named_parameters() if "lora_A" in n]
        in_vision = [n for n in names if ".visual." in n]
        assert any(".language_model." in n for n in names)
        assert bool(in_vision) == (not freeze), in_vision[:3]

    # A user's own exclusions are kept beside the vision tower's.
    lora["exclude_modules"] = ["v_proj"]
    model, peft_config = training_model(model_cfg(freeze_vision=True, lora=lora))
    names = [n for n, _ in get_peft_model(model, peft_config).named_parameters() if "lora_A" in n]
    assert names and not [n for n in names if ".visual." in n or ".v_proj." in n]


def _tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.slow
def test_frozen_vision_tower_is_not_updated_by_grpo_steps(
    tmp_path: Path, write_config: Callable[..., Path], warm_model: Path
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        model={"path": str(warm_model), "freeze_vision": True},
        grpo={"max_steps": 3, "learning_rate": 1e-3},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    before, after = _tensors(warm_model), _tensors(out / "final")
    vision = [k for k in before if k.startswith("visual.")]  # saved names keep the checkpoint layout
    assert vision and all(before[k].equal(after[k]) for k in vision)
    changed = [k for k in before if k not in vision and not before[k].equal(after[k])]
    assert changed, "nothing outside the vision tower was trained either"


# ----------------------------------------------------------------------------- model.min_pixels / max_pixels


def test_pixel_range_changes_the_image_tokens_of_a_fixed_image(tiny_model: Path, tmp_path: Path) -> None:
    from anatomy_r1.models.loading import load_processor

    assert _image_tokens(load_processor(tiny_model)) == 9  # 84 px: 6x6 patches, 3x3 merged tokens
    small = load_processor(tiny_model, max_pixels=56 * 56)
    assert _image_tokens(small) == 4
    big = load_processor(tiny_model, min_pixels=168 * 168)  # above the saved maximum, which follows
    assert _image_tokens(big) == 36
    big.save_pretrained(tmp_path / "p")  # saved with the model after training, so eval sees the same
    assert _image_tokens(load_processor(tmp_path / "p")) == 36
    with pytest.raises(ConfigError, match=r"min_pixels \(200\) is larger than max_pixels \(100\)"):
        load_processor(tiny_model, min_pixels=200, max_pixels=100)
    with pytest.raises(ConfigError, match="max_pixels must be at least 1"):
        load_processor(tiny_model, max_pixels=0)
    with pytest.raises(ConfigError, match=r"model: min_pixels \(10\) is larger than max_pixels \(5\)"):
        load_config(None, ["model.min_pixels=10", "model.max_pixels=5"])


@pytest.mark.slow
def test_pixel_range_reaches_training_and_the_saved_model(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    out = tmp_path / "run"
    cfg = write_config(out, model={"max_pixels": 56 * 56}, grpo={"max_steps": 1})
    seen: list[int] = []

    from transformers import TrainerCallback

    class Tokens(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            processing_class = kw["processing_class"]
            seen.append(_image_tokens(processing_class))

    from anatomy_r1.training.config import load_config as load
    from anatomy_r1.training.grpo import run_grpo

    assert run_grpo(load(cfg), callbacks=[Tokens()]) == out / "final"
    assert seen == [4]
    size = yaml.safe_load((out / "config.yaml").read_text())["model"]["max_pixels"]
    assert size == 56 * 56
    from anatomy_r1.models.loading import load_processor

    assert _image_tokens(load_processor(out / "final")) == 4


def test_eval_pixel_options_reach_the_processor(
    tmp_path: Path, tiny_data: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anatomy_r1.evaluation.generate as gen

    seen: list[int] = []

    def fake_generate(model: Any, processor: Any, records: list[Any], **kw: Any) -> Any:
        seen.append(_image_tokens(processor))
        return {r.id: ["<answer>A</answer>"] for r in records}, None

    monkeypatch.setattr(gen, "generate_with_model", fake_generate)
    args = ["eval", "--model", str(tiny_model), "--data", str(tiny_data / "train.jsonl"), "--k", "1"]
    assert main([*args, "--out", str(tmp_path / "a"), "--max-pixels", str(56 * 56), "--limit", "2"]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--limit", "2"]) == 0
    assert seen == [4, 9]
    pred = tmp_path / "p.jsonl"
    pred.write_text("")
    scored = ["eval", "--predictions", str(pred), "--data", str(tiny_data / "train.jsonl")]
    assert main([*scored, "--out", str(tmp_path / "c"), "--max-pixels", "100"]) == 2  # model mode only
