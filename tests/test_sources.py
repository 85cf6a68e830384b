"""rag.reading.sources: each seed file and each generic format read into clean Articles."""
from __future__ import annotations

import re

import pytest

from rag.reading.sources import decode_bytes, read_articles, read_file
from rag.errors import SourceError

from conftest import SEEDS, TEST_DATA

FORMATS = TEST_DATA / "formats"
PINYIN_NOISE = re.compile(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ]{1,6}\)|\?")


def _one(name: str):
    r = read_file(next(SEEDS.glob(f"{name}_*.txt")))
    assert r.errors == []
    return r.articles


def test_000_traditional_with_pinyin_noise():
    (a,) = _one("000")
    assert a.title == "江岸簽約12家長江生態環保產業聯盟成員單位"
    assert a.date == "--11-29"
    assert a.source == "长江日报"
    assert not PINYIN_NOISE.search(a.title + a.text), PINYIN_NOISE.search(a.title + a.text)
    assert "來源" not in a.text  # the source line became metadata
    assert a.text.startswith("長江日報大武漢客戶端11月29日訊")


def test_001_listing_page_splits_into_ten_articles():
    arts = _one("001")
    assert len(arts) == 10
    assert len({a.id for a in arts}) == 10 and len({a.title for a in arts}) == 10
    assert arts[0].title == "宝钢黄石新港二期开工助湖北产业腾飞"
    for a in arts:
        assert not a.title.startswith("【") and "】" not in a.title
        assert a.date == "2025-07-19"
        for junk in ("有想补充的信息", "联系我们", "企业入驻", "2025-07-19"):
            assert junk not in a.text, (a.id, junk)
        assert len(a.text) > 300


def test_002_markdown_front_matter_with_html_body():
    (a,) = _one("002")
    assert a.title == "助力江西打造千亿级环保产业集群 南粤赣商在行动"
    assert a.date == "2022-01-19"
    assert a.source == "大江网"
    assert a.url == "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202201192253374129"
    assert not re.search(r"<[a-zA-Z/][^>]*>", a.text)
    for junk in ("返回首页", "返回大江网新闻", "文章来源", "http", "layout:"):
        assert junk not in a.text, junk


def test_003_scraped_page_without_banner_breadcrumb_or_footer():
    (a,) = _one("003")
    assert a.title == "奋楫争先“凭江而战” 全力助推江阴绿色发展"
    assert a.date == "2021-12-03"
    assert a.source == "江阴日报"
    for junk in ("打造网上国际投资促进平台", "您现在的位置", "发布时间", "上一条", "下一条", "联系电话", "Copyright", "版权所有"):
        assert junk not in a.text, junk
    assert a.text.startswith("抢抓“一带一路”")


def test_004_traditional_without_footer():
    (a,) = _one("004")
    assert a.source == "央广网"
    assert a.date == "--11-01"
    assert not PINYIN_NOISE.search(a.title + a.text)
    for junk in ("長按二維碼", "版權聲明", "編輯", "報料熱線", "關注精彩內容"):
        assert junk not in a.text, junk


def test_read_articles_over_the_seed_folder():
    r = read_articles(SEEDS)
    assert r.errors == []
    assert len(r.articles) == 14
    assert sorted(r.files) == sorted(p.name for p in SEEDS.glob("*.txt"))


def test_jsonl_keeps_ids_and_optional_fields():
    r = read_file(FORMATS / "sample.jsonl")
    assert r.errors == []
    a, b = r.articles
    assert (a.id, a.title, a.date, a.source, a.url) == (
        "jx-001", "南昌推进赣江两岸生态修复", "2022-03-15", "江西日报", "https://example.org/jx-001")
    assert a.text.startswith("南昌市启动") and "生态环境局" in a.text
    assert b.id == "jx-002" and b.date is None and b.source is None and b.url is None
    assert b.title and b.title in b.text  # derived from the first sentence


def test_markdown_with_front_matter():
    (a,) = read_file(FORMATS / "sample.md").articles
    assert (a.title, a.date, a.source, a.url) == ("武汉长江新区首批项目签约", "2023-05-08", "长江日报", "https://example.org/wh-xinqu")
    assert a.text.startswith("5月8日") and "# " not in a.text and "---" not in a.text


def test_html_page_uses_h1_and_meta_and_drops_furniture():
    (a,) = read_file(FORMATS / "sample.html").articles
    assert a.title == "宜昌长江岸线复绿工程完工"
    assert a.date == "2021-09-30" and a.source == "湖北日报"
    assert a.text == "宜昌市长江岸线复绿工程近日全面完工，累计复绿岸线46公里。\n复绿后的岸线成为市民休闲的好去处。"


