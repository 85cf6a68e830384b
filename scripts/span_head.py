"""Training of the reader's span head (``rag.reader_neural.SpanHead``), used by ``train_reader.py --neural``.

For every question, the sentences the reader reads (those holding a candidate span) go through the
index's e5 encoder with the question (``Int8Embedder.pair_states``: layers 11 and 8 of the int8
graph, 768 values per token); a small MLP on those states learns, per sentence, which token starts
and which ends the answer (softmax over the sentence's tokens and its start token, which stands for
"not in this sentence"). Training questions get their scores from heads trained without them
(out-of-fold), so the trees learn how far to trust the head on questions it has not seen.
Torch is needed here only; the shipped head runs with numpy.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from rag.config import Config
from rag.embedding.base import TokenStates
from rag.extractive import select_sentences
from rag.query import Query
from rag.reader import collect_candidates
from rag.reader_neural import SentenceLogits, SpanHead

HIDDEN, KERNEL = 256, 3


@dataclass
class Example:
    """One sentence read for one question, with the answer's token positions (0 = not here)."""

    item: str  # question id
    key: tuple[int, int, int]  # (passage, start, end)
    states: TokenStates
    start: int
    end: int


def question_examples(it, passages, sents, encoder, golds) -> list[Example]:
    """Examples of the sentences the reader reads for one question (``golds``: answer offsets)."""
    q = Query.of(it.question)
    c = collect_candidates(q, passages, sents)
    if len(c) == 0:
        return []
    keys = list(dict.fromkeys(c.sentence_keys()))
    states = encoder.pair_states(q.text, [passages[p].text[a:b] for p, a, b in keys])
    out = []
    for key, st in zip(keys, states):
        if not len(st.spans):
            continue
        _, s0, s1 = key
        start = end = 0
        for g0, g1 in golds:
            if g0 >= s0 and g1 <= s1:
                a, b = g0 - s0, g1 - 1 - s0
                si = np.flatnonzero((st.spans[:, 0] <= a) & (a < st.spans[:, 1]))
                ei = np.flatnonzero((st.spans[:, 0] <= b) & (b < st.spans[:, 1]))
                if len(si) and len(ei) and ei[0] >= si[0]:
                    start, end = int(si[0]) + 1, int(ei[0]) + 1
                    break
        out.append(Example(it.id, key, TokenStates(st.spans, st.states.astype(np.float16), st.first.astype(np.float16)),
                           start, end))
    return out


def collect(items, idf_by_set, passage_of, gold_spans, encoder, log_every: int = 500) -> list[Example]:
    config = Config()
    out: list[Example] = []
    t0 = time.time()
    for n, it in enumerate(items):
        q = Query.of(it.question)
        passages = [passage_of(it)]
        sents = select_sentences(q, passages, idf_by_set[it.set], config)
        out += question_examples(it, passages, sents, encoder, gold_spans(it.text, it.answers))
        if n % log_every == 0:
            print(f"  token states: {n}/{len(items)} questions, {time.time() - t0:.0f} s", flush=True)
    return out


def train_head(examples: list[Example], epochs: int, seed: int = 0) -> SpanHead:
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    width = examples[0].states.states.shape[1]

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(width)
            self.conv1 = nn.Conv1d(width, HIDDEN, KERNEL, padding=KERNEL // 2)
            self.conv_mid = nn.Conv1d(HIDDEN, HIDDEN, KERNEL, padding=KERNEL // 2)
            self.conv2 = nn.Conv1d(HIDDEN, 2, KERNEL, padding=KERNEL // 2)
            self.act = nn.GELU(approximate="tanh")
            self.drop = nn.Dropout(0.1)

        def forward(self, x, mask):  # x (batch, tokens, width), mask (batch, tokens)
            x = self.norm(x) * mask[..., None]
            h = self.drop(self.act(self.conv1(x.transpose(1, 2)))) * mask[:, None, :]
            h = h + self.drop(self.act(self.conv_mid(h))) * mask[:, None, :]
            return self.conv2(h).transpose(1, 2)

    model = Head()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ce = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(examples))
        for i in range(0, len(order), 32):
            batch = [examples[k] for k in order[i:i + 32]]
            T = max(len(e.states.spans) for e in batch) + 1
            X = np.zeros((len(batch), T, width), np.float32)
            M = np.zeros((len(batch), T), bool)
            for j, e in enumerate(batch):
                X[j, 0] = e.states.first
                X[j, 1:len(e.states.spans) + 1] = e.states.states
                M[j, :len(e.states.spans) + 1] = True
            mask = torch.from_numpy(M)
            logits = model(torch.from_numpy(X), mask.float()).masked_fill(~mask[..., None], -1e4)
            loss = ce(logits[..., 0], torch.tensor([e.start for e in batch])) + ce(logits[..., 1], torch.tensor([e.end for e in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    sd = {k.replace(".", "_"): v.detach().numpy() for k, v in model.state_dict().items()}
    return SpanHead(sd)


def head_logits(head: SpanHead, examples: list[Example]) -> dict[str, dict[tuple, SentenceLogits]]:
    out: dict[str, dict[tuple, SentenceLogits]] = {}
    for e in examples:
        st = TokenStates(e.states.spans, e.states.states.astype(np.float32), e.states.first.astype(np.float32))
        out.setdefault(e.item, {})[e.key] = SentenceLogits(e.states.spans, head.logits(st))
    return out


def out_of_fold(examples: list[Example], folds: int, epochs: int) -> dict[str, dict[tuple, SentenceLogits]]:
    """Each training question's sentence scores from a head trained on the other folds."""
    fold = {e.item: int(hashlib.sha1(("nn:" + e.item).encode()).hexdigest(), 16) % folds for e in examples}
    out: dict[str, dict[tuple, SentenceLogits]] = {}
    for k in range(folds):
        t0 = time.time()
        head = train_head([e for e in examples if fold[e.item] != k], epochs)
        out.update(head_logits(head, [e for e in examples if fold[e.item] == k]))
        print(f"  span head fold {k + 1}/{folds}: {time.time() - t0:.0f} s", flush=True)
    return out
