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
    location: str = Field(description="Its manifest: a path in the data dir or an s3:// URI.")


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
        description="Where the JSON Lines output was written (output_uri, else the job "
        "store); GET /batch_query_result?task_id= returns it too."
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
