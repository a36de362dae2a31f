"""The response models of the service's API (service.py), and the mappers from the records
of the layers below. Over 400 lines on purpose: one module for the whole surface, so every
reply's shape is read in one place. The OpenAI API's wire format lives in
models/openai_wire.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.records import DocumentRecord, Passage
from retrieval.answers import Answer
from retrieval.grounding import SupportingSentence
from retrieval.ingestion import IngestResult

INDEX_VERSION = (
    "The version of the collection's index this was read from: a new one, greater than "
    "the last, with every ingest, replace, delete, restore or re-index; rollback_index "
    "brings back the version of the index it returns to (hex)."
)


ROUTING = (
    "The documents the question named and was answered from: their file names and the "
    "question's words that matched (RAG_ROUTE_DOCUMENTS); null when every document was "
    "searched."
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
    answer_score: float | None = Field(
        None,
        description="The reader's probability (0..1) that the passage answers the question; "
        "null where the variant has no reader or the passage was not among those it read.",
    )
    chunk_id: str = Field(
        "",
        description="The passage's id: page_image's highlight marks it on its page.",
    )
    heading: str = Field(
        "",
        description="The section headings the passage sits under, outermost first, joined "
        "by ' > ' (from the PDF's bookmarks or its type); '' where none were found.",
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
    routing: dict[str, list[str]] | None = Field(None, description=ROUTING)


class SearchResponse(BaseModel):
    results: list[Citation]
    index_version: str = Field(description=INDEX_VERSION)
    routing: dict[str, list[str]] | None = Field(None, description=ROUTING)


class IngestResponse(BaseModel):
    document_id: str
    filename: str
    collection: str
    sha256: str
    pages: int
    chunks: int
    status: str = Field(description="indexed, unchanged (same bytes again) or replaced.")
    timings_ms: dict[str, float]
    ocr_pages: int = Field(
        0, description="Pages without a text layer whose text was recognised (RAG_OCR)."
    )
    skipped_pages: dict[str, str] = Field(
        default_factory=dict,
        description="Scanned pages (1-based) whose text could not be recognised, and why; "
        "the rest of the document is indexed.",
    )


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
    metadata: dict[str, Any] = Field(
        description="The metadata given at ingest; where it named no title or dates, those "
        "read from the first pages (listed under 'detected')."
    )
    ocr_pages: int = Field(0, description="Pages whose text was recognised from their image.")
    skipped_pages: int = Field(0, description="Scanned pages whose text could not be recognised.")


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


# -- jobs: snapshots, restore, re-index, batch, exports ---------------------------------


class SnapshotInfo(BaseModel):
    snapshot_id: str = Field(description="Content-addressed: the same index gives the same id.")
    collection: str
    index_version: str = Field(description="The collection's index_version when it was taken.")
    documents: int
    chunks: int
    created_at: float
    embedder: str = Field(description="The model tag of the embedder that made its vectors.")
    location: str = Field(
        description="Its manifest, named within the service's snapshot store "
        "(manifests/<snapshot_id>.json); where that store is is not shown."
    )


class SnapshotList(BaseModel):
    snapshots: list[SnapshotInfo]


class RestoreResponse(BaseModel):
    snapshot_id: str
    collection: str
    index_version: str = Field(description="The collection's new index_version.")
    documents: int
    chunks: int
    reembedded: bool = Field(
        description="True when the chunks were embedded again (reindex=true with a "
        "snapshot made by another embedder)."
    )


class BatchSummary(BaseModel):
    """What /batch_query/get returns once the job is done."""

    job_id: str | None = Field(description="The job_id submitted (null when none was).")
    job_key: str = Field(description="The job's folder in the job store.")
    rows: int
    answered: int = Field(description="Rows with an answer (not_found answers included).")
    errors: int = Field(description="Rows with an error instead of an answer.")
    output: str = Field(
        description="Where the JSON Lines output was written, as submitted: output_uri "
        "(an s3:// URI, or a file name in the job's own folder of the data dir's "
        "exports/batch/), else output.jsonl in the job store; GET "
        "/batch_query_result?task_id= returns it too. Never a server path."
    )
    finished_at: str
    resumed_from: int = Field(description="Rows already done by an earlier run of the job.")


class BatchProgressReport(BaseModel):
    job_id: str
    state: str = Field(
        description="running, done, failed, or stopped (not running in this worker: "
        "interrupted, or running on another replica; submit it again to resume)."
    )
    rows_total: int
    rows_done: int
    answered: int
    errors: int
    rate_rows_s: float = Field(description="Rows per second of this run.")
    eta_s: float | None = Field(description="Seconds left at this rate; null until known.")
    output: str | None
    resumed_from: int


class ReindexReport(BaseModel):
    """A re-index's progress, and its result once it is done."""

    collection: str
    state: str = Field(
        description="building, switching, done, staging, staged (built with switch=false: "
        "kept beside the live index) or failed."
    )
    generation: str = Field(description="The index being built (live once done).")
    embedder: str = Field(description="The model tag of the embedder it is built with.")
    documents_total: int
    documents_done: int
    chunks_done: int
    resumed_documents: int = Field(description="Documents an earlier, interrupted run built.")
    started_at: float
    rate_documents_s: float
    eta_s: float | None
    index_version: str = Field(
        description="The collection's index_version once switched; the staged index's once "
        "staged (what answers read from it report)."
    )
    error: str | None


