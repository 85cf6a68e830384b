"""How an answer reads in the chat: the short answer first in bold, the question answered for a
rewritten follow-up, the span marked inside its sentence in the sources (no model needed)."""
from __future__ import annotations

import rag
from rag.serving.web import render

TEXT = "会上，三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目签约江岸。江岸区有关负责人说。"
P = rag.Passage(doc_id="cjrb", title="江岸签约", date="2021-12-03", source="长江日报", text=TEXT, score=1.0)
SENTENCE = "会上，三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目签约江岸。"
SHORT = "三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目"


def _answer(**kw):
    base = dict(text=SENTENCE + "[1]", citations=[P], grounded=True, highlights=[SENTENCE],
                short=SHORT, question="江岸签约了哪些项目？")
    return rag.Answer(**{**base, **kw})


def test_short_answer_comes_first_in_bold_then_the_cited_sentence():
    md = render.answer_markdown(_answer(), "江岸签约了哪些项目？")
    assert md.startswith(f'<b class="short">{SHORT}</b>')
    assert md.index(SHORT) < md.index('<a href="#src-1" class="cite">[1]</a>')
    assert "按“" not in md  # asked as typed: no reading to show


def test_a_rewritten_follow_up_shows_the_question_answered():
    a = _answer(question="宝钢黄石新港一期什么时候开工？", short="")
    md = render.answer_markdown(a, "那一期呢？")
    assert md.startswith('<span class="asked">按“宝钢黄石新港一期什么时候开工？”回答</span>')
    assert "<b" not in md  # no confident span: the sentence alone
    assert "按“" not in render.answer_markdown(a, "宝钢黄石新港一期什么时候开工")  # same question, punctuation aside


def test_the_span_is_marked_inside_its_sentence_in_both_source_views():
    a = _answer()
    for html in (render.sources_html(a), render.chat_message(a, "江岸签约了哪些项目？")):
        assert f'<mark>会上，<span class="span">{SHORT}</span>签约江岸。</mark>' in html


def test_a_declined_answer_has_no_short_answer_and_no_sources():
    a = rag.Answer("抱歉，现有的新闻文章里没有找到这个问题的答案。", [], False, question="火星上有新闻吗？")
    assert render.chat_message(a, "火星上有新闻吗？") == "抱歉，现有的新闻文章里没有找到这个问题的答案。"


def test_the_span_is_marked_in_a_traditional_article_for_a_simplified_question():
    trad = rag.Passage(doc_id="cjrb", title="江岸簽約", date=None, source="长江日报",
                       text="會上,三峽數字科技平臺項目等6個項目簽約江岸。", score=1.0)
    a = _answer(citations=[trad], highlights=[trad.text], short="三峡数字科技平台项目")
    assert '<span class="span">三峽數字科技平臺項目</span>' in render.sources_html(a)


def test_a_source_says_where_else_the_story_ran():
    # other outlets folded into the passage are named; articles without an outlet are counted
    p = rag.Passage(**{**P.__dict__, "also_in": ("湖北日报", "crud-1", "新民晚报"), "same_story": ("hbrb", "crud-1", "xmwb")})
    html = render.sources_html(_answer(citations=[p]))
    assert "长江日报 · 2021-12-03 · 亦见于：湖北日报、新民晚报；另有1篇相同报道" in html
    assert "亦见于" not in render.sources_html(_answer())


def test_the_app_keeps_a_bounded_number_of_browser_sessions(tmp_path):
    """Gradio keeps every session's copy of the page (10,000 by default): the app keeps the newest 500."""
    from rag.serving.service import Service
    from rag.serving.web.chat import SESSIONS_KEPT, make_app

    app = make_app(Service(tmp_path / "data", tmp_path / "index", feedback_dir=tmp_path / "fb"))
    holders = [r.app.state_holder for r in app.routes if hasattr(getattr(r, "app", None), "state_holder")]
    assert holders and holders[0].capacity == SESSIONS_KEPT == 500


def test_the_app_asks_glibc_for_few_malloc_arenas(monkeypatch):
    import app

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(app.ctypes, "CDLL", lambda name: Libc())
    app._few_malloc_arenas()
    assert calls == [(-8, app.MALLOC_ARENAS)]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # the user's own choice stands
    app._few_malloc_arenas()
    assert calls == [(-8, app.MALLOC_ARENAS)]


def test_the_chat_explains_bad_filters_and_a_loading_index_in_chinese(tmp_path):
    from rag.serving.service import Service
    from rag.serving.web.chat import _asker

    ask = _asker(Service(tmp_path / "data", tmp_path / "index", feedback_dir=tmp_path / "fb"))  # not started
    said = lambda *filters: list(ask("江岸签约了哪些项目？", [], None, *filters, 3, {}))[-1][0][-1]["content"]  # noqa: E731
    assert said("昨天", "") == "⚠ 筛选条件有误：起始日期 &#x27;昨天&#x27; 应写作 2021-12-03（或 2021、2021-12）"
    assert said("2022", "2021") == "⚠ 筛选条件有误：起始日期（2022）晚于结束日期（2021）"
    assert said("", "") == f"⚠ 索引 {tmp_path / 'index'} 仍在加载：请几秒后重试"
