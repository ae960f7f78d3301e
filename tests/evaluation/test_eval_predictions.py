"""``anatomy-r1 eval``: scoring predictions files end to end, bad inputs, atomic outputs, model mode."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records
from anatomy_r1.evaluation.predictions import completion_rows, score_completions
from anatomy_r1.reports import eval_report
from anatomy_r1.reports.eval_report import write_eval_outputs

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data.jsonl"
MEGA_WRONG = "<answer>" + "A" * 1_000_000 + "</answer>"
MEGA_RIGHT = "<think>" + "思" * 1_000_000 + "</think>\n<answer>b</answer>"


@pytest.fixture
def adversarial(tmp_path: Path) -> Path:
    """The fixture predictions plus two megabyte completions appended at the end of the file."""
    path = tmp_path / "pred.jsonl"
    shutil.copy(FIXTURES / "predictions_adversarial.jsonl", path)
    with path.open("a", encoding="utf-8") as fh:
        for pid, completion in (("q3", MEGA_WRONG), ("q4", MEGA_RIGHT)):
            fh.write(json.dumps({"id": pid, "completion": completion}, ensure_ascii=False) + "\n")
    return path


def run(*argv: str | Path) -> int:
    return main(["eval", *map(str, argv)])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def row(pid: str, extracted: str | None, correct: bool, kind: str = "sampled") -> dict:
    return {"id": pid, "kind": kind, "extracted": extracted, "correct": correct}


# Per id, in file order: the extracted letter ("-" for an invalid answer) and whether it is correct.
EXPECTED = {
    "q1": [("B", True), ("B", True), ("-", False), ("-", False), ("B", True)],
    "q2": [("-", False), ("-", False), ("-", False), ("A", True), ("B", False)],
    "q3": [("C", True), ("C", True), ("-", False), ("-", False), ("-", False)],
    "q4": [("B", True), ("B", True), ("A", False), ("B", True), ("B", True)],
}
EXPECTED_ITEMS = [
    row(pid, None if letter == "-" else letter, ok) for pid, marks in EXPECTED.items() for letter, ok in marks
]


def test_adversarial_predictions_scored_exactly(adversarial: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert run("--predictions", adversarial, "--data", DATA, "--out", out, "--allow-missing") == 0
    assert read_jsonl(out / "items.jsonl") == EXPECTED_ITEMS
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # Per-item accuracy q1 3/5, q2 1/5, q3 2/5, q4 4/5, q5 missing (0); invalid 2+3+3+0 of 20.
    assert m["n"] == 5 and m["k"] == 5 and m["n_completions"] == 20
    assert m["avg_at_k"] == pytest.approx(0.4) and m["accuracy"] == pytest.approx(0.4)
    assert m["invalid_rate"] == pytest.approx(0.4)
    assert m["greedy_accuracy"] is None
    assert m["missing"] == 1 and m["missing_ids"] == ["q5"]
    b = m["breakdowns"]
    assert set(b) == {"anatomy_class", "modality", "template_family"}
    cls = b["anatomy_class"]
    assert list(cls) == ["(missing)", "Cystic duct", "Gallbladder", "Liver"]
    assert (cls["Gallbladder"]["n"], cls["Gallbladder"]["avg_at_k"]) == (2, pytest.approx(0.7))
    assert cls["Gallbladder"]["invalid_rate"] == pytest.approx(0.2)
    assert cls["Liver"]["avg_at_k"] == pytest.approx(0.2) and cls["Liver"]["invalid_rate"] == pytest.approx(
        0.6
    )
    assert cls["Cystic duct"]["avg_at_k"] == pytest.approx(0.4)
    assert cls["(missing)"] == {
        "n": 1, "accuracy": 0.0, "avg_at_k": 0.0, "greedy_accuracy": None, "invalid_rate": None,
        "greedy_invalid_rate": None, "n_completions": 0, "missing": 1,
    }  # fmt: skip
    assert b["modality"]["endoscopy"]["avg_at_k"] == pytest.approx(0.4)
    assert b["modality"]["endoscopy"]["invalid_rate"] == pytest.approx(8 / 15)
    assert b["modality"]["CT | axial"]["avg_at_k"] == pytest.approx(0.8)
    assert b["template_family"]["relation"]["avg_at_k"] == pytest.approx(0.4)
    assert b["template_family"]["(missing)"]["avg_at_k"] == pytest.approx(0.4)
    md = (out / "metrics.md").read_text(encoding="utf-8")
    for name in ("Gallbladder", "Liver", "Cystic duct", "(missing)", "CT \\| axial", "relation", "Avg@5"):
        assert name in md
    assert "| Gallbladder | 2 | 70.0% | – | 20.0% |" in md
    assert not (out / "completions.jsonl").exists()
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "metrics.json", "metrics.md"]
    assert "Avg@5 40.0%" in capsys.readouterr().out


def test_greedy_lines_and_interleaved_ids(tmp_path: Path):
    pred = tmp_path / "p.jsonl"
    lines = [
        {"id": "q2", "completion": "<answer>A</answer>"},
        {"id": "q1", "completion": "<answer>C</answer>"},
        {"id": "q2", "completion": "<answer>B</answer>", "model": "ignored"},
        {"id": "q1", "completion": "<answer>B</answer>", "kind": "greedy"},
        {"id": "q3", "completion": "<answer>C</answer>"},
        {"id": "q4", "completion": "<answer>B</answer>"},
        {"id": "q5", "completion": "<answer>Gut</answer>", "kind": "greedy"},
    ]
    pred.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "o"
    assert run("--predictions", pred, "--data", DATA, "--out", out) == 0
    assert read_jsonl(out / "items.jsonl") == [
        row("q2", "A", True), row("q2", "B", False), row("q1", "C", False), row("q3", "C", True),
        row("q4", "B", True), row("q1", "B", True, "greedy"), row("q5", "C", True, "greedy"),
    ]  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert m["missing"] == 0
    assert m["avg_at_k"] == pytest.approx((0.5 + 0 + 1 + 1 + 0) / 5)  # q5 has no samples: wrong for Avg@k
    assert m["greedy_accuracy"] == pytest.approx(2 / 5)  # q2..q4 have no greedy line: wrong for greedy
    assert (m["k"], m["k_min"]) == (2, 1)


GOOD = '{"id":"q1","completion":"<answer>B</answer>"}\n'
GREEDY = '{"id":"q1","completion":"a","kind":"greedy"}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GOOD + '{"id":"zz","completion":"B"}\n', r"pred\.jsonl:2: id 'zz' is not in the data file"),
        (GOOD + '{"id":"q2","completion":5}\n', r"pred\.jsonl:2: 'completion' for id 'q2' must be a string"),
        (GOOD + '{"id":"q2","completion":null}\n', r"pred\.jsonl:2: 'completion' .* must be a string"),
        (GOOD + '{"id":"q2"}\n', r"pred\.jsonl:2: missing 'completion'"),
        (GOOD + '{"completion":"x"}\n', r"pred\.jsonl:2: 'id' must be a non-empty string"),
        (GOOD + '{"id":3,"completion":"x"}\n', r"pred\.jsonl:2: 'id' must be a non-empty string"),
        (GOOD + '["q2","x"]\n', r"pred\.jsonl:2: expected a JSON object"),
        (GOOD + '{"id":"q2","completion":"x","kind":"beam"}\n', r"pred\.jsonl:2: 'kind' must be one of"),
        (GOOD + '{"id":"q2","comp', r"pred\.jsonl:2: invalid JSON"),
        (GOOD.encode() + b'{"id":"q2","completion":"\xff\xfe"}\n', r"pred\.jsonl:2: not valid UTF-8"),
        (GOOD + GREEDY + GREEDY, r"pred\.jsonl:3: a second greedy completion for id 'q1'"),
        ("", r"pred\.jsonl: no predictions \(empty file\)"),
        ("\n  \n", r"pred\.jsonl: no predictions"),
        (GOOD, r"pred\.jsonl: 4 item\(s\) in the data have no prediction \(e\.g\. 'q2', 'q3', 'q4'\); pass"),
    ],
)  # fmt: skip
def test_bad_predictions_fail_with_one_line_and_no_output(tmp_path: Path, capsys, content, message):
    pred = tmp_path / "pred.jsonl"
    if isinstance(content, bytes):
        pred.write_bytes(content)
    else:
        pred.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    assert run("--predictions", pred, "--data", DATA, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_bad_data_and_out_paths(tmp_path: Path, adversarial: Path, capsys):
    assert run("--predictions", adversarial, "--data", tmp_path / "nope.jsonl", "--out", tmp_path / "o") == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert (
        run("--predictions", adversarial, "--data", DATA, "--out", tmp_path / "file", "--allow-missing") == 2
    )
    assert "is not a directory" in capsys.readouterr().err
    assert run("--predictions", tmp_path, "--data", DATA, "--out", tmp_path / "o") == 2
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_mode_selection_errors(tmp_path: Path, adversarial: Path, capsys):
    with pytest.raises(SystemExit) as e:
        run("--data", DATA, "--out", tmp_path / "o")
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        run("--model", "m", "--predictions", adversarial, "--data", DATA, "--out", tmp_path / "o")
    assert e.value.code == 2
    capsys.readouterr()
    assert (
        run("--predictions", adversarial, "--data", DATA, "--out", tmp_path / "o", "--k", "3", "--greedy")
        == 2
    )
    assert "--k, --greedy only apply with --model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_write_leaves_previous_outputs_untouched(tmp_path: Path, monkeypatch):
    records = read_records(DATA)
    metrics, items = score_completions(records, {"q1": ["<answer>B</answer>"]})
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    calls = {"n": 0}
    real_mkstemp = eval_report.tempfile.mkstemp

    def failing_mkstemp(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(eval_report.tempfile, "mkstemp", failing_mkstemp)
    with pytest.raises(OSError, match="disk full"):
        write_eval_outputs(out, metrics, items)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "old"
    calls["n"] = 0
    fresh = tmp_path / "fresh" / "nested"
    with pytest.raises(OSError):
        write_eval_outputs(fresh, metrics, items)
    assert not fresh.exists()


@pytest.fixture
def fake_generate(monkeypatch, tmp_path):
    """Stand-in for ``anatomy_r1.evaluation.generate`` that answers from a table and records its call.

    ``ckpt`` is a local model folder in the working directory: ``eval`` checks the folder before generating.
    """
    calls: list[dict] = []
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}", encoding="utf-8")

    def generate_completions(model_path, records, **kwargs):
        calls.append({"model_path": model_path, "ids": [r.id for r in records], **kwargs})
        k = kwargs["k"]
        right = "<think>t</think><answer>{}</answer>"
        sampled = {r.id: [right.format(r.answer)] * (k - 1) + ["junk"] for r in records} if k else {}
        greedy = {r.id: "<answer>A</answer>" for r in records} if kwargs["greedy"] else None
        return sampled, greedy

    module = types.ModuleType("anatomy_r1.evaluation.generate")
    module.generate_completions = generate_completions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "anatomy_r1.evaluation.generate", module)
    return calls


def test_model_mode_writes_completions_and_rescoring_matches(tmp_path: Path, fake_generate, capsys):
    out = tmp_path / "m"
    args = ["--model", "ckpt", "--data", DATA, "--out", out, "--k", "2", "--greedy", "--limit", "3"]
    assert run(*args, "--template", "compact", "--batch-size", "4", "--max-new-tokens", "64") == 0
    assert fake_generate == [
        {
            "model_path": "ckpt", "ids": ["q1", "q2", "q3"], "k": 2, "greedy": True, "template": "compact",
            "max_new_tokens": 64, "batch_size": 4, "image_root": str(Path(DATA).resolve().parent),
            "temperature": 1.0, "seed": 0, "dtype": "fp32", "progress": True,
            "min_pixels": None, "max_pixels": None,
        }
    ]  # fmt: skip
    rows = read_jsonl(out / "completions.jsonl")
    assert len(rows) == 9 and {r["kind"] for r in rows} == {"sampled", "greedy"}
    m = json.loads((out / "metrics.json").read_text())
    # a model of no run: what was given is "flag", the rest the command's default
    settings = m.pop("settings")
    assert settings["template"] == {"value": "compact", "from": "flag"}
    assert settings["max_new_tokens"] == {"value": 64, "from": "flag"}
    assert settings["dtype"] == {"value": "fp32", "from": "default"}
    assert settings["k"] == 2 and settings["greedy"] is True and settings["batch_size"] == 4
    assert m["n"] == 3 and m["avg_at_k"] == pytest.approx(0.5) and m["invalid_rate"] == pytest.approx(0.5)
    assert m["greedy_accuracy"] == pytest.approx(1 / 3)
    items = read_jsonl(out / "items.jsonl")
    assert len(items) == 9 and items[-1] == row("q3", "A", False, "greedy")
    # completions.jsonl is itself a predictions file; re-scoring it reproduces the metrics exactly.
    data3 = tmp_path / "data3.jsonl"
    data3.write_text(
        "".join(DATA.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8"
    )
    again = tmp_path / "again"
    assert run("--predictions", out / "completions.jsonl", "--data", data3, "--out", again) == 0
    assert json.loads((again / "metrics.json").read_text()) == m
    assert read_jsonl(again / "items.jsonl") == items


def test_model_mode_argument_checks(tmp_path: Path, fake_generate, capsys):
    out = tmp_path / "m"
    for extra, message in (
        (["--k", "0"], "--k must be at least 1"),
        (["--template", "nope"], "unknown prompt template"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--temperature", "0"], "--temperature must be positive"),
    ):
        assert run("--model", "ckpt", "--data", DATA, "--out", out, *extra) == 2
        assert message in capsys.readouterr().err
    assert fake_generate == [] and not out.exists()
    assert run("--model", "ckpt", "--data", DATA, "--out", out, "--k", "0", "--greedy") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["greedy_accuracy"] == pytest.approx(1 / 5)  # greedy "A" is right only for q2
    assert m["avg_at_k"] is None and m["k"] == 0


def test_completion_rows_round_trip():
    assert completion_rows({"a": ["x", "y"]}, {"a": "z"}) == [
        {"id": "a", "completion": "x", "kind": "sampled"},
        {"id": "a", "completion": "y", "kind": "sampled"},
        {"id": "a", "completion": "z", "kind": "greedy"},
    ]
