"""``anatomy-r1 probe``: the statistics on hand-made numbers, backends loaded once, and real CLI runs.

The end-to-end runs use the random-weight tiny model, so accuracies are near zero; what they check is
that every number is computed from real generations on real files (the synthetic set and a file in the
Anatomy-R1 release format, converted the way a user would) and written completely or not at all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anatomy_r1.cli import main
from anatomy_r1.curriculum import encoders
from anatomy_r1.curriculum.distractors_by_similarity import pose_at_levels
from anatomy_r1.curriculum.encoders import EmbeddingBackend
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data.io import read_records, write_records
from anatomy_r1.data.schema import Record, make_record
from anatomy_r1.data.vocab import SYNTH_CLASSES, label_from_display
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.evaluation import probe, stats
from anatomy_r1.evaluation.confusion import (
    confusion_similarity,
    confusion_table,
    count_confusions,
    pair_similarities,
)
from anatomy_r1.evaluation.metrics import judge
from anatomy_r1.evaluation.probe_vocabulary import resolve_vocabulary, select_questions
from anatomy_r1.reports import probe_report

# ------------------------------------------------------------------------------------------ statistics


def test_spearman_averages_ties_like_the_textbook() -> None:
    # ranks x = 1, 2.5, 2.5, 4 and y = 1, 3, 2, 4: centred dot product 4.5, squared norms 4.5 and 5,
    # so rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert stats.average_ranks([3, 1, 2, 2]).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert stats.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert stats.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # monotone but non-linear: still a perfect rank correlation
    assert stats.spearman([0.1, 0.2, 0.9, 5.0], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3], [0.0, 0.0, 0.0]) is None  # constant side: undefined, not 0
    assert stats.spearman([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        stats.spearman([1, 2], [1, 2, 3])


def test_spearman_agrees_with_scipy_when_it_is_installed() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    y = x + rng.integers(0, 3, 40)
    assert stats.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_paired_bootstrap_ci_is_seeded_and_brackets_the_gap() -> None:
    rng = np.random.default_rng(0)
    easy = rng.random(60)
    hard = easy - 0.2 + 0.1 * rng.standard_normal(60)
    gap = float(np.mean(easy - hard))
    ci = stats.paired_bootstrap_ci(easy, hard, n_resamples=500, seed=4)
    assert ci is not None and ci[0] < gap < ci[1]
    assert ci[0] > 0.1 and ci[1] < 0.3
    assert stats.paired_bootstrap_ci(easy, hard, n_resamples=500, seed=4) == ci  # same seed, same interval
    assert stats.paired_bootstrap_ci(easy, hard, n_resamples=500, seed=5) != ci
    assert stats.paired_bootstrap_ci([], []) is None
    assert stats.paired_bootstrap_ci([0.5], [0.25]) == (0.25, 0.25)


def test_quartiles_split_by_rank_and_keep_ties_together() -> None:
    assert stats.quartiles([8, 1, 7, 2, 6, 3, 5, 4]).tolist() == [3, 0, 3, 0, 2, 1, 2, 1]
    # a block of equal scores is never cut by a quartile boundary
    q = stats.quartiles([0.1, 0.3, 0.3, 0.3, 0.3, 0.5, 0.6, 0.7])
    assert len(set(q[1:5].tolist())) == 1
    rows = stats.accuracy_by_quartile([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [1, 1, 1, 0, 0.5, 0, 0, 0])
    assert [r["n"] for r in rows] == [2, 2, 2, 2]
    assert [r["avg_at_k"] for r in rows] == [1.0, 0.5, 0.25, 0.0]
    assert rows[0]["s_q_min"] == 0.1 and rows[3]["s_q_max"] == 0.8
    empty = stats.accuracy_by_quartile([0.5, 0.5], [1.0, 0.0], [1.0, 1.0])
    assert [r["n"] for r in empty] == [0, 0, 2, 0]  # two equal scores share their mean rank, 1.5 of 2
    assert empty[0]["avg_at_k"] is None and empty[2]["greedy_accuracy"] == 1.0


def _rec(rid: str, options: list[str], answer_index: int) -> Record:
    return make_record(
        id=rid,
        images=["x.png"],
        question="Which anatomy?",
        options=options,
        answer_index=answer_index,
        source="t",
    )


def test_confusion_counts_picks_per_offer_on_hand_made_completions() -> None:
    q1 = _rec("q1", ["Liver", "Gallbladder", "Gut"], 0)
    q2 = _rec("q2", ["gallbladder", "liver"], 1)  # labels as options: the same classes as display names
    sampled = {
        "q1": [
            "<answer>Liver</answer>",  # right
            "<answer>B</answer>",  # gallbladder
            "<answer>Gallbladder</answer>",  # gallbladder
            "no answer tag",  # unreadable: an offer, no pick
        ],
        "q2": ["<answer>A</answer>", "<answer>liver</answer>"],
    }
    counts = count_confusions(judge([q1, q2], sampled))
    assert counts == {
        ("liver", "gallbladder"): [3, 6],  # 2 picks in q1, 1 in q2; offered 4 + 2 times
        ("liver", "gut"): [0, 4],
    }
    sims = pair_similarities(counts, get_backend("matrix:prior"))
    table = confusion_table(counts, sims)
    assert [(r["true"], r["answered"], r["picks"], r["offered"]) for r in table] == [
        ("liver", "gallbladder", 3, 6),
        ("liver", "gut", 0, 4),
    ]
    assert table[0]["rate"] == 0.5 and table[0]["similarity"] == pytest.approx(0.55)
    assert table[1]["rate"] == 0.0 and table[1]["similarity"] == pytest.approx(0.15)
    # the greedy completion is counted only on request
    with_greedy = count_confusions(
        judge([q1], {"q1": ["<answer>Liver</answer>"]}, {"q1": "<answer>Gut</answer>"}), greedy=True
    )
    assert with_greedy == {("liver", "gallbladder"): [0, 2], ("liver", "gut"): [1, 2]}


def test_vocabulary_auto_and_lists() -> None:
    recs = [_rec("a", ["Liver", "Gut"], 0), _rec("b", ["cystic_plate", "Omentum", "Liver"], 2)]
    assert resolve_vocabulary("auto", recs) == ["cystic_plate", "gut", "liver", "omentum"]
    assert resolve_vocabulary(" Liver, cystic plate,liver,, ", recs) == ["liver", "cystic_plate"]
    with pytest.raises(ConfigError, match="no labels"):
        resolve_vocabulary(" , ", recs)
    kept, outside, too_few = select_questions(recs, ["liver", "gut"])
    assert [r.id for r in kept] == ["a"] and outside == 0 and too_few == 1  # b needs 3 labels
    with pytest.raises(DataError, match="no question's answer is in the vocabulary"):
        probe.build_probe_sets(
            recs, ["omentum", "fluid", "gut"], get_backend("matrix:prior"), where="f.jsonl"
        )


# ------------------------------------------------------------------------- one backend for many records


class _CountingEncoder(EmbeddingBackend):
    """Stands in for the MiniLM backend: counts constructions, encodes by hashing, loads nothing."""

    built = 0

    def __init__(self, path: Any, *, device: str = "cpu", spec: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        type(self).built += 1
        self.spec = spec or "counting"

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.random.default_rng(sum(map(ord, t))).standard_normal(8) for t in texts])


def test_a_minilm_spec_string_builds_the_backend_once_for_many_records(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(encoders, "SentenceTransformerBackend", _CountingEncoder)
    monkeypatch.setattr(encoders, "minilm_path", lambda: tmp_path)
    monkeypatch.setattr(encoders, "_ENCODERS", {})
    monkeypatch.setattr(_CountingEncoder, "built", 0)
    labels = list(SYNTH_CLASSES)
    records = [_rec(f"q{i}", [labels[i % 8], labels[(i + 1) % 8], labels[(i + 3) % 8]], 0) for i in range(40)]
    for rec in records:  # a spec string per record, the way callers used to pass it
        pose_at_levels(rec, labels, ["easiest", "hardest"], "minilm")
    assert _CountingEncoder.built == 1
    sets = probe.build_probe_sets(records, labels, get_backend("minilm"))
    assert len(sets.easiest) == len(sets.hardest) == 40 and len(sets.s_q) == 40
    assert _CountingEncoder.built == 1
    assert get_backend("minilm", cached=False) is not get_backend("minilm")  # a private copy on request
    assert _CountingEncoder.built == 2
    # stateful backends are never shared between callers
    assert get_backend("matrix:prior") is not get_backend("matrix:prior")


# ------------------------------------------------------------------------------------ writing outputs


def _small_probe() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    recs = [_rec("a", ["Liver", "Gut", "Omentum"], 0), _rec("b", ["Gallbladder", "Cystic Plate", "Fluid"], 1)]
    backend = get_backend("matrix:prior")
    sets = probe.build_probe_sets(recs, resolve_vocabulary("auto", recs), backend)

    def generate(records: list[Record]) -> tuple[dict[str, list[str]], dict[str, str]]:
        sampled = {r.id: [f"<answer>{r.answer}</answer>", "<answer>A</answer>"] for r in records}
        return sampled, {r.id: "<answer>B</answer>" for r in records}

    return probe.run_probe(sets, generate, backend, n_resamples=50)


def test_outputs_appear_complete_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    result, rows, completions = _small_probe()
    assert result["n_questions"] == 2 and len(rows) == 2 and len(completions) == 2 * 3 * 3
    out = tmp_path / "deep" / "out"
    probe_report.write_probe_outputs(out, result, rows, completions)
    assert sorted(p.name for p in out.iterdir()) == sorted(probe_report.OUTPUT_FILES)
    assert json.loads((out / "probe.json").read_text())["n_questions"] == 2

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(probe_report, "plot_confusion", broken)
    fresh = tmp_path / "new" / "out"
    with pytest.raises(OSError, match="disk full"):
        probe_report.write_probe_outputs(fresh, result, rows, completions)
    assert not (tmp_path / "new").exists()  # neither the folder, its parent nor a staging folder
    before = (out / "probe.md").read_bytes()
    with pytest.raises(OSError):
        probe_report.write_probe_outputs(out, {**result, "n_records": 99}, rows, completions)
    assert (out / "probe.md").read_bytes() == before  # an existing report is left as it was
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_confusion_similarity_is_a_matrix_backend_of_the_measured_rates(tmp_path: Path) -> None:
    pairs = [
        {"true": "liver", "answered": "gut", "picks": 3, "offered": 10},
        {"true": "gut", "answered": "liver", "picks": 1, "offered": 10},
        {"true": "liver", "answered": "omentum", "picks": 0, "offered": 4},
    ]
    m = confusion_similarity(pairs, ["liver", "gut", "omentum", "gallbladder"])
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(m), encoding="utf-8")
    sim = get_backend(f"matrix:{path}").similarity_matrix(["Liver", "Gut", "Omentum", "Gallbladder"])
    assert sim[0][1] == sim[1][0] == pytest.approx(0.2)  # (3 + 1) picks over 20 offers, both directions
    assert sim[0][2] == 0.0 and sim[0][3] == 0.0  # offered but never picked; never offered together
    assert [sim[i][i] for i in range(4)] == [1.0] * 4


# ------------------------------------------------------------------------------------------ end to end


def _run(*args: Any) -> int:
    return main(["probe", *(str(a) for a in args)])


def _small_synth_file(tiny_data: Path, tmp_path: Path, n: int = 6) -> tuple[Path, list[Record]]:
    records = read_records(tiny_data / "warm.jsonl")[:n]
    path = tmp_path / "small.jsonl"
    write_records(path, records)
    return path, records


def test_probe_synthetic_end_to_end(tiny_data: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    data, records = _small_synth_file(tiny_data, tmp_path)
    left_out = label_from_display(records[0].answer)
    vocabulary = [c for c in SYNTH_CLASSES if c != left_out]
    out = tmp_path / "probe"
    rc = _run(
        "--model", tiny_model, "--data", data, "--out", out, "--image-root", tiny_data,
        "--backend", "matrix:prior", "--vocabulary", ",".join(vocabulary), "--k", 2, "--seed", 3,
        "--template", "compact_text", "--max-new-tokens", 6, "--batch-size", 8,
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert printed.startswith("probe: ") and "Avg@2: easiest" in printed and f"-> {out}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(probe_report.OUTPUT_FILES)
    res = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    skipped = sum(label_from_display(r.answer) == left_out for r in records)
    assert res["n_records"] == 6
    assert res["n_skipped_not_in_vocabulary"] == res["n_skipped"] == skipped >= 1
    n = res["n_questions"]
    assert n == 6 - skipped
    st = res["settings"]
    assert st["k"] == 2 and st["seed"] == 3 and st["backend"] == "matrix:prior"
    assert st["vocabulary"] == vocabulary and st["vocabulary_by"] == []
    # the random tiny model is no run of ours: what was given is "flag", the rest the command's default
    assert st["template"] == {"value": "compact_text", "from": "flag"}
    assert st["max_new_tokens"] == {"value": 6, "from": "flag"}
    assert st["dtype"] == {"value": "fp32", "from": "default"}
    lv = res["levels"]
    assert all(lv[s]["n"] == n and lv[s]["k"] == 2 for s in probe.SETS)
    assert lv["easiest"]["mean_s_q"] < lv["hardest"]["mean_s_q"]
    for kind in ("avg_at_k", "greedy"):
        gap = res["gap"][kind]
        assert gap["points"] == pytest.approx(100 * (lv["easiest"][_acc(kind)] - lv["hardest"][_acc(kind)]))
        assert gap["ci95"][0] <= gap["points"] <= gap["ci95"][1]
    quarts = res["s_q_vs_accuracy"]["quartiles"]
    assert len(quarts) == 4 and sum(q["n"] for q in quarts) == n
    pairs = res["confusion"]["pairs"]
    assert pairs and all(0 <= p["picks"] <= p["offered"] and 0.0 <= p["rate"] <= 1.0 for p in pairs)
    rows = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == n and {"s_q", "avg_at_k_easiest", "greedy_correct_hardest"} <= set(rows[0])
    completions = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    assert len(completions) == n * 3 * (2 + 1)  # three sets, k sampled + one greedy each
    assert {c["set"] for c in completions} == set(probe.SETS)
    for png in (probe_report.QUARTILE_PLOT, probe_report.CONFUSION_PLOT):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    assert "## 1. Same questions" in (out / "probe.md").read_text(encoding="utf-8")


def _acc(kind: str) -> str:
    return "avg_at_k" if kind == "avg_at_k" else "greedy_accuracy"


_R = "What anatomy is"
RELEASE_ITEMS = [
    (f"{_R} at the top-mid of the frame ?", ["Liver", "Gallbladder", "Omentum", "Gut"], "A"),
    ("What is the name of the yellow anatomy?", ["Gut", "Omentum", "Liver", "Gallbladder"], "B"),
    (f"{_R} below the grasper instrument?", ["Gallbladder", "Cystic Plate", "Liver", "Gut"], "B"),
    (f"{_R} at the bottom-left of the frame ?", ["Omentum", "Liver", "Abdominal Wall Cavity", "Gut"], "C"),
    ("What anatomy is above the gut anatomy?", ["Liver", "Gallbladder", "Gut", "Omentum"], "B"),
]  # fmt: skip


def _release_file(tmp_path: Path) -> tuple[Path, Path]:
    """A small file in the Anatomy-R1 release format plus stand-in frames under an image root."""
    from PIL import Image

    root = tmp_path / "frames"
    items = []
    for i, (question, options, solution) in enumerate(RELEASE_ITEMS):
        lines = "\n".join(f"{'ABCD'[j]}. {o}" for j, o in enumerate(options))
        body = f"Question:\n{question}\nAnatomy Options:\n{lines}"
        image = f"/CholecT45/data/VID66/{791 + i:06d}.png"
        frame = root / image.lstrip("/")
        frame.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (84, 84), (40 * i, 120, 200 - 30 * i)).save(frame)
        items.append(
            {
                "instruction": "You are an expert in cholecystectomy surgical procedures. Output the "
                f"thinking process in <think> </think> and final answer in <answer> </answer> tags.\n{body}",
                "sft_prompt": f"<image>You are an expert in cholecystectomy surgical procedures.\n{body}",
                "solution": solution,
                "answer": options["ABCD".index(solution)],
                "images": image,
            }
        )
    src = tmp_path / "GRPO.json"
    src.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return src, root


def test_probe_release_format_end_to_end(tiny_model: Path, tmp_path: Path, capsys) -> None:
    src, root = _release_file(tmp_path)
    converted = tmp_path / "release.jsonl"
    assert main(["data", "convert", "--format", "anatomy-r1", str(src), "--out", str(converted),
                 "--image-root", str(root)]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "probe"
    rc = _run(
        "--model", tiny_model, "--data", converted, "--out", out, "--image-root", root,
        "--backend", "matrix:prior", "--vocabulary", "auto", "--k", 2, "--max-new-tokens", 6,
    )  # fmt: skip
    err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert res["n_records"] == res["n_questions"] == len(RELEASE_ITEMS) and res["n_skipped"] == 0
    assert res["vocabulary"] == [
        "abdominal_wall_cavity", "cystic_plate", "gallbladder", "gut", "liver", "omentum",
    ]  # fmt: skip
    assert res["settings"]["vocabulary"] == "auto"
    assert res["settings"]["template"] == {"value": "anatomy_r1", "from": "default"}
    assert res["vocabulary_mixing"] == {}  # one source, no dataset or question type to mix
    assert res["levels"]["easiest"]["mean_s_q"] < res["levels"]["hardest"]["mean_s_q"]
    rows = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    # the re-posed questions offer display names, like the release, drawn from the file's own classes
    completions = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    assert {c["id"] for c in completions} == {
        f"{r['id']}{suffix}" for r in rows for suffix in ("", "@easiest", "@hardest")
    }
    assert all(r["s_q_easiest"] <= r["s_q"] <= r["s_q_hardest"] for r in rows)


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("vocabulary", "no question's answer is in the vocabulary"),
        ("model", "not a local model directory (no config.json)"),
        ("backend", "unknown similarity backend 'word2vec'"),
        ("broken-data", "invalid JSON"),
        ("missing-data", "no such file"),
    ],
)
def test_bad_input_is_one_error_line_and_no_output(
    case: str, message: str, tiny_data: Path, tiny_model: Path, tmp_path: Path, capsys
) -> None:
    data, _ = _small_synth_file(tiny_data, tmp_path)
    model: Path = tiny_model
    extra: list[str] = ["--backend", "matrix:prior"]
    if case == "vocabulary":
        extra += ["--vocabulary", "fluid,peritoneum,adhesion,blood_vessel"]  # none of the synthetic classes
    elif case == "model":
        model = tmp_path / "not-a-model"
        model.mkdir()
    elif case == "backend":
        extra = ["--backend", "word2vec"]
    elif case == "broken-data":
        data.write_text(data.read_text().splitlines()[0] + '\n{"id": "x", "images": [\n', encoding="utf-8")
    else:
        data = tmp_path / "nope.jsonl"
    out = tmp_path / "out"
    rc = _run("--model", model, "--data", data, "--out", out, "--k", 1, "--max-new-tokens", 4, *extra)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if case == "model":
        assert str(model) in lines[0]
    if case in ("broken-data", "missing-data", "vocabulary"):
        assert str(data) in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "staging folder left behind"
