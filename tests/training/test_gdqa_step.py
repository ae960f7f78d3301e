"""GDQA inside real TRL steps: what each group member was actually tokenized with, and how it was scored.

Spies wrap three TRL seams without changing them: ``_tokenize_prompts`` (the prompt token ids the
policy generated from), ``_calculate_rewards`` (the rows and rewards the reward functions saw) and
``_generate_and_score_completions`` (the advantages TRL computed). ``gdqa.s_q_threshold=0`` with the
fast ``matrix:prior`` backend makes every item difficult from its first group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main

G = 4  # num_generations in the shared test config


class Spy:
    """Per generation batch: decoded prompts, reward rows, gathered rewards, TRL's advantages."""

    def __init__(self) -> None:
        self.prompts: list[list[str]] = []
        self.rows: list[list[dict[str, Any]]] = []
        self.rewards: list[Any] = []
        self.weights: Any = None
        self.advantages: list[Any] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    import trl

    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    s = Spy()
    tokenize = trl.GRPOTrainer._tokenize_prompts
    score = trl.GRPOTrainer._generate_and_score_completions
    rewards = AnatomyR1GRPOTrainer._calculate_rewards

    def spy_tokenize(self: Any, prompts: list[Any]) -> Any:
        out = tokenize(self, prompts)
        tok = getattr(self.processing_class, "tokenizer", self.processing_class)
        s.prompts.append([tok.decode(ids) for ids in out[0]])
        return out

    def spy_rewards(self: Any, inputs: Any, prompts: Any, completions: Any, ids: Any) -> Any:
        out = rewards(self, inputs, prompts, completions, ids)
        s.rows.append(
            [{k: row.get(k) for k in ("id", "prompt_text", "options", "answer_index")} for row in inputs]
        )
        s.rewards.append(out.detach().clone())
        s.weights = self.reward_weights.detach().clone()
        return out

    def spy_score(self: Any, inputs: Any) -> Any:
        out = score(self, inputs)
        s.advantages.append(out["advantages"].detach().clone())
        return out

    monkeypatch.setattr(trl.GRPOTrainer, "_tokenize_prompts", spy_tokenize)
    monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", spy_score)
    monkeypatch.setattr(AnatomyR1GRPOTrainer, "_calculate_rewards", spy_rewards)
    return s


def _groups(xs: list[Any]) -> list[list[Any]]:
    assert len(xs) % G == 0
    return [xs[i : i + G] for i in range(0, len(xs), G)]


@pytest.mark.slow
def test_difficult_groups_get_different_wordings_and_group_advantages(
    tmp_path: Path,
    write_config: Callable[..., Path],
    warm_model: Path,
    spy: Spy,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    import torch

    out = tmp_path / "run"
    cfg = write_config(
        out,
        model={"path": str(warm_model)},
        grpo={"max_steps": 2},
        gdqa={"enabled": True, "s_q_threshold": 0.0},
        curriculum={"backend": "matrix:prior"},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    assert len(spy.prompts) == len(spy.rows) == len(spy.advantages) == 2

    for prompts, rows in zip(spy.prompts, spy.rows, strict=True):
        assert len(prompts) == 8
        for grp_prompts, grp_rows in zip(_groups(prompts), _groups(rows), strict=True):
            assert len({r["id"] for r in grp_rows}) == 1  # a group is one item...
            assert len(set(grp_prompts)) > 1  # ...whose members were tokenized with different wordings
            assert grp_prompts[0] != grp_prompts[1] or grp_prompts[0] != grp_prompts[-1]
            for text, row in zip(grp_prompts, grp_rows, strict=True):
                assert row["prompt_text"] in text  # what was tokenized is the row the reward saw

    # TRL normalised advantages per group of num_generations consecutive completions.
    for rewards, adv in zip(spy.rewards, spy.advantages, strict=True):
        total = (rewards.nan_to_num(0.0) * spy.weights).sum(dim=1).view(-1, G)
        expected = (total - total.mean(dim=1, keepdim=True)) / (total.std(dim=1, keepdim=True) + 1e-4)
        assert torch.allclose(adv.view(-1, G), expected, atol=1e-4)
        assert torch.allclose(adv.view(-1, G).sum(dim=1), torch.zeros(total.shape[0]), atol=1e-3)
    assert any(r.nan_to_num(0.0).abs().sum() > 0 for r in spy.rewards)  # not the trivial all-zero case

    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["gdqa/augmented_fraction"] > 0 for r in rows)
    assert all(r["gdqa/wordings_per_group"] > 1 for r in rows)


@pytest.mark.slow
def test_without_gdqa_every_group_has_one_wording(
    tmp_path: Path,
    write_config: Callable[..., Path],
    spy: Spy,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(out, grpo={"max_steps": 2}))]) == 0
    for prompts in spy.prompts:
        assert all(len(set(g)) == 1 for g in _groups(prompts))
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["gdqa/wordings_per_group"] for r in rows] == [1.0, 1.0]
    assert [r["gdqa/augmented_fraction"] for r in rows] == [0.0, 0.0]


