"""The web app's entry point: reads the command line and environment, starts the Service and serves the
chat page and the REST API (built in rag.serving.web) with uvicorn."""
from __future__ import annotations

import os

# One BLAS thread per call, set before numpy loads OpenBLAS (unless OPENBLAS_NUM_THREADS is set): the app
# runs requests side by side, one per thread; OpenBLAS's own threads for each of the reader's matrix
# products spun waiting for the cores the other requests held (scripts/load_locust.py: CPU per question
# 357 -> 212 ms, throughput under 50 users doubled; docs/benchmarks.md, "Load at the reader's cost").
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402 - the imports below come after the environment above
import ctypes  # noqa: E402
import faulthandler  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from types import FrameType  # noqa: E402

import uvicorn  # noqa: E402

import rag  # noqa: E402
from rag.serving.service import Service, listens_on_loopback_only  # noqa: E402
from rag.serving.web.chat import make_app  # noqa: E402

log = logging.getLogger("app")

_NOISY = ("faiss", "bm25s", "httpx", "httpcore", "urllib3", "gradio", "gradio_client", "jieba", "sentence_transformers",
          "huggingface_hub", "onnxruntime", "asyncio", "multipart", "python_multipart", "charset_normalizer", "PIL")


# From SIGTERM (or Ctrl-C) to exit: uvicorn stops listening and gives requests in flight a few
# seconds, a change of the corpus in progress gets what is left of the grace to finish, then the
# process exits whatever its threads are doing (a parse or an embedding in a worker thread cannot be
# interrupted). Index writes are atomic, so the previous generation stays live if one is cut short.
SHUTDOWN_GRACE = 8.0  # seconds; a watchdog exits at this point, and faulthandler one second later
REQUESTS_GRACE = 3  # of which for requests in flight (uvicorn's timeout_graceful_shutdown)


class Server(uvicorn.Server):
    """uvicorn's server with a bounded shutdown: the first SIGTERM or SIGINT starts the clock (a
    watchdog thread, and faulthandler's C thread as a backstop that needs no GIL), and ``serve_until_signal``
    exits the process with ``os._exit`` once no change of the corpus is in progress."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self.deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # not uvicorn's: it records the signal to raise it again after serving, which would kill the
        # process at once (mid-write) or, with busy worker threads, leave it running
        if self.deadline is None:
            self.deadline = time.monotonic() + SHUTDOWN_GRACE
            log.info("%s: shutting down (exit within %.0f s)", signal.Signals(sig).name, SHUTDOWN_GRACE)
            threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()
            faulthandler.dump_traceback_later(SHUTDOWN_GRACE + 1, exit=True)  # prints what each thread was doing
        else:
            self.force_exit = True  # a second signal: stop waiting for requests in flight
        self.should_exit = True

    def _watchdog(self) -> None:
        time.sleep(max(0.0, self.deadline - time.monotonic()))
        idle = self.service.close(0)
        log.warning("still busy %.0f s after the signal: exiting%s", SHUTDOWN_GRACE,
                    "" if idle else " during a change of the corpus (the index keeps its previous generation; "
                                    "the next start brings the data folder in)")
        _exit(0 if idle else 1)

    def serve_until_signal(self) -> None:
        """Serve; after a signal, wait (within the grace) for a change in progress, then exit."""
        self.run()
        if self.deadline is None:  # stopped without a signal (cannot happen with uvicorn, but be plain)
            self.deadline = time.monotonic() + SHUTDOWN_GRACE
        idle = self.service.close(self.deadline - time.monotonic())
        log.info("stopped%s", "" if idle else " during a change of the corpus")
        _exit(0 if idle else 1)


def _exit(code: int) -> None:
    """Exit now, without waiting for worker threads (os._exit); the log is flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _quiet_third_parties(record: logging.LogRecord) -> bool:
    """Below WARNING, only our own lines: not the libraries' loaders, progress or every HTTP call."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in _NOISY


MALLOC_ARENAS = 2  # glibc's malloc arenas for the whole process (its default: up to 8 per core)


def _few_malloc_arenas() -> None:
    """Fewer malloc arenas than glibc's default (one per thread that allocates, up to 8 per core):
    the web server's threads each kept an arena of freed memory, and the app's resident memory
    crept up with every browser session (scripts/soak.py: about 70 MiB less with 2, growth slower).
    A no-op off glibc, or when MALLOC_ARENA_MAX is set."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, MALLOC_ARENAS)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl)
        pass


def main(argv: list[str] | None = None) -> None:
    """The edge: reads the command line and environment and hands them to Service as arguments."""
    _few_malloc_arenas()  # before any thread starts
    p = argparse.ArgumentParser(description="新闻问答 chat and REST API")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860; env GRADIO_SERVER_PORT)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all, read-only unless RAG_ADMIN_TOKEN is set)")
    config = rag.Config.from_env()  # RAG_DATA_DIR, RAG_INDEX_DIR, RAG_FEEDBACK_DIR, RAG_ADMIN_TOKEN, ...
    p.add_argument("--data", default=str(config.data_dir), help="articles folder (env RAG_DATA_DIR)")
    p.add_argument("--index", default=str(config.index_dir), help="index folder (env RAG_INDEX_DIR)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a filter, as some set their own level when imported (bm25s)
        handler.addFilter(_quiet_third_parties)
    service = Service(args.data, args.index, config=config, feedback_dir=config.feedback_dir,
                      local_only=listens_on_loopback_only(args.host))  # the admin token: config.admin_token
    service.start_in_background(show_progress=sys.stderr.isatty())  # progress bars on a terminal only
    log.info("chat on http://%s:%d/ , API docs on http://%s:%d/docs", args.host, args.port, args.host, args.port)
    log.info({"token": "changing the articles needs RAG_ADMIN_TOKEN",
              "local": "anyone on this machine may upload (listening on loopback only; set RAG_ADMIN_TOKEN to require a key)",
              "read-only": f"read-only: listening on {args.host} without RAG_ADMIN_TOKEN, so uploads are off"}[service.writes])
    serving = uvicorn.Config(make_app(service), host=args.host, port=args.port, log_level="warning",
                             timeout_graceful_shutdown=REQUESTS_GRACE)
    Server(serving, service).serve_until_signal()


if __name__ == "__main__":
    main()
