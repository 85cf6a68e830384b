"""The answer-span reader: shipped weights, spans of seed articles, offsets, scripts, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Config
from rag.errors import RagError
from rag.answering.extractive import select_sentences
from rag.query import Query
from rag.answering.reader.reader import MODEL_DIR, Reader, Span, Trees
from rag.answering.reader.reader import question_for_head
from rag.answering.reader.rules import unit, whole_date, whole_number
from rag.records import Passage
from rag.text import compact, strip_pinyin_noise, to_simplified

SEED = Path(__file__).resolve().parent.parent / "data" / "000_4627bb9fbf4571c3.txt"  # 长江日报, Traditional


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader.load()


@pytest.fixture(scope="module")
def seed_passages() -> list[Passage]:
    text = strip_pinyin_noise(SEED.read_text(encoding="utf-8"))
    title, body = text.split("\n", 1)
    half = body.index("“江岸區始終")
    return [Passage(doc_id="jiangan", title=title, date="2023-11-29", source="长江日报", text=t, score=1.0)
            for t in (body[:half], body[half:])]


def _check_offsets(span: Span, passages: list[Passage]) -> None:
    text = passages[span.passage].text
    assert text[span.start:span.end] == span.text
    assert span.sentence_start <= span.start < span.end <= span.sentence_end <= len(text)
    assert 0.0 <= span.confidence <= 1.0


def test_shipped_weights_load_from_the_package(reader):
    assert (MODEL_DIR / "reader.json").is_file() and (MODEL_DIR / "README.md").is_file()
    assert len(reader.trees.roots) > 10
    size = sum(f.stat().st_size for f in MODEL_DIR.iterdir())
    assert size < 15_000_000  # trees, word tables, span head and its 3 layers of e5 (float16, ~10.6 MB)


def test_list_question_reads_the_sentence_of_the_signed_projects(reader, seed_passages):
    q = Query.of("江岸签约了哪些项目？")
    span = reader.read(q, seed_passages)
    assert span is not None
    _check_offsets(span, seed_passages)
    sentence = seed_passages[span.passage].text[span.sentence_start:span.sentence_end]
    assert "三峡数字科技平台项目" in compact(to_simplified(sentence))
    assert "、" in span.text  # a list
    # "哪些项目" asks for projects: the list of projects, not the neighbouring list of partner units
    assert compact(to_simplified(span.text)) == "三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目"  # the whole list
    assert span.confidence >= 0.3  # confident enough to be shown as the short answer


def test_year_the_alliance_was_founded(reader, seed_passages):
    span = reader.read(Query.of("长江生态环保产业联盟是哪一年成立的？"), seed_passages)
    assert span is not None
    _check_offsets(span, seed_passages)
    assert "2019年" in span.text
    assert len(span.text) <= 10


def test_reads_the_given_sentences(reader, seed_passages):
    q = Query.of("江岸区2022年产业营收达多少？")
    sentences = select_sentences(q, seed_passages, lambda w: 1.0, Config())
    span = reader.read(q, seed_passages, sentences)
    _check_offsets(span, seed_passages)
    assert "368億元" in span.text
    first = sentences[:reader.max_sentences]
    assert any((s.passage, s.start, s.end) == (span.passage, span.sentence_start, span.sentence_end) for s in first)


def test_traditional_question(reader, seed_passages):
    span = reader.read(Query.of("長江生態環保產業聯盟目前已匯集多少家成員單位？"), seed_passages)
    _check_offsets(span, seed_passages)
    assert span.text.startswith("118")


def test_no_candidates_gives_none(reader):
    assert reader.read(Query.of("谁？"), []) is None
    assert reader.read(Query.of("谁？"), [Passage(doc_id="x", title="", date=None, source=None, text="。。", score=1.0)]) is None


def test_trees_evaluate_like_their_definition():
    # one stump: x0 <= 0.5 → 1.0 else 2.0; one leaf tree: 0.25
    trees = Trees(feature=[0, -1, -1, -1], threshold=[0.5, 0, 0, 0], left=[1, 1, 2, 3], right=[2, 1, 2, 3],
                  value=[0, 1.0, 2.0, 0.25], roots=[0, 3], depth=1)
    X = np.array([[0.0], [0.5], [0.7]], dtype=np.float32)
    assert trees.predict(X).tolist() == [1.25, 1.25, 2.25]
    assert trees.predict(X, 1).tolist() == [0.25, 0.25, 0.25]
    again = Trees.from_arrays(trees.to_arrays())
    assert again.predict(X).tolist() == [1.25, 1.25, 2.25]


def test_save_load_round_trip(reader, seed_passages, tmp_path):
    reader.save(tmp_path)
    again = Reader.load(tmp_path)
    q = Query.of("江岸签约了哪些项目？")
    assert again.read(q, seed_passages) == reader.read(q, seed_passages)


def test_missing_weights_say_how_to_fix(tmp_path):
    with pytest.raises(RagError, match=r"cannot load the reader from .*retrain it with scripts/train_reader.py"):
        Reader.load(tmp_path)


@pytest.mark.parametrize("text, span, whole", [
    ("2022年全省股权融资规模同比增长35%。", "35", "35%"),
    ("1.6万多家企业全部上图入库", "1.6", "1.6万"),
    ("总投资12.5亿元", "12", "12.5亿"),
    ("增長３５％。", "３５", "３５％"),
    ("共有35家企业", "35", "35"),  # the counting word is not part of the number
    ("2019年6月成立", "2019年", "2019年"),  # ends in a unit already
])
def test_a_number_is_never_cut_from_its_decimals_magnitude_or_percent_sign(text, span, whole):
    a = text.index(span)
    b = whole_number(text, a, a + len(span), len(text))
    assert text[a:b] == whole


@pytest.mark.parametrize("question, text, span, whole", [
    ("联盟是哪一年成立的？", "2019年6月,三峡集团牵头组建", "2019", "2019年"),
    ("联盟是几月成立的？", "2019年6月,三峡集团牵头组建", "6", "6月"),
    ("联盟有多少家成员？", "成员达118家", "118", "118"),  # not a time question
    ("联盟是哪一年成立的？", "2019年6月成立", "2019年", "2019年"),  # whole already
])
def test_a_year_or_month_is_never_cut_from_its_unit(question, text, span, whole):
    a = text.index(span)
    assert text[a:whole_date(Query.of(question), text, a, a + len(span), len(text))] == whole


def test_a_traditional_question_about_simplified_articles_is_read_in_simplified():
    simplified, traditional = "联盟是哪一年成立的？", "聯盟是哪一年成立的？"
    trad_texts = ["三峽集團牽頭組建長江生態環保產業聯盟。", "會上簽約12家。"]
    assert question_for_head(traditional, ["三峡集团牵头组建。"]) == simplified
    assert question_for_head(traditional, trad_texts) == traditional
    assert question_for_head(simplified, trad_texts) == simplified  # read as asked (measured)


def test_how_many_of_a_unit_prefers_the_number_counted_in_it():
    from rag.answering.reader.reader import collect_candidates

    text = "开展全市工业企业大排查,200余个工业集聚点、1.6万多家企业全部“上图入库”。"
    passages = [Passage(doc_id="jiangyin", title="江阴", date="2023-12-01", source="江阴日报", text=text, score=1.0)]
    q = Query.of("江阴全市有多少家工业企业上图入库？")
    cands = collect_candidates(q, passages, None)
    spans = [text[a:b] for a, b in cands.spans.tolist()]
    assert any(s.startswith("200") for s in spans)  # both numbers are candidates
    kept = unit(q, passages, cands, np.zeros(len(cands)))
    kept_texts = {s for s, k in zip(spans, kept) if np.isfinite(k)}
    assert kept_texts and all(s.startswith("1.6") for s in kept_texts)  # "1.6" reads on as "1.6万" (above)
    # questions that ask for no count are left alone ("哪几个" asks which, not how many)
    for other in ("江阴全市排查了什么？", "江阴的企业分为哪几个部分？"):
        assert np.isfinite(unit(Query.of(other), passages, cands, np.zeros(len(cands)))).all()


def test_trees_boosted_further_score_the_sum_and_cut_back():
    """A reader adapted to news is its trees plus more trees grown from their scores
    (scripts/adapt_reader.py); the sum scores like both, and the first part is the reader it was."""
    base = Reader.load().trees
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, len(Reader.load().meta["features"])))
    more = base.first(len(base.feature), 7)
    both = base + more
    assert len(both.roots) == len(base.roots) + 7
    assert np.allclose(both.predict(X), base.predict(X) + more.predict(X))
    again = both.first(len(base.feature), len(base.roots))
    assert np.allclose(again.predict(X), base.predict(X))
