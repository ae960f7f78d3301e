"""Similarity backends: spec parsing, caching, the plain-encoder path, and matrices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from anatomy_r1.curriculum.encoders import EmbeddingBackend, HFMeanPoolingBackend, minilm_path
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data import vocab
from anatomy_r1.errors import ConfigError, DataError


def test_minilm_similarity_ranks_near_synonyms_above_unrelated(minilm) -> None:
    m = minilm.similarity_matrix(["cystic duct", "common bile duct", "banana"])
    assert m.shape == (3, 3)
    assert np.allclose(np.diag(m), 1.0, atol=1e-5)
    assert np.allclose(m, m.T, atol=1e-6)
    assert m[0, 1] > m[0, 2] + 0.2
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_embedding_cache_encodes_each_string_once(minilm) -> None:
    assert isinstance(minilm, EmbeddingBackend)
    texts = ["Liver", "Gallbladder", " Liver ", "Omentum", "Gallbladder"] * 50
    minilm.embed(texts)
    before = minilm.encoded_count
    e = minilm.embed(texts)
    assert minilm.encoded_count == before  # all cached: nothing re-encoded
    assert e.shape[0] == len(texts)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e[0], e[2])  # surrounding space does not make a new string


def test_plain_hf_encoder_folder_uses_mean_pooling(tmp_path: Path, minilm) -> None:
    """A folder without sentence-transformers config is read with mean pooling and matches MiniLM."""
    src = minilm_path()
    for f in src.iterdir():
        if f.is_file() and f.name not in (
            "modules.json",
            "config_sentence_transformers.json",
            "sentence_bert_config.json",
        ):
            (tmp_path / f.name).symlink_to(f)
    backend = get_backend(f"st:{tmp_path}")
    assert isinstance(backend, HFMeanPoolingBackend)
    texts = ["cystic artery", "blood vessel", "omentum"]
    assert np.allclose(backend.similarity_matrix(texts), minilm.similarity_matrix(texts), atol=1e-4)


def test_bad_specs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown similarity backend"):
        get_backend("word2vec")
    with pytest.raises(ConfigError, match="not found"):
        get_backend(f"st:{tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="neither"):
        get_backend(f"st:{tmp_path}")
    with pytest.raises(ConfigError, match="needs a file"):
        get_backend("matrix:")


def test_matrix_prior_matches_vocab() -> None:
    b = get_backend("matrix:prior")
    assert b.similarity("Gallbladder", "Cystic Plate") == pytest.approx(
        vocab.class_similarity("gallbladder", "cystic_plate")
    )
    assert b.similarity("liver", "FLUID") == pytest.approx(vocab.DEFAULT_SIMILARITY)


def _write_json(path: Path, labels: list, matrix: list) -> Path:
    path.write_text(json.dumps({"labels": labels, "matrix": matrix}), encoding="utf-8")
    return path


def test_matrix_json_and_csv_files(tmp_path: Path) -> None:
    j = _write_json(
        tmp_path / "m.json",
        ["Liver", "gallbladder", "omentum"],
        [[1, 0.6, 0.1], [0.6, 1, 0.2], [0.1, 0.2, 1]],
    )
    c = tmp_path / "m.csv"
    c.write_text(
        ",liver,gallbladder,omentum\nomentum,0.1,0.2,1\nliver,1,0.6,0.1\ngallbladder,0.6,1,0.2\n",
        encoding="utf-8",
    )
    c2 = tmp_path / "bare.csv"
    c2.write_text("liver,gallbladder,omentum\n1,0.6,0.1\n0.6,1,0.2\n0.1,0.2,1\n", encoding="utf-8")
    texts = ["Gallbladder", "Liver", "Omentum"]
    expected = np.array([[1, 0.6, 0.2], [0.6, 1, 0.1], [0.2, 0.1, 1]])
    for path in (j, c, c2):
        b = get_backend(f"matrix:{path}")
        assert np.allclose(b.similarity_matrix(texts), expected), path


def test_matrix_unknown_option_names_it(tmp_path: Path) -> None:
    b = get_backend("matrix:" + str(_write_json(tmp_path / "m.json", ["liver", "gut"], [[1, 0.2], [0.2, 1]])))
    with pytest.raises(DataError, match=r"'Spleen'.*not in the similarity matrix"):
        b.similarity_matrix(["Liver", "Spleen"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"labels": ["a", "b"], "matrix": [[1, 0.5]]}, "square"),
        ({"labels": ["a", "b", "c"], "matrix": [[1, 0.5], [0.5, 1]]}, "3 labels but a 2x2"),
        ({"labels": ["a", "b"], "matrix": [[1, 0.5], [0.4, 1]]}, "not symmetric"),
        ({"labels": ["a", "b"], "matrix": [[1, 2.0], [2.0, 1]]}, r"\[-1, 1\]"),
        ({"labels": ["a", "b"], "matrix": [[1, "x"], ["x", 1]]}, "non-number"),
        ({"labels": ["a", "A"], "matrix": [[1, 0.5], [0.5, 1]]}, "duplicate label"),
        ({"labels": ["a", "b"]}, "expected an object"),
    ],
)
def test_matrix_json_errors(tmp_path: Path, content: dict, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError, match=message):
        get_backend(f"matrix:{p}")


def test_matrix_csv_and_file_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(",a,b\na,1,0.5\nb,0.5,oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:3: 'oops' is not a number"):
        get_backend(f"matrix:{p}")
    p.write_text(",a,b\na,1,0.5\nc,0.5,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="no row for b"):
        get_backend(f"matrix:{p}")
    p.write_text("a,b\n1,0.5\n", encoding="utf-8")
    with pytest.raises(DataError, match="square"):
        get_backend(f"matrix:{p}")
    with pytest.raises(DataError, match="not found"):
        get_backend(f"matrix:{tmp_path / 'missing.json'}")
    (tmp_path / "broken.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON"):
        get_backend(f"matrix:{tmp_path / 'broken.json'}")
