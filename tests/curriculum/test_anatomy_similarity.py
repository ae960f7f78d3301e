"""The ``anatomy`` backend: prior values kept, real labels placed by the anatomy table, encoder fallback."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from anatomy_r1.curriculum.anatomy_similarity import AnatomySimilarity, table_similarity
from anatomy_r1.curriculum.anatomy_taxonomy import AnatomyTaxonomy, clean_text, path_similarity
from anatomy_r1.curriculum.encoders import EmbeddingBackend
from anatomy_r1.curriculum.similarity import DEFAULT_BACKEND, get_backend
from anatomy_r1.data import vocab
from anatomy_r1.errors import ConfigError, DataError


class HashEncoder(EmbeddingBackend):
    """A stand-in encoder: a fixed random unit vector per string, and a log of what it was asked."""

    spec = "hash"

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) for t in texts]
        return np.asarray(rows, dtype=np.float32)


class NoEncoder(EmbeddingBackend):
    """An encoder that must not be needed."""

    spec = "none"

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise AssertionError(f"the encoder was asked about {texts}")


PRIOR_NAMES = [vocab.display_name(label) for label in vocab.ANATOMY_LABELS]


def test_prior_pairs_keep_the_prior_values_without_an_encoder() -> None:
    backend = AnatomySimilarity(NoEncoder())
    got = backend.similarity_matrix(PRIOR_NAMES)
    want = get_backend("matrix:prior").similarity_matrix(PRIOR_NAMES)
    assert np.array_equal(got, want)
    # Spelling does not take a prior label out of the prior: case, a full stop, a plural-free alias.
    assert backend.similarity("gallbladder.", "CYSTIC PLATE") == pytest.approx(0.75)
    assert backend.similarity("Gall bladder", "Cystic Plate") == pytest.approx(0.75)


def test_shared_words_do_not_make_prior_labels_alike() -> None:
    backend = AnatomySimilarity(NoEncoder())
    plate_duct = backend.similarity("Cystic Plate", "Cystic Duct")
    gallbladder_plate = backend.similarity("Gallbladder", "Cystic Plate")
    assert plate_duct == pytest.approx(vocab.class_similarity("cystic_plate", "cystic_duct"))
    assert gallbladder_plate > plate_duct + 0.3
    assert backend.similarity("Omentum", "Gut") == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Ulna.", "ulna"),
        ("Lungs.", "lung"),
        ("Prostate (for males)", "prostate"),
        ("Costovertebral Junction", "costovertebral"),
        ("Pubic Symphysial Junction", "pubic_symphysis"),
        ("Right Eye", "eye/right"),
        ("Breast Tissue", "breast/tissue"),
        ("Intestinal tissue", "intestine/tissue"),
        ("Hepatic cyst", "liver/cyst"),
        ("Liver cyst", "liver/cyst"),
        ("Fibroadenoma of the breast", "breast/fibroadenoma"),
        ("Left Ventricular Chamber", "left_ventricle/chamber"),
        ("Enlarged lymph node", "lymph_node/enlarged"),
        ("Hand and wrist region", "hand"),
        ("First Metacarpophalangeal.", "metacarpophalangeal/first"),
        ("Circulatory system", "cardiovascular"),
        ("B-cells", "b_lymphocyte"),
        ("Red blood cells", "erythrocyte"),
        ("Testes", "testis"),
    ],
)
def test_real_data_spellings_find_their_place(text: str, key: str) -> None:
    node = AnatomyTaxonomy.packaged().resolve(text)
    assert node is not None and node.key == key


def test_table_rule_on_a_small_table() -> None:
    """Closest relation in either tree, Wu-Palmer depth ratio, mapped onto [prior floor, 1]."""
    t = AnatomyTaxonomy.from_text(
        "label,system,location,aliases\n"
        "# a comment line\n"
        "kidney,urinary/kidney,abdomen/retro/kidney,renal\n"
        "adrenal_gland,endocrine/adrenal_gland,abdomen/retro/adrenal_gland,adrenal\n"
        "bladder,urinary/bladder,pelvis/bladder,\n"
        "brain,nervous/brain,head/brain,\n"
        "neutrophil,blood/cell/neutrophil,,\n",
        "tiny.csv",
    )
    names = ("Kidneys", "Adrenal gland", "Bladder", "Brain", "Neutrophils")
    kidney, adrenal, bladder, brain, neutrophil = (t.resolve(x) for x in names)
    assert None not in (kidney, adrenal, bladder, brain, neutrophil)
    floor = vocab.DEFAULT_SIMILARITY
    # Same region down to the retroperitoneum, different systems: 2 * 2 / (3 + 3).
    assert table_similarity(kidney, adrenal) == pytest.approx(floor + (1 - floor) * 4 / 6)
    # Same system, different regions: 2 * 1 / (2 + 2).
    assert table_similarity(kidney, bladder) == pytest.approx(floor + (1 - floor) * 0.5)
    # Nothing shared, or no location at all: the prior's value for unrelated labels.
    assert table_similarity(kidney, brain) == pytest.approx(floor)
    assert table_similarity(kidney, neutrophil) == pytest.approx(floor)
    assert table_similarity(kidney, t.resolve("renal")) == 1.0
    # A derived child sits one level below its parent in both trees.
    stone = t.resolve("Renal stone")
    assert stone is not None and stone.derived and stone.key == "kidney/stone"
    assert table_similarity(kidney, stone) == pytest.approx(floor + (1 - floor) * 2 * 3 / 7)
    assert path_similarity(("a", "b"), ()) == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("label,system,location,aliases\nliver,digestive/gut,abdomen/liver,\n", r"tiny.csv:2: system path"),
        ("label,system,location,aliases\nliver,,,hepatic\ngut,,,hepatic\n", r"tiny.csv:3: alias 'hepatic'"),
        ("label,system,location,aliases\nliver,,,\nliver,,,\n", r"tiny.csv:3: label 'liver' already"),
        ("label,system,location,aliases\nLiver,,,\n", r"tiny.csv:2: label 'Liver'"),
        ("label,system,aliases\n", "header"),
        ("label,system,location,aliases\nliver,,\n", r"tiny.csv:2: expected 4 cells"),
    ],
)
def test_table_errors_name_the_line(body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        AnatomyTaxonomy.from_text(body, "tiny.csv")


def test_packaged_table_is_consistent() -> None:
    t = AnatomyTaxonomy.packaged()
    for label in vocab.ANATOMY_LABELS:  # the prior's labels are in the table, so mixed pairs have a value
        node = t.resolve(label)
        assert node is not None and not node.derived, label
    for name, node in t.names.items():  # every alias leads back to its own row, not to a derived node
        assert t.resolve(name.replace("_", " ")) is node, name
    for node in t.rows.values():
        assert node.system or node.location or node.key == "fluid", node.key


def test_unknown_labels_fall_back_to_the_calibrated_encoder() -> None:
    enc = HashEncoder()
    backend = AnatomySimilarity(enc)
    texts = ["Staining artifact.", "Liver", "Kidney", "Virus particles"]
    assert [backend.match(t).source for t in texts] == ["encoder", "prior", "table", "encoder"]
    m = backend.similarity_matrix(texts)
    cal = backend.calibration
    assert cal.n_pairs == len(backend.taxonomy.rows) * (len(backend.taxonomy.rows) - 1) // 2
    emb = enc.embed([clean_text(t) for t in texts])
    cosine = emb @ emb.T
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]:
        assert m[i, j] == pytest.approx(float(cal(np.array([cosine[i, j]]))[0]), abs=1e-6), (i, j)
    assert m[1, 2] == pytest.approx(0.46)  # liver / kidney: the table, not the encoder
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    # The map is monotone and stays on the table's scale.
    grid = np.linspace(-1, 1, 201)
    mapped = cal(grid)
    assert np.all(np.diff(mapped) >= 0)
    assert mapped.min() >= vocab.DEFAULT_SIMILARITY - 1e-9 and mapped.max() <= 1.0
    asked = set(enc.asked)
    assert "staining artifact" in asked and "virus particles" in asked


def test_real_encoder_fallback_orders_unknown_pairs(minilm) -> None:
    backend = AnatomySimilarity(minilm)
    alike = backend.similarity("Cancer cells", "Tumor cells")
    unlike = backend.similarity("Cancer cells", "Sweat")
    assert alike > unlike
    assert vocab.DEFAULT_SIMILARITY <= unlike <= alike <= 1.0


def test_spec_default_and_caching() -> None:
    assert DEFAULT_BACKEND == "anatomy"
    b = get_backend(None)
    assert isinstance(b, AnatomySimilarity) and b.spec == "anatomy"
    assert get_backend("anatomy") is b  # kept per process, like the encoder it falls back to
    assert get_backend("anatomy", cached=False) is not b
    with pytest.raises(ConfigError, match="text encoder"):
        get_backend("anatomy:matrix:prior")
    assert b.unscorable(["Anything at all", "Liver"]) == {}


def test_known_labels_never_build_the_encoder(tmp_path: Path) -> None:
    """Only a pair with an unknown label builds the encoder: here a missing folder, refused when built."""
    backend = get_backend(f"anatomy:st:{tmp_path / 'no-model-here'}", cached=False)
    m = backend.similarity_matrix(["Liver", "Gallbladder", "Kidney", "Right Eye", "Ulna."])
    assert m.shape == (5, 5)
    with pytest.raises(ConfigError, match="encoder folder not found"):
        backend.similarity_matrix(["Liver", "Staining artifact"])


def test_texts_outside_the_table_stay_distinct_answers() -> None:
    backend = AnatomySimilarity(HashEncoder())
    m = backend.similarity_matrix(["肝脏", "肾脏", "?", "!"])
    assert [backend.match(t).key for t in ("肝脏", "?")] == ["肝脏", "?"]
    assert m[0, 1] < 1.0 and m[2, 3] < 1.0
