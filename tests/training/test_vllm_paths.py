"""TRL's vLLM generation paths, run on CPU through TRL's own code with stand-in engines at its edge.

``standin_vllm`` replaces only what TRL talks to (``vllm.LLM`` in colocate mode, ``VLLMClient`` in server
mode) with a transformers copy of the tiny model; every prompt it generated from and every completion it
returned is in its log. The spies record, per generation call, the prompt ids TRL tokenized each row
with and the row (options, answer) and completion the reward functions saw, so each completion can be
traced back to the prompt it was sampled from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main
from anatomy_r1.training.vllm_standins import standin_vllm

G = 4


class Spy:
    def __init__(self) -> None:
        self.prompt_ids: list[list[list[int]]] = []
        self.rows: list[list[dict[str, Any]]] = []
        self.completion_ids: list[list[list[int]]] = []
        self.is_ratio: list[Any] = []
        self.refill: list[bool] = []
        self.invalid: list[float] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    import trl

    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    s = Spy()
    tokenize = trl.GRPOTrainer._tokenize_prompts
    rewards = AnatomyR1GRPOTrainer._calculate_rewards
    score = trl.GRPOTrainer._generate_and_score_completions

    def spy_tokenize(self: Any, prompts: list[Any]) -> Any:
        out = tokenize(self, prompts)
        s.prompt_ids.append([list(map(int, ids)) for ids in out[0]])
        return out

    def spy_rewards(self: Any, inputs: Any, prompts: Any, completions: Any, ids: Any) -> Any:
        s.rows.append(
            [{k: row[k] for k in ("id", "prompt_text", "options", "answer_index")} for row in inputs]
        )
        s.completion_ids.append([list(map(int, c)) for c in ids])
        out = rewards(self, inputs, prompts, completions, ids)
        from anatomy_r1.task.groups import group_valid_mask, invalid_ratio, total_rewards

        totals = total_rewards(out.tolist(), self.reward_weights.tolist())
        s.refill.append(self._in_refill)
        s.invalid.append(invalid_ratio(group_valid_mask(totals, G)))
        return out

    def spy_score(self: Any, inputs: Any) -> Any:
        out = score(self, inputs)
        s.is_ratio.append(out.get("importance_sampling_ratio"))
        return out

    monkeypatch.setattr(trl.GRPOTrainer, "_tokenize_prompts", spy_tokenize)
    monkeypatch.setattr(AnatomyR1GRPOTrainer, "_calculate_rewards", spy_rewards)
    monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", spy_score)
    return s


def _decode(model_dir: Path, ids: list[int]) -> str:
    from anatomy_r1.models.loading import load_processor

    return load_processor(model_dir).tokenizer.decode(ids)


def _assert_members_sampled_from_their_own_prompts(spy: Spy, engine: Any, model_dir: Path) -> int:
    """Every completion came from its own row's prompt; returns how many groups mixed wordings."""
    mixed = 0
    assert spy.prompt_ids and len(spy.prompt_ids) == len(spy.rows) == len(spy.completion_ids)
    for prompts, rows, completions in zip(spy.prompt_ids, spy.rows, spy.completion_ids, strict=True):
        for p, c in zip(prompts, completions, strict=True):
            assert engine.generated_from(p, c), "a completion was not sampled from its own row's prompt"
        for k in range(0, len(prompts), G):
            group = prompts[k : k + G]
            if len({tuple(p) for p in group}) > 1:
                mixed += 1
        # The reward's row (options, answer) is the one whose wording was tokenized and sampled from.
        for p, row in zip(prompts[:G], rows[:G], strict=True):
            assert row["prompt_text"] in _decode(model_dir, p)
    return mixed


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["server", "colocate"])
def test_gdqa_members_are_sampled_from_their_own_prompts_under_vllm(
    mode: str,
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_model: Path,
    spy: Spy,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 2, "use_vllm": True, "vllm_mode": mode},
        gdqa={"enabled": True, "s_q_quantile": 0.0, "kinds": ["template", "reorder"]},
    )
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    with standin_vllm(server_model=str(tiny_model)) as engines:
        assert main(["train", "--config", str(cfg)]) == 0
    # TRL's colocate set-up exports rendezvous variables; later runs from this process must not see them.
    assert {k: os.environ.get(k) for k in env} == env
    assert len(engines) == 1 and engines[0].weight_loads >= 1  # TRL synced the trained weights into it
    mixed = _assert_members_sampled_from_their_own_prompts(spy, engines[0], tiny_model)
    assert mixed > 0, "GDQA never gave a group two wordings; the check above proved nothing"
    if mode == "server":
        # Groups with different prompts went out as one request per member; TRL would send n=G otherwise.
        assert any(g.n == 1 for g in engines[0].log)
        rows = read_metrics(out / "metrics.jsonl")
        assert all(r["rollouts/per_member_requests"] == 1.0 for r in rows)
    else:
        assert all(g.n == 1 for g in engines[0].log)  # colocate generates one completion per row
    # Sampled and trained under the same prompt and weights: TRL's importance-sampling ratio stays ~1,
    # so its sequence mask zeroes no member's loss.
    for ratio in spy.is_ratio:
        assert ratio is not None
        assert float(ratio.min()) > 0.9 and float(ratio.max()) < 1.1


