"""Measuring the product: question sets, retrieval and answer scores, and benchmarks (not on the
import path of the library; ``rag eval`` and ``rag bench`` use it).

Example::

    from rag.eval import load_questions, evaluate
    report = evaluate(Retriever.load("index"), load_questions("seeds_dev.jsonl"))
    print(report.table())
"""
from .benchmark import BenchReport, keyword_benchmark, run_benchmark
from .evaluation import MODES, EvalReport, Question, evaluate, keyword_only_retriever, load_questions

__all__ = ["BenchReport", "EvalReport", "MODES", "Question", "evaluate", "keyword_benchmark",
           "keyword_only_retriever", "load_questions", "run_benchmark"]
