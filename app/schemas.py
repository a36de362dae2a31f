"""The request and response models of the service's API (service.py), and the mappers from
the records of the layers below. The OpenAI API's wire format lives in models/openai_wire.py;
jobs' and experiments' responses in jobs/schemas.py and experiments/schemas.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from retrieval.answering import Answer
from retrieval.grounding import SupportingSentence
from retrieval.index import DocumentRecord, Passage
from retrieval.ingestion import IngestResult

INDEX_VERSION = (
    "The version of the collection's index this was read from: a new one, greater than "
    "the last, with every ingest, replace, delete, restore or re-index; rollback_index "
    "brings back the version of the index it returns to (hex)."
)


class Citation(BaseModel):
    source: int = Field(description="The number used for this passage in the answer, [n].")
    document_id: str
    filename: str
    page_start: int
    page_end: int
    text: str
    score: float = Field(description="Cosine similarity of question and passage (-1..1).")
    ranks: dict[str, int] = Field(
        default_factory=dict,
        description="1-based rank of the passage in each retriever that found it "
        "('dense', 'lexical').",
    )


class AnswerCitation(Citation):
    role: Literal["support", "related"] = Field(
        description="support: the answer rests on this passage; related: the closest "
        "passage to a question the documents do not answer (answer_mode not_found)."
    )


class QueryResponse(BaseModel):
    answer: str
    cached: bool = Field(
        description="True when this answer was served from the answer cache: the collection "
        "has not changed since it was computed."
    )
    answer_mode: str = Field(
        description="generated (written by the generator, checked against its sources), "
        "extractive (the supporting sentence with the most evidence, quoted: the "
        "extractive answer style, or a generated answer that failed the check) or "
        "not_found (the documents do not answer the question; see reason)."
    )
    reason: Literal["no_relevant_passage", "passages_do_not_answer"] | None = Field(
        None,
        description="Why a not_found answer is one: no_relevant_passage (nothing in the "
        "collection is about the question) or passages_do_not_answer (passages are about it "
        "but do not answer it). Null for other answers.",
    )
    grounding: str = Field(description="Why the answer was accepted, replaced or refused.")
    citations: list[AnswerCitation]
    # The grounding check's own record: one definition of a supporting sentence.
    supporting: list[SupportingSentence]
    model: dict[str, str]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    variant: str = Field(description="The variant (answer pipeline) that answered.")
    answer_id: str = Field(description="Send it to `feedback` to vote on this answer.")
    index_version: str = Field(description=INDEX_VERSION)


class SearchResponse(BaseModel):
    results: list[Citation]
    index_version: str = Field(description=INDEX_VERSION)


class IngestResponse(BaseModel):
    document_id: str
    filename: str
    collection: str
    sha256: str
    pages: int
    chunks: int
    status: str = Field(description="indexed, unchanged (same bytes again) or replaced.")
    timings_ms: dict[str, float]


class DocumentInfo(BaseModel):
    source: str | None = Field(
        description="The s3:// URI a synced document came from; null for an upload (where "
        "the service keeps its copy is not shown)."
    )
    document_id: str
    collection: str
    filename: str
    sha256: str
    pages: int
    chunks: int
    indexed_at: float
    metadata: dict[str, Any]


class DocumentList(BaseModel):
    collection: str
    index_version: str = Field(description=INDEX_VERSION)
    documents: list[DocumentInfo]


class S3SyncReport(BaseModel):
    bucket: str
    prefix: str
    collection: str
    state: str = Field(description="listing, ingesting, removing or done.")
    objects_total: int
    objects_done: int
    pages_done: int
    indexed: list[str]
    replaced: list[str]
    unchanged: list[str]
    removed: list[str]
    failed: list[dict[str, str]] = Field(description="[{uri, reason}] of objects not indexed.")


class DeleteResponse(BaseModel):
    document_id: str
    filename: str
    collection: str
    deleted: bool


def citations(passages: list[Passage]) -> list[Citation]:
    """Passages as cited, numbered [1], [2], ... in their order."""
    return [
        Citation(
            source=n,
            document_id=p.document_id,
            filename=p.filename,
            page_start=p.page_start,
            page_end=p.page_end,
            text=p.text,
            score=p.score,
            ranks=p.ranks,
        )
        for n, p in enumerate(passages, start=1)
    ]


def query_response(
    answer: Answer, variant: str, model: dict[str, str], answer_id: str
) -> QueryResponse:
    role: Literal["support", "related"] = "related" if answer.reason else "support"
    return QueryResponse(
        answer=answer.answer,
        cached=answer.cached,
        answer_mode=answer.mode,
        reason=answer.reason,
        grounding=answer.grounding,
        citations=[
            AnswerCitation(**c.model_dump(), role=role) for c in citations(answer.citations)
        ],
        supporting=list(answer.supporting),
        model=model,
        usage=answer.usage,
        timings_ms=answer.timings_ms,
        variant=variant,
        answer_id=answer_id,
        index_version=answer.index_version,
    )


def document_info(record: DocumentRecord) -> DocumentInfo:
    public = record.to_public()
    # Only a synced document's own origin is shown, never our storage of an upload.
    public["source"] = record.metadata.get("s3_uri")
    return DocumentInfo(**public)


def ingest_response(result: IngestResult) -> IngestResponse:
    return IngestResponse(**vars(result))
