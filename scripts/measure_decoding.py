"""Compare the hand-written decoder rag.reading.sources used before with charset-normalizer on the seeds.

Positives: every seed and test article as UTF-8, as GB18030 (Simplified) and as Big5 (Traditional),
whole, cut to its first 20, 60 and 200 characters, and each line with 4+ Han characters. Negatives: random bytes, Latin text in
cp1252, UTF-16 without BOM. A positive counts as right only when the decoded text equals the
original; a negative only when it is refused.

    .venv/bin/python scripts/measure_decoding.py
"""
from __future__ import annotations

import argparse
import logging
import random
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from charset_normalizer import from_bytes

from rag.errors import SourceError
from rag.reading.sources import decode_bytes
from rag.text import to_simplified, to_traditional

log = logging.getLogger("measure")


# --- the hand-written decoder rag.reading.sources used until charset-normalizer replaced it --------------
def handwritten(data: bytes, path: str = "<bytes>") -> str:
    """Decode UTF-8 (with or without BOM), GB18030 or Big5; raise SourceError otherwise."""
    if not data.strip():
        raise SourceError(path, "empty file: nothing to index")
    if b"\x00" in data[:8192]:
        raise SourceError(path, "binary file (contains NUL bytes): expected UTF-8, GB18030 or Big5 text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        first_bad = e.start
    # UTF-8 with a few broken bytes (a file cut mid-character, a stray byte): keep the text
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    if bad <= max(2, len(lenient) // 1000):
        log.warning("%s: %d undecodable byte sequence(s) in UTF-8 text (first at byte %d) dropped", path, bad, first_bad)
        return lenient.replace("\ufffd", "")
    candidates: list[tuple[float, str]] = []
    for enc in ("gb18030", "big5"):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        candidates.append((_plausibility(text), text))
    if not candidates:
        raise SourceError(path, "cannot decode the text: it is not UTF-8, GB18030 or Big5")
    score, text = max(candidates, key=lambda c: c[0])
    if score < 0.5:
        raise SourceError(path, "cannot decode the text: it is not UTF-8, GB18030 or Big5")
    return text


# The 500 most frequent characters in Chinese news text cover about 75% of it, in
# either script; decodings that produce rare characters are the wrong codec.
_COMMON = set(
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严龙飞"
)
_COMMON |= {to_simplified(c) for c in list(_COMMON)}


def _plausibility(text: str) -> float:
    han = [c for c in text if "\u3400" <= c <= "\u9fff"]
    if not han:
        return 1.0 if text.isprintable() or "\n" in text else 0.0
    common = sum(1 for c in han if c in _COMMON or to_simplified(c) in _COMMON)
    return common / len(han) * 2.5  # ~0.3+ common share is normal text


ALLOWED = ("utf_8", "gb18030", "big5")


def cn_isolated(data: bytes) -> str:
    """charset-normalizer choosing among the three supported encodings only."""
    best = from_bytes(data, cp_isolation=list(ALLOWED)).best()
    if best is None:
        raise SourceError("x", "cannot decode")
    return str(best)


def cn_open(data: bytes) -> str:
    """charset-normalizer detecting freely; anything but the three supported encodings is refused."""
    best = from_bytes(data).best()
    if best is None or best.encoding not in ALLOWED + ("ascii",):
        raise SourceError("x", f"detected {best.encoding if best else None}")
    return str(best)


def texts() -> list[tuple[str, str]]:
    out = []
    for f in sorted((ROOT / "data").glob("*.txt")) + sorted((ROOT / "tests" / "data").rglob("*.*")):
        out.append((f.name, f.read_text(encoding="utf-8")))
    return out


def cases() -> tuple[list[tuple[str, bytes, str]], list[tuple[str, bytes]]]:
    positives = []
    for name, text in texts():
        for n in (20, 60, 200, None):
            t = text[:n] if n else text
            tag = f"{name}[:{n or 'all'}]"
            positives.append((f"utf-8 {tag}", t.encode("utf-8"), t))
            simp = to_simplified(t)
            gb = simp.encode("gb18030")
            positives.append((f"gb18030 {tag}", gb, simp))
            trad = to_traditional(t).encode("big5", errors="ignore")
            positives.append((f"big5 {tag}", trad, trad.decode("big5")))
    for name, text in texts():  # single lines: short texts are where detectors go wrong
        for i, line in enumerate(text.splitlines()):
            if len(re.findall(r"[\u4e00-\u9fff]", line)) < 4:
                continue
            simp, trad = to_simplified(line), to_traditional(line).encode("big5", errors="ignore")
            positives.append((f"gb18030 {name} line {i + 1}", simp.encode("gb18030"), simp))
            positives.append((f"big5 {name} line {i + 1}", trad, trad.decode("big5")))
    rng = random.Random(14)
    negatives = []
    for n in (200, 2_000, 200_000):
        negatives.append((f"random {n} B", bytes(rng.randrange(256) for _ in range(n))))
        negatives.append((f"random high {n} B", bytes(rng.randrange(0x80, 0x100) for _ in range(n))))
    latin = "Zürich, Genève et Neuchâtel: réunion économique à Montréal, où l'on parle français. "
    for n in (1, 5, 50):
        negatives.append((f"cp1252 x{n}", (latin * n).encode("cp1252")))
    negatives.append(("utf-16-le 长江", ("长江岸线整治纪实。" * 20).encode("utf-16-le")))
    return positives, negatives


def measure(name, fn, positives, negatives) -> None:
    right = wrong = refused = 0
    misses = []
    t0 = time.perf_counter()
    for label, data, expect in positives:
        try:
            got = fn(data)
        except SourceError:
            refused += 1
            misses.append(f"refused {label}")
            continue
        if got.replace("\r\n", "\n") == expect.replace("\r\n", "\n"):
            right += 1
        else:
            wrong += 1
            misses.append(f"wrong {label}: {got[:20]!r}")
    caught = 0
    for label, data in negatives:
        try:
            fn(data)
            misses.append(f"accepted {label}")
        except SourceError:
            caught += 1
    ms = (time.perf_counter() - t0) * 1000
    print(f"{name:28s} right {right}/{len(positives)}  wrong {wrong}  refused {refused}  "
          f"garbage refused {caught}/{len(negatives)}  {ms:.0f} ms")
    for m in misses[:12]:
        print("    ", m)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    positives, negatives = cases()
    measure("hand-written (before)", lambda b: handwritten(b, "x"), positives, negatives)
    measure("charset-normalizer isolated", cn_isolated, positives, negatives)
    measure("rag.reading.sources.decode_bytes", lambda b: decode_bytes(b, "x"), positives, negatives)
    measure("charset-normalizer open", cn_open, positives, negatives)


if __name__ == "__main__":
    main()
