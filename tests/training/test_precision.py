"""Precision: which dtype the optimizer updates, so a bf16 run trains what it reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.launch import LaunchSetup
from anatomy_r1.training.precision import precision_plan

ONE = LaunchSetup()
ZERO3 = LaunchSetup(num_processes=8, deepspeed=True, zero_stage=3, source="test")
FSDP2 = LaunchSetup(num_processes=8, fsdp_version=2, source="test")


def test_bf16_full_fine_tuning_keeps_fp32_master_weights_unless_deepspeed_does() -> None:
    full = precision_plan("bf16", lora=False, launch=ONE)
    assert (full.load_dtype, full.bf16_autocast) == ("fp32", True)
    assert precision_plan("bf16", lora=False, launch=FSDP2).load_dtype == "fp32"
    ds = precision_plan("bf16", lora=False, launch=ZERO3)
    assert (ds.load_dtype, ds.bf16_autocast) == ("bf16", True) and "DeepSpeed ZeRO-3" in ds.master
    lora = precision_plan("bf16", lora=True, launch=ONE)
    assert (lora.load_dtype, lora.bf16_autocast) == ("bf16", True)
    fp32 = precision_plan("fp32", lora=False, launch=ONE)
    assert (fp32.load_dtype, fp32.bf16_autocast) == ("fp32", False)


@pytest.mark.parametrize("lora", [False, True])
def test_fp16_training_is_refused_with_the_way_out(lora: bool) -> None:
    with pytest.raises(ConfigError, match=r"model\.dtype: fp16 .*use model\.dtype: bf16"):
        precision_plan("fp16", lora=lora, launch=ONE)


def test_launch_setup_from_the_environment_and_an_accelerate_file(tmp_path: Path) -> None:
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3", "WORLD_SIZE": "8"}
    s = LaunchSetup.from_env(env)
    assert (s.deepspeed, s.zero_stage, s.num_processes) == (True, 3, 8)
    f = LaunchSetup.from_env(
        {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1", "FSDP_USE_ORIG_PARAMS": "false"}
    )
    assert (f.fsdp_version, f.fsdp_use_orig_params) == (1, False)
    assert LaunchSetup.from_env({}).sharded_by is None
    repo = Path(__file__).resolve().parents[2]
    ds = LaunchSetup.from_accelerate_config(repo / "configs/accelerate/deepspeed_zero3.yaml")
    assert (ds.deepspeed, ds.zero_stage, ds.num_processes) == (True, 3, 8)
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: [", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        LaunchSetup.from_accelerate_config(bad)


def _lm_weights(folder: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    return {
        k: v for k, v in weights.items() if ".layers." in k and "visual" not in k and k.endswith("weight")
    }


@pytest.mark.slow
def test_bf16_full_fine_tuning_at_a_gpu_learning_rate_moves_most_master_weights(
    tmp_path: Path, write_config: Callable[..., Path], warm_model: Path
) -> None:
    """At lr 1e-6 an update is ~5e-5 of a 0.02 weight, below bf16's resolution: with bf16 parameters
    in the optimizer almost every entry would stay where it was."""
    import torch

    out = tmp_path / "run"
    cfg = write_config(
        out,
        model={"path": str(warm_model), "dtype": "bf16"},
        grpo={"max_steps": 3, "learning_rate": 1.0e-6},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    before, after = _lm_weights(warm_model), _lm_weights(out / "final")
    assert before.keys() == after.keys() and before
    assert {v.dtype for v in after.values()} == {torch.float32}  # the master copy, saved as trained
    moved = sum(int((after[k] != before[k]).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    assert moved / total > 0.5, f"only {moved / total:.1%} of the language model's weights moved"


def test_sft_reads_deepspeed_and_fsdp_from_its_own_section(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SFT's TrainingArguments come from ``sft.extra``, so the launch refusals and the precision plan must
    read DeepSpeed and FSDP from there, not from a ``grpo:`` section SFT never uses."""
    from anatomy_r1.training.args import run_precision
    from anatomy_r1.training.config import load_config
    from anatomy_r1.training.preflight import launch_refusals
    from anatomy_r1.training.sft import run_sft

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "FSDP_VERSION", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    fsdp1 = load_config(
        None,
        [
            "method=sft",
            f"output_dir={out}",
            f"data.train={tiny_data / 'warm.jsonl'}",
            "model.freeze_vision=true",
            "sft.extra={fsdp: full_shard, fsdp_config: {fsdp_version: 1}}",
        ],
    )
    assert LaunchSetup.for_run(fsdp1, {}).fsdp_version == 1
    assert LaunchSetup.for_run(fsdp1.model_copy(update={"method": "grpo"}), {}).fsdp_version is None
    (line,) = launch_refusals(fsdp1, LaunchSetup.for_run(fsdp1, {}))
    assert "model.freeze_vision with FSDP1" in line
    with pytest.raises(ConfigError, match=r"model\.freeze_vision with FSDP1 .*fsdp_version: 2"):
        run_sft(fsdp1)
    assert not out.exists()  # refused before anything is written

    ds = load_config(None, ["method=sft", "model.dtype=bf16", "sft.extra={deepspeed: ds.json}"])
    assert run_precision(ds).load_dtype == "bf16"  # DeepSpeed keeps the fp32 master
    assert run_precision(ds.model_copy(update={"method": "grpo"})).load_dtype == "fp32"


