"""export_embeddings on a real Chroma, to a local folder and to a real S3 endpoint (moto's
server), read back the ways the README says: pyarrow, pandas and DuckDB."""

from __future__ import annotations

import io
import uuid

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import InvalidRequest
from core.records import EmbedderId
from jobs.embeddings_export import export_embeddings
from tests.unit.retrieval.test_index import record, stage, vec

EMBEDDER = EmbedderId("rag-embedder:v1", 8)


def fill(index) -> None:
    for ingest, name in (("one", "a.pdf"), ("two", "b.pdf")):
        rec = record(ingest, name)
        stage(index, rec, ingest)
        index.record_embedder("default", EMBEDDER)
        index.commit(rec, None)


def test_a_local_export_reads_with_pyarrow_pandas_and_duckdb(index, tmp_path):
    fill(index)
    version = index.live("default").index_version
    report = export_embeddings(index, "default", str(tmp_path / "features"), None)
    assert (report.documents, report.chunks, report.index_version) == (2, 6, version)
    assert report.file == str(tmp_path / "features" / f"embeddings-default-{version}.parquet")

    table = pq.read_table(report.file)
    assert table.column_names == [
        "chunk_id", "document_id", "filename", "page_start", "page_end", "chunk_index",
        "text", "heading", "boxes", "embedder", "vector",
    ]  # fmt: skip
    rows = {r["chunk_id"]: r for r in table.to_pylist()}
    assert rows["one:1"]["text"] == "one chunk 1"
    assert rows["one:1"]["embedder"] == EMBEDDER.tag
    assert np.allclose(rows["one:1"]["vector"], vec(1))

    frame = table.to_pandas()
    assert sorted(frame["filename"].unique()) == ["a.pdf", "b.pdf"]
    assert np.stack(frame["vector"].to_numpy()).shape == (6, 8)

    ((count, dims),) = duckdb.sql(
        f"SELECT count(*), max(len(vector)) FROM '{report.file}' WHERE filename = 'a.pdf'"
    ).fetchall()
    assert (count, dims) == (3, 8)


def test_an_s3_export_and_an_empty_collection(index, s3):
    fill(index)
    client = s3.client()
    bucket = f"features-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    report = export_embeddings(index, "default", f"s3://{bucket}/offline", client)
    key = report.file.removeprefix(f"s3://{bucket}/")
    assert key.startswith("offline/embeddings-default-")
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert pq.read_table(io.BytesIO(body)).num_rows == 6
    with pytest.raises(InvalidRequest, match="no documents"):
        export_embeddings(index, "nothing", f"s3://{bucket}/offline", client)
