"""Training of the reader's span head (``rag.answering.reader.neural.SpanHead``) and of its own copy of e5's
top layers, used by ``train_reader.py --neural``.

For every question, the sentences the reader reads (those holding a candidate span) go through the
index's int8 e5 encoder with the question (``Int8Embedder.pair_sequences``: the whole pair's layer-8
token states). On those, a copy of e5-small's layers 9–11 (initialised from e5's own weights) and
the head (LayerNorm, two width-3 convolutions over the sentence's tokens, on the top layer's and
layer 8's states side by side) learn, per sentence, which token starts and which ends the answer
(softmax over the sentence's tokens and its start token, which stands for "not in this sentence").
First the head alone on e5's frozen layers (``head_epochs``), then the layers and the head together
(``tune_epochs``, AdamW with warm-up and linear decay; the layers at ``tune_lr``, the head at 1e-3).
Training questions get their scores from models trained without them (out-of-fold), so the trees
learn how far to trust the head on questions it has not seen. Torch is needed here only; the shipped
head runs with numpy and the layers as an int8 ONNX graph (``rag.embedding.int8_graph.TopLayers``).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import Config
from rag.answering.extractive import select_sentences
from rag.query import Query
from rag.answering.reader.reader import collect_candidates
from rag.answering.reader.neural import MAX_SPAN_TOKENS, SentenceLogits, SpanHead

HIDDEN, KERNEL = 256, 3
FIRST_LAYER = 9  # the copy covers e5-small's layers 9-11, on layer 8's states (STATE_LAYERS_FROM_TOP)


@dataclass
class Example:
    """One sentence read for one question: the pair's layer-8 states, where the sentence's tokens
    start in it, their character spans, and the answer's token positions (0 = not here)."""

    item: str  # question id
    key: tuple[int, int, int]  # (passage, start, end)
    spans: np.ndarray  # (tokens, 2)
    below: np.ndarray  # (pair tokens, 384) float16
    offset: int
    start: int
    end: int


def question_examples(it, passages, sents, encoder, golds) -> list[Example]:
    """Examples of the sentences the reader reads for one question (``golds``: answer offsets)."""
    q = Query.of(it.question)
    c = collect_candidates(q, passages, sents)
    if len(c) == 0:
        return []
    keys = list(dict.fromkeys(c.sentence_keys()))
    seqs = encoder.pair_sequences(q.text, [passages[p].text[a:b] for p, a, b in keys])
    out = []
    for key, (spans, below, offset) in zip(keys, seqs):
        if not len(spans):
            continue
        _, s0, s1 = key
        start = end = 0
        for g0, g1 in golds:
            if g0 >= s0 and g1 <= s1:
                a, b = g0 - s0, g1 - 1 - s0
                si = np.flatnonzero((spans[:, 0] <= a) & (a < spans[:, 1]))
                ei = np.flatnonzero((spans[:, 0] <= b) & (b < spans[:, 1]))
                if len(si) and len(ei) and ei[0] >= si[0]:
                    start, end = int(si[0]) + 1, int(ei[0]) + 1
                    break
        out.append(Example(it.id, key, spans, below.astype(np.float16), offset, start, end))
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


@dataclass
class Trained:
    """A trained head and its copy of the top layers (tensors named as in e5-small)."""

    head: SpanHead
    layers: dict[str, np.ndarray]
    model: object  # the torch module, for scoring held-back examples


