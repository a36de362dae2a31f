"""The Embedder service: sentence-transformers over lists of texts, adaptively batched."""

from __future__ import annotations

import logging

import bentoml
import numpy as np

from models.store import ModelSource
from models.threads import use_torch_threads
from settings import get_settings

settings = get_settings()
logger = logging.getLogger(__name__)
_source = ModelSource(settings.embedder_model)


@bentoml.service(
    name="embedder",
    workers=1,
    # One batch at a time: torch already uses `embedder_threads` cores per batch.
    threads=1,
    traffic={"timeout": 300},
)
class Embedder:
    model = _source.bento_model()

    def __init__(self) -> None:
        use_torch_threads(settings.embedder_threads)  # before torch loads: sets OpenMP up
        from sentence_transformers import SentenceTransformer

        path, self.label = _source.resolve()
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.max_tokens = int(self._model.max_seq_length)
        logger.info("embedder %s loaded, %d threads", self.label, settings.embedder_threads)

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.embed_max_batch_size,
        max_latency_ms=settings.embed_max_latency_ms,
    )
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (cosine similarity = dot product)."""
        return self._model.encode(
            texts,
            batch_size=max(len(texts), 1),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32)
