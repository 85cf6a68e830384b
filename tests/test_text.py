"""rag.text: normalisation (property-based), pinyin-noise repair, sentence splitting, tokenising."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from rag.text import normalize, pos_tag, split_sentences, strip_pinyin_noise, to_traditional, tokenize

# Han characters (common blocks), ASCII, full-width forms and Chinese punctuation
_chars = st.one_of(
    st.characters(min_codepoint=0x3400, max_codepoint=0x9FFF),  # incl. Extension A variants (麹 → 麴 → 曲)
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),
    st.sampled_from("，。！？；：“”‘’（）【】、…\n\u3000"),
)
texts = st.text(_chars, max_size=60)
news = st.sampled_from([
    "长江经济带高质量发展座谈会在上海举办",
    "江岸区与12家联盟成员单位签约，推进生态环保产业补链延链强链。",
    "宝钢黄石新港项目二期工程于2024年正式启动建设",
    "湖北省发挥统一战线和科协系统的职能优势",
])


@settings(max_examples=200, deadline=None)
@given(texts)
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=200, deadline=None)
@given(st.one_of(texts, news))
def test_normalize_is_the_same_for_traditional_script(text):
    assert normalize(to_traditional(text)) == normalize(text)


def test_normalize_folds_width_case_and_script():
    assert normalize("ＡＢＣ１２３長江經濟帶") == "abc123长江经济带"


def test_strip_pinyin_noise_repairs_annotated_text():
    noisy = "長(zhǎng)江日?qǐng)?bào)大武漢客戶端,生態(tài)環(huán)保產(chǎn)業(yè)"
    assert strip_pinyin_noise(noisy) == "長江日報大武漢客戶端,生態環保產業"


def test_strip_pinyin_noise_leaves_ordinary_brackets():
    text = "黄石新港(物流)工业园与 API(abc) 接口"
    assert strip_pinyin_noise(text) == text


@settings(max_examples=200, deadline=None)
@given(texts)
def test_split_sentences_covers_the_text(text):
    spans = split_sentences(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(s < e for s, e in spans)


def test_tokenize_matches_across_scripts():
    assert tokenize("長江經濟帶") == tokenize("长江经济带")
    assert "长江" in tokenize("长江经济带的发展")
    assert "的" not in tokenize("长江经济带的发展")


def test_to_traditional_keeps_the_characters_the_user_wrote():
    assert to_traditional("会议上签约的") == "會議上籤約的"  # opencc's phrase choice
    assert to_traditional("会议上签约的", like=["江岸簽約了哪些項目？"]) == "會議上簽約的"
    assert to_traditional("会议上签约的", like=["江岸签约了哪些项目？"]) == "會議上籤約的"  # Simplified: ignored


def test_pos_tag_keeps_every_character_and_tags_places():
    tags = pos_tag("宜昌市点军区集中开工了几个生态环保项目？")
    assert "".join(w for w, _ in tags) == "宜昌市点军区集中开工了几个生态环保项目？"
    assert ("宜昌市", "ns") in tags and pos_tag("") == []


def test_variant_characters_fold_like_their_traditional_form():
    assert normalize("麹") == normalize(to_traditional("麹")) == normalize("麴")


def test_variant_table_is_cached_per_opencc_version_and_survives_a_damaged_cache(tmp_path, monkeypatch):
    from rag import text

    monkeypatch.setitem(text._CACHE, "dir", tmp_path)
    text._variant_table.cache_clear()
    try:
        table = text._variant_table()
        (cached,) = tmp_path.glob("opencc-*-variants.json")
        assert table == text._compute_variant_table() and table[ord("麹")] == "曲"
        cached.write_text("{not json", encoding="utf-8")
        text._variant_table.cache_clear()
        assert text._variant_table() == table  # recomputed, and the file rewritten
        text._variant_table.cache_clear()
        assert text._variant_table() == table
    finally:
        text._variant_table.cache_clear()


def test_pos_tags_come_from_the_compact_table_and_jieba_posseg_still_works():
    from rag.text import pos_tag

    tags = dict(pos_tag("长江生态环保产业联盟在武汉召开理事会，教授滕堂伟说"))
    assert tags["武汉"] == "ns" and tags["召开"] == "v" and tags["理事会"] == "n" and tags["滕堂伟"] == "nr"
    import jieba.posseg  # other code in the process keeps a working posseg with the same tags

    assert [(p.word, p.flag) for p in jieba.posseg.lcut("武汉召开理事会")] == [("武汉", "ns"), ("召开", "v"), ("理事会", "n")]