class IndexState(BaseModel):
    generation: str
    index_version: str
    embedder: str | None
    documents: int


class StagedIndexState(IndexState):
    out_of_step: int = Field(
        description="Documents it holds otherwise than the live index (missing, outdated or "
        "deleted since): 0 when in step. switch_index catches up with them first."
    )


class ServedEmbedderInfo(BaseModel):
    service: str
    tag: str


class ReindexStatus(BaseModel):
    collection: str
    live: IndexState
    previous: IndexState | None = Field(
        description="The index rollback_index returns to (kept until the next switch); "
        "null when there is none, as after a rollback."
    )
    rolled_back_from: IndexState | None = Field(
        description="The index the last rollback_index switched away from: kept, not "
        "served and not offered for rollback, until the next restore or re-index switch.",
    )
    staged: StagedIndexState | None = Field(
        description="A re-index built with switch=false and kept beside the live index: read "
        "by variants with index: staged, kept in step with the live index's documents, "
        "made live by switch_index (or by promoting such a variant), discarded by "
        "drop_staged_index or by any other switch."
    )
    building: ReindexReport | None = Field(
        description="The re-index running in this replica, or the last one it ran."
    )
    unfinished: list[IndexState] = Field(
        description="Indexes being built (here or on another replica) or left by an "
        "interrupted re-index: run reindex again with the same target to resume."
    )
    served_embedders: list[ServedEmbedderInfo] = Field(
        description="The embedders a re-index may use (RAG_EMBEDDER_*, and variants')."
    )


class EmbeddingsExportReport(BaseModel):
    collection: str
    index_version: str
    embedder: str
    documents: int
    chunks: int
    file: str = Field(
        description="The Parquet file written, named as the destination was given "
        "(destination/file name: an s3:// URI or a name under exports/)."
    )


# -- experiments: feedback and rollouts ------------------------------------------------


class FeedbackResponse(BaseModel):
    answer_id: str
    variant: str
    score: int
    recorded: bool = True


class RolloutChange(BaseModel):
    weights: dict[str, int]
    by: str = Field(description="The API key's name, 'guardrail', 'steps' or 'variants file'.")
    at: float = Field(description="Unix time of the change.")
    reason: str
    guardrails: dict[str, Any] | None = None
    event: str = Field(
        "rollout", description="start, rollout, step, guardrail, promote or rollback."
    )
    experiment_id: str = ""
    incumbent: str | None = Field(None, description="Set on the experiment's start.")
    steps: list[int] | None = None
    candidate: str | None = None
    webhook: str | None = Field(None, description="The webhook's scheme and host only.")
    shadow: dict[str, int] | None = None


class ExperimentSummary(BaseModel):
    experiment_id: str
    incumbent: str
    started_at: float
    ended_at: float | None
    outcome: str | None = Field(description="How it ended: its promote or rollback reason.")
    weights: dict[str, int]


class VariantStatus(BaseModel):
    weight: int
    requests: int = Field(description="Requests in this experiment.")
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    not_found_rate: float | None
    ungrounded_rate: float | None = Field(
        description="Share of answers whose generated text failed its check against the "
        "sources (replaced by the best supporting sentence)."
    )
    completion_tokens: int
    feedback: dict[str, float] | None = Field(
        description="Mean vote (-1..1) with its 95% interval {value, low, high, n}; null "
        "without votes."
    )
    model: dict[str, str] | None = Field(
        None,
        description="The exact versions it serves now, {embedder, generator} and its reader "
        "where it has one, as this replica reads its alias (a generator service swaps within "
        "RAG_ALIAS_REFRESH_S).",
    )
    generator_alias: str | None = Field(None, description="The alias its generator follows.")


