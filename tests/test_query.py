"""Query and ArticleFilter: cleaned and validated once, with errors that name the field."""
from __future__ import annotations

import pytest

from rag import ArticleFilter, Query, QueryError
from rag.query import MAX_QUERY_CHARS


def test_query_is_cleaned_once_and_shared():
    q = Query.of("  江岸\u200b簽約了\x00哪些項目？ ")
    assert q.text == "江岸 簽約了 哪些項目？"
    assert Query.of(q) is q  # a Query passes through untouched: no second cleaning
    assert "签约" in q.folded and q.tokens and "项目" in q.content_words


def test_query_year_and_limits():
    assert Query.of("2024年开工了哪些项目？").year == 2024
    assert Query.of("开工了哪些项目？").year is None
    assert len(Query.of("字" * 5000).text) == MAX_QUERY_CHARS


@pytest.mark.parametrize("bad, message", [("", "query is empty"), ("  \n\t", "query is empty"),
                                          (None, "query must be a string"), (42, "query must be a string")])
def test_bad_queries_are_refused_by_name(bad, message):
    with pytest.raises(QueryError, match=message):
        Query.of(bad)


def test_filter_semantics():
    assert ArticleFilter.make() is None
    f = ArticleFilter.make(["长江日报"], "2021", "2021-12")
    assert f.allows("长江日报", "2021-12-03")
    assert not f.allows("湖北日报", "2021-12-03")
    assert not f.allows("长江日报", "2022-01-01")
    assert not f.allows("长江日报", "--11-29")  # no year stated: outside every date range
    assert ArticleFilter.make("长江日报").allows("长江日报", None)


@pytest.mark.parametrize("kwargs, message", [
    ({"date_from": "12/03/2021"}, "date_from must be an ISO date"),
    ({"date_to": "2021-1"}, "date_to must be an ISO date"),
    ({"date_from": "2022", "date_to": "2021"}, r"date_from \(2022\) is after date_to \(2021\)"),
    ({"sources": [1, 2]}, "sources must be a list of publication names"),
])
def test_bad_filters_name_the_field(kwargs, message):
    with pytest.raises(QueryError, match=message):
        ArticleFilter.make(**kwargs)
