"""Answer-span candidates of a sentence and their features, computed with numpy for the reader.

Everything here works on the *folded* sentence (Simplified script, half-width, lower case) that has
the same length as the original, so a candidate's offsets are offsets into the original text.
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np

from ...asked import QUESTION_WORDS
from ...query import Query
from ...text import pos_tag, to_simplified

__all__ = ["QuestionInfo", "SentenceCandidates", "question_info", "sentence_candidates", "aligned_fold",
           "FEATURE_NAMES", "QTYPES", "word_hash", "apply_lexical", "LEX_SIZE", "LEX_TABLES"]

# --- question --------------------------------------------------------------------------------------
# the question's type: the first of rag.asked.QUESTION_WORDS that matches, numbered in this order
QTYPES = ("none", "time", "number", "person", "place", "list", "thing", "reason", "how", "yesno")
_WH_RE = [(t, re.compile(p)) for t, p in QUESTION_WORDS]
_PUNCT = set("，,；;：:。！？!?、（）()《》「」『』“”\"'‘’【】[]…—-·．. \t\n\u3000")
_CLAUSE_PUNCT = set("，,；;：:。！？!?\n")
_OPEN = set("《「『“‘（(【[")
_CLOSE = set("》」』”’）)】]")
_NUMERAL = set("0123456789一二三四五六七八九十百千万亿两零〇")
_STOP_CHARS = set("的了是在和与及或也都而并就又其之于对把被从向为以等着过这那该此有吗呢吧啊呀")

_DATE_RE = re.compile(r"(?:公元前?|西元前?)?\d{1,4}年(?:\d{1,2}月(?:\d{1,2}日)?)?|\d{1,2}月\d{1,2}日|\d{1,2}世纪(?:\d0年代)?|"
                      r"[一二三四五六七八九十〇零]{2,4}年|\d{4}-\d{1,2}(?:-\d{1,2})?")
_AMOUNT_RE = re.compile(r"(?:约|近|超过|逾)?\d[\d,.]*(?:多|余)?(?:万|亿|千|百)?(?:亿|万)?"
                        r"(?:%|‰|[^\W\d\s，。、；：]{0,3})")
_BOOK_RE = re.compile(r"《[^》]{1,40}》|“[^”]{1,40}”|「[^」]{1,40}」|『[^』]{1,40}』|\"[^\"]{1,40}\"")
_ENDS_TIME_UNIT = set("年月日纪代期朝时")
LEX_SIZE = 1 << 14  # hashed word-table rows per question type


def aligned_fold(text: str) -> str:
    """Simplified script, NFKC width folding and lower case, keeping the length of ``text``
    (a character whose folding changes the length is kept as it is)."""
    simp = to_simplified(text)
    if len(simp) != len(text):
        simp = "".join(c2 if len(c2 := to_simplified(c)) == 1 else c for c in text)
    nf = unicodedata.normalize("NFKC", simp)
    if len(nf) != len(simp):
        nf = "".join(n if len(n := unicodedata.normalize("NFKC", c)) == 1 else c for c in simp)
    low = nf.lower()
    return low if len(low) == len(nf) else nf


def word_hash(word: str, size: int) -> int:
    return zlib.crc32(word.encode("utf-8")) % size


@dataclass(frozen=True)
class QuestionInfo:
    """What the features need of a question, computed once per question."""

    text: str  # folded question
    qtype: int
    left: str  # the question before its interrogative word
    right: str  # after it
    wh_noun: str  # the word after the interrogative (哪两个公司 → 公司), or ''
    bigrams: frozenset[str]
    left_bigrams: frozenset[str]
    right_bigrams: frozenset[str]
    chars: frozenset[str]
    content_words: tuple[str, ...] = field(default_factory=tuple)


def _bigrams(text: str) -> frozenset[str]:
    return frozenset(text[i:i + 2] for i in range(len(text) - 1)
                     if text[i] not in _PUNCT and text[i + 1] not in _PUNCT)


def question_info(question: Query) -> QuestionInfo:
    q = aligned_fold(question.text)
    qtype, span = 0, None
    for name, pattern in _WH_RE:
        m = pattern.search(q)
        if m:
            qtype, span = QTYPES.index(name), (m.start(), m.end())
            break
    if span is None:
        left, right, wh_noun = q.rstrip("？?。!！ "), "", ""
    else:
        left, right = q[:span[0]], q[span[1]:].rstrip("？?。!！ ")
        wh_noun = ""
        words = [w for w, _ in pos_tag(right)] if right else []
        for w in words[:2]:
            if w not in _STOP_CHARS and not (set(w) & _PUNCT) and not w.isdigit():
                wh_noun = w
                break
    content = tuple(w for w in question.content_words if len(w) >= 2)
    lb, rb = _bigrams(left), _bigrams(right)
    return QuestionInfo(
        text=q, qtype=qtype, left=left, right=right, wh_noun=wh_noun,
        bigrams=lb | rb, left_bigrams=lb, right_bigrams=rb,
        chars=frozenset(c for c in left + right if c not in _PUNCT and c not in _STOP_CHARS),
        content_words=content,
    )


# --- POS and character classes ---------------------------------------------------------------------
_POS = ["?", "n", "nr", "ns", "nt", "nz", "nrt", "ng", "nrfg", "v", "vn", "vd", "a", "ad", "an", "d", "m", "mq",
        "q", "t", "r", "p", "c", "u", "uj", "ul", "uz", "f", "s", "x", "eng", "l", "i", "j", "b", "z", "y", "k",
        "zg", "tg", "ug", "df", "h", "o", "e", "g"]
_POS_ID = {p: i for i, p in enumerate(_POS)}


def _char_class(c: str) -> int:
    if c in "，,；;：:":
        return 4
    if c in "。！？!?\n":
        return 5
    if c in _OPEN:
        return 6
    if c in _CLOSE:
        return 7
    if c == "、":
        return 8
    if c.isdigit():
        return 2
    if c.isascii() and c.isalpha():
        return 3
    if "\u3400" <= c <= "\u9fff":
        return 1
    return 9


FEATURE_NAMES = [
    "qtype", "len_chars", "len_words", "n_digits", "n_numerals", "n_dun", "q_bi_in", "q_char_frac",
    "qb_l4", "qb_l10", "qb_left", "qb_r4", "qb_r10", "qb_right",
    "ql_l10", "ql_left", "ql_right", "qr_r10", "qr_right", "qr_left",
    "d_qb_left", "d_qb_right", "d_ql_left", "d_qr_right",
    "pos_first", "pos_last", "pos_prev", "pos_next", "cc_prev", "cc_next", "cc_first", "cc_last",
    "word_start", "word_end",
    "is_date", "has_year", "ends_time_unit", "is_amount", "has_percent", "is_book", "ends_deng", "starts_numeral",
    "n_nr", "n_ns", "n_nt", "n_m", "n_t", "n_noun", "n_verb",
    "wh_in", "wh_end", "wh_lastchar", "wh_after",
    "sent_cov", "sent_rank", "given_rank", "passage", "sent_len", "rel_pos", "sent_words_cov", "cw_in_span",
    "whole_clause", "multi_clause", "clause_qb", "source",
    "suffix_ql", "prefix_qr", "clause_len", "lex_first", "lex_last", "lex_prev", "lex_next",
    "dun_clause", "dun_outside", "sent_cov_gap", "sent_align", "sent_align_gap", "span_align",
]
NF = len(FEATURE_NAMES)
_F = {n: i for i, n in enumerate(FEATURE_NAMES)}


@dataclass
class SentenceCandidates:
    """Candidate spans ``(start, end)`` (offsets in the sentence) and their feature rows."""

    spans: np.ndarray  # (n, 2) int
    features: np.ndarray  # (n, NF) float32
    sentence_coverage: float
    word_keys: np.ndarray  # (n, 4) int64: hashed first / last / previous / next word, per question type


def _prefix(ind: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(ind)]).astype(np.int32)


def _count(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(P) - 1
    a = np.clip(a, 0, n)
    b = np.clip(b, 0, n)
    return np.where(b > a, P[b] - P[a], 0)


def _bigram_ind(s: str, grams: frozenset[str]) -> np.ndarray:
    return np.fromiter((s[i:i + 2] in grams for i in range(len(s))), dtype=bool, count=len(s))


def _nearest(ind: np.ndarray, L: int):
    """For every x in 0..L: end of the last marked bigram ending at or before x, and start of the
    first marked bigram starting at or after x (-1000 / L+1000 when none)."""
    pos = np.flatnonzero(ind)
    xs = np.arange(L + 1)
    ends = pos + 2
    i = np.searchsorted(ends, xs, side="right") - 1
    last_end = np.where(i >= 0, ends[np.clip(i, 0, max(len(ends) - 1, 0))] if len(ends) else -1000, -1000)
    j = np.searchsorted(pos, xs, side="left")
    first_start = np.where(j < len(pos), pos[np.clip(j, 0, max(len(pos) - 1, 0))] if len(pos) else L + 1000,
                           L + 1000)
    return last_end, first_start


def _spans(s: str, words: list[str], starts: np.ndarray, ends: np.ndarray, max_words: int, max_chars: int):
    """Word spans inside clauses, list spans, pattern spans and clause spans: (a, b, source)."""
    out: dict[tuple[int, int], int] = {}
    n = len(words)
    is_punct = [all(c in _PUNCT for c in w) or not w.strip() for w in words]
    clause_of = np.zeros(n, dtype=np.int32)
    clauses: list[tuple[int, int]] = []  # word index ranges
    c0, cid = 0, 0
    for i, w in enumerate(words):
        clause_of[i] = cid
        if any(ch in _CLAUSE_PUNCT for ch in w):
            clauses.append((c0, i + 1))
            c0, cid = i + 1, cid + 1
    if c0 < n:
        clauses.append((c0, n))
    for ca, cb in clauses:
        for i in range(ca, cb):
            w = words[i]
            if is_punct[i] and not (w[0] in _OPEN):
                continue
            for j in range(i, min(cb, i + max_words)):
                if ends[j] - starts[i] > max_chars:
                    break
                wj = words[j]
                if is_punct[j] and not (wj[-1] in _CLOSE):
                    continue
                out.setdefault((int(starts[i]), int(ends[j])), 0)
        # a list "A、B、C等N个X": from a word before the first 、 to a word after the last
        dun = [k for k in range(ca, cb) if words[k] == "、"]
        if dun:
            first, last = dun[0], dun[-1]
            for i in range(max(ca, first - 6), first):
                if is_punct[i] and words[i][0] not in _OPEN:
                    continue
                for j in range(last + 1, min(cb, last + 16)):
                    if is_punct[j] and words[j][-1] not in _CLOSE:
                        continue
                    if ends[j] - starts[i] <= 120:
                        out.setdefault((int(starts[i]), int(ends[j])), 2)
    # whole clauses and runs of clauses (long answers)
    cs = []
    for ca, cb in clauses:
        a, b = int(starts[ca]), int(ends[cb - 1])
        while b > a and s[b - 1] in _PUNCT and s[b - 1] not in _CLOSE:
            b -= 1
        while a < b and s[a] in _PUNCT and s[a] not in _OPEN:
            a += 1
        if b > a:
            cs.append((a, b))
    for x in range(len(cs)):
        for y in range(x, min(len(cs), x + 4)):
            if cs[y][1] - cs[x][0] > 80:
                break
            out.setdefault((cs[x][0], cs[y][1]), 3 if y > x else 0)
    for pattern in (_DATE_RE, _AMOUNT_RE, _BOOK_RE):
        for m in pattern.finditer(s):
            if m.end() > m.start():
                out.setdefault((m.start(), m.end()), 1)
    return out, clause_of, clauses


def sentence_candidates(sentence: str, q: QuestionInfo, *, sent_rank: int, given_rank: int, passage: int,
                        lex: dict[str, np.ndarray] | None = None, max_words: int = 12,
                        max_chars: int = 40) -> SentenceCandidates:
    """Candidates of one sentence (original text; folded here) and their features."""
    s = aligned_fold(sentence)
    L = len(s)
    tagged = pos_tag(s)
    if sum(len(w) for w, _ in tagged) != L:  # never seen; keep offsets right regardless
        tagged = [(c, "x" if c in _PUNCT else "?") for c in s]
    words = [w for w, _ in tagged]
    flags = [f for _, f in tagged]
    lens = np.array([len(w) for w in words], dtype=np.int32)
    ends = np.cumsum(lens)
    starts = ends - lens
    cand, clause_of, clauses = _spans(s, words, starts, ends, max_words, max_chars)
    if not cand:
        return SentenceCandidates(np.zeros((0, 2), np.int32), np.zeros((0, NF), np.float32), 0.0,
                                  np.zeros((0, 4), np.int64))
    keys = list(cand)
    A = np.array([k[0] for k in keys], dtype=np.int32)
    B = np.array([k[1] for k in keys], dtype=np.int32)
    source = np.array([cand[k] for k in keys], dtype=np.float32)
    n = len(A)
    X = np.zeros((n, NF), dtype=np.float32)
    F = _F
    # character-level arrays
    word_at = np.repeat(np.arange(len(words)), lens)  # word index of each char
    WA, WB = word_at[A], word_at[B - 1]
    isdig = np.fromiter((c.isdigit() for c in s), bool, L)
    isnum = np.fromiter((c in _NUMERAL for c in s), bool, L)
    isdun = np.fromiter((c == "、" for c in s), bool, L)
    inq = np.fromiter((c in q.chars for c in s), bool, L)
    qb, ql, qr = _bigram_ind(s, q.bigrams), _bigram_ind(s, q.left_bigrams), _bigram_ind(s, q.right_bigrams)
    Pqb, Pql, Pqr = _prefix(qb), _prefix(ql), _prefix(qr)
    X[:, F["qtype"]] = q.qtype
    X[:, F["len_chars"]] = B - A
    X[:, F["len_words"]] = WB - WA + 1
    X[:, F["n_digits"]] = _count(_prefix(isdig), A, B)
    X[:, F["n_numerals"]] = _count(_prefix(isnum), A, B)
    X[:, F["n_dun"]] = _count(_prefix(isdun), A, B)
    X[:, F["q_bi_in"]] = _count(Pqb, A, B - 1)
    X[:, F["q_char_frac"]] = _count(_prefix(inq), A, B) / np.maximum(B - A, 1)
    X[:, F["qb_l4"]] = _count(Pqb, A - 4, A - 1)
    X[:, F["qb_l10"]] = _count(Pqb, A - 10, A - 1)
    X[:, F["qb_left"]] = _count(Pqb, 0 * A, A - 1)
    X[:, F["qb_r4"]] = _count(Pqb, B, B + 3)
    X[:, F["qb_r10"]] = _count(Pqb, B, B + 9)
    X[:, F["qb_right"]] = _count(Pqb, B, 0 * B + L)
    X[:, F["ql_l10"]] = _count(Pql, A - 10, A - 1)
    X[:, F["ql_left"]] = _count(Pql, 0 * A, A - 1)
    X[:, F["ql_right"]] = _count(Pql, B, 0 * B + L)
    X[:, F["qr_r10"]] = _count(Pqr, B, B + 9)
    X[:, F["qr_right"]] = _count(Pqr, B, 0 * B + L)
    X[:, F["qr_left"]] = _count(Pqr, 0 * A, A - 1)
    le, _ = _nearest(qb, L)
    _, fs = _nearest(qb, L)
    X[:, F["d_qb_left"]] = np.minimum(A - le[A], 100)
    X[:, F["d_qb_right"]] = np.minimum(fs[B] - B, 100)
    le, _ = _nearest(ql, L)
    _, fs = _nearest(qr, L)
    X[:, F["d_ql_left"]] = np.minimum(A - le[A], 100)
    X[:, F["d_qr_right"]] = np.minimum(fs[B] - B, 100)
    pos_ids = np.array([_POS_ID.get(f, 0) for f in flags], dtype=np.float32)
    X[:, F["pos_first"]] = pos_ids[WA]
    X[:, F["pos_last"]] = pos_ids[WB]
    X[:, F["pos_prev"]] = np.where(WA > 0, pos_ids[np.maximum(WA - 1, 0)], -1)
    X[:, F["pos_next"]] = np.where(WB + 1 < len(words), pos_ids[np.minimum(WB + 1, len(words) - 1)], -1)
    cc = np.array([_char_class(c) for c in s], dtype=np.float32)
    X[:, F["cc_prev"]] = np.where(A > 0, cc[np.maximum(A - 1, 0)], 0)
    X[:, F["cc_next"]] = np.where(B < L, cc[np.minimum(B, L - 1)], 0)
    X[:, F["cc_first"]] = cc[A]
    X[:, F["cc_last"]] = cc[B - 1]
    X[:, F["word_start"]] = starts[WA] == A
    X[:, F["word_end"]] = ends[WB] == B
    texts = [s[a:b] for a, b in zip(A.tolist(), B.tolist())]
    X[:, F["is_date"]] = [bool(_DATE_RE.fullmatch(t)) for t in texts]
    X[:, F["has_year"]] = [bool(_DATE_RE.search(t)) for t in texts]
    X[:, F["ends_time_unit"]] = [t[-1] in _ENDS_TIME_UNIT for t in texts]
    X[:, F["is_amount"]] = [bool(_AMOUNT_RE.fullmatch(t)) for t in texts]
    X[:, F["has_percent"]] = ["%" in t or "百分之" in t for t in texts]
    X[:, F["is_book"]] = [bool(_BOOK_RE.fullmatch(t)) for t in texts]
    X[:, F["ends_deng"]] = [t.endswith("等") or "等" in t[-6:-1] for t in texts]
    X[:, F["starts_numeral"]] = isnum[A]
    for name, tags in (("n_nr", ("nr", "nrt", "nrfg")), ("n_ns", ("ns",)), ("n_nt", ("nt",)), ("n_m", ("m", "mq")),
                       ("n_t", ("t", "tg")), ("n_verb", ("v", "vn", "vd")), ("n_noun", ("n", "nz", "ng", "eng"))):
        Pw = _prefix(np.array([f in tags for f in flags], dtype=np.int32))
        X[:, F[name]] = Pw[WB + 1] - Pw[WA]
    if q.wh_noun:
        k = len(q.wh_noun)
        occ = np.zeros(L + 1, dtype=np.int32)
        start = s.find(q.wh_noun)
        while start >= 0:
            occ[start] = 1
            start = s.find(q.wh_noun, start + 1)
        Po = _prefix(occ[:L])
        X[:, F["wh_in"]] = _count(Po, A, B - k + 1)
        X[:, F["wh_end"]] = occ[np.maximum(B - k, 0)] * (B - A >= k)
        X[:, F["wh_lastchar"]] = [t[-1] == q.wh_noun[-1] for t in texts]
        X[:, F["wh_after"]] = occ[np.minimum(B, L)]
    else:
        X[:, [F["wh_in"], F["wh_end"], F["wh_lastchar"], F["wh_after"]]] = -1
    cov = (sum(1 for g in q.bigrams if g in s) / len(q.bigrams)) if q.bigrams else 0.0
    X[:, F["sent_cov"]] = cov
    X[:, F["sent_rank"]] = sent_rank
    X[:, F["given_rank"]] = given_rank
    X[:, F["passage"]] = passage
    X[:, F["sent_len"]] = L
    X[:, F["rel_pos"]] = A / max(L, 1)
    X[:, F["sent_words_cov"]] = (sum(1 for w in q.content_words if w in s) / len(q.content_words)
                                 if q.content_words else -1)
    X[:, F["cw_in_span"]] = [sum(1 for w in q.content_words if w in t) for t in texts]
    cl_a, cl_b = clause_of[WA], clause_of[WB]
    X[:, F["whole_clause"]] = (source == 0) & (cl_a == cl_b) & np.array(
        [starts[clauses[c][0]] >= a - 1 and ends[clauses[c][1] - 1] <= b + 1 for c, a, b in
         zip(cl_a.tolist(), A.tolist(), B.tolist())])
    X[:, F["multi_clause"]] = cl_b - cl_a
    cstart = np.array([starts[c[0]] for c in clauses])[cl_a]
    cend = np.array([ends[c[1] - 1] for c in clauses])[cl_b]
    X[:, F["clause_qb"]] = _count(Pqb, cstart, A - 1) + _count(Pqb, B, cend)
    X[:, F["clause_len"]] = cend - cstart
    Pd = _prefix(isdun)
    X[:, F["dun_clause"]] = _count(Pd, cstart, cend)
    X[:, F["dun_outside"]] = X[:, F["dun_clause"]] - X[:, F["n_dun"]]
    X[:, F["source"]] = source
    # longest common suffix of the text before the span with the question before its interrogative,
    # and longest common prefix of the text after the span with the question after it
    suf = np.zeros(n, dtype=np.int32)
    alive = np.ones(n, dtype=bool)
    sa = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
    ql_a = np.frombuffer(q.left.encode("utf-32-le"), dtype=np.uint32)
    for k in range(1, min(len(ql_a), 8) + 1):
        ok = alive & (A - k >= 0) & (sa[np.maximum(A - k, 0)] == ql_a[-k])
        suf += ok
        alive = ok
    X[:, F["suffix_ql"]] = suf
    pre = np.zeros(n, dtype=np.int32)
    alive = np.ones(n, dtype=bool)
    qr_a = np.frombuffer(q.right.encode("utf-32-le"), dtype=np.uint32)
    for k in range(min(len(qr_a), 8)):
        ok = alive & (B + k < L) & (sa[np.minimum(B + k, L - 1)] == qr_a[k])
        pre += ok
        alive = ok
    X[:, F["prefix_qr"]] = pre
    # how well the span sits where the question's interrogative sits, and the best of the sentence
    align = (suf + pre + np.minimum(X[:, F["ql_l10"]], 5) + np.minimum(X[:, F["qr_r10"]], 5)).astype(np.float32)
    X[:, F["span_align"]] = align
    X[:, F["sent_align"]] = align.max()
    nw = len(words)
    h = np.array([word_hash(w, LEX_SIZE) for w in words] + [word_hash("<s>", LEX_SIZE)], dtype=np.int64)
    keys = np.stack([h[WA], h[WB], h[np.where(WA > 0, WA - 1, nw)], h[np.where(WB + 1 < nw, WB + 1, nw)]], axis=1)
    keys += q.qtype * LEX_SIZE
    if lex is not None:
        apply_lexical(X, keys, lex)
    return SentenceCandidates(np.stack([A, B], axis=1), X, cov, keys)


LEX_TABLES = ("lex_first", "lex_last", "lex_prev", "lex_next")


def apply_lexical(X: np.ndarray, keys: np.ndarray, lex: dict[str, np.ndarray]) -> None:
    """Hashed word tables (per question type): log-odds that a word starts / ends an answer, and
    that it stands just before / after one. ``keys`` from ``SentenceCandidates.word_keys``."""
    for col, name in enumerate(LEX_TABLES):
        X[:, _F[name]] = lex[name][keys[:, col]]
