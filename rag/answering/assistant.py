"""Answering: the Assistant turns a question (and the conversation so far) into a cited Answer."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterable, Iterator, Protocol

from ..config import Config
from ..embedding.base import E5_SMALL as CALIBRATED_FOR
from ..errors import LLMError, QueryError
from .extractive import MAX_ITEMS, Sentence, best_sentence, compose, list_items, select_sentences, variants
from .followup import rewrite, rewrite_with_llm
from .llm import ChatModel, build_messages, build_short_messages, check_citations
from ..query import Query
from .reader.reader import Reader, Span
from .reader.neural import PairEncoder
from ..records import OTHERS_LINE, Answer, Passage
from ..text import compact, is_traditional, to_simplified, to_traditional

__all__ = ["Assistant", "Evidence", "Searcher", "DECLINE_TEXT", "LLM_DOWN_NOTE"]

log = logging.getLogger(__name__)

DECLINE_TEXT = "抱歉，现有的新闻文章里没有找到这个问题的答案。"
DECLINE_TEXT_TRAD = "抱歉，現有的新聞文章裡沒有找到這個問題的答案。"
LLM_DOWN_NOTE = "语言模型暂时不可用，以下是从文章中直接摘录的答案。"
LLM_UNCITED_NOTE = "语言模型的回答没有可核对的出处，以下是从文章中直接摘录的答案。"
MISSING_TEXT = "文章未提及{}。相关报道："
MISSING_TEXT_TRAD = "文章未提及{}。相關報道："


class Searcher(Protocol):
    """What the Assistant needs of a retriever (``Retriever`` is one; tests use a fake)."""

    config: Config

    def search(self, query: Query, k: int = 5, *, sources=None, date_from=None, date_to=None,
               prefer_year: int | None = None, per_article: int | None = 1) -> list[Passage]: ...

    def idf(self, token: str) -> float: ...

    def near_duplicates(self, a: str, b: str) -> bool: ...

    @property
    def calibration(self) -> str | None: ...

    @property
    def reader_encoder(self) -> PairEncoder | None: ...


@dataclass(frozen=True)
class Evidence:
    """Whether the best retrieved passages answer the question: ``score`` is a calibrated probability."""

    score: float
    passages: list[Passage]
    query: str
    coverage: float = 0.0  # IDF-weighted share of the question's topic words found in a top passage
    dense: float = 0.0  # best cosine between the query and a top passage


@lru_cache(maxsize=1)
def shared_reader() -> Reader:
    """The reader shipped in the package, loaded once per process (all Assistants share it)."""
    return Reader.load()


def _naming(q: Query, passages: list[Passage], candidates: list[Sentence]) -> list[Sentence]:
    """For a question quoting a name (「三村工程」…), the sentences of passages holding it (in their
    text or their article's title), when some do: a passage that never names it answers another question."""
    names = [to_simplified(n) for n in q.asked.names]
    if not names:
        return candidates
    holding = {i for i, p in enumerate(passages) if all(n in to_simplified(f"{p.title} {p.text}") for n in names)}
    return [c for c in candidates if c.passage in holding] or candidates


class Assistant:
    """Answers questions from the indexed articles, always with citations.

    Example::

        assistant = Assistant(Retriever.load("index"))
        a = assistant.ask("江岸签约了哪些项目？", k=3)
        a.text        # '三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目签约江岸 [1]'
        a.citations   # [Passage(title='江岸簽約12家…', source='长江日报', ...)]
        a.grounded    # True; False when the articles hold no answer
        assistant.ask("这些项目计划总投资多少？", history=[{"role": "user", "content": "…"}, ...])
    """

    def __init__(self, retriever: Searcher, config: Config | None = None, llm: ChatModel | None = None,
                 reader: Reader | None = None) -> None:
        self.retriever = retriever
        self.config = config or retriever.config
        # the language model is optional: none configured (llm_base_url and llm_gguf empty) means
        # extractive answers; an endpoint or an in-process GGUF model, the same stream() either way
        self.llm = llm if llm is not None else ChatModel.from_config(self.config)
        # the span reader that finds the short answer (the trained one in the package by default)
        self.reader = reader if reader is not None else shared_reader()

    # --- evidence ------------------------------------------------------------------------------
    def _coverage(self, terms: list[str], passage: Passage) -> float:
        """IDF-weighted share of ``terms`` that occur in the passage and its title."""
        if not terms:
            return 0.0
        norm = Query(passage.context).normalized
        total = sum(self.retriever.idf(t) for t in terms)
        found = sum(self.retriever.idf(t) for t in terms if t in norm)
        return found / total if total else 0.0

    def evidence(self, question: Query, retrieval_query: Query | None = None, k: int | None = None, **filters) -> Evidence:
        """Retrieve for the question and score how well the top passages cover its topic words.

        A question naming a year (``2024年…``) prefers articles from that year.
        """
        q = retrieval_query or question
        extra = [v for t in q.content_words for v in variants(t)[:1] if v not in q.normalized]
        if extra:  # the articles may say "首期" where the question says "一期"
            q = Query.of(f"{q.text} {' '.join(extra)}")
        n = max(5, k or self.config.answer_passages)
        passages = self.retriever.search(q, n, prefer_year=question.year, per_article=None, **filters)
        terms = question.topic_words
        coverage = max((self._coverage(terms, p) for p in passages[:3]), default=0.0)
        dense = max((p.dense_score for p in passages[:3] if p.dense_score is not None), default=0.0)
        return Evidence(self._probability(coverage, dense), passages, q.text, coverage, dense)

    def _probability(self, coverage: float, dense: float) -> float:
        """Calibrated probability that the passages answer the question (logistic over two signals).

        The weights were fitted for multilingual-e5-small by scripts/calibrate_decline.py; with
        another embedder, whose cosine scale differs, the dense signal is replaced by its
        typical value for answerable questions.
        """
        w_cov, w_dense, bias, typical_dense = self.config.evidence_weights
        if self.retriever.calibration != CALIBRATED_FOR:
            dense = typical_dense
        return 1.0 / (1.0 + math.exp(-(w_cov * coverage + w_dense * dense + bias)))

    def standalone(self, question: Query, history: list | None) -> Query:
        """The question rewritten from the conversation into one that stands alone ("那一期呢？" after
        "宝钢黄石新港二期什么时候开工？" → "宝钢黄石新港一期什么时候开工？"); unchanged when it already
        stands alone or has nothing to do with the conversation."""
        if not history:
            return question
        turns = [t for t in history if isinstance(t, dict) and isinstance(t.get("content"), str)]
        text = rewrite_with_llm(question.text, turns, self.llm) if self.llm is not None else rewrite(question.text, turns)
        return Query.of(text) if text and text != question.text else question

    # --- the public calls ---------------------------------------------------------------------
    def ask(  # the same parameters as stream(), which it runs to its last item
        self,
        question: str,
        history: list | None = None,
        *,
        k: int | None = None,
        sources: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> Answer:
        """Answer ``question``; ``history`` holds earlier turns as ``{"role", "content"}`` dicts.

        ``k``: how many of the best passages the answer is drawn from (default
        ``config.answer_passages``); ``sources``, ``date_from``, ``date_to`` filter articles as in
        ``Retriever.search``. Declines (``grounded=False``, no citations) when the articles do not
        hold the answer. With a language model configured the answer is the model's, checked.
        """
        final = None
        for item in self.stream(question, history, k=k, sources=sources, date_from=date_from, date_to=date_to):
            final = item
        assert isinstance(final, Answer)
        return final

    def stream(
        self,
        question: str,
        history: list | None = None,
        *,
        k: int | None = None,
        sources: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer text so far (``str``) while it is written, then the final ``Answer``.

        Takes the same options as ``ask``. The extractive path yields only the Answer. With a
        language model the partial texts are the model's raw reply; the final Answer holds it
        checked (citations to sources not given removed, uncited sentences marked). When the
        model times out, is down or sends garbage, the final Answer is the extractive one with
        ``note`` saying so. No evidence → decline, without calling the model.
        """
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise QueryError(f"k must be a whole number of at least 1, got {k!r}")
        asked = Query.of(question)
        q = self.standalone(asked, history)
        ev = self.evidence(q, k=k, sources=sources, date_from=date_from, date_to=date_to)
        n = k or self.config.answer_passages
        extractive = self._extractive(q, ev, n, asked)
        if self.llm is None or not extractive.grounded or (self.config.llm_when == "unsure" and extractive.short):
            yield extractive
            return
        passages = ev.passages[:n]
        text = ""
        evidence = None
        if extractive.short:
            evidence = (extractive.short, extractive.highlights[0], passages.index(extractive.citations[0]))
        use = self.config.llm_use or getattr(self.llm, "default_use", "hint")
        if use == "short":
            yield self._llm_short(q, extractive)
            return
        try:
            for piece in self.llm.stream(build_messages(q.text, passages, history, evidence if use == "hint" else None)):
                text += piece
                yield text
        except LLMError as e:
            log.warning("language model failed, extractive answer instead: %s", e)
            yield replace(extractive, note=LLM_DOWN_NOTE)
            return
        checked = check_citations(text, len(passages))
        if not checked.used:
            log.warning("language model reply cites no given source; extractive answer instead: %r", text[:200])
            yield replace(extractive, note=LLM_UNCITED_NOTE)
            return
        note = f"已去掉{checked.removed}处指向未提供资料的引用。" if checked.removed else ""
        citations = [passages[i] for i in checked.used]
        # the reader's short answer stays when the model's answer says it too
        short = extractive.short if extractive.short and compact(extractive.short) in compact(checked.text) else ""
        yield Answer(text=checked.text, citations=citations, grounded=True,
                     highlights=[best_sentence(p.text, checked.text) for p in citations],
                     query=ev.query, note=note, question=q.text, short=short)

    def _llm_short(self, q: Query, extractive: Answer) -> Answer:
        """Config.llm_use "short": the model reads the extractive answer's sentences and writes only
        the short answer; the text stays extractive. The model's short answer is kept only when those
        cited sentences hold it word for word, so it is as well sourced as the reader's; otherwise the
        reader's stands."""
        sentences = extractive.text.split(OTHERS_LINE)[0]
        try:
            reply = "".join(self.llm.stream(build_short_messages(q.text, sentences, extractive.short)))
        except LLMError as e:
            log.warning("language model failed, the reader's short answer instead: %s", e)
            return extractive
        short = reply.strip().splitlines()[0].strip(" 。，,.：:“”\"'[]［］") if reply.strip() else ""
        short = to_traditional(short) if is_traditional(q.text) else to_simplified(short)
        if not short or short == "无" or compact(short) not in compact(sentences):
            log.info("model's short answer %r is not in the cited sentences; keeping the reader's", reply[:80])
            return extractive
        return replace(extractive, short=short)

    def _extractive(self, q: Query, ev: Evidence, n: int, asked: Query | None = None) -> Answer:
        """The extractive answer to ``q`` from the evidence. For a follow-up, ``asked`` is what the
        user typed: retrieval used the standalone ``q``, while sentences are chosen by the words
        the user asked about (the rewritten topic would pull towards the earlier answer)."""
        decline = Answer(text=DECLINE_TEXT_TRAD if is_traditional(q.text) else DECLINE_TEXT, citations=[],
                         grounded=False, query=ev.query, question=q.text)
        if not ev.passages or ev.score < self.config.decline_threshold:
            log.info("declined %r (evidence %.2f < %.2f)", q.text, ev.score, self.config.decline_threshold)
            return decline
        passages = ev.passages[:n]
        candidates = []
        if asked is not None and asked.text != q.text:
            # a follow-up is answered only from passages still about the conversation's topic (the
            # words the rewrite brought in); an unrelated article matching the typed words is no answer
            topic = [t for t in q.content_words if t not in asked.normalized]
            on_topic = {i for i, p in enumerate(passages) if not topic or self._coverage(topic, p) >= 0.5}
            if not on_topic:
                log.info("declined follow-up %r: no passage about its topic %s", q.text, topic)
                return decline
            candidates = [c for c in select_sentences(asked, passages, self.retriever.idf, self.config)
                          if c.passage in on_topic]
            if not candidates and asked.content_words:
                log.info("declined follow-up %r: %s not found about its topic", q.text, asked.content_words)
                return decline
            candidates = candidates or [c for c in select_sentences(q, passages, self.retriever.idf, self.config)
                                        if c.passage in on_topic]
        candidates = candidates or select_sentences(q, passages, self.retriever.idf, self.config)
        candidates = _naming(q, passages, candidates)
        span = self._span(q, passages, candidates)
        keep = None
        # an unsure span (below short_lead_confidence) does not choose the sentences: the answer
        # text is the extractive one, and the span is the short answer only if the text shows its
        # sentence, uncut
        leads = span is not None and span.confidence >= self.config.short_lead_confidence
        if leads:
            # the sentence holding the short answer leads, and is never cut inside the span; when the
            # reader is sure, it stands alone, else a second sentence may still join (if it adds)
            sure = span.confidence >= self.config.short_alone_confidence
            top = float("inf") if sure or not candidates else candidates[0].score
            lead = Sentence(top, span.passage, span.sentence_start, span.sentence_end)
            candidates = [lead] + [c for c in candidates if (c.passage, c.start) != (lead.passage, lead.start)]
            keep = (span.passage, span.start, span.end)
        mark = None if span is None else (span.passage, span.start, span.end)
        text, cited, highlights = compose(q, passages, candidates, self.retriever.idf, self.config,
                                          self.retriever.near_duplicates, keep=keep, mark=mark)
        if not text:
            return decline
        listed = self._listed(q, passages, candidates, cited)
        if listed is not None:  # "提出了四条具体建议：" and the article lists them after the colon
            passages = list(passages)
            passages[cited[0]], items = listed
            first = text.split("\n")[0].split("[1]")[0].rstrip("…：: ，,")  # the lead sentence, cited [1]
            listed_items = [to_traditional(x) if is_traditional(q.text) else x for x in items]  # as compose shows text
            text = first + "：\n" + "\n".join(f"{n}. {item}" for n, item in enumerate(listed_items, 1)) + "[1]"
            cited, highlights = cited[:1], [highlights[0] + "\n" + "\n".join(items)]
        short = ""
        if listed is not None:
            short = "；".join(listed_items)
        elif span is not None and cited and cited[0] == span.passage:
            short = to_traditional(span.text) if is_traditional(q.text) else to_simplified(span.text)
            shown = passages[span.passage].text[span.sentence_start:span.sentence_end].strip() == highlights[0]
            if not leads and not (shown and short.strip() in text):
                short = ""
        short = short.strip()
        missing = self._missing(q, passages)
        if missing:  # the thing asked for is in none of the passages: say so, then what they do say
            log.info("%r: the articles do not mention %r", q.text, missing)
            lead = MISSING_TEXT_TRAD if is_traditional(q.text) else MISSING_TEXT
            text, short = lead.format(to_traditional(missing) if is_traditional(q.text) else missing) + text, ""
        others = self._other_stories(q, ev.passages, cited, short or highlights[0])
        if others:  # each other story with what it says, when the reader finds that: 《…》（…）：0.6亿元[2]
            said = [self._said(q, ev.passages[i], short) for i in others]
            text += OTHERS_LINE + "；".join(f"{ev.passages[i].label}{'：' + x if x else ''}[{len(cited) + n}]"
                                         for n, (i, (x, _)) in enumerate(zip(others, said), 1))
            highlights = highlights + [sentence for _, sentence in said]
        return Answer(text=text, citations=[passages[i] for i in cited] + [ev.passages[i] for i in others], grounded=True,
                      highlights=highlights, query=ev.query, question=q.text, short=short, missing=missing,
                      others=list(range(len(cited) + 1, len(cited) + len(others) + 1)))

    def _listed(self, q: Query, passages: list[Passage], candidates: list[Sentence],
                cited: list[int]) -> tuple[Passage, list[str]] | None:
        """For a question asking for a list ("哪四条具体建议", "哪些措施") whose best sentence ends in a
        colon that the article follows with its items ("——在井冈山成立…。——在南昌打造…。"): the
        cited passage widened to hold them, and the items (each its first sentence; as many as
        the question counts, else up to ``MAX_ITEMS``). None otherwise."""
        asked = q.asked
        if not cited or not (asked.count or asked.kind == "list"):
            return None
        lead = next((c for c in candidates if c.passage == cited[0]), None)
        if lead is None:
            return None
        p = passages[lead.passage]
        if not p.text[lead.start:lead.end].rstrip().endswith(("：", ":")):
            return None
        article = getattr(self.retriever, "articles", {}).get(p.doc_id)
        if article is None or article.text[p.start:p.end] != p.text:
            return None
        after = p.start + lead.end
        items, end = list_items(article.text, after, asked.count or MAX_ITEMS)
        if len(items) < 2 or (asked.count and len(items) != asked.count):
            return None
        end = max(end, p.end)
        return replace(p, text=article.text[p.start:end], end=end), items

    @staticmethod
    def _missing(q: Query, passages: list[Passage]) -> str:
        """The attribute a question asking for a number is about ("总投资" of "…二期总投资是多少？")
        when no passage read mentions it (nor its first or last two characters: "投资" of "总投资",
        "投资金额"), else "". Only numbers: the words for a person's role or a time vary too much
        ("作者" of a book its article says was 著 by someone)."""
        asked = q.asked
        if asked.kind != "number" or not asked.attribute:
            return ""
        attr = to_simplified(asked.attribute)
        forms = {attr, attr[:2], attr[-2:]}
        for p in passages:
            text = to_simplified(f"{p.title} {p.text}")
            if any(f in text for f in forms):
                return ""
        return asked.attribute

    def _other_stories(self, q: Query, passages: list[Passage], cited: list[int], answer: str) -> list[int]:
        """Passages of other stories that answer the question differently: ranked close to the
        answer's own (``config.other_story_ratio`` of its score), covering the question's topic
        words (``config.other_story_coverage``), not holding ``answer``, not dated outside a year or
        month the question names, each story once; at most ``config.other_stories``."""
        cfg = self.config
        if not cited or cfg.other_stories < 1:
            return []
        lead = passages[cited[0]]
        stories = [passages[i].doc_id for i in cited]
        wanted = compact(answer)
        out: list[int] = []
        for i, p in enumerate(passages):
            if len(out) >= cfg.other_stories or p.score < cfg.other_story_ratio * lead.score:
                break
            if i in cited or any(p.doc_id == d or self.retriever.near_duplicates(p.doc_id, d) for d in stories):
                continue
            if (wanted and wanted in compact(p.text)) or not q.fits_date(p.date) \
                    or self._coverage(q.topic_words, p) < cfg.other_story_coverage:
                continue
            out.append(i)
            stories.append(p.doc_id)
        return out

    def _said(self, q: Query, passage: Passage, short: str) -> tuple[str, str]:
        """What another story's passage answers (in the question's script; "" when the reader is unsure
        of one, or it is the answer's own) and the sentence of the passage to highlight."""
        # the lexical trees alone: the span head's e5 pass over another passage cost ~20 ms a question
        span = self._span(q, [passage], select_sentences(q, [passage], self.retriever.idf, self.config), neural=False)
        if span is None:
            return "", best_sentence(passage.text, q.text)
        sentence = passage.text[span.sentence_start:span.sentence_end].strip()
        if compact(span.text) == compact(short):
            return "", sentence
        return (to_traditional(span.text) if is_traditional(q.text) else to_simplified(span.text)), sentence

    def _span(self, q: Query, passages: list[Passage], candidates: list[Sentence], neural: bool = True) -> Span | None:
        """The reader's short answer when it is confident enough (``config.short_min_confidence``);
        ``neural=False`` reads with the lexical trees alone."""
        try:
            span = self.reader.read(q, passages, candidates, encoder=self.retriever.reader_encoder if neural else None)
        except Exception:  # noqa: BLE001 - a reader fault costs the short answer, never the answer
            log.exception("reader failed on %r; answering with sentences only", q.text)
            return None
        if span is None or span.confidence < self.config.short_min_confidence:
            return None
        return span
