"""The Embedder service: all-MiniLM-L6-v2 over lists of texts, adaptively batched.

Two engines serve the same model (RAG_EMBEDDER_ENGINE): ``torch`` runs the
sentence-transformers weights (v1), ``onnx`` the int8 ONNX export (v2,
models/onnx_embedder.py). Both versions are packed into the Bento.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
import numpy as np

from core.settings import get_settings
from models.store import ModelSource, engine_source, load_model, version_service
from models.threads import use_torch_threads

settings = get_settings()
logger = logging.getLogger(__name__)


class EmbedderWorker:
    """The APIs of an embedder service; embedder_service() makes one service per model
    version, naming the version in ``source``."""

    source: ModelSource

    def __init__(self) -> None:
        source = self.source
        path, self.label = source.resolve()
        if source.engine == "onnx":
            from models.onnx_embedder import OnnxEmbedder

            onnx = load_model(self.label, lambda: OnnxEmbedder(path, settings.embedder_threads))
            self._encode = onnx.encode
            self.max_tokens = onnx.max_tokens
        else:
            use_torch_threads(settings.embedder_threads)  # before torch loads: sets OpenMP up
            from sentence_transformers import SentenceTransformer

            model = load_model(
                self.label,
                lambda: SentenceTransformer(str(path), device="cpu", local_files_only=True),
            )
            self._encode = lambda texts: model.encode(
                texts,
                batch_size=max(len(texts), 1),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            self.max_tokens = int(model.max_seq_length)
        logger.info(
            "embedder %s (%s) loaded, %d threads",
            self.label,
            source.engine,
            settings.embedder_threads,
        )

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.embed_max_batch_size,
        max_latency_ms=settings.embed_max_latency_ms,
    )
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (cosine similarity = dot product)."""
        return self._vectors(texts)

    @bentoml.api
    def encode_now(self, texts: list[str]) -> np.ndarray:
        """``encode`` without the batcher, for a call that arrives alone (models/routing.py)."""
        return self._vectors(texts)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._encode(texts), dtype=np.float32)


def embedder_service(source: ModelSource, name: str = "embedder") -> Any:
    """A BentoML service ``name`` serving ``source`` (models/store.version_service)."""
    # One batch at a time: torch already uses `embedder_threads` cores per batch.
    # The plain-named service packs every engine's version, so a built Bento can switch
    # RAG_EMBEDDER_ENGINE at deployment.
    engines = ("torch", "onnx") if name == "embedder" else ()
    return version_service(EmbedderWorker, source, name, threads=1, also_pack=engines)


# The settings' version: the incumbent's when no variants file names another.
Embedder = embedder_service(engine_source(settings.embedder_model, settings.embedder_engine))
