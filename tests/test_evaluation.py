"""Evaluation: question loading, rank and answer metrics on hand-made cases, and `rag eval` on the seed index."""
from __future__ import annotations

import json

import pytest

import rag
from rag.cli import main
from rag.errors import SourceError
from rag.eval.evaluation import (
    Question,
    answer_hit,
    evaluate,
    first_relevant_rank,
    load_questions,
    retrieval_scores,
)


def _p(doc_id: str, text: str = "无关的文字") -> rag.Passage:
    return rag.Passage(doc_id=doc_id, title="", date=None, source=None, text=text, score=0.0)


def _write(path, records) -> str:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return str(path)


# --- ranks and scores, computed by hand ---------------------------------------------------------
def test_gold_article_second_after_dedup_gives_r1_0_r5_1_mrr_half():
    # chunks A, A, B, C: article A fills ranks 1 and 2 of the chunk list but is one article
    q = Question(id="q", question="?", gold_docs=("B",))
    rank = first_relevant_rank([_p("A"), _p("A"), _p("B"), _p("C")], q)
    assert rank == 2
    s = retrieval_scores("hybrid", [rank], k=10)
    assert (s.recall_at_1, s.recall_at_5, s.recall_at_k, s.mrr_at_k) == (0.0, 1.0, 1.0, 0.5)


def test_a_gold_article_folded_into_a_copy_of_its_story_counts_where_the_copy_ranks():
    q = Question(id="q", question="?", gold_docs=("B",))
    copy = rag.Passage(doc_id="C", title="", date=None, source=None, text="同一篇报道", score=0.0, same_story=("B",))
    assert first_relevant_rank([_p("A"), copy, _p("D")], q) == 2


def test_scores_over_several_questions():
    s = retrieval_scores("keyword", [1, 2, None, 7], k=5)
    assert s.questions == 4
    assert s.recall_at_1 == 0.25
    assert s.recall_at_5 == 0.5
    assert s.recall_at_k == 0.5  # rank 7 is beyond k=5
    assert s.mrr_at_k == pytest.approx((1 + 0.5) / 4)


def test_gold_answer_in_the_top_five_passages_is_counted_per_question():
    s = retrieval_scores("hybrid", [1, None, 3], k=10, answer_in_5=[True, False, True])
    assert s.answer_in_5 == pytest.approx(2 / 3)
    assert retrieval_scores("hybrid", [1], k=10).answer_in_5 is None  # questions without answer strings


def test_evidence_match_is_normalised_and_per_article():
    q = Question(id="q", question="?", evidence=("三峡数字科技平台项目",))
    ps = [_p("A"), _p("B", "……三峽數字科技 平臺項目等6個項目……"), _p("A", "三峡数字科技平台项目")]
    # article A is rank 1 and one of its passages holds the evidence
    assert first_relevant_rank(ps, q) == 1
    assert first_relevant_rank(ps[:2], q) == 2
    assert first_relevant_rank([_p("A")], q) is None


def test_answer_hit_any_answer_or_all_must_include():
    assert answer_hit("是由光榮和ω－force開發的[1]", Question(id="q", question="?", answers=("光荣和ω-force", "x")))
    both = Question(id="q", question="?", must_include=("2019年6月", "三峡集团"))
    assert answer_hit("2019年6月，三峡集团牵头组建[1]", both)
    assert not answer_hit("2019年6月组建[1]", both)


def test_an_answer_found_only_in_the_line_of_other_stories_is_a_hit_but_not_a_lead_hit():
    from rag.eval.evaluation import _AnswerTally

    q = Question(id="q", question="保险公司已支付了多少赔款？", answers=("0.6亿元",))
    tally = _AnswerTally()
    for text in ("保险公司已支付赔款3.2亿元。[1]\n另见：《台风“卡努”影响辽宁》（辽宁日报，2023-08-11）：0.6亿元[2]",
                 "保险公司已支付赔款0.6亿元。[1]", "保险公司已支付赔款3.2亿元。[1]"):
        tally.add(q, rag.Answer(text=text, citations=[_p("A")], grounded=True), 0.1)
    scores = tally.scores()
    assert (scores.hits, round(scores.hit_rate, 3), round(scores.lead_hit_rate, 3)) == (2, 0.667, 0.333)


# --- question files ---------------------------------------------------------------------------
def test_load_both_formats_and_limit(tmp_path):
    path = _write(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "question": "问题一", "answers": ["甲"], "gold_docs": ["d1"]},
            {"question": "问题二", "must_include": ["乙"], "evidence": "证据", "turns": ["前一问"]},
            {"id": "c", "question": "问题三", "no_answer": True},
        ],
    )
    qs = load_questions(path)
    assert [q.id for q in qs] == ["a", "line-2", "c"]
    assert qs[0].gold_docs == ("d1",) and qs[1].evidence == ("证据",) and qs[1].turns == ("前一问",)
    assert qs[2].no_answer and not qs[2].has_gold
    assert len(load_questions(path, limit=2)) == 2
    assert Question(id="t", question="江岸簽約了哪些項目", turns=("點軍區",)).simplified().question == "江岸签约了哪些项目"


