"""DAPO dynamic sampling on several processes: the row plan, the exchange, and a real 2-process CPU run.

The unit tests shard hand-made TRL generation batches the way TRL does (each process holds its slice of
the global batch, padded to its own widths) and run every process's side of the assembly, with the
all-gather simulated by concatenating what each process sends. The slow test launches two CPU processes
through ``accelerate launch`` with a reward that makes half the items give zero-std groups, so groups
are dropped and refilled and refilled rows have to move between processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.training.batch_rows import (
    global_row_plan,
    merge_generation_batches,
    plan_slice,
    refill_size,
    rows_to_send,
    split_rows,
)

REPO = Path(__file__).resolve().parents[2]
PAD = 0


def _row_tag(call: int, row: int) -> int:
    return 100 * call + row + 1  # never the pad id


def _local_batch(call: int, process: int, n_local: int) -> dict[str, Any]:
    """Process ``process``'s slice of call ``call``: rows ``process*n_local ..``, padded to local widths.

    Every token, logprob, advantage and pixel of global row ``r`` carries its tag, and lengths and image
    counts vary by row, so a misplaced or mis-padded row is visible.
    """
    import torch

    rows = [process * n_local + i for i in range(n_local)]
    p_len = [2 + (r + call) % 3 for r in rows]
    c_len = [1 + (r * 3 + call) % 4 for r in rows]
    n_img = [1 + r % 2 for r in rows]
    P, C = max(p_len), max(c_len)
    prompt_ids = torch.full((n_local, P), PAD)
    prompt_mask = torch.zeros((n_local, P), dtype=torch.long)
    completion_ids = torch.full((n_local, C), PAD)
    completion_mask = torch.zeros((n_local, C), dtype=torch.long)
    logps = torch.zeros((n_local, C))
    mm = torch.zeros((n_local, P + C), dtype=torch.long)
    pixels, grids = [], []
    for i, r in enumerate(rows):
        tag = _row_tag(call, r)
        prompt_ids[i, P - p_len[i] :] = tag
        prompt_mask[i, P - p_len[i] :] = 1
        mm[i, P - p_len[i] : P] = 1  # image-token marks in the prompt part only
        completion_ids[i, : c_len[i]] = tag
        completion_mask[i, : c_len[i]] = 1
        logps[i, : c_len[i]] = -float(tag)
        for _ in range(n_img[i]):
            grids.append(torch.tensor([1, 2, 2]))
            pixels.append(torch.full((4, 3), float(tag)))
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "old_per_token_logps": logps,
        "advantages": torch.tensor([float(_row_tag(call, r)) for r in rows]),
        "num_items_in_batch": completion_mask.sum(),
        "pixel_values": torch.cat(pixels),
        "image_grid_thw": torch.stack(grids),
        "mm_token_type_ids": mm,
        "num_images": n_img,
    }


def _check_rows(batch: dict[str, Any], expected: list[tuple[int, int]]) -> None:
    """Every row of an assembled batch is the expected (call, global row), intact and padded as TRL pads."""
    rows = split_rows(batch).rows
    assert len(rows) == len(expected)
    P, C = batch["prompt_ids"].shape[1], batch["completion_ids"].shape[1]
    assert batch["mm_token_type_ids"].shape[1] == P + C and batch["old_per_token_logps"].shape[1] == C
    for row, (call, r) in zip(rows, expected, strict=True):
        tag = _row_tag(call, r)
        p = int(row["prompt_mask"].sum())
        c = int(row["completion_mask"].sum())
        assert p == 2 + (r + call) % 3 and c == 1 + (r * 3 + call) % 4
        assert row["prompt_ids"][-p:].tolist() == [tag] * p and set(row["prompt_ids"][:-p].tolist()) <= {PAD}
        assert row["completion_ids"][:c].tolist() == [tag] * c
        assert set(row["completion_ids"][c:].tolist()) <= {PAD}
        assert row["old_per_token_logps"][:c].tolist() == [-float(tag)] * c
        assert row["mm_token_type_ids"][:P].tolist() == row["prompt_mask"].tolist()
        assert row["mm_token_type_ids"][P:].sum() == 0
        assert float(row["advantages"]) == float(tag)
        assert row["num_images"] == 1 + r % 2
        assert row["image_grid_thw"].shape[0] == row["num_images"]
        assert row["pixel_values"].shape[0] == 4 * row["num_images"]
        assert set(row["pixel_values"].flatten().tolist()) == {float(tag)}


def _assemble_on_every_process(
    calls: list[int], plan: list[tuple[int, int]], n_proc: int
) -> list[dict[str, Any]]:
    """Run each process's side of DynamicSamplingMixin._assemble (``merge_generation_batches`` with an
    exchange), the all-gather simulated."""
    local = {
        p: [split_rows(_local_batch(b, p, calls[b] // n_proc)) for b in range(len(calls))]
        for p in range(n_proc)
    }
    n_local = [n // n_proc for n in calls]
    sent = []
    for p in range(n_proc):
        for b, r in rows_to_send(plan, p, n_proc, n_local):
            assert r // n_local[b] == p  # a process only sends rows it generated
            sent.append(((b, r), local[p][b].rows[r % n_local[b]]))
    received = dict(sent)
    assert len(received) == len(sent)  # each needed row is sent once
    out = []
    for p in range(n_proc):
        batches = [_local_batch(b, p, n_local[b]) for b in range(len(calls))]
        out.append(
            merge_generation_batches(
                batches, plan, PAD, process=p, num_processes=n_proc, exchange=lambda rows: received
            )
        )
    return out


def test_refill_size_gives_every_process_whole_rows() -> None:
    for g in (2, 3, 4, 8):
        for n_proc in (1, 2, 3, 4, 8):
            for need in range(1, 7):
                n = refill_size(need, g, n_proc)
                assert n >= need and (n * g) % n_proc == 0
                assert n - need < n_proc  # never a whole extra round of groups per process
    assert refill_size(1, 4, 2) == 1 and refill_size(1, 3, 2) == 2 and refill_size(3, 2, 8) == 4


def test_global_plan_keeps_groups_whole_and_sliceable() -> None:
    plan = global_row_plan(3, 4, {1: (2, 0)})
    assert plan == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
        (0, 8),
        (0, 9),
        (0, 10),
        (0, 11),
    ]
    assert plan_slice(plan, 0, 2) == plan[:6] and plan_slice(plan, 1, 2) == plan[6:]
    # process 0 holds rows 0-5 of call 2 (n_local 6): process 1 needs (2, 2), (2, 3) of them
    assert rows_to_send(plan, 0, 2, [6, 2, 6]) == [(2, 2), (2, 3)]
    assert rows_to_send(plan, 1, 2, [6, 2, 6]) == []


@pytest.mark.parametrize(
    ("n_proc", "g", "first", "slots", "refills"),
    [
        # 2 processes, 2 groups of 4 (one per process); group 0 refilled from a group split over both
        (2, 4, 8, {0: (1, 0)}, [4]),
        # groups spanning processes (3 per process, g = 2), two refill calls, refills landing crosswise
        (2, 2, 6, {0: (2, 1), 2: (1, 3)}, [8, 4]),
        # 4 processes, g = 4, every slot refilled from another process's rows
        (4, 4, 16, {0: (1, 3), 1: (1, 0), 3: (2, 1)}, [16, 8]),
        # one process: nothing is exchanged
        (1, 4, 8, {1: (1, 0)}, [4]),
    ],
)
def test_each_process_takes_its_slice_of_the_global_reassembled_batch(
    n_proc: int, g: int, first: int, slots: dict[int, tuple[int, int]], refills: list[int]
) -> None:
    import torch

    calls = [first, *refills]
    plan = global_row_plan(first // g, g, slots)
    outs = _assemble_on_every_process(calls, plan, n_proc)
    for p, out in enumerate(outs):
        _check_rows(out, plan_slice(plan, p, n_proc))
        assert out["pixel_values"].shape[0] == int(out["image_grid_thw"].prod(-1).sum())
    # Across processes, the slices are the global plan in order: groups are whole and in TRL's layout.
    tags = torch.cat([out["advantages"] for out in outs]).tolist()
    assert tags == [float(_row_tag(b, r)) for b, r in plan]
    for k in range(first // g):
        assert len({(plan[k * g + m][0], plan[k * g + m][1] // g) for m in range(g)}) == 1
    if n_proc == 1:
        merged = merge_generation_batches([_local_batch(b, 0, n) for b, n in enumerate(calls)], plan, PAD)
        assert torch.equal(merged["advantages"], outs[0]["advantages"])
        assert int(merged["num_items_in_batch"]) == int(merged["completion_mask"].sum())


# Records, per process and call, the item ids TRL generates for and, for the batch dynamic sampling
# returns, each row's prompt tokens (pads stripped) and advantage.
SPY_ENTRY = """
import json, os, sys, zlib