class AliasInfo(BaseModel):
    alias: str
    model: str | None = Field(
        description="The exact model-store tag (name:version) it names; null while unset."
    )
    engine: str | None
    kind: str | None = Field(description="embedder or generator.")
    set_by: str | None = Field(description="The API key's name that set it last.")
    set_at: float | None = Field(description="Unix time it was set last.")
    from_model: str | None = Field(description="What it named before (null: nothing).")
    from_engine: str | None
    variants: list[str] = Field(description="The variants whose generator follows it.")
    changed: bool | None = Field(
        None, description="set_alias: false when it named that version already."
    )


class AliasChangeRecord(BaseModel):
    alias: str
    model: str
    engine: str
    kind: str
    by: str
    at: float
    from_model: str | None
    from_engine: str | None


class AliasList(BaseModel):
    aliases: list[AliasInfo] = Field(
        description="Every alias set, and those variants follow while unset, by name."
    )
    history: list[AliasChangeRecord] = Field(description="The newest 50 changes, oldest first.")


class RolloutStatus(BaseModel):
    experiment: str = Field(description="The experiment's name (the assignment salt).")
    # The fields from here to `experiments` have defaults only so that a status saved from
    # a server before experiments had ids still parses (scripts/ab_report.py --status).
    experiment_id: str = Field("", description="This experiment's id: <name>-<n>.")
    incumbent: str = Field(
        description="The variant serving most when the experiment started; candidates are "
        "judged against it."
    )
    started_at: float = 0.0
    ended_at: float | None = Field(None, description="null while it runs.")
    outcome: str | None = None
    weights: dict[str, int]
    since: float = Field(description="When the experiment started (as started_at).")
    guardrails: dict[str, Any] | None
    steps: list[int] | None = None
    candidate: str | None = None
    webhook: str | None = Field(None, description="The webhook's scheme and host only.")
    variants: dict[str, VariantStatus]
    shadow: dict[str, dict[str, Any]] = Field(
        {},
        description="Per variant getting mirrored requests: its share, the statistics of its "
        "mirrored answers, and the share that matched the answer served (agreement).",
    )
    analysis: dict[str, dict[str, Any]] = Field(
        {},
        description="Per candidate, while the experiment runs: whether it was judged, the "
        "metrics it failed, and each metric's test, statistic and threshold.",
    )
    history: list[RolloutChange]
    guardrail_breaches: list[RolloutChange]
    experiments: list[ExperimentSummary] = Field([], description="The newest 50, oldest first.")


class TimelineBin(BaseModel):
    start: float = Field(description="Unix time the bin starts; it lasts bin_s seconds.")
    requests: int
    error_rate: float | None = Field(description="null: no requests in the bin.")
    not_found_rate: float | None
    ungrounded_rate: float | None
    p50_ms: float | None = Field(description="Median latency of the answered requests.")
    p95_ms: float | None
    votes: int = Field(description="Votes cast in the bin.")
    upvote_share: float | None = Field(description="Share of +1 among them; null: none.")


class TimelineChange(BaseModel):
    at: float
    event: str = Field(description="start, rollout, step, guardrail, promote or rollback.")
    weights: dict[str, int]
    reason: str
    by: str


class RolloutTimeline(BaseModel):
    experiment_id: str
    incumbent: str
    started_at: float
    ended_at: float | None = Field(description="null while it runs.")
    bin_s: float = Field(description="The bins' width: a round number of seconds.")
    starts: list[float] = Field(description="Each bin's start, oldest first.")
    variants: dict[str, list[TimelineBin]] = Field(description="Per variant, one per bin.")
    changes: list[TimelineChange] = Field(description="Where the weights changed.")


class ExportResponse(BaseModel):
    rows: int = Field(description="Rows written: answers given or voted on since the last export.")
    files: list[str] = Field(description="The new file (none when nothing was new).")
    cursor_from: int
    cursor_to: int
    destination: str


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
            answer_score=p.answer_score,
            chunk_id=p.chunk_id,
            heading=p.heading,
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
        reason=answer.reason,  # type: ignore[arg-type]  # answerability's two reasons
        grounding=answer.grounding,
        citations=[
            AnswerCitation(**c.model_dump(), role=role) for c in citations(answer.citations)
        ],
        supporting=list(answer.supporting),
        # The version that wrote the answer, which a generator following an alias may have
        # swapped since the pipeline's own view.
        model={**model, "generator": answer.generator} if answer.generator else model,
        usage=answer.usage,
        timings_ms=answer.timings_ms,
        variant=variant,
        answer_id=answer_id,
        index_version=answer.index_version,
        routing=answer.routing,
    )


def document_info(record: DocumentRecord) -> DocumentInfo:
    public = record.to_public()
    # Only a synced document's own origin is shown, never our storage of an upload.
    public["source"] = record.metadata.get("s3_uri")
    return DocumentInfo(**public)


def ingest_response(result: IngestResult) -> IngestResponse:
    return IngestResponse(**vars(result))