@pytest.mark.slow
def test_server_mode_without_gdqa_keeps_one_request_per_group(
    tmp_path: Path, write_config: Callable[..., Path], tiny_model: Path, spy: Spy
) -> None:
    cfg = write_config(tmp_path / "run", grpo={"max_steps": 1, "use_vllm": True, "vllm_mode": "server"})
    with standin_vllm(server_model=str(tiny_model)) as engines:
        assert main(["train", "--config", str(cfg)]) == 0
    assert [g.n for g in engines[0].log] == [G, G]  # 8 rows = 2 groups, each one request of n=G
    _assert_members_sampled_from_their_own_prompts(spy, engines[0], tiny_model)


@pytest.mark.slow
def test_dapo_refills_under_server_mode_sample_each_member_from_its_prompt(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_model: Path,
    spy: Spy,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """The random tiny model's groups are mostly all-wrong, so DAPO refills; the refill calls go through
    the same per-member requests and log their own invalid-gradient ratio."""
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 2, "use_vllm": True, "vllm_mode": "server", "loss_type": "dapo"},
        gdqa={"enabled": True, "s_q_quantile": 0.0, "kinds": ["template", "reorder"]},
        dynamic_sampling=True,
    )
    with standin_vllm(server_model=str(tiny_model)) as engines:
        assert main(["train", "--config", str(cfg)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert sum(r["dapo/refill_rounds"] for r in rows) > 0, "no refill happened; the test proved nothing"
    assert len(spy.prompt_ids) > 2  # first rounds plus refills
    _assert_members_sampled_from_their_own_prompts(spy, engines[0], tiny_model)
    # Refill rounds log their own ratio; the batch's invalid-gradient ratio stays the first round's.
    assert any("dapo/refill_invalid_gradient_ratio" in r for r in rows)
    first_rounds = [v for v, refill in zip(spy.invalid, spy.refill, strict=True) if not refill]
    refills = [v for v, refill in zip(spy.invalid, spy.refill, strict=True) if refill]
    assert len(first_rounds) == len(rows) == 2 and refills
    assert [r["invalid_gradient_ratio"] for r in rows] == pytest.approx(first_rounds)


@pytest.mark.slow
def test_colocated_engine_sizes_frames_with_the_runs_pixel_range(
    tmp_path: Path, write_config: Callable[..., Path], tiny_model: Path
) -> None:
    """vLLM reads the image processor from the model folder; model.max_pixels below the folder's must
    reach it, or the engine's frames and the prompt's image tokens disagree."""
    small = 56 * 56  # 84-px frames are scaled down: fewer image tokens than the folder's processor makes
    cfg = write_config(
        tmp_path / "run",
        model={"max_pixels": small},
        grpo={"max_steps": 1, "use_vllm": True, "vllm_mode": "colocate"},
    )
    with standin_vllm() as engines:
        assert main(["train", "--config", str(cfg)]) == 0
    (engine,) = engines
    assert engine.processor.image_processor.size.longest_edge == small
    assert engine.log and all(g.n == 1 for g in engine.log)


@pytest.mark.slow
def test_a_server_sizing_frames_differently_stops_the_run_with_the_way_out(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    small = 56 * 56
    grpo = {"max_steps": 1, "use_vllm": True, "vllm_mode": "server"}
    cfg = write_config(tmp_path / "run", model={"max_pixels": small}, grpo=grpo)
    with standin_vllm(server_model=str(tiny_model)):  # the server sizes frames as its folder says
        assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "error: vLLM server sized a frame as" in err and "--mm-processor-kwargs" in err
    # Started with the run's range, the same server serves the run.
    cfg = write_config(tmp_path / "run2", model={"max_pixels": small}, grpo=grpo)
    pixels = {"max_pixels": small}
    with standin_vllm(server_model=str(tiny_model), server_pixels=pixels) as engines:
        assert main(["train", "--config", str(cfg)]) == 0
    assert engines[0].log