@pytest.mark.slow
def test_reordered_variant_is_scored_against_its_own_options(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy, tiny_data: Path
) -> None:
    """Reordering moves the answer's letter; the reward must follow the row's rewritten options."""
    from anatomy_r1.data.io import read_records
    from anatomy_r1.training.rewards import accuracy_reward

    originals = {r.id: r for r in read_records(tiny_data / "train.jsonl")}
    cfg = write_config(
        tmp_path / "run",
        template="compact",  # answers by letter, so a reorder changes which answer is right
        grpo={"max_steps": 1},
        gdqa={"enabled": True, "s_q_threshold": 0.0, "kinds": ["reorder"]},
        curriculum={"backend": "matrix:prior"},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    moved = 0
    for prompts, rows in zip(spy.prompts, spy.rows, strict=True):
        for text, row in zip(prompts, rows, strict=True):
            rec = originals[row["id"]]
            opts, idx = row["options"], row["answer_index"]
            assert sorted(opts) == sorted(rec.options) and opts[idx] == rec.answer
            assert row["prompt_text"] in text
            if idx == rec.answer_index:
                continue
            moved += 1
            letter, old = "ABCDEFGH"[idx], "ABCDEFGH"[rec.answer_index]

            def reward(ans: str, opts: list[str] = opts, idx: int = idx) -> float:
                completion = [{"role": "assistant", "content": f"<think></think> <answer>{ans}</answer>"}]
                return accuracy_reward(completions=[completion], options=[opts], answer_index=[idx])[0]

            assert reward(letter) == 1.0 and reward(old) == 0.0
    assert moved > 0, "no variant moved its answer; the check above never ran"


def _write_variants(path: Path, tiny_data: Path, prefix: str = "Prepared wording:") -> dict[str, str]:
    """One prepared variant per training record, in the format ``anatomy-r1 augment`` writes."""
    from anatomy_r1.augment.variants import make_variant
    from anatomy_r1.data.io import read_records, write_records

    variants = [
        make_variant(r, 1, "llm", question=f"{prefix} {r.question}")
        for r in read_records(tiny_data / "train.jsonl")
    ]
    write_records(path, variants)
    return {v.meta["variant_of"]: v.question for v in variants}


@pytest.mark.slow
def test_variants_from_a_file_reach_the_group_members(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy, tiny_data: Path
) -> None:
    prepared = _write_variants(tmp_path / "variants.jsonl", tiny_data)
    cfg = write_config(
        tmp_path / "run",
        grpo={"max_steps": 1},
        gdqa={
            "enabled": True,
            "s_q_threshold": 0.0,
            "kinds": [],
            "variants_file": str(tmp_path / "variants.jsonl"),
        },
    )
    assert main(["train", "--config", str(cfg)]) == 0
    (prompts,), (rows,) = spy.prompts, spy.rows
    for grp_prompts, grp_rows in zip(_groups(prompts), _groups(rows), strict=True):
        rid = grp_rows[0]["id"]
        # Member 0 keeps the original; with one prepared variant the group cycles original, variant, ...
        assert [prepared[rid] in p for p in grp_prompts] == [False, True, False, True]
        assert [r["prompt_text"].startswith("Prepared wording:") for r in grp_rows] == [False, True] * 2


@pytest.mark.slow
def test_rereferring_variants_reach_the_group_members(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy, tiny_data: Path
) -> None:
    """With ``kinds: [rerefer]`` the members see the target named by another path of the scene graph."""
    from anatomy_r1.augment.rerefer import read_scenes
    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.question_templates import parse_question
    from anatomy_r1.data.synth.questions import matching_anatomy

    originals = {r.id: r for r in read_records(tiny_data / "train.jsonl")}
    scenes = read_scenes(tiny_data / "scenes" / "train.jsonl")
    cfg = write_config(
        tmp_path / "run",
        grpo={"max_steps": 1},
        gdqa={"enabled": True, "s_q_threshold": 0.0, "kinds": ["rerefer"]},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    seen = 0
    for grp_rows in _groups(spy.rows[0]):
        rec = originals[grp_rows[0]["id"]]
        for row in grp_rows[1:]:
            question = row["prompt_text"]
            if rec.question in question:
                continue
            parsed = next(p for line in question.splitlines() if (p := parse_question(line)) is not None)
            target = matching_anatomy(scenes[rec.meta["scene_id"]], parsed[0])
            assert [o.label for o in target] == [rec.meta["anatomy_class"]]
            seen += 1
    assert seen > 0


@pytest.mark.parametrize(
    ("gdqa", "message"),
    [
        ({"variants_file": "missing.jsonl"}, "no such variants file"),
        ({"variants_file": "BAD"}, "differs from the original"),
        ({"paraphraser": "no_such_module_xyz:fn"}, "gdqa.paraphraser: cannot import"),
        ({"paraphraser": "json"}, "is not 'module:callable'"),
    ],
)
def test_bad_gdqa_inputs_fail_before_anything_is_written(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_data: Path,
    gdqa: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from anatomy_r1.data.io import read_records, write_records

    if gdqa.get("variants_file") == "BAD":
        rec = read_records(tiny_data / "train.jsonl")[0]
        j = (rec.answer_index + 1) % len(rec.options)
        meta = {**rec.meta, "variant_of": rec.id}
        bad = dataclasses.replace(
            rec, id=f"{rec.id}~v1", question="Other?", answer_index=j, answer=rec.options[j], meta=meta
        )
        write_records(tmp_path / "bad.jsonl", [bad])
        gdqa = {"variants_file": str(tmp_path / "bad.jsonl")}
    elif "variants_file" in gdqa:
        gdqa = {"variants_file": str(tmp_path / gdqa["variants_file"])}
    out = tmp_path / "run"
    cfg = write_config(out, gdqa={"enabled": True, **gdqa})
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
