"""The naive design, for comparison only: the same Embedder behind a plain (not batchable)
API, so each request is encoded on its own. BentoML refuses max_batch_size=1, hence a
service of its own."""

from __future__ import annotations

import bentoml
import numpy as np


@bentoml.service(name="embedder-unbatched", workers=1, threads=1, traffic={"timeout": 300})
class UnbatchedEmbedder:
    def __init__(self) -> None:
        from models.embedder import Embedder

        self._embedder = Embedder()

    @bentoml.api
    def encode(self, texts: list[str]) -> np.ndarray:
        return self._embedder.encode(texts)