import trl

import anatomy_r1.training.dapo as dapo_mod
import anatomy_r1.training.rewards as rewards_mod
from anatomy_r1.cli import main
from anatomy_r1.training.dapo import DynamicSamplingMixin


def constant_for_even_ids(completions, id, **kwargs):
    out = []
    for i, (c, pid) in enumerate(zip(completions, id)):
        if zlib.crc32(pid.encode()) % 2 == 0:
            out.append(1.0)
        else:
            out.append(float((zlib.crc32(f"{pid}{c}{i}".encode()) % 97) / 97.0))
    return out


def reward_funcs(weights, template):
    return [constant_for_even_ids], [1.0]


rewards_mod.build_reward_funcs = reward_funcs
_orig_gen = trl.GRPOTrainer._generate_and_score_completions
_orig_dapo = DynamicSamplingMixin._generate_and_score_completions


def _log(self, obj):
    path = os.path.join(os.environ["SPY_DIR"], f"rank{self.accelerator.process_index}.jsonl")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj) + "\\n")


def _spy_gen(self, inputs):
    _log(self, {"kind": "call", "step": self.state.global_step, "ids": [r["id"] for r in inputs]})
    return _orig_gen(self, inputs)


def _spy_dapo(self, inputs):
    out = _orig_dapo(self, inputs)
    pad = self._tokenizer.pad_token_id
    prompts = [[t for t in row if t != pad] for row in out["prompt_ids"].tolist()]
    _log(self, {
        "kind": "batch", "step": self.state.global_step, "prompts": prompts,
        "advantages": out["advantages"].tolist(), "valid": self._batch_group_valid,
        "num_items": int(out["num_items_in_batch"]), "local_items": int(out["completion_mask"].sum()),
    })
    return out