def test_bad_question_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "好"}\n{"answers": ["x"]}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad.jsonl:2: each line needs a non-empty 'question'"):
        load_questions(bad)
    with pytest.raises(SourceError, match="must be a string or a list of strings"):
        load_questions(_write(tmp_path / "b.jsonl", [{"question": "好", "answers": [1]}]))
    with pytest.raises(SourceError, match="cannot read the question file"):
        load_questions(tmp_path / "missing.jsonl")


# --- on the seed index ------------------------------------------------------------------------
SEED_QUESTIONS = [
    {"id": "s1", "question": "江岸签约了哪些项目？", "must_include": ["三峡数字科技平台项目"],
     "evidence": ["三峡数字科技平台项目"]},
    {"id": "s2", "question": "宝钢黄石新港二期工程是哪一年开工的", "answers": ["不会出现的答案"],
     "gold_docs": ["001_7621561b348b7e5b-01"]},
    {"id": "t1", "turns": ["宜昌市点军区集中开工了几个生态环保项目？"], "question": "这些项目计划总投资多少？",
     "must_include": ["76.01亿元"], "evidence": ["计划总投资76.01亿元"]},
    {"id": "n1", "question": "2022年北京冬奥会的吉祥物叫什么名字？", "no_answer": True},
]


def test_evaluate_on_seed_index(retriever, tmp_path):
    qs = load_questions(_write(tmp_path / "seed.jsonl", SEED_QUESTIONS))
    rep = evaluate(retriever, qs, k=10)
    # the retriever reranks: hybrid is also measured on fusion alone, in the same run
    assert [r.mode for r in rep.retrieval] == ["hybrid", "fused", "keyword", "dense"]
    hybrid = rep.retrieval[0]
    assert rep.retrieval[1].questions == 3
    assert hybrid.questions == 3 and hybrid.recall_at_1 == 1.0 and hybrid.mrr_at_k == 1.0
    a = rep.answers
    assert a.answerable == 3 and a.no_answer == 1 and a.declined_no_answer == 1
    assert a.hits == 2  # s2 expects a string no answer holds
    assert rep.misses[0]["id"] == "s2"
    assert a.mean_answer_chars > 0
    assert "| hybrid | 1.000 |" in rep.table()
    assert hybrid.answer_in_5 == 0.0  # only s2 has answer strings, and its string is in no article
    # answers with gold strings are also scored by the gold's length and by what the question asks
    assert set(rep.by_answer) == {"gold under 10 chars", "asks time"}
    assert rep.by_answer["asks time"]["questions"] == 1 and rep.by_answer["asks time"]["hit"] == 0.0
    assert "| asks time | 1 |" in rep.table()


def test_cli_eval_writes_json(seed_index, tmp_path, capsys):
    qfile = _write(tmp_path / "seed.jsonl", SEED_QUESTIONS)
    out = tmp_path / "eval.json"
    assert main(["eval", "--index", str(seed_index), qfile, "--json", str(out), "--limit", "2", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "MRR@10" in printed and "answer hit rate" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["questions"] == 2
    assert set(data["retrieval"]) == {"hybrid", "fused", "keyword", "dense"}
    assert data["retrieval"]["keyword"]["recall_at_1"] == 1.0
    assert data["answers"]["answerable"] == 2


def test_cli_eval_keyword_only_corpus(tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "data"
    qfile = _write(tmp_path / "seed.jsonl", SEED_QUESTIONS[:1])
    assert main(["eval", "--keyword-data", str(data), qfile, "-q"]) == 0
    printed = capsys.readouterr().out
    assert "| keyword | 1.000 |" in printed and "dense" not in printed


def test_select_keeps_one_part_of_a_story_split_and_held_out_articles():
    """rag eval --part and --held-out (and scripts measuring the same questions) pick the questions
    one way: a story's questions all fall in one part, in file order."""
    from rag.eval.evaluation import Question
    from rag.eval.split import held_out, select, story_parts

    qs = [Question(id=f"q{i}", question=f"问题{i}", gold_docs=(f"doc{i // 2}",)) for i in range(40)]
    parts = story_parts(qs)
    for part in ("train", "validation", "held-out"):
        chosen = select(qs, part=part)
        assert [q.id for q in chosen] == [q.id for q in qs if parts[q.id] == part]
    assert {parts["q0"]} == {parts["q1"]}  # the same gold article: one story, one part
    assert [q.id for q in select(qs, held_out_only=True)] == [q.id for q in qs if held_out(q.gold_docs[0])]
    assert select(qs) == qs
