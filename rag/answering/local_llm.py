"""In-process language model: a GGUF file run by llama.cpp (xllamacpp), streamed like the endpoint.

The only module that imports ``xllamacpp`` (``pip install 'rag-news[local-llm]'``), and only when a
model is configured (``RAG_LLM_GGUF``). Nothing is downloaded: the user brings the GGUF file.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import Iterator

from ..config import Config
from ..errors import ConfigError, LLMError

__all__ = ["LocalModel", "check_gguf", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rag-news[local-llm]'"
_GGUF_MAGIC = b"GGUF"
_servers: dict[tuple, object] = {}  # (path, threads, context) -> loaded xllamacpp.Server, one per process
_load_lock = threading.Lock()


def check_gguf(path: str | Path) -> Path:
    """``path`` as a Path when it is a readable GGUF file; ConfigError naming ``RAG_LLM_GGUF`` otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"llm_gguf (RAG_LLM_GGUF) is {str(path)!r}, which is not a file: point it at a .gguf "
                          "model file, e.g. an official Qwen2.5 instruct GGUF release")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ConfigError(f"llm_gguf (RAG_LLM_GGUF) {str(p)!r} is not a GGUF model file (it starts with {magic!r}, "
                          f"not {_GGUF_MAGIC!r})")
    return p


def _xllamacpp():
    try:
        import xllamacpp
    except ImportError as e:
        raise ConfigError(f"llm_gguf (RAG_LLM_GGUF) is set but the llama.cpp binding is not installed: "
                          f"{INSTALL_HINT} (or unset RAG_LLM_GGUF)") from e
    return xllamacpp


def default_threads() -> int:
    """Half the cores, at least one: llama.cpp's threads spin, and on shared cores more threads are slower."""
    return max(1, (os.cpu_count() or 2) // 2)


class LocalModel:
    """A GGUF chat model run in this process, with the same ``stream(messages)`` as ``ChatModel``.

    Example::

        model = LocalModel("/models/qwen2.5-1.5b-instruct-q4_k_m.gguf", threads=2)
        for delta in model.stream([{"role": "user", "content": "你好"}]):
            print(delta, end="")

    The file is checked and the binding imported when the object is made; the model is loaded on the
    first ``stream`` (or ``load()``), once per process for a given file, threads and context.
    ``timeout`` bounds each reply (the load not included): past it generation stops and LLMError is
    raised, so the caller's extractive answer stands.
    """

    default_use = "short"  # Config.llm_use when left empty (docs/benchmarks.md, "A local language model")

    def __init__(self, path: str | Path, threads: int = 0, context: int = 4096, timeout: float = 20.0,
                 max_tokens: int = 160) -> None:
        if threads < 0:
            raise ConfigError(f"llm_threads must be 0 (half the cores) or more, got {threads}")
        if context < 512:
            raise ConfigError(f"llm_context must be at least 512 tokens, got {context}")
        self.path = check_gguf(path)
        self._x = _xllamacpp()
        self.threads = threads or default_threads()
        self.context = context
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.model = self.path.name

    @classmethod
    def from_config(cls, config: Config) -> "LocalModel | None":
        """The model ``config.llm_gguf`` names, or None when it is empty."""
        if not config.llm_gguf.strip():
            return None
        return cls(config.llm_gguf.strip(), config.llm_threads, config.llm_context, config.llm_timeout)

    def load(self):
        """The loaded llama.cpp server (loads it on the first call; later calls share it)."""
        key = (str(self.path.resolve()), self.threads, self.context)
        with _load_lock:
            server = _servers.get(key)
            if server is None:
                x = self._x
                p = x.CommonParams()
                p.model.path = key[0]
                p.n_ctx = self.context
                p.n_parallel = 1  # one answer at a time; requests queue
                p.cpuparams.n_threads = self.threads
                p.cpuparams_batch.n_threads = self.threads
                p.verbosity = -1
                # no host-memory cache of earlier prompts: it grows by GBs over a day of questions; the
                # slot still reuses the system prompt it shares with the previous question
                p.cache_ram_mib = 0
                # the binding also listens on a loopback port; a random key keeps other programs out
                p.api_keys = [secrets.token_hex(16)]
                t0 = time.perf_counter()
                try:
                    server = x.Server(p)
                except Exception as e:  # noqa: BLE001 - llama.cpp reports a bad file as a generic error
                    raise ConfigError(f"llm_gguf (RAG_LLM_GGUF) {str(self.path)!r} could not be loaded by llama.cpp: "
                                      f"{e}") from e
                log.info("loaded %s in %.1f s (%d threads, context %d)", self.path.name, time.perf_counter() - t0,
                         self.threads, self.context)
                _servers[key] = server
        return server

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Yield the reply's text pieces as the model writes them (temperature 0)."""
        server = self.load()
        body = {"messages": messages, "stream": True, "temperature": 0, "max_tokens": self.max_tokens}
        pieces: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_chunk(chunk) -> bool:  # called by llama.cpp for each event; True stops generation
            pieces.put(chunk)
            return stop.is_set()

        def run() -> None:
            try:
                reply = server.handle_chat_completions(body, on_chunk)
                if isinstance(reply, dict) and "error" in reply:
                    pieces.put(LLMError(f"{self.model}: {reply['error']}"))
            except Exception as e:  # noqa: BLE001 - handed to the reader of the queue
                pieces.put(LLMError(f"{self.model} failed: {e}"))
            finally:
                pieces.put(done)

        deadline = time.monotonic() + self.timeout
        threading.Thread(target=run, name="local-llm", daemon=True).start()
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    chunk = pieces.get(timeout=max(left, 0.001))
                except queue.Empty:
                    raise LLMError(f"{self.model} took longer than llm_timeout={self.timeout} s") from None
                if chunk is done:
                    return
                if isinstance(chunk, LLMError):
                    raise chunk
                piece = _delta(chunk, self.model)
                if piece:
                    yield piece
        finally:
            stop.set()  # the consumer stopped (timeout, error or closed generator): end generation


def _delta(chunk, model: str) -> str:
    if isinstance(chunk, (str, bytes)):
        try:
            chunk = json.loads(chunk)
        except json.JSONDecodeError as e:
            raise LLMError(f"{model} sent an event that is not JSON: {chunk[:120]!r}") from e
    try:
        if "error" in chunk:
            raise LLMError(f"{model}: {chunk['error']}")
        choice = chunk["choices"][0] if chunk.get("choices") else {}
        content = (choice.get("delta") or {}).get("content") or ""
    except (AttributeError, KeyError, IndexError, TypeError) as e:
        raise LLMError(f"{model} sent an event that is not an OpenAI chat chunk: {str(chunk)[:120]!r}") from e
    return content if isinstance(content, str) else ""
