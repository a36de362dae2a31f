"""Request and response bodies of the job APIs (snapshots, restore, re-index, batch)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    state: str = Field(description="building, switching, done or failed.")
    generation: str = Field(description="The index being built (live once done).")
    embedder: str = Field(description="The model tag of the embedder it is built with.")
    documents_total: int
    documents_done: int
    chunks_done: int
    resumed_documents: int = Field(description="Documents an earlier, interrupted run built.")
    started_at: float
    rate_documents_s: float
    eta_s: float | None
    index_version: str = Field(description="The collection's index_version once switched.")
    error: str | None


class IndexState(BaseModel):
    generation: str
    index_version: str
    embedder: str | None
    documents: int


class ServedEmbedderInfo(BaseModel):
    service: str
    tag: str


class ReindexStatus(BaseModel):
    collection: str
    live: IndexState
    previous: IndexState | None = Field(
        description="The index rollback_index returns to (kept until the next switch)."
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
