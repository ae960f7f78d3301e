"""CurriculumRepeatSampler: RepeatSampler structure, multi-process consistency, resume, S(q) schedule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler
from trl.trainer.utils import RepeatSampler

from anatomy_r1.curriculum.sampler import CurriculumRepeatSampler, generation_batches_for
from anatomy_r1.errors import ConfigError

N = 200
SCORES = np.random.default_rng(0).random(N)


def make(**kw) -> CurriculumRepeatSampler:
    args = dict(scores=SCORES, mini_repeat_count=4, batch_size=4, repeat_count=2, pacing="root", seed=7)
    args.update(kw)
    return CurriculumRepeatSampler(**args)


def blocks(stream: list[int], size: int) -> list[list[int]]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.mark.parametrize("pacing", ["root", "none"])
def test_structure_matches_repeat_sampler(pacing: str) -> None:
    g, k, r = 4, 5, 3
    s = make(mini_repeat_count=g, batch_size=k, repeat_count=r, pacing=pacing)
    ref = RepeatSampler(list(range(N)), mini_repeat_count=g, batch_size=k, repeat_count=r, seed=7)
    out = list(s)
    assert len(out) == len(s) == len(ref) == len(list(ref))
    for b, block in enumerate(blocks(out, g * k * r)):
        chunk = block[: g * k]
        # The generation batch is repeated r times ...
        assert block == chunk * r
        # ... each index G times in a row, k distinct indices per batch.
        groups = blocks(chunk, g)
        assert all(len(set(grp)) == 1 for grp in groups)
        assert [grp[0] for grp in groups] == s.batch_indices(b)
        assert len(set(s.batch_indices(b))) == k


def test_two_processes_get_consistent_disjoint_slices() -> None:
    """Two processes build their own sampler; accelerate's shard split must reassemble each global batch."""
    g, k, procs = 4, 4, 2
    generation_batch = g * k  # 16 completions per generation batch
    local = generation_batch // procs  # per-device batch (per_device_bs * steps_per_generation)
    per_proc = []
    for rank in range(procs):
        sampler = make(mini_repeat_count=g, batch_size=k, repeat_count=2)  # same seed in every process
        shard = BatchSamplerShard(
            BatchSampler(sampler, local, drop_last=False), num_processes=procs, process_index=rank
        )
        per_proc.append(list(shard))
    reference = list(make(mini_repeat_count=g, batch_size=k, repeat_count=2))
    global_batches = blocks(reference, generation_batch)
    assert len(per_proc[0]) == len(per_proc[1]) == len(global_batches)
    for step, (a, b) in enumerate(zip(*per_proc, strict=True)):
        assert a + b == global_batches[step]  # union in process order is the global batch
        positions = set(range(generation_batch))
        assert positions == set(range(local)) | set(range(local, generation_batch))
        # Each process holds whole groups of G identical indices.
        for part in (a, b):
            assert all(len(set(grp)) == 1 for grp in blocks(part, g))


def test_cross_process_straddling_groups_still_reassemble() -> None:
    g, k = 4, 3  # 12 per generation batch, 6 per process: a group straddles the two processes
    shards = [
        list(
            BatchSamplerShard(
                BatchSampler(make(mini_repeat_count=g, batch_size=k), 6, drop_last=False),
                num_processes=2,
                process_index=rank,
            )
        )
        for rank in range(2)
    ]
    reference = blocks(list(make(mini_repeat_count=g, batch_size=k)), 12)
    assert [a + b for a, b in zip(*shards, strict=True)] == reference


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert list(make()) == list(make())
    assert list(make()) != list(make(seed=8))


def test_exact_resume_with_state_dict() -> None:
    per_batch = 4 * 4 * 2
    full = make(total_batches=150)
    uninterrupted = []
    for epoch in range(3):
        full.set_epoch(epoch)
        uninterrupted += list(full)

    run = make(total_batches=150)
    run.set_epoch(1)
    it = iter(run)
    first = list(itertools.islice(it, 10 * per_batch))  # 10 generation batches into epoch 1
    state = run.state_dict()
    assert state["epoch"] == 1 and state["position"] == 10

    resumed = make(total_batches=150)
    resumed.load_state_dict(state)
    rest = list(resumed)
    epoch_start = 50 * per_batch
    assert first + rest == uninterrupted[epoch_start : 2 * epoch_start]
    # The next epoch follows on as in the uninterrupted run.
    assert list(resumed) == uninterrupted[2 * epoch_start :]


