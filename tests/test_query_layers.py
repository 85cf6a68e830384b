"""Questions through a fine-tuned copy of e5's top layers (``Int8Embedder.question_vectors``, used by
``scripts/train_query_layers.py``): documents keep their vectors, only the question's path changes."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def e5():
    from rag.embedding import E5Int8Embedder

    return E5Int8Embedder()


@pytest.mark.slow
def test_question_path_with_e5s_own_layers_is_e5s_question_vector(e5, tmp_path):
    """With e5's own weights in the copy, a question's vector is the one the encoder gives it (the
    layer-8 states, the copy's wiring and the mean over the tokens are right), long questions too."""
    from rag.embedding.st_folder import read_encoder

    _, tensors, prefix = read_encoder(e5._path)
    own = {k[len(prefix):]: np.asarray(v, np.float32) for k, v in tensors.items()
           if k.startswith(prefix + "encoder.layer.") and int(k[len(prefix):].split(".")[2]) >= 9}
    np.savez(tmp_path / "own.npz", **own)
    questions = ["江岸签约了哪些项目？", "长江生态环保产业联盟是什么时候、由谁牵头组建的？" * 40]
    mine = e5.question_vectors(questions, tmp_path / "own.npz")
    plain = e5.embed_queries(questions)
    assert mine.shape == plain.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    assert (mine * plain).sum(1).min() > 0.99  # int8 both ways, quantized separately
    moved = dict(own)
    name = "encoder.layer.11.output.dense.weight"
    moved[name] = own[name] + np.random.default_rng(0).normal(0, 0.05, own[name].shape).astype(np.float32)
    np.savez(tmp_path / "moved.npz", **moved)
    assert (e5.question_vectors(questions, tmp_path / "moved.npz") * plain).sum(1).max() < 0.99  # the copy is what runs
