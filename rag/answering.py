"""Answering: the Assistant turns a question (and the conversation so far) into a cited Answer."""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from typing import Iterator

from .config import Config
from .errors import LLMError
from .llm import ChatModel, build_messages, check_citations
from .records import Answer, Passage
from .retrieval import Hit, Retriever, clean_query
from .text import is_traditional, keywords, normalize, split_sentences, to_simplified, to_traditional

__all__ = ["Assistant", "DECLINE_TEXT", "Evidence", "LLM_DOWN_NOTE"]

log = logging.getLogger(__name__)

DECLINE_TEXT = "抱歉，现有的新闻文章里没有找到这个问题的答案。"
DECLINE_TEXT_TRAD = "抱歉，現有的新聞文章裡沒有找到這個問題的答案。"
LLM_DOWN_NOTE = "语言模型暂时不可用，以下是从文章中直接摘录的答案。"
LLM_UNCITED_NOTE = "语言模型的回答没有可核对的出处，以下是从文章中直接摘录的答案。"

# Words that point back to an earlier turn: "这些项目…", "该公司…", "其中…"
_ANAPHOR = re.compile(r"(这些|这个|这家|这位|这项|这次|那些|那个|那家|该|其|它|他们|她们|它们|此次|此项|上述|前者|后者|还有|另外|那么)")
_NUMBER_Q = re.compile(r"(多少|几[个家项所次年名位亿万]?|多大|多高|多长|多远|多久|百分之|比例|占比|增长了|规模)")
_TIME_Q = re.compile(r"(哪一年|哪年|什么时候|何时|哪天|几月|几号|日期|时间)")
_WHO_Q = re.compile(r"(谁|哪位|哪些单位|哪家|哪些企业|哪些公司)")
_DATELINE_LEAD = re.compile(r"^[^。，,]{0,30}?\d{1,2}月\d{1,2}日(?:电|讯|消息)\s*(?:[(（][^)）]{0,40}[)）])?")
_PLACE_Q = re.compile(r"(哪里|在哪|何处|哪个地方|什么地方|哪国|哪个国家|位置|位于|地址|哪个城市|哪座城市)")
_HAS_PLACE = re.compile(r"(位于|地处|坐落|座落|地点|位置|境内|[省市县区镇乡村路街国州]|[东南西北]侧)")
_DEFINITION_Q = re.compile(r"(是什么|是谁|什么人|职业|身份|哪国人|哪里人|什么样的)")
_YEAR = re.compile(r"((?:19|20)\d{2})\s*年")
_HAS_DIGIT = re.compile(r"\d")
_HAS_TIME = re.compile(r"(\d{4}年|\d{1,2}月|\d{1,2}日|\d{4}-\d{2})")


@dataclass(frozen=True)
class Evidence:
    """Whether the best retrieved passages answer the question: ``score`` is a calibrated probability."""

    score: float
    hits: list[Hit]
    query: str
    coverage: float = 0.0  # IDF-weighted share of the question's content words found in a top passage
    dense: float = 0.0  # best cosine between the query and a top passage


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(s, e) for s, e in split_sentences(text) if text[s:e].strip()]


