"""The encoder of a BERT or XLM-R sentence-transformers folder written as a float32 ONNX graph.

This module owns onnx. The graph takes the summed embeddings of one window (tokens x
hidden) and returns the pooled last hidden state; :mod:`rag.embedding.int8_graph` quantizes it.

Example::

    quantize = write_float_graph(folder, tmp / "float.onnx")   # names of the weight MatMuls
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .st_folder import read_encoder

__all__ = ["encoder_graph", "write_float_graph"]


class _Graph:
    """The nodes and weights of an encoder graph as it is written (a node is named after its output)."""

    def __init__(self, tensors: dict[str, np.ndarray], prefix: str, eps: float) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.tensors, self.prefix, self.eps = tensors, prefix, eps
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def t(self, name: str) -> np.ndarray:
        if self.prefix + name not in self.tensors:
            raise EmbedderError(f"model.safetensors has no tensor {self.prefix + name}")
        return np.asarray(self.tensors[self.prefix + name], dtype=np.float32)

    def node(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def split(self, x: str, outs: list[str], name: str, axis: int) -> list[str]:
        self.nodes.append(self.helper.make_node("Split", [x], outs, name=name, axis=axis, num_outputs=len(outs)))
        return outs

    def linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        y = self.node("MatMul", [x, self.const(name + ".w", weight.T)], name + ".mm")  # quantized later
        return self.node("Add", [y, self.const(name + ".b", bias)], name)

    def split_linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """``linear`` whose start- and end-token rows are a MatMul of their own (the same
        weight): their inputs are ~10x larger than every other token's (up to ~55 against
        ~5 after GELU), so one dynamic 8-bit range over all rows would be too coarse."""
        node, w = self.node, self.const(name + ".w", weight.T)
        inner = node("MatMul", [node("Slice", [x, "one_i", "minus_one_i", "axis0"], name + ".inner"), w], name + ".inner.mm")
        ends = node("MatMul", [node("Gather", [x, "ends_i"], name + ".ends", axis=0), w], name + ".ends.mm")
        first, last = self.split(ends, [name + ".first", name + ".last"], name + ".split", axis=0)
        rows = node("Concat", [first, inner, last], name + ".rows", axis=0)
        return node("Add", [rows, self.const(name + ".b", bias)], name)

    def layer_norm(self, x: str, name: str, key: str) -> str:
        g, beta = self.const(name + ".g", self.t(key + ".weight")), self.const(name + ".beta", self.t(key + ".bias"))
        return self.node("LayerNormalization", [x, g, beta], name, axis=-1, epsilon=self.eps)

    def shared_constants(self, hidden: int, heads: int) -> None:
        """The shapes, scalars and indices every layer reads by name."""
        head_dim = hidden // heads
        self.const("heads_shape", np.array([0, heads, head_dim], dtype=np.int64))
        self.const("flat_shape", np.array([0, hidden], dtype=np.int64))
        self.const("scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
        self.const("half", np.array(0.5, dtype=np.float32))
        self.const("one", np.array(1.0, dtype=np.float32))
        self.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
        self.const("axis0", np.array([0], dtype=np.int64))
        self.const("one_i", np.array([1], dtype=np.int64))
        self.const("minus_one_i", np.array([-1], dtype=np.int64))
        self.const("ends_i", np.array([0, -1], dtype=np.int64))

    def layer(self, x: str, i: int) -> str:
        """Encoder layer ``i`` on the token states ``x``: self-attention, then the FFN, each with
        its residual and LayerNorm; returns its output states (``l{i}.ln2``)."""
        node, t, p, k = self.node, self.t, f"l{i}", f"encoder.layer.{i}."
        qkv_w = np.concatenate([t(k + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
        qkv_b = np.concatenate([t(k + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        qkv = self.linear(x, p + ".qkv", qkv_w, qkv_b)
        q, key, v = self.split(qkv, [p + ".q", p + ".k", p + ".v"], p + ".split", axis=1)
        q = node("Transpose", [node("Reshape", [q, "heads_shape"], p + ".q3")], p + ".qt", perm=[1, 0, 2])
        kt = node("Transpose", [node("Reshape", [key, "heads_shape"], p + ".k3")], p + ".kt", perm=[1, 2, 0])
        v = node("Transpose", [node("Reshape", [v, "heads_shape"], p + ".v3")], p + ".vt", perm=[1, 0, 2])
        scores = node("MatMul", [node("Mul", [q, "scale"], p + ".qs"), kt], p + ".scores")
        probs = node("Softmax", [scores], p + ".probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], p + ".ctx3")], p + ".ctxt", perm=[1, 0, 2])
        ctx = node("Reshape", [ctx, "flat_shape"], p + ".ctx")
        attn = self.linear(ctx, p + ".ao", t(k + "attention.output.dense.weight"), t(k + "attention.output.dense.bias"))
        x = self.layer_norm(node("Add", [attn, x], p + ".res1"), p + ".ln1", k + "attention.output.LayerNorm")
        up = self.linear(x, p + ".fi", t(k + "intermediate.dense.weight"), t(k + "intermediate.dense.bias"))
        erf = node("Erf", [node("Mul", [up, "inv_sqrt2"], p + ".gx")], p + ".erf")
        gelu = node("Mul", [node("Mul", [up, "half"], p + ".gh"), node("Add", [erf, "one"], p + ".g1")], p + ".gelu")
        down = self.split_linear(gelu, p + ".fo", t(k + "output.dense.weight"), t(k + "output.dense.bias"))
        return self.layer_norm(node("Add", [down, x], p + ".res2"), p + ".ln2", k + "output.LayerNorm")


def encoder_graph(config: dict, tensors: dict[str, np.ndarray], prefix: str, pooling: str = "mean",
                  states: tuple[int, ...] = (), first_layer: int = 0):
    """The float32 ONNX graph: summed embeddings (tokens x hidden) → mean (or first row, for
    ``pooling="cls"``) of the last hidden states. ``states``: layers whose token states are
    outputs too (``l{i}.ln2``, tokens x hidden), for the answer reader; they add no work.

    With ``first_layer`` > 0, the graph is the encoder's top layers only: it takes the token
    states of layer ``first_layer - 1`` (``states_in``, tokens x hidden) and returns those of the
    last layer (``top``), e.g. the answer reader's fine-tuned copy of e5's top layers."""
    from onnx import TensorProto, helper

    hidden = int(config["hidden_size"])
    g = _Graph(tensors, prefix, float(config.get("layer_norm_eps", 1e-12)))
    g.shared_constants(hidden, int(config["num_attention_heads"]))
    n_layers = int(config["num_hidden_layers"])
    if not 0 <= first_layer < n_layers:
        raise EmbedderError(f"first layer {first_layer} is not one of the model's {n_layers} layers")
    x = g.layer_norm("embeddings", "emb.ln", "embeddings.LayerNorm") if first_layer == 0 else "states_in"
    for i in range(first_layer, n_layers):
        x = g.layer(x, i)

    def tokens_by_hidden(name: str):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["tokens", hidden])

    if first_layer:
        g.node("Identity", [x], "top")
        graph = helper.make_graph(g.nodes, "e5_top_layers", [tokens_by_hidden("states_in")], [tokens_by_hidden("top")], g.inits)
    else:
        if pooling == "cls":
            g.node("Gather", [x, g.const("first", np.array([0], dtype=np.int64))], "pooled", axis=0)
        else:
            g.node("ReduceMean", [x, "axis0"], "pooled", keepdims=1)
        pooled = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, hidden])
        graph = helper.make_graph(g.nodes, "e5_encoder", [tokens_by_hidden("embeddings")],
                                  [pooled] + [tokens_by_hidden(f"l{i}.ln2") for i in states], g.inits)
    # producer_name keeps the old module name: it is part of the graph's bytes
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="rag.e5_onnx", ir_version=10)


def write_float_graph(folder: str | os.PathLike[str], dest: str | os.PathLike[str], pooling: str = "mean",
                      states: tuple[int, ...] = (), first_layer: int = 0,
                      replace: dict[str, np.ndarray] | None = None) -> list[str]:
    """Write the checked float32 graph of the encoder in ``folder`` to ``dest``; returns the
    names of the weight MatMuls to quantize: all of them. The FFN down-projection's input
    (the GELU output) has outliers only in the start and end tokens' rows (up to ~55, every
    other token below ~5), so those two rows get a MatMul, and a dynamic 8-bit range, of their
    own; quantized over all rows at once the vectors fell to cosine 0.9975 with float32, this
    way they keep 0.9991 (docs/benchmarks.md). ``first_layer``: the top layers only
    (:func:`encoder_graph`); ``replace``: tensors (named as in the folder, without its prefix)
    used instead of the folder's, e.g. fine-tuned layers."""
    import onnx

    config, tensors, prefix = read_encoder(Path(folder))
    if replace:
        tensors = {**tensors, **{prefix + k: v for k, v in replace.items()}}
    model = encoder_graph(config, tensors, prefix, pooling, states, first_layer)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(".mm")]