def test_resume_by_skipping_like_hf_trainer() -> None:
    """HF Trainer resumes by re-iterating and discarding consumed batches: the order must not depend on
    anything but the epoch and the position."""
    a = make(total_batches=100)
    a.set_epoch(1)
    stream = list(a)
    b = make(total_batches=100)
    b.set_epoch(1)
    assert list(itertools.islice(iter(b), 96, None)) == stream[96:]
    c = make(total_batches=100)
    c.set_epoch(1)
    c.skip_batches(3)
    assert list(c) == stream[3 * 32 :]


def test_state_from_another_sampler_is_refused() -> None:
    state = make().state_dict()
    with pytest.raises(ConfigError, match="does not match"):
        make(seed=8).load_state_dict(state)
    with pytest.raises(ConfigError, match="does not match"):
        make(pacing="linear").load_state_dict(state)
    with pytest.raises(ConfigError):
        make().load_state_dict({"epoch": 0})


def test_batch_mean_s_q_rises_under_curriculum_and_is_flat_when_shuffled() -> None:
    scores = np.random.default_rng(1).beta(2, 3, size=2000)
    cur = CurriculumRepeatSampler(scores, mini_repeat_count=8, batch_size=16, pacing="root", seed=0)
    flat = CurriculumRepeatSampler(scores, mini_repeat_count=8, batch_size=16, pacing="none", seed=0)
    sc, sf = cur.mean_s_q_schedule(), flat.mean_s_q_schedule()
    assert len(sc) == len(sf) == 2000 // 16
    q = len(sc) // 4
    assert sc[:q].mean() < sc[-q:].mean() - 0.25
    assert np.corrcoef(np.arange(len(sc)), sc)[0, 1] > 0.7
    assert abs(sf[:q].mean() - sf[-q:].mean()) < 0.05
    assert abs(np.corrcoef(np.arange(len(sf)), sf)[0, 1]) < 0.3
    assert cur.batch_mean_s_q(cur.batch_indices(0)) == pytest.approx(sc[0])
    # Both visit every item once in the epoch: the curriculum reorders, it does not drop data.
    for s in (cur, flat):
        assert sorted(i for b in range(len(sc)) for i in s.batch_indices(b)) == list(range(2000 - 2000 % 16))


def test_first_batch_comes_from_the_easiest_window() -> None:
    s = make(pacing="linear", start=0.1)
    easiest = set(np.argsort(SCORES)[: s.window_size(0)].tolist())
    assert set(s.batch_indices(0)) <= easiest


def test_uniform_window_stays_inside_the_window() -> None:
    s = make(window="uniform", pacing="step", stages=4, batch_size=8)
    rank = np.empty(N, dtype=int)
    rank[s.order] = np.arange(N)
    for b in range(s.batches_per_epoch):
        idx = s.batch_indices(b)
        assert len(set(idx)) == 8
        assert max(rank[idx]) < s.window_size(b)


def test_ties_are_broken_by_seed_not_file_order() -> None:
    ties = [0.5] * 100
    a = CurriculumRepeatSampler(ties, 2, batch_size=10, seed=1)
    b = CurriculumRepeatSampler(ties, 2, batch_size=10, seed=2)
    assert a.order.tolist() != list(range(100))
    assert a.order.tolist() != b.order.tolist()


def test_constructor_validation_and_helpers() -> None:
    with pytest.raises(ConfigError, match="not finite"):
        CurriculumRepeatSampler([0.1, float("nan")], 2)
    with pytest.raises(ConfigError, match="exceeds"):
        CurriculumRepeatSampler([0.1, 0.2], 2, batch_size=3)
    with pytest.raises(ConfigError, match="window"):
        CurriculumRepeatSampler([0.1, 0.2], 2, window="sliding")  # type: ignore[arg-type]
    assert generation_batches_for(100, gradient_accumulation_steps=4) == 100
    assert generation_batches_for(100, gradient_accumulation_steps=4, steps_per_generation=8) == 50
    assert generation_batches_for(10, 2, steps_per_generation=2, num_iterations=3) == 4
