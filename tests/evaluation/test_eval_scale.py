"""``anatomy-r1 eval`` for large models: the run's template and dtype, a progress bar, the vLLM engine.

Generation is real (the tiny checkpoints of the fixtures); a spy around the generation entry point
records what the command passed it. vLLM is not installed here, so its tests stop at the import guard
and the error a user without it gets, plus one run against a stand-in ``vllm`` module that checks our
side of the adapter: the prompts and images we send, and how the answers land in the same outputs.
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records
from anatomy_r1.task.run_info import RUN_INFO_FILE, read_run_info


def _eval(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(
        ["eval", "--model", str(model), "--data", str(data), "--out", str(out),
         "--k", "1", "--greedy", "--max-new-tokens", "4", "--limit", "4", *extra]
    )  # fmt: skip


@pytest.fixture
def spy_generate(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records the keyword arguments of every ``generate_with_model`` call and the model's dtype."""
    import anatomy_r1.evaluation.generate as gen

    calls: list[dict[str, Any]] = []
    original = gen.generate_with_model

    def spy(model, processor, records, **kwargs):
        calls.append({**kwargs, "model_dtype": str(next(model.parameters()).dtype)})
        return original(model, processor, records, **kwargs)

    monkeypatch.setattr(gen, "generate_with_model", spy)
    return calls


@pytest.fixture(scope="module")
def run_model(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, tiny_model: Path) -> Path:
    """``final/`` of a one-step SFT run with the compact_text template (a few seconds)."""
    out = tmp_path_factory.mktemp("sft_run")
    cfg = out / "sft.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "one-step",
                "output_dir": str(out / "run"),
                "template": "compact_text",
                "model": {"path": str(tiny_model)},
                "data": {"train": str(tiny_data / "warm.jsonl")},
                "sft": {"per_device_train_batch_size": 4, "max_steps": 1},
                "logging": {"progress_bar": False},
                "saving": {"save_steps": 1000},
            }
        ),
        encoding="utf-8",
    )
    assert main(["sft", "--config", str(cfg)]) == 0
    return out / "run" / "final"


def test_training_writes_the_run_record_next_to_the_weights(run_model: Path, tiny_model: Path) -> None:
    info = json.loads((run_model / RUN_INFO_FILE).read_text())
    assert info == {
        "name": "one-step",
        "method": "sft",
        "template": "compact_text",
        "dtype": "fp32",
        "base_model": str(tiny_model),
    }


def test_eval_uses_the_template_and_dtype_the_model_was_trained_with(
    run_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    assert _eval(run_model, tiny_data / "warm.jsonl", tmp_path / "a", "--no-progress") == 0
    assert spy_generate[-1]["template"] == "compact_text"  # not the CLI's fallback, anatomy_r1
    assert spy_generate[-1]["model_dtype"] == "torch.float32"
    assert "warning" not in capsys.readouterr().err

    # an explicit, different template is honoured but never silently
    assert _eval(run_model, tiny_data / "warm.jsonl", tmp_path / "b", "--template", "compact") == 0
    assert spy_generate[-1]["template"] == "compact"
    err = capsys.readouterr().err
    assert "warning: --template compact differs" in err and "compact_text" in err and RUN_INFO_FILE in err


def test_eval_dtype_reaches_the_model(
    run_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]]
) -> None:
    assert _eval(run_model, tiny_data / "warm.jsonl", tmp_path / "e", "--dtype", "bf16") == 0
    assert spy_generate[-1]["model_dtype"] == "torch.bfloat16"
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["n"] == 4


