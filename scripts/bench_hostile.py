"""Hostile HTML: CPU seconds of selectolax's parse alone (no pre-scan) on nested <div> at a few depths,
and of the reader (pre-scan + parse + cleaning, rag.reading.markup.html_to_lines) on those and on the
largest inputs its limits let through. CPU time, not wall time: the numbers hold on a busy machine.

    python scripts/bench_hostile.py            # the table in docs/benchmarks.md
    python scripts/bench_hostile.py --quick    # smaller depths for the raw parser
"""
from __future__ import annotations

import argparse
import time


def cpu(f, *args):
    start = time.process_time()
    try:
        f(*args)
        outcome = "parsed"
    except Exception as e:  # noqa: BLE001 - a refusal is an outcome to report
        outcome = f"refused ({type(e).__name__})"
    return time.process_time() - start, outcome


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="raw parser at 5k/10k/20k levels only (40k+ takes minutes)")
    args = p.parse_args(argv)

    from selectolax.lexbor import LexborHTMLParser

    from rag.reading.markup import MAX_HTML_ATTRIBUTES, MAX_HTML_DEPTH, MAX_HTML_NAMES, MAX_HTML_TAGS, html_to_lines

    print(f"limits: depth {MAX_HTML_DEPTH}, tags {MAX_HTML_TAGS:,}, attributes per tag {MAX_HTML_ATTRIBUTES}, "
          f"distinct names {MAX_HTML_NAMES}")
    depths = (5_000, 10_000, 20_000) if args.quick else (5_000, 10_000, 20_000, 40_000)
    print("\nnested <div>: CPU s   selectolax alone   reader (pre-scan first)")
    for d in (*depths, 950_000):
        html = "<div>" * d + "正文"
        raw = cpu(LexborHTMLParser, html)[0] if d in depths else float("nan")
        ours, outcome = cpu(html_to_lines, html, "deep.html")
        print(f"  {d:>9,} levels   {raw:8.2f}            {ours:6.2f} {outcome}")

    unit = "<div>" * (MAX_HTML_DEPTH - 1) + "x" + "</div>" * (MAX_HTML_DEPTH - 1)
    cases = {
        f"<div> {MAX_HTML_DEPTH - 1} deep, repeated up to the tag limit": unit * (MAX_HTML_TAGS // (2 * (MAX_HTML_DEPTH - 1))),
        "<blockquote> nested 64, repeated to the tag limit": ("<blockquote>" * 64 + "x" + "</blockquote>" * 64) * (MAX_HTML_TAGS // 128),
        "<p> + text, 16 MB": ("<p>" + "新闻" * 20) * (16 * 2**20 // len(("<p>" + "新闻" * 20).encode())),
        f"{MAX_HTML_DEPTH - 1} open <b id=i> then <p>x to the tag limit":
            "".join(f"<b id={i}>" for i in range(MAX_HTML_DEPTH - 1)) + "<p>x" * (MAX_HTML_TAGS - MAX_HTML_DEPTH),
        "one 16 MB attribute": "<p title='" + "a" * 16 * 2**20 + "'>x</p>",
        "16 MB of '<'": "<" * 16 * 2**20,
    }
    print("\nlargest inputs the limits let through: CPU s")
    for name, html in cases.items():
        t, outcome = cpu(html_to_lines, html, "big.html")
        print(f"  {name:58s} {len(html.encode()) / 2**20:5.1f} MB {t:6.2f} {outcome}")


if __name__ == "__main__":
    main()
