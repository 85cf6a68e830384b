"""Embedding on a Ray cluster: chunk texts through Ray Data ``map_batches`` on a pool of encoder actors."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ray
from ray.data import ActorPoolStrategy

from ..errors import ConfigError, EmbedderError

if TYPE_CHECKING:
    from ..config import Config
    from . import Embedder

__all__ = ["RayEmbedder"]

log = logging.getLogger(__name__)


class _Encoder:
    """A Ray actor holding one embedder (the int8 encoder by default), loaded once per actor."""

    def __init__(self, spec: str, cache_dir: str, model_dir: str) -> None:
        from . import make_embedder

        self._embedder = make_embedder(spec, cache_dir=Path(cache_dir), model_dir=model_dir or None)
        self._identity = json.dumps(self._embedder.identity(), sort_keys=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self._embedder.embed_documents([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vector": vectors, "identity": np.array([self._identity] * len(vectors), dtype=object)}


class RayEmbedder:
    """An embedder whose ``embed_documents`` runs on Ray; queries and identity stay with the
    local ``embedder`` it wraps, and every actor must report that same identity (the int8
    graph's quantization depends on the CPU, so vectors of two kinds are never mixed).

    ``config.ray_address``: ``"local"`` starts Ray on this machine for the call (and stops it
    after); anything else is passed to ``ray.init(address=...)`` (``"auto"``,
    ``"ray://head:10001"``). ``config.ray_workers`` encoder actors run at once, one CPU each.
    The ``rag`` package is shipped to the workers (``runtime_env`` ``py_modules``); its
    dependencies must be installed on the cluster.

    Example::

        emb = RayEmbedder(Config(ray_address="local", ray_workers=2), make_embedder("e5-int8"))
        D = emb.embed_documents(texts)      # the same vectors as make_embedder("e5-int8") gives
    """

    def __init__(self, config: "Config", embedder: "Embedder", *, batch_size: int = 32) -> None:
        if not config.ray_address:
            raise ConfigError("ray_address is empty: give 'local' or a Ray cluster address (rag build --ray ADDRESS)")
        self._config = config
        self._local = embedder
        self.name, self.dim = embedder.name, embedder.dim
        self._batch_size = batch_size

    @property
    def calibration(self) -> str | None:
        return getattr(self._local, "calibration", None)

    def identity(self) -> dict:
        return self._local.identity()

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._local.embed_queries(texts)

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        started = self._connect()
        try:
            return self._run(list(texts), show_progress)
        finally:
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Start or join Ray; True when this call started a local Ray that it should stop."""
        if ray.is_initialized():
            return False
        import rag

        address = self._config.ray_address
        env = {"py_modules": [str(Path(rag.__file__).parent)]}
        try:
            if address == "local":
                ray.init(num_cpus=self._config.ray_workers + 1, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, runtime_env=env)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, runtime_env=env)
        except Exception as e:  # ConnectionError, RuntimeError, ValueError from ray.init
            raise ConfigError(f"cannot start or reach Ray at {address!r} ({e}); ray_address (rag build --ray) "
                              f"takes 'local' or a cluster address such as ray://head:10001") from e
        return True

    def _run(self, texts: list[str], show_progress: bool) -> np.ndarray:
        cfg = self._config
        ray.data.DataContext.get_current().enable_progress_bars = show_progress
        ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        out = ds.map_batches(
            _Encoder,
            fn_constructor_kwargs={"spec": cfg.embedder, "cache_dir": str(cfg.cache_dir), "model_dir": cfg.e5_model_dir},
            batch_size=self._batch_size,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=cfg.ray_workers),
            num_cpus=1,
        )
        vectors = np.zeros((len(texts), self.dim), np.float32)
        seen = np.zeros(len(texts), bool)
        want = json.dumps(self._local.identity(), sort_keys=True)
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            bad = {str(x) for x in batch["identity"]} - {want}
            if bad:
                raise EmbedderError(f"a Ray worker's embedder is {bad.pop()} but this machine's is {want}: "
                                    "vectors of both cannot share an index; build without --ray or on like machines")
            vectors[batch["i"]] = np.asarray(batch["vector"], np.float32)
            seen[batch["i"]] = True
        if not seen.all():
            raise EmbedderError(f"Ray returned vectors for {int(seen.sum())} of {len(texts)} chunks")
        log.info("embedded %d chunks on Ray (%s, %d workers)", len(texts), cfg.ray_address, cfg.ray_workers)
        return vectors