class Assistant:
    """Answers questions from the indexed articles, always with citations.

    Example::

        assistant = Assistant(Retriever.load("index"))
        a = assistant.ask("江岸签约了哪些项目？")
        a.text        # '三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目签约江岸 [1]'
        a.citations   # [Passage(title='江岸簽約12家…', source='长江日报', ...)]
        a.grounded    # True; False when the articles hold no answer
        assistant.ask("这些项目计划总投资多少？", history=[{"role": "user", "content": "…"}, ...])
    """

    def __init__(self, retriever: Retriever, config: Config | None = None, llm: ChatModel | None = None) -> None:
        self.retriever = retriever
        self.config = config or retriever.config
        # the language model is optional: none configured (RAG_LLM_BASE_URL unset) means extractive answers
        self.llm = llm if llm is not None else ChatModel.from_config(self.config)

    # --- evidence ------------------------------------------------------------------------------
    def _coverage(self, terms: list[str], text: str) -> float:
        """IDF-weighted share of ``terms`` that occur in ``text`` (normalised)."""
        if not terms:
            return 0.0
        norm = normalize(text)
        idf = self.retriever.keywords.idf
        total = sum(idf(t) for t in terms)
        found = sum(idf(t) for t in terms if t in norm)
        return found / total if total else 0.0

    def _passage_text(self, hit: Hit) -> str:
        c = self.retriever.chunks[hit.row]
        return f"{c.title}\n{c.text}"

    def evidence(self, question: str, retrieval_query: str | None = None, **filters) -> Evidence:
        """Retrieve for the question and score how well the top passages cover its content words.

        A question naming a year (``2024年…``) prefers articles from that year.
        """
        q = retrieval_query or question
        year = _YEAR.search(normalize(question))
        hits = self.retriever.hits(
            q, k=max(5, self.config.answer_passages), prefer_year=int(year.group(1)) if year else None, **filters
        )
        terms = keywords(question)
        coverage = max((self._coverage(terms, self._passage_text(h)) for h in hits[:3]), default=0.0)
        dense = max((h.dense_score for h in hits[:3] if h.dense_score is not None), default=0.0)
        return Evidence(score=self._probability(coverage, dense), hits=hits, query=q, coverage=coverage, dense=dense)

    def _probability(self, coverage: float, dense: float) -> float:
        """Calibrated probability that the passages answer the question (logistic over two signals).

        The weights were fitted for the default embedder (multilingual-e5-small) by
        scripts/calibrate_decline.py; with another embedder, whose cosine scale differs, the
        dense signal is replaced by its typical value for answerable questions.
        """
        w_cov, w_dense, bias, typical_dense = self.config.evidence_weights
        if "e5" not in str(self.retriever.manifest.get("embedder_spec", "")) and "e5" not in self.retriever.embedder.name:
            dense = typical_dense
        return 1.0 / (1.0 + math.exp(-(w_cov * coverage + w_dense * dense + bias)))

    def _resolve(self, question: str, history: list | None, **filters) -> Evidence:
        """Retrieval for a question, using the previous user turn when it is a follow-up."""
        previous = [t.get("content", "") for t in (history or []) if isinstance(t, dict) and t.get("role") == "user"]
        previous = [p for p in previous if isinstance(p, str) and p.strip()]
        if not previous:
            return self.evidence(question, **filters)
        combined = f"{previous[-1]} {question}"
        if _ANAPHOR.search(normalize(question)):
            return self.evidence(question, combined, **filters)
        alone = self.evidence(question, **filters)
        if alone.score >= self.config.decline_threshold and alone.coverage >= 0.75:
            return alone
        joint = self.evidence(question, combined, **filters)
        return joint if joint.score > alone.score else alone

    # --- answer composition -----------------------------------------------------------------
    # tunable weights of sentence selection (measured with scripts/tune_answers.py on CMRC and seeds)
    TITLE_TERM_WEIGHT = 0.35  # a question word that is also in the article title names the topic, not the fact
    TYPE_BONUS = 0.15  # the sentence holds the kind of thing asked for (number, time, place, definition)
    RANK_BONUS = 0.08  # passages ranked higher are more likely to hold the answer
    SECOND_RATIO = 0.7  # a second sentence is added when it scores at least this share of the best

    def _select(self, question: str, hits: list[Hit]) -> list[tuple[float, int, int, int]]:
        """Scored candidate sentences: (score, passage index, start, end) best first."""
        terms = keywords(question)
        qn = normalize(question)
        wants_number = bool(_NUMBER_Q.search(qn))
        wants_time = bool(_TIME_Q.search(qn))
        wants_place = bool(_PLACE_Q.search(qn))
        wants_definition = bool(_DEFINITION_Q.search(qn))
        idf = self.retriever.keywords.idf
        scored: list[tuple[float, int, int, int]] = []
        for pi, h in enumerate(hits[: self.config.answer_passages]):
            chunk = self.retriever.chunks[h.row]
            title = normalize(chunk.title)
            weights = {t: idf(t) * (self.TITLE_TERM_WEIGHT if t in title else 1.0) for t in terms}
            total = sum(weights.values()) or 1.0
            text = chunk.text
            for s, e in _sentences(text):
                sn = normalize(text[s:e])
                cov = sum(w for t, w in weights.items() if t in sn) / total
                if cov == 0:
                    continue
                score = cov + self.RANK_BONUS / (pi + 1)
                if wants_number and _HAS_DIGIT.search(sn):
                    score += self.TYPE_BONUS
                if wants_time and _HAS_TIME.search(sn):
                    score += self.TYPE_BONUS
                if wants_place and _HAS_PLACE.search(sn):
                    score += self.TYPE_BONUS
                if wants_definition and chunk.start + s == 0:
                    score += self.TYPE_BONUS  # an article's first sentence says what its subject is
                scored.append((score, pi, s, e))
        scored.sort(key=lambda x: (-x[0], x[1], x[2]))
        return scored

    def _trim(self, sentence: str, question: str, budget: int) -> str:
        """The sentence without a dateline lead, cut to the clauses that matter if too long."""
        sentence = sentence.strip()
        simp = to_simplified(sentence)
        lead = _DATELINE_LEAD.match(simp)
        if lead and len(simp) == len(sentence) and sentence[lead.end() :].strip():
            sentence = sentence[lead.end() :].strip()
        if len(sentence) <= budget:
            return sentence
        terms = keywords(question)
        idf = self.retriever.keywords.idf
        clauses = [sentence[s:e] for s, e in _clause_spans(sentence)]
        best, best_score = clauses[0][:budget], -1.0
        for i in range(len(clauses)):
            length = 0
            for j in range(i, len(clauses)):
                length += len(clauses[j])
                if length > budget:
                    break
                window = "".join(clauses[i : j + 1])
                wn = normalize(window)
                sc = sum(idf(t) for t in terms if t in wn) - 0.001 * len(window)
                if sc > best_score:
                    best, best_score = window, sc
        best = best.strip().rstrip("，,、；;：:")
        return best + ("" if best.endswith(("。", "！", "？", "”")) else "…")

    def _compose(self, question: str, hits: list[Hit]) -> tuple[str, list[Passage], list[str]]:
        candidates = self._select(question, hits)
        if not candidates:
            return "", [], []
        budget = self.config.answer_max_chars
        chosen = [candidates[0]]
        best = candidates[0][0]
        def where(c: tuple[float, int, int, int]) -> tuple[str, int]:
            chunk = self.retriever.chunks[hits[c[1]].row]
            return chunk.doc_id, chunk.start + c[2]

        for cand in candidates[1:4]:
            # overlapping chunks repeat sentences: the same place in the same article is one sentence
            # and the same story syndicated by another outlet says nothing new either
            first_doc, cand_doc = where(chosen[0])[0], where(cand)[0]
            if cand_doc != first_doc and self.retriever.near_duplicates(first_doc, cand_doc):
                continue
            if cand[0] >= self.SECOND_RATIO * best and where(cand) != where(chosen[0]):
                chosen.append(cand)
                break
        # keep reading order within a passage
        lead = chosen[0][1]
        chosen.sort(key=lambda c: (0, c[2]) if c[1] == lead else (1, 0))
        trad = is_traditional(question)
        parts: list[str] = []
        cited: list[int] = []
        highlights: dict[int, str] = {}
        used = 0
        for score, pi, s, e in chosen:
            text = self.retriever.chunks[hits[pi].row].text
            raw = text[s:e]
            room = budget - used - 4
            if room < 20:
                break
            piece = self._trim(raw, question, room)
            if parts and len(piece) + used > budget:
                break
            piece = to_traditional(piece) if trad else to_simplified(piece)
            if pi not in cited:
                cited.append(pi)
                highlights[pi] = raw.strip()
            parts.append(f"{piece}[{cited.index(pi) + 1}]")
            used += len(piece) + 3
        passages = [self._with_other_outlets(self.retriever.passage(hits[pi]), hits) for pi in cited]
        return "".join(parts), passages, [highlights[pi] for pi in cited]

    def _with_other_outlets(self, passage: Passage, hits: list[Hit]) -> Passage:
        """The passage with the outlets of retrieved near-identical articles listed in ``also_in``."""
        labels: list[str] = []
        for h in hits:
            doc = self.retriever.chunks[h.row].doc_id
            if doc != passage.doc_id and self.retriever.near_duplicates(passage.doc_id, doc):
                a = self.retriever.articles[doc]
                label = a.source or doc
                if label != passage.source and label not in labels:
                    labels.append(label)
        return replace(passage, also_in=tuple(labels)) if labels else passage

    # --- the public call ----------------------------------------------------------------------
    def ask(self, question: str, history: list | None = None, **filters) -> Answer:
        """Answer ``question``; ``history`` holds earlier turns as ``{"role", "content"}`` dicts.

        ``filters``: ``sources``, ``date_from``, ``date_to`` as for ``Retriever.search``.
        Declines (``grounded=False``, no citations) when the articles do not hold the answer.
        With a language model configured the answer is the model's, checked (see ``stream``).
        """
        if self.llm is None:
            q = clean_query(question)
            return self._extractive(q, self._resolve(q, history, **filters))
        final = None
        for item in self.stream(question, history, **filters):
            final = item
        assert isinstance(final, Answer)
        return final

    def stream(self, question: str, history: list | None = None, **filters) -> Iterator[str | Answer]:
        """Yield the answer text so far (``str``) while it is written, then the final ``Answer``.

        The extractive path yields only the Answer. With a language model the partial texts are
        the model's raw reply; the final Answer holds it checked (citations to sources not given
        removed, uncited sentences marked). When the model times out, is down or sends garbage,
        the final Answer is the extractive one with ``note`` saying so. No evidence → decline,
        without calling the model.
        """
        q = clean_query(question)
        ev = self._resolve(q, history, **filters)
        extractive = self._extractive(q, ev)
        if self.llm is None or not extractive.grounded:
            yield extractive
            return
        passages = [self.retriever.passage(h) for h in ev.hits[: self.config.answer_passages]]
        text = ""
        try:
            for piece in self.llm.stream(build_messages(q, passages, history)):
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
        yield Answer(
            text=checked.text,
            citations=citations,
            grounded=True,
            highlights=[_best_sentence(p.text, checked.text) for p in citations],
            query=ev.query,
            note=note,
        )

    def _extractive(self, q: str, ev: Evidence) -> Answer:
        decline = DECLINE_TEXT_TRAD if is_traditional(q) else DECLINE_TEXT
        if not ev.hits or ev.score < self.config.decline_threshold:
            log.info("declined %r (evidence %.2f < %.2f)", q, ev.score, self.config.decline_threshold)
            return Answer(text=decline, citations=[], grounded=False, query=ev.query)
        text, citations, highlights = self._compose(q, ev.hits)
        if not text:
            return Answer(text=decline, citations=[], grounded=False, query=ev.query)
        return Answer(text=text, citations=citations, grounded=True, highlights=highlights, query=ev.query)


def _best_sentence(passage: str, answer: str) -> str:
    """The passage sentence sharing the most character pairs with the answer (what to highlight)."""
    target = normalize(answer)
    pairs = {target[i : i + 2] for i in range(len(target) - 1)}
    best, best_score = "", -1
    for s, e in _sentences(passage):
        sn = normalize(passage[s:e])
        score = len({sn[i : i + 2] for i in range(len(sn) - 1)} & pairs)
        if score > best_score:
            best, best_score = passage[s:e].strip(), score
    return best

def _clause_spans(sentence: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in re.finditer(r"[，,；;：:、]", sentence):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(sentence):
        spans.append((start, len(sentence)))
    return spans