def test_eval_reads_the_template_from_the_run_config_of_an_older_model(
    tiny_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]]
) -> None:
    """A model saved before the run record existed: ``output_dir/config.yaml`` next to ``final/``."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "final")
    (run / "config.yaml").write_text(
        yaml.safe_dump({"name": "old", "method": "grpo", "template": "compact", "model": {"dtype": "fp32"}})
    )
    info = read_run_info(run / "final")
    assert info is not None and info.template == "compact" and info.source == run / "config.yaml"
    assert _eval(run / "final", tiny_data / "train.jsonl", tmp_path / "o", "--no-progress") == 0
    assert spy_generate[-1]["template"] == "compact"

    # a base model (no run of ours) keeps the CLI's default; an unrelated config.yaml beside it is ignored
    (run / "config.yaml").write_text(yaml.safe_dump({"template": "compact"}))
    assert read_run_info(run / "final") is None


def test_broken_run_record_is_a_clear_error(
    tiny_model: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    (model / RUN_INFO_FILE).write_text("{not json")
    assert _eval(model, tiny_data / "train.jsonl", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and RUN_INFO_FILE in err
    assert not (tmp_path / "o").exists()


def test_eval_shows_progress_unless_asked_not_to(
    run_model: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    assert _eval(run_model, tiny_data / "warm.jsonl", tmp_path / "p") == 0
    err = capsys.readouterr().err
    assert "eval: 100%" in err and "8/8" in err  # 4 items x (sampled + greedy pass)
    assert _eval(run_model, tiny_data / "warm.jsonl", tmp_path / "q", "--no-progress") == 0
    assert "eval:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "bf16"], "--dtype"),
        (["--no-progress"], "--no-progress"),
        (["--engine", "vllm"], "--engine"),
    ],
)
def test_generation_options_are_refused_with_predictions(
    tmp_path: Path, extra: list[str], message: str, capsys
) -> None:
    data = Path(__file__).parent / "fixtures" / "data.jsonl"
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"id": read_records(data)[0].id, "completion": "A"}) + "\n")
    rc = main(["eval", "--predictions", str(pred), "--data", str(data), "--out", str(tmp_path / "o"), *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_vllm_engine_imports_without_vllm_and_reports_it_missing() -> None:
    from anatomy_r1.errors import ConfigError
    from anatomy_r1.evaluation import vllm_engine

    assert "vllm" not in sys.modules  # importing the engine module does not import vLLM
    assert vllm_engine.vllm_available() is False
    with pytest.raises(ConfigError, match=r"pip install 'anatomy-r1\[vllm\]'"):
        vllm_engine.require_vllm()


def test_eval_engine_vllm_without_vllm_exits_2_before_loading_anything(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import anatomy_r1.pipelines.base_model as base_model

    def no_model(spec):
        raise AssertionError("the model was resolved before the engine was checked")

    monkeypatch.setattr(base_model, "resolve_model_path", no_model)
    rc = _eval(tmp_path / "model", tiny_data / "train.jsonl", tmp_path / "o", "--engine", "vllm")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: --engine vllm needs vLLM, which is not installed; "
        "install it with pip install 'anatomy-r1[vllm]'"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vllm-arg", "tensor_parallel_size=2"], "--vllm-arg only applies with --engine vllm"),
        (["--engine", "vllm", "--batch-size", "4"], "--batch-size does not apply"),
        (["--engine", "vllm", "--vllm-arg", "novalue"], "KEY=VALUE"),
    ],
)
def test_engine_options_that_would_do_nothing_are_refused(
    tiny_data: Path, tmp_path: Path, extra: list[str], message: str, capsys
) -> None:
    assert _eval(tmp_path / "model", tiny_data / "train.jsonl", tmp_path / "o", *extra) == 2
    assert message in capsys.readouterr().err


class _FakeOutput:
    def __init__(self, text: str) -> None:
        self.text = text


class _FakeRequestOutput:
    def __init__(self, texts: list[str]) -> None:
        self.outputs = [_FakeOutput(t) for t in texts]


def _fake_vllm(log: dict[str, Any]) -> types.ModuleType:
    """A stand-in ``vllm`` exposing the two names the engine uses; answers every prompt with option A."""
    mod = types.ModuleType("vllm")
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            log["llm"] = kwargs

        def generate(self, requests, sampling_params, use_tqdm):
            log.setdefault("generate", []).append((requests, sampling_params.kwargs))
            n = sampling_params.kwargs["n"]
            return [_FakeRequestOutput([f"<answer>A</answer> {i}" for i in range(n)]) for _ in requests]

    mod.LLM, mod.SamplingParams = LLM, SamplingParams  # type: ignore[attr-defined]
    return mod


def test_vllm_engine_writes_the_same_outputs_as_the_hf_engine(
    run_model: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(log))
    rc = main(
        ["eval", "--model", str(run_model), "--data", str(tiny_data / "warm.jsonl"), "--out",
         str(tmp_path / "v"), "--engine", "vllm", "--k", "3", "--greedy", "--limit", "5",
         "--max-new-tokens", "7", "--dtype", "bf16", "--no-progress",
         "--vllm-arg", "tensor_parallel_size=2", "--vllm-arg", "max_model_len=4096"]
    )  # fmt: skip
    assert rc == 0
    assert log["llm"]["model"] == str(run_model) and log["llm"]["dtype"] == "bfloat16"
    assert log["llm"]["tensor_parallel_size"] == 2 and log["llm"]["max_model_len"] == 4096
    (sample_reqs, sample_params), (greedy_reqs, greedy_params) = log["generate"]
    assert sample_params["n"] == 3 and sample_params["max_tokens"] == 7
    assert sample_params["temperature"] == 1.0
    assert greedy_params["n"] == 1 and greedy_params["temperature"] == 0.0
    records = read_records(tiny_data / "warm.jsonl")[:5]
    from anatomy_r1.models.loading import load_processor
    from anatomy_r1.task.prompts import build_messages

    proc = load_processor(run_model)
    for rec, req in zip(records, sample_reqs, strict=True):
        # the model's chat template over the run's template (compact_text), one image per record here
        want = proc.apply_chat_template(
            build_messages(rec, "compact_text"), add_generation_prompt=True, tokenize=False
        )
        assert req["prompt"] == want
        assert req["multi_modal_data"]["image"].size == (84, 84)
    assert greedy_reqs == sample_reqs

    out = tmp_path / "v"
    assert {p.name for p in out.iterdir()} == {
        "items.jsonl", "metrics.json", "metrics.md", "completions.jsonl"
    }  # fmt: skip
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == 5 * 4 and all(i["extracted"] == "A" for i in items)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["k"] == 3
    want_acc = sum(r.answer_index == 0 for r in records) / 5
    assert metrics["greedy_accuracy"] == pytest.approx(want_acc)


def test_vllm_engine_refuses_an_adapter_folder(tmp_path: Path) -> None:
    from anatomy_r1.errors import ConfigError
    from anatomy_r1.evaluation.vllm_engine import check_vllm_model

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="LoRA adapter"):
        check_vllm_model(tmp_path)
