"""Bad input: every unreadable file or line is reported by name (and line) and the rest is indexed."""
from __future__ import annotations

import shutil

import pytest

import rag
from rag.errors import QueryError, SourceError
from rag.query import MAX_QUERY_CHARS, Query
from rag.reading.sources import MAX_FILE_BYTES, read_articles, read_file

from conftest import TEST_DATA

GOOD = "九江市完成长江岸线整治，建成沿江绿道35公里。"


def _errors(path) -> list[str]:
    return [str(e) for e in read_file(path).errors]


def test_empty_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_bytes(b"  \n\n")
    assert _errors(f) == [f"{f}: empty file: nothing to index"]


def test_binary_file(tmp_path):
    f = tmp_path / "photo.txt"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (msg,) = _errors(f)
    assert msg.startswith(f"{f}: binary file")


def test_undecodable_text(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("Zürich, Genève et Neuchâtel: réunion économique à Montréal. ".encode("cp1252") * 5 + bytes(range(0x80, 0xA0)) * 4)
    (msg,) = _errors(f)
    assert msg == f"{f}: cannot decode the text: it is not UTF-8, GB18030 or Big5"


def test_utf8_cut_mid_character_is_kept(tmp_path):
    f = tmp_path / "cut.txt"
    f.write_bytes(("长江岸线整治\n" + GOOD * 3).encode()[:-1])
    r = read_file(f)
    assert r.errors == []
    assert r.articles[0].text.startswith(GOOD) and "\ufffd" not in r.articles[0].text


def test_file_over_the_size_limit_is_refused_without_reading_it(tmp_path):
    f = tmp_path / "dump.txt"
    with open(f, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: large on paper, instant to make
    (msg,) = _errors(f)
    assert msg.startswith(f"{f}: file is 16 MB; the limit is 16 MB per file: split it")


def test_large_file_under_the_limit_is_read(tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("长江岸线整治纪实\n" + GOOD * 100_000, encoding="utf-8")  # ~7 MB
    (a,) = read_file(f).articles
    assert len(a.text) == len(GOOD) * 100_000


def test_malformed_jsonl_lines_name_the_line(tmp_path):
    f = tmp_path / "feed.jsonl"
    f.write_text(
        '{"id": "a", "text": "%s"}\n{"id": "b", "text": \n[1, 2]\n{"id": "", "text": "x"}\n{"id": "c"}\n{"id": "d", "text": "%s"}\n'
        % (GOOD, GOOD),
        encoding="utf-8",
    )
    r = read_file(f)
    assert [a.id for a in r.articles] == ["a", "d"]
    msgs = [str(e) for e in r.errors]
    assert msgs[0].startswith(f"{f}:2: malformed JSON")
    assert msgs[1] == f"{f}:3: expected a JSON object with 'id' and 'text'; line skipped"
    assert msgs[2] == f"{f}:4: field 'id' is missing or empty; line skipped"
    assert msgs[3] == f"{f}:5: field 'text' is missing or empty for id 'c'; line skipped"


def test_duplicate_ids_within_and_across_files(tmp_path):
    (tmp_path / "a.jsonl").write_text(f'{{"id": "x", "text": "{GOOD}"}}\n{{"id": "x", "text": "另一篇"}}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(f'{{"id": "x", "text": "第三篇文章"}}\n{{"id": "y", "text": "{GOOD}"}}\n', encoding="utf-8")
    r = read_articles(tmp_path)
    assert [(a.id, a.origin) for a in r.articles] == [("x", "a.jsonl"), ("y", "b.jsonl")]
    assert [str(e) for e in r.errors] == [
        f"{tmp_path / 'a.jsonl'}:2: duplicate article id 'x'; the first one is kept",
        f"{tmp_path / 'b.jsonl'}: duplicate article id 'x' (already read from a.jsonl); skipped",
    ]


def test_html_without_text(tmp_path):
    f = tmp_path / "shell.html"
    f.write_text("<html><head><title>x</title><script>var a=1;</script></head><body><nav>首页</nav></body></html>", encoding="utf-8")
    (msg,) = _errors(f)
    assert msg.startswith(f"{f}: no article text found")


def test_article_without_title_or_date_gets_a_derived_title(tmp_path):
    f = tmp_path / "untitled.txt"
    f.write_text("九江市完成长江岸线整治，建成沿江绿道35公里，岸线绿化率达到95%，成为市民休闲的好去处。", encoding="utf-8")
    (a,) = read_file(f).articles
    assert a.title == "九江市完成长江岸线整治" and a.date is None and a.source is None


def test_unsupported_and_missing_files(tmp_path):
    f = tmp_path / "table.xlsx"
    f.write_bytes(b"PK\x03\x04")
    assert _errors(f) == [f"{f}: unsupported file type .xlsx: expected one of .txt, .md, .markdown, .html, .htm, .jsonl"]
    r = read_articles([tmp_path / "nope.txt"])
    assert [str(e) for e in r.errors] == [f"{tmp_path / 'nope.txt'}: no such file or folder"]


@pytest.mark.slow  # builds with the real encoder
def test_build_indexes_the_good_files_and_lists_the_bad(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    (data / "empty.txt").write_bytes(b"")
    (data / "bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    (data / "bad.jsonl").write_text('{"id": "ok-1", "text": "九江港吞吐量创新高。"}\n{oops\n', encoding="utf-8")
    with open(data / "huge.txt", "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    r = rag.Retriever.build(data, tmp_path / "index")
    assert sorted(r.articles) == ["jj-01", "jj-02", "ok-1", "wuhan", "yichang"]
    errors = r.manifest["errors"]
    assert len(errors) == 4
    for name in ("empty.txt", "bin.txt", "bad.jsonl:2", "huge.txt"):
        assert any(f"{data / name}" in e for e in errors), name
    assert rag.Retriever.load(tmp_path / "index").search("九江港", k=1)[0].doc_id in ("ok-1", "jj-02")


def test_build_with_nothing_readable_says_why(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(SourceError, match=r"no articles could be read \(.*empty\.txt: empty file"):
        rag.Retriever.build(tmp_path, tmp_path / "index")


@pytest.mark.parametrize("query", ["", "   \n\t ", "\x00\x01\x1b\x7f\x9f", "\u200b\ufeff"])
def test_empty_queries_are_refused(retriever, query):
    with pytest.raises(QueryError, match="query is empty: type a question or some keywords"):
        retriever.search(query)


def test_non_string_query_is_refused(retriever):
    with pytest.raises(QueryError, match="query must be a string, got NoneType"):
        retriever.search(None)


def test_very_long_query_is_cut_and_still_answers(retriever):
    q = "江岸签约了哪些项目？" * 1000  # 10,000 characters
    assert len(Query.of(q).text) == MAX_QUERY_CHARS
    ps = retriever.search(q, k=3)
    assert ps and ps[0].doc_id == "000_4627bb9fbf4571c3"


def test_control_characters_in_query_are_ignored(retriever):
    q = "\x00江岸\x07签约\x1b了哪些\u200b项目\x7f？"
    assert Query.of(q).text == "江岸 签约 了哪些 项目 ？"
    assert retriever.search(q, k=1)[0].doc_id == "000_4627bb9fbf4571c3"


def test_a_large_jsonl_corpus_is_read(tmp_path):
    """One article per line is what the size limit asks for, so a .jsonl file may pass 16 MB."""
    import json

    line = json.dumps({"id": "a-{}", "title": "九江港", "text": GOOD * 40}, ensure_ascii=False) + "\n"
    f = tmp_path / "corpus.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        n = MAX_FILE_BYTES // len(line.encode("utf-8")) + 10
        fh.writelines(line.replace("a-{}", f"a-{i}") for i in range(n))
    assert f.stat().st_size > MAX_FILE_BYTES
    r = read_file(f)
    assert r.errors == [] and len(r.articles) == n
