"""The web app's entry point: reads the command line and environment, starts the Service and serves the
chat page and the REST API (built in rag.serving.web) with uvicorn."""
from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

import rag
from rag.serving.service import Service, listens_on_loopback_only
from rag.serving.web.chat import make_app

log = logging.getLogger("app")

_NOISY = ("faiss", "bm25s", "httpx", "httpcore", "urllib3", "gradio", "gradio_client", "jieba", "sentence_transformers",
          "huggingface_hub", "onnxruntime", "asyncio", "multipart", "python_multipart", "charset_normalizer", "PIL")


def _quiet_third_parties(record: logging.LogRecord) -> bool:
    """Below WARNING, only our own lines: not the libraries' loaders, progress or every HTTP call."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in _NOISY


def main(argv: list[str] | None = None) -> None:
    """The edge: reads the command line and environment and hands them to Service as arguments."""
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
    uvicorn.run(make_app(service), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