_orig_send = dapo_mod.rows_to_send


def _spy_send(plan, process, num_processes, n_local):
    rows = _orig_send(plan, process, num_processes, n_local)
    with open(os.path.join(os.environ["SPY_DIR"], f"sent{process}.txt"), "a", encoding="utf-8") as fh:
        fh.write(f"{len(rows)}\\n")
    return rows


dapo_mod.rows_to_send = _spy_send
trl.GRPOTrainer._generate_and_score_completions = _spy_gen
DynamicSamplingMixin._generate_and_score_completions = _spy_dapo
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_cpu_processes_run_dapo_dynamic_sampling(
    tmp_path: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
        "accelerate"
    )
    assert accelerate is not None, "accelerate's launcher is a dependency of the package"
    out, spy_dir = tmp_path / "run", tmp_path / "spy"
    spy_dir.mkdir()
    entry = tmp_path / "entry.py"
    entry.write_text(SPY_ENTRY, encoding="utf-8")
    cfg = write_config(
        out,
        # 4 completions per process = one whole group each; refills of one group span both processes
        grpo={"max_steps": 3, "per_device_train_batch_size": 4, "loss_type": "dapo", "epsilon_high": 0.28},
        dynamic_sampling=True,
    )
    env = {**os.environ, "SPY_DIR": str(spy_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [accelerate, "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
         str(entry), "train", "--config", str(cfg)],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    logs = {
        rank: [json.loads(x) for x in (spy_dir / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }
    calls = {rank: [e for e in logs[rank] if e["kind"] == "call"] for rank in (0, 1)}
    batches = {rank: [e for e in logs[rank] if e["kind"] == "batch"] for rank in (0, 1)}
    assert len(calls[0]) == len(calls[1]) > len(batches[0]) == len(batches[1]) == 3  # refills happened
    for a, b in zip(calls[0], calls[1], strict=True):
        ids = a["ids"] + b["ids"]  # the global rows of one generation call, in TRL's order
        assert len(a["ids"]) == len(b["ids"])
        # every process drew the same prompts: each group of 4 is one item, even when split over both
        assert all(len(set(ids[k : k + 4])) == 1 for k in range(0, len(ids), 4))
    for a, b in zip(batches[0], batches[1], strict=True):
        assert a["valid"] == b["valid"]  # one decision, taken on the gathered rewards
        assert a["num_items"] == b["num_items"] == a["local_items"] + b["local_items"]
        prompts, adv = a["prompts"] + b["prompts"], a["advantages"] + b["advantages"]
        for k in range(0, len(prompts), 4):
            assert all(p == prompts[k] for p in prompts[k : k + 4])  # groups stay whole
            if a["valid"][k // 4]:
                assert any(abs(x) > 1e-6 for x in adv[k : k + 4])

    # refilled rows generated on one process and needed on the other were sent across
    sent_files = [spy_dir / f"sent{rank}.txt" for rank in (0, 1)]
    sent = [int(x) for f in sent_files if f.is_file() for x in f.read_text().split()]
    assert sum(sent) > 0

    rows = [row for row in read_metrics(out / "metrics.jsonl") if "dapo/dropped_groups" in row]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert sum(row["dapo/refilled_groups"] for row in rows) >= 1
    for row in rows:
        assert (
            row["dapo/refilled_groups"] + row["dapo/remaining_zero_std_groups"] == row["dapo/dropped_groups"]
        )
    assert (out / "final" / "config.json").is_file()


def test_sequence_level_importance_ratio_survives_a_one_token_wide_batch() -> None:
    """vLLM's sequence-level importance-sampling ratio is (B, 1); in a batch whose completions are one
    token wide it has a per-token ratio's shape, and must still not be padded like one."""
    from types import SimpleNamespace

    import torch

    from anatomy_r1.training.batch_rows import per_sequence_keys

    narrow, wide = _local_batch(0, 0, 2), _local_batch(1, 0, 2)
    narrow["completion_ids"] = narrow["completion_ids"][:, :1]
    narrow["completion_mask"] = torch.ones((2, 1), dtype=torch.long)
    narrow["old_per_token_logps"] = narrow["old_per_token_logps"][:, :1]
    narrow["mm_token_type_ids"] = narrow["mm_token_type_ids"][:, : narrow["prompt_ids"].shape[1] + 1]
    narrow["importance_sampling_ratio"] = torch.tensor([[0.5], [0.75]])
    wide["importance_sampling_ratio"] = torch.tensor([[1.5], [1.25]])
    assert wide["completion_ids"].shape[1] > 1

    args = SimpleNamespace(
        use_vllm=True, vllm_importance_sampling_correction=True, vllm_importance_sampling_mode="sequence_mask"
    )
    merged = merge_generation_batches([narrow, wide], [(0, 0), (1, 1), (0, 1)], PAD, per_sequence_keys(args))
    assert merged["importance_sampling_ratio"].shape == (3, 1)
    assert merged["importance_sampling_ratio"].flatten().tolist() == [0.5, 1.25, 0.75]
    # A per-token ratio keeps being padded with 1.0 to the widest completion.
    token_args = SimpleNamespace(**{**vars(args), "vllm_importance_sampling_mode": "token_mask"})
    assert per_sequence_keys(token_args) == frozenset()
    narrow["importance_sampling_ratio"] = torch.tensor([[0.5], [0.75]])
    c = wide["completion_ids"].shape[1]
    wide["importance_sampling_ratio"] = torch.full((2, c), 2.0)
    merged = merge_generation_batches([narrow, wide], [(0, 0), (1, 1)], PAD, per_sequence_keys(token_args))
    assert merged["importance_sampling_ratio"].shape == (2, c)
    assert merged["importance_sampling_ratio"][0].tolist() == [0.5] + [1.0] * (c - 1)