@pytest.mark.parametrize(
    ("lora", "named"),
    [("{r: 4, modules_to_save: [lm_head]}", "modules_to_save"), ("{r: 4, bias: all}", "bias: all")],
)
def test_bf16_lora_that_trains_base_weights_is_refused_without_deepspeed(
    lora: str,
    named: str,
    tmp_path: Path,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """peft keeps only its adapters in fp32: a module copy (``modules_to_save``) or a base bias it makes
    trainable stays bf16, and AdamW would round its updates away."""
    from anatomy_r1.training.args import run_precision
    from anatomy_r1.training.config import load_config

    bf16 = load_config(None, ["model.dtype=bf16", f"model.lora={lora}"])
    with pytest.raises(ConfigError, match=rf"model\.lora: {named} with model\.dtype: bf16 and no DeepSpeed"):
        run_precision(bf16)
    settings = bf16.model.lora.model_dump()
    assert precision_plan("bf16", lora=settings, launch=ZERO3).master.endswith("(fp32 master under ZeRO)")
    assert precision_plan("fp32", lora=settings, launch=ONE).load_dtype == "fp32"
    assert run_precision(load_config(None, ["model.dtype=bf16", "model.lora={r: 4}"])).load_dtype == "bf16"
    # `train` refuses it before it writes anything.
    out = tmp_path / "run"
    cfg = write_config(out, model={"dtype": "bf16", "lora": {"r": 4, "modules_to_save": ["lm_head"]}})
    assert main(["train", "--config", str(cfg)]) == 2
    assert "modules_to_save with model.dtype: bf16" in capsys.readouterr().err and not out.exists()


def test_a_built_trainer_with_16_bit_trainable_weights_is_refused_unless_deepspeed_holds_them() -> None:
    from types import SimpleNamespace

    import torch

    from anatomy_r1.training.precision import check_trainable_dtypes

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to(torch.bfloat16))
    with pytest.raises(
        ConfigError, match=r"2 trainable parameter\(s\) are held in 16 bits .*\(1\.weight, 1\.bias\)"
    ):
        check_trainable_dtypes(SimpleNamespace(model=model, is_deepspeed_enabled=False))
    check_trainable_dtypes(SimpleNamespace(model=model, is_deepspeed_enabled=True))
    model[1].requires_grad_(False)  # a frozen bf16 base is what LoRA trains over
    check_trainable_dtypes(SimpleNamespace(model=model, is_deepspeed_enabled=False))