@pytest.mark.parametrize(
    "encoding, title, body",
    [
        ("gb18030", "武汉新建长江绿道", "武汉市今日宣布，长江沿岸将新建绿道十二公里。工程预计明年完工，总投资约三亿元。"),
        ("big5", "臺北新建河濱自行車道", "臺北市政府今日宣布，淡水河沿岸將新建自行車道十二公里。工程預計明年完工，總經費約三億元。"),
        ("utf-8-sig", "南京新建滨江步道", "南京市今日宣布，长江沿岸将新建步道八公里。"),
    ],
)
def test_legacy_encodings_decode(tmp_path, encoding, title, body):
    f = tmp_path / f"news-{encoding}.txt"
    f.write_bytes(f"{title}\n{body}\n".encode(encoding))
    r = read_file(f)
    assert r.errors == []
    (a,) = r.articles
    assert (a.title, a.text) == (title, body)


def test_decode_bytes_rejects_latin1_garbage():
    with pytest.raises(SourceError, match=r"x\.txt: cannot decode"):
        decode_bytes(bytes(range(0x80, 0x100)) * 20, "x.txt")


@pytest.mark.parametrize("text, title, body_start", [
    # a run of spaces ends the headline (as the CRUD-RAG news corpus writes it)
    ("原标题：最新！泰国国会推迟选举新总理                            参考消息网7月25日报道据路透社报道，泰国国会主席宣布推迟投票。",
     "最新！泰国国会推迟选举新总理", "参考消息网7月25日报道"),
    # a headline with a single space inside it keeps it
    ("原标题：天文学家在一年轻星系中发现水蒸气 类地行星或正在形成          据英国《都市报》7月24日报道，天文学家发现水蒸气。",
     "天文学家在一年轻星系中发现水蒸气 类地行星或正在形成", "据英国《都市报》"),
    # glued to the body: the outlet's byline begins it
    ("原标题：瑞幸咖啡第二季度净利润近10亿元 门店数破万【环球网财经消费资讯 记者 冯超男】8月1日，瑞幸咖啡发布财报。",
     "瑞幸咖啡第二季度净利润近10亿元 门店数破万", "【环球网财经消费资讯"),
    ("原标题：\u200b票房突破23亿，《孤注一掷》发声：侵权言论不实新京报贝壳财经讯（见习记者韦博雅）风头正劲。",
     "票房突破23亿，《孤注一掷》发声：侵权言论不实", "新京报贝壳财经讯"),
])
def test_a_syndicated_storys_original_headline_becomes_its_title(tmp_path, text, title, body_start):
    import json

    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps({"id": "n1", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    (a,) = read_articles(path).articles
    assert a.title == title
    assert a.text.startswith(body_start) and "原标题" not in a.text


def test_no_original_headline_is_made_up(tmp_path):
    """Where the headline's end cannot be told (glued to the body, no byline), the text stays whole
    and the title is its first clause, without the marker; a given title is never replaced."""
    import json

    glued = "原标题：日元跌破145“关键心理支撑位”日元突破关键145关口，贬值至今年新低。周一，日元兑美元汇率波动剧烈。"
    given = "原标题：最新！泰国国会推迟选举新总理      参考消息网7月25日报道。"
    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps({"id": "n1", "text": glued}, ensure_ascii=False) + "\n"
                    + json.dumps({"id": "n2", "title": "泰国新闻", "text": given}, ensure_ascii=False) + "\n", encoding="utf-8")
    a, b = read_articles(path).articles
    assert a.text == glued and a.title == "日元跌破145“关键心理支撑位”日元突破关键145关口"
    assert b.title == "泰国新闻" and b.text.startswith("原标题：最新")


@pytest.mark.parametrize("text, outlet", [
    ("中新社北京7月25日电 (记者 刘文文)为提升暑期旅游景区开放管理水平，文旅部发布通知。", "中新社"),
    ("IT之家 8 月 16 日消息，英特尔已经为游戏开发者提供了最新的 XeSS 1.2.0 版本。", "IT之家"),
    ("参考消息网7月25日报道据路透社报道，泰国国会主席宣布推迟投票。", "参考消息网"),
    ("新京报讯（记者陈琳）近日，北京市市场监管局发布典型案例。", "新京报"),
    ("本文转自【央视新闻客户端】；国家统计局今天发布数据。", "央视新闻"),
    ("“卡努”远离浙江 海上防台应急响应结束   来源：浙江日报  记者8月5日从浙江省防指办了解到。", "浙江日报"),
    ("据新华社报道，台风“杜苏芮”已在福建登陆。", None),  # cites an agency: not its own byline
    ("本报讯（记者 程午鹏）网上佯装聊球，实则非法交易球蟒。", None),  # "本报" names no outlet
    ("7月24日18时许，绵竹市龙岭华府小区发生惊险一幕。", None),
])
def test_the_outlet_named_in_a_news_texts_byline_is_its_source(tmp_path, text, outlet):
    import json

    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps({"id": "n1", "text": text}, ensure_ascii=False) + "\n"
                    + json.dumps({"id": "n2", "text": text, "source": "长江日报"}, ensure_ascii=False) + "\n", encoding="utf-8")
    a, given = read_articles(path).articles
    assert a.source == outlet
    assert given.source == "长江日报"  # a source given with the article is kept