def _model(encoder_folder: Path):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from rag.embedding.st_folder import read_encoder

    config, tensors, prefix = read_encoder(encoder_folder)
    H, NH = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    n_layers = int(config["num_hidden_layers"])

    def t(name):
        return torch.tensor(np.asarray(tensors[prefix + name], np.float32))

    class Layer(nn.Module):
        """A post-LayerNorm BERT / XLM-R layer (as ``rag.embedding.onnx_graph`` writes it)."""

        def __init__(self, i):
            super().__init__()
            self.index = i
            self.qkv, self.ao = nn.Linear(H, 3 * H), nn.Linear(H, H)
            self.fi, self.fo = nn.Linear(H, 4 * H), nn.Linear(4 * H, H)
            self.ln1, self.ln2 = nn.LayerNorm(H, eps=eps), nn.LayerNorm(H, eps=eps)
            self.drop = nn.Dropout(0.1)
            k = f"encoder.layer.{i}."
            with torch.no_grad():
                self.qkv.weight.copy_(torch.cat([t(k + f"attention.self.{n}.weight") for n in ("query", "key", "value")]))
                self.qkv.bias.copy_(torch.cat([t(k + f"attention.self.{n}.bias") for n in ("query", "key", "value")]))
                for mod, name in self.named_parts():
                    mod.weight.copy_(t(k + name + ".weight"))
                    mod.bias.copy_(t(k + name + ".bias"))

        def named_parts(self):
            return [(self.ao, "attention.output.dense"), (self.ln1, "attention.output.LayerNorm"),
                    (self.fi, "intermediate.dense"), (self.fo, "output.dense"), (self.ln2, "output.LayerNorm")]

        def tensors(self) -> dict[str, np.ndarray]:
            k = f"encoder.layer.{self.index}."
            out = {}
            for n, w, b in zip(("query", "key", "value"), self.qkv.weight.detach().chunk(3), self.qkv.bias.detach().chunk(3)):
                out[k + f"attention.self.{n}.weight"], out[k + f"attention.self.{n}.bias"] = w.numpy(), b.numpy()
            for mod, name in self.named_parts():
                out[k + name + ".weight"], out[k + name + ".bias"] = mod.weight.detach().numpy(), mod.bias.detach().numpy()
            return out

        def forward(self, x, bias):  # x (B, T, H); bias (B, 1, 1, T): 0 or -1e9 on padding
            B, L, _ = x.shape
            q, k, v = self.qkv(x).view(B, L, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.1 if self.training else 0.0)
            x = self.ln1(x + self.drop(self.ao(a.transpose(1, 2).reshape(B, L, H))))
            return self.ln2(x + self.drop(self.fo(F.gelu(self.fi(x)))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Layer(i) for i in range(FIRST_LAYER, n_layers)])
            self.norm = nn.LayerNorm(2 * H)
            self.conv1 = nn.Conv1d(2 * H, HIDDEN, KERNEL, padding=KERNEL // 2)
            self.conv2 = nn.Conv1d(HIDDEN, 2, KERNEL, padding=KERNEL // 2)
            self.act = nn.GELU(approximate="tanh")
            self.drop = nn.Dropout(0.1)

        def forward(self, X, M, idx, hm):
            """X (B, T, H) layer-8 states of the pairs, M (B, T) their tokens; idx (B, n) the rows
            the head reads (the start token, then the sentence's tokens), hm (B, n) which are real."""
            bias = torch.zeros(M.shape, dtype=X.dtype).masked_fill(~M, -1e9)[:, None, None, :]
            h = X
            for layer in self.layers:
                h = layer(h, bias)
            Z = torch.gather(torch.cat([h, X], -1), 1, idx[..., None].expand(-1, -1, 2 * H))
            Z = self.norm(Z) * hm[..., None]
            Z = self.drop(self.act(self.conv1(Z.transpose(1, 2)))) * hm[:, None, :]
            return self.conv2(Z).transpose(1, 2)

    return Model(), H


def _batch(examples: list[Example], width: int):
    import torch

    T = max(len(e.below) for e in examples)
    n = max(len(e.spans) for e in examples) + 1
    X = np.zeros((len(examples), T, width), np.float32)
    M = np.zeros((len(examples), T), bool)
    idx = np.zeros((len(examples), n), np.int64)
    hm = np.zeros((len(examples), n), bool)
    for j, e in enumerate(examples):
        X[j, :len(e.below)] = e.below
        M[j, :len(e.below)] = True
        k = len(e.spans)
        idx[j, 1:k + 1] = np.arange(e.offset, e.offset + k)
        hm[j, :k + 1] = True
    return (torch.from_numpy(X), torch.from_numpy(M), torch.from_numpy(idx), torch.from_numpy(hm),
            torch.tensor([e.start for e in examples]), torch.tensor([e.end for e in examples]))


def _batches(examples: list[Example], size: int, rng) -> list[list[int]]:
    """Batches of similar length (sorted within runs of 50 batches), in random order."""
    order = rng.permutation(len(examples))
    out = []
    for i in range(0, len(order), size * 50):
        run = sorted(order[i:i + size * 50], key=lambda k: len(examples[k].below))
        out += [run[j:j + size] for j in range(0, len(run), size)]
    rng.shuffle(out)
    return out


def train(examples: list[Example], encoder_folder: Path, head_epochs: int, tune_epochs: int,
          tune_lr: float = 5e-5, seed: int = 0, batch: int = 32, log=print) -> Trained:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    model, H = _model(encoder_folder)
    rng = np.random.default_rng(seed)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("layers.")]

    def run(epochs: int, params: list[dict], warmup: float):
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        steps = epochs * -(-len(examples) // batch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, s / max(1.0, steps * warmup)) * max(0.0, (steps - s) / steps))
        t0, step, avg = time.time(), 0, None
        for _ in range(epochs):
            for b in _batches(examples, batch, rng):
                X, M, idx, hm, S, E = _batch([examples[k] for k in b], H)
                logits = model(X, M, idx, hm.float()).masked_fill(~hm[..., None], -1e4)
                loss = F.cross_entropy(logits[..., 0], S) + F.cross_entropy(logits[..., 1], E)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
                if step % 200 == 0:
                    log(f"    step {step}/{steps}: loss {avg:.3f}, {time.time() - t0:.0f} s")

    for p in model.layers.parameters():
        p.requires_grad_(False)
    model.train()
    model.layers.eval()  # e5's own layers, as the index runs them
    run(head_epochs, [{"params": head_params, "lr": 1e-3}], 0.0)
    for p in model.layers.parameters():
        p.requires_grad_(True)
    model.train()
    run(tune_epochs, [{"params": list(model.layers.parameters()), "lr": tune_lr},
                      {"params": head_params, "lr": 1e-3}], 0.06)
    model.eval()
    head = SpanHead({n.replace(".", "_"): p.detach().numpy() for n, p in model.named_parameters() if not n.startswith("layers.")})
    layers = {k: v for layer in model.layers for k, v in layer.tensors().items()}
    return Trained(head, layers, model)


def head_logits(trained: Trained, examples: list[Example]) -> dict[str, dict[tuple, SentenceLogits]]:
    """Per question, the scores of its sentences (the torch model, as the reader computes them)."""
    import torch

    out: dict[str, dict[tuple, SentenceLogits]] = {}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].below))
    width = examples[0].below.shape[1] if examples else 0
    with torch.no_grad():
        for i in range(0, len(order), 64):
            part = [examples[k] for k in order[i:i + 64]]
            X, M, idx, hm, _, _ = _batch(part, width)
            L = trained.model(X, M, idx, hm.float()).numpy()
            for j, e in enumerate(part):
                out.setdefault(e.item, {})[e.key] = SentenceLogits(e.spans, L[j, :len(e.spans) + 1])
    return out


