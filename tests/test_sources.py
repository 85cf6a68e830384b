"""rag.sources: each seed file and each generic format read into clean Articles."""
from __future__ import annotations

import re

import pytest

from rag.sources import decode_bytes, read_articles, read_file
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
