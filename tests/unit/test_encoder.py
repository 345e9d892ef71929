"""The ONNX graph rapport-models writes against sentence-transformers' own vectors.

tests/data/minilm_reference.npz comes from scripts/encoder_reference.py (torch,
run by hand); here only onnxruntime runs, on the graph built from the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rapport.models import encoder

pytestmark = pytest.mark.unit

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    with np.load(REFERENCE) as data:
        return [str(t) for t in data["texts"]], data["vectors"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encoder.build(tmp_path_factory.mktemp("encoder"), keep_fp32=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # type: ignore[no-any-return]


def test_the_float_graph_is_sentence_transformers(
    built: Path, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, expected = reference
    fp32 = encoder.load(built, graph="encoder_fp32.onnx")
    fp32.one_at_a_time = False  # batched and padded: the mask must hide the padding
    assert cosines(fp32.encode(texts), expected).min() >= 0.99999
    one_by_one = np.concatenate([fp32.encode([t]) for t in texts])
    assert cosines(one_by_one, expected).min() >= 0.99999


def test_the_int8_graph_stays_close_and_is_batch_independent(
    built: Path, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, expected = reference
    int8 = encoder.load(built)
    vectors = int8.encode(texts)
    found = cosines(vectors, expected)
    assert found.mean() >= 0.99
    assert found.min() >= 0.96
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a text's vector does not depend on the texts beside it
    np.testing.assert_array_equal(int8.encode(texts[3:4]), vectors[3:4])
    np.testing.assert_array_equal(encoder.encode_many(int8, texts, batch=7), vectors)


def test_tokens_are_truncated_and_padded(built: Path) -> None:
    model = encoder.load(built)
    ids, mask = model.tokens(["hello world", "word " * 600])
    assert ids.shape == mask.shape == (2, encoder.MAX_TOKENS)
    assert mask[0].sum() == 4  # [CLS] hello world [SEP]
    assert (ids[0][mask[0] == 0] == 0).all()