def head_alone_f1(logits: dict[str, dict[tuple, SentenceLogits]], items: dict, span_f1) -> float:
    """Character F1 of the head's best span per question (over the sentences read), for learning curves."""
    scores = []
    for qid, read in logits.items():
        best, text = -np.inf, ""
        it = items[qid]
        for (_, s0, _), sl in read.items():
            s, e = sl.logits[1:, 0], sl.logits[1:, 1]
            m = len(s)
            pair = np.where(np.triu(np.ones((m, m), bool)) & ~np.triu(np.ones((m, m), bool), MAX_SPAN_TOKENS),
                            s[:, None] + e[None, :], -1e9)
            i, j = np.unravel_index(np.argmax(pair), pair.shape)
            v = pair[i, j] - sl.logits[0].sum()
            if v > best:
                best, text = v, it.text[s0 + sl.spans[i][0]: s0 + sl.spans[j][1]]
        scores.append(span_f1(text, it.answers))
    return float(np.mean(scores)) if scores else 0.0


def out_of_fold(examples: list[Example], folds: int, encoder_folder: Path, **kw) -> dict[str, dict[tuple, SentenceLogits]]:
    """Each training question's sentence scores from a model trained on the other folds."""
    fold = {e.item: int(hashlib.sha1(("nn:" + e.item).encode()).hexdigest(), 16) % folds for e in examples}
    out: dict[str, dict[tuple, SentenceLogits]] = {}
    for k in range(folds):
        t0 = time.time()
        trained = train([e for e in examples if fold[e.item] != k], encoder_folder, **kw)
        out.update(head_logits(trained, [e for e in examples if fold[e.item] == k]))
        print(f"  span head fold {k + 1}/{folds}: {time.time() - t0:.0f} s", flush=True)
    return out
