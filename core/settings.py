"""The one typed settings object. Nothing else in the project reads ``os.environ``.

Every field can be set with an environment variable named ``RAG_<FIELD>`` (for example
``RAG_DATA_DIR=/var/lib/rag``) or in a ``.env`` file in the working directory.

Over 400 lines on purpose: it is the one list of every setting, each with its description
and the measurement behind its default, read top to bottom as the configuration reference
(the README's table is checked against it). Its value types live beside it in core/.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.keys import ApiKeySpec, KeyRing
from core.rate_limits import parse_limits
from core.s3_sources import S3SourceRule

# BentoML's own cap on requests per instance, as a multiple of RAG_MAX_CONCURRENCY.
SERVER_CONCURRENCY_FACTOR = 4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("rag-data"),
        description="Directory of the embedded Chroma index (created if missing).",
    )
    chroma_url: str | None = Field(
        None,
        description=(
            "URL of a Chroma server (http://host:8000); unset = the embedded Chroma in "
            "data_dir. Set it to run several replicas on one index."
        ),
    )
    abandoned_ingest_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "With a Chroma server, chunks of an ingest that has not committed after this "
            "many seconds are swept at start-up (embedded: all, as no one else writes)."
        ),
    )

    blob_s3_bucket: str | None = Field(
        None,
        description="S3 bucket that keeps uploaded PDFs; unset = the folder data_dir/blobs.",
    )
    blob_s3_prefix: str = Field("rag-blobs", description="Key prefix of uploads in that bucket.")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for any S3-compatible store (MinIO, Ceph...); unset = AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; unset = boto3's default.")
    s3_sources: list[S3SourceRule] = Field(
        default_factory=list,
        description=(
            "JSON list of the S3 prefixes ingest_s3 may sync, and into which collections: "
            "[{bucket, prefix, collections}]. Empty = none when API keys are configured "
            "(any in open development mode). The blob bucket/prefix is never allowed."
        ),
    )
    redis_url: str | None = Field(
        None,
        description=(
            "Redis URL (redis://host:6379/0) for the embedding and answer caches; unset = "
            "an in-process cache. Redis being down never fails a request."
        ),
    )
    redis_timeout_s: float = Field(
        0.5,
        gt=0,
        description=(
            "Seconds any Redis call (caches, rate limits, task records, experiments) may take "
            "before Redis counts as down; it is then skipped for 5 s by every client, so a "
            "Redis that hangs costs a request at most this, never a hang."
        ),
    )
    cache_memory_entries: int = Field(
        20000, ge=1, description="Entries kept by the in-process cache (LRU)."
    )
    embedding_cache_ttl_s: int = Field(
        7 * 24 * 3600, ge=1, description="How long a cached embedding is kept (s)."
    )
    answer_cache_ttl_s: int = Field(
        24 * 3600, ge=1, description="How long a cached answer is kept (s)."
    )
    page_image_max_width: int = Field(
        2000,
        ge=100,
        description=(
            "Widest page image page_image renders (pixels; wider: 400 naming the bounds). "
            "Images come in widths of multiples of 200 up to it."
        ),
    )
    page_image_cache_mb: int = Field(
        64,
        ge=0,
        description=(
            "Memory for rendered page images kept in this process (LRU by size, MiB); "
            "0 = every request renders its page again."
        ),
    )
    # Rendering runs in worker processes boxed by these limits (retrieval/render_pool.py):
    # a crafted 124 KB page made PDFium take 5 GB and seconds per width in the API process.
    page_image_render_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Processes that render page images, one page at a time each.",
    )
    page_image_render_memory_mb: int = Field(
        1024,
        ge=256,
        description=(
            "Address space one render process may use (MiB, RLIMIT_AS); a page that needs "
            "more gets 422 PageTooComplex and the process is replaced."
        ),
    )
    page_image_render_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest one page may take to render (s); past it the process is killed and "
            "replaced, and the request gets 422 PageTooComplex."
        ),
    )
    page_image_max_content_mb: float = Field(
        32.0,
        gt=0,
        description=(
            "Most content a page may draw (MiB of decoded content streams, a form counted "
            "each time it is drawn), checked before rendering: 422 PageTooComplex beyond."
        ),
    )

    # Models: BentoML model-store tags, imported by scripts/import_models.py.
    embedder_model: str = Field(
        "rag-embedder:latest",
        description="Model-store tag of the sentence-transformers embedder.",
    )
    # onnx is the default: 2.3-9x faster here and within a point of torch on squad2-dev
    # (page-hit@4 dense 0.901 vs 0.903, hybrid 0.969 vs 0.963); see BENCHMARKS.md.
    embedder_engine: Literal["torch", "onnx"] = Field(
        "onnx",
        description=(
            "How the embedder runs: torch (the sentence-transformers weights, v1) or onnx "
            "(the int8 ONNX export made at install, v2). Collections remember the version "
            "that indexed them: switching needs a re-index (409 EmbedderMismatch)."
        ),
    )
    generator_model: str = Field(
        "rag-generator:latest",
        description=(
            "Model-store tag of the causal LM, or the path of any local Hugging Face "
            "causal-LM directory (GPT-2 included); a path is used as is and not packed."
        ),
    )

    # ct2 is the default: 2.2x tokens/s at batch 1, 1.4x at batch 8, first piece 0.42x and
    # gold spans 0.621 against 0.566 on squad2-dev (BENCHMARKS.md, EVALUATION.md).
    generator_engine: Literal["torch", "ct2"] = Field(
        "ct2",
        description=(
            "How the generator runs: torch (the float32 weights, v1) or ct2 (the int8 "
            "CTranslate2 conversion made at install, v2)."
        ),
    )

    # Threads (measured on 2 cores, see models/threads.py and BENCHMARKS.md): with a short
    # OpenMP spin, 2 embedder threads encode chunks 1.8x faster than 1 while the generator
    # is idle and as fast while it is busy; a one-query encode costs the same. The
    # generator gains nothing from a second thread at batch 1, the common case.
    embedder_threads: int = Field(2, ge=1, description="torch threads in the embedder.")
    generator_threads: int = Field(
        1, ge=1, description="Threads per generation in the generator (torch or ct2)."
    )

    # Model services as separate deployments (README "Deploy"): unset, `bentoml serve`
    # runs them in the same graph; set, the API service calls that URL and starts none.
    embedder_url: str | None = Field(
        None,
        description=(
            "URL of a separately deployed embedder service (http://embedder:3000); unset = "
            "the embedder runs in this `bentoml serve` graph."
        ),
    )
    generator_url: str | None = Field(
        None,
        description=(
            "URL of a separately deployed generator service (http://generator:3000); unset "
            "= the generator runs in this `bentoml serve` graph."
        ),
    )
    generator_backend: Literal["local", "openai"] = Field(
        "local",
        description=(
            "Who writes generative answers: local (the generator service) or openai (any "
            "OpenAI-compatible server at openai_base_url: vLLM, TGI, llama.cpp, Ollama...)."
        ),
    )
    openai_base_url: str | None = Field(
        None,
        description="Base URL of the OpenAI-compatible API, ending in /v1 (backend openai).",
    )
    openai_model: str | None = Field(
        None, description="Model name sent to the OpenAI-compatible API (backend openai)."
    )
    openai_api_key: SecretStr | None = Field(
        None, description="Bearer key for the OpenAI-compatible API; never logged."
    )
    openai_timeout_s: float = Field(
        30.0, gt=0, description="Per-attempt timeout of a call to the OpenAI-compatible API."
    )
    openai_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries, with exponential backoff, of a failed or timed-out call to it.",
    )

    embed_max_batch_size: int = Field(32, ge=1, description="Adaptive batch cap (texts).")
    # BentoML's batcher cancels (503) a queued call whose estimated wait + run exceeds
    # max_latency_ms; a 32-chunk batch alone runs ~1.3 s here, so the cap must leave room
    # for a query queued behind an ingest batch.
    embed_max_latency_ms: int = Field(
        10000, ge=1, description="Longest a batched embed call may wait and run (ms)."
    )
    ingest_embed_batch: int = Field(
        16,
        ge=1,
        description="Chunks per embed call during ingest (16 is the measured best here).",
    )
    # Deadlines of calls to the model services (models/routing.py), shortened to what the
    # request has left: a call that hangs ends in 504 naming the service, and frees its
    # request, instead of waiting for BentoML's client timeout (300 s).
    embed_call_timeout_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Longest an embed call to the embedder service may take (s); longer: 504 "
            "DependencyTimeout. Above RAG_EMBED_MAX_LATENCY_MS, the batcher's own limit."
        ),
    )
    embed_queries_in_process: bool = Field(
        True,
        description=(
            "Embed a query (one short text) in the API process with the embedder's own onnx "
            "engine, bit-identical to the service's vectors, instead of calling the embedder "
            "service; chunks and batches still go there. No effect with the torch engine."
        ),
    )
    generate_call_timeout_s: float = Field(
        90.0,
        gt=0,
        description=(
            "Longest a generate call may take, or a stream may wait for its next piece (s); "
            "longer: 504 DependencyTimeout. Above RAG_GENERATE_MAX_LATENCY_MS."
        ),
    )
    generate_max_batch_size: int = Field(4, ge=1, description="Adaptive batch cap (prompts).")
    generate_max_latency_ms: int = Field(
        60000, ge=1, description="Longest a batched generate call may wait and run (ms)."
    )
    max_new_tokens: int = Field(96, ge=1, le=1024, description="Generated tokens per answer.")

    chunk_tokens: int = Field(
        200,
        ge=16,
        le=254,
        description="Word pieces per chunk; the embedder reads at most 254 (256 with markers).",
    )
    chunk_overlap_tokens: int = Field(32, ge=0, description="Word pieces shared by neighbours.")

    max_upload_mb: float = Field(50.0, gt=0, description="Largest PDF accepted (MiB).")
    # A 300-page annual report makes ~1 500 chunks; the caps stop one upload (a 788 KB PDF
    # can hold 5 000 pages) from occupying the embedder for many minutes.
    max_pages: int = Field(
        2000, ge=1, description="Most pages a PDF may have (more: 413 DocumentTooLarge)."
    )
    # A 2 KB PDF can be crafted to keep the parser busy for hours; a 300-page report
    # parses in a few seconds here.
    parse_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest one PDF may take to parse (more: 413 DocumentTooLarge).",
    )
    ocr: Literal["auto", "off"] = Field(
        "auto",
        description=(
            "auto: pages without a text layer (scans) are recognised with Tesseract "
            "(installed by scripts/install.sh) when it is installed; off: a PDF without any "
            "text layer is refused (422 NoTextLayer)."
        ),
    )
    # 300 dpi is what Tesseract is trained for; a page takes it a few seconds on one core.
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution pages are recognised at.")
    ocr_page_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest recognition of one page may take; a page past it is skipped "
        "(named in the ingest response's skipped_pages) and the rest indexed.",
    )
    ocr_timeout_s: float = Field(
        480.0,
        gt=0,
        description="Longest recognition of all of one document's scanned pages may take "
        "(an ingest is one request, limited to 600 s); pages not reached are skipped, "
        "named in skipped_pages, and the rest indexed.",
    )
    max_chunks: int = Field(
        20000,
        ge=1,
        description="Most chunks one PDF may make (more: 413 DocumentTooLarge), checked "
        "before anything is embedded.",
    )
    max_question_chars: int = Field(2000, ge=1, description="Longest question accepted.")
    max_top_k: int = Field(20, ge=1, description="Largest top_k accepted.")
    retrieval: Literal["dense", "lexical", "hybrid"] = Field(
        "hybrid",
        description=(
            "How search and query find passages: dense (embeddings), lexical (BM25) or "
            "hybrid (both, fused by reciprocal rank); a request's 'retrieval' overrides it."
        ),
    )
    fusion_candidates: int = Field(
        20, ge=1, le=200, description="Passages taken from each retriever before fusing."
    )
    # Measured with all-MiniLM-L6-v2: questions about a passage score 0.19-0.6 against it,
    # unrelated questions below 0.07.
    min_relevance: float = Field(
        0.15,
        ge=-1.0,
        le=1.0,
        description=(
            "Cosine similarity below which a passage is not relevant; a question with no "
            "passage above it is answered 'not found in the documents'."
        ),
    )

    # Measured on eval/squad2-dev with the bundled SmolLM2-135M: the answer holds a
    # gold span for 0.66 of the answered questions when quoted, 0.49 when generated (the
    # model's checked answers hold one 0.25 of the time, the sentence it was given 0.68).
    answer_style: Literal["extractive", "generative"] = Field(
        "extractive",
        description=(
            "How query answers: extractive quotes the supporting sentence with the most "
            "evidence (the generator is not called); generative has the generator write the "
            "answer from the supporting sentences, checked, falling back to the quote. Use "
            "generative with a larger generator; a request's 'answer_style' overrides it."
        ),
    )
    # Chosen on eval/squad2-dev: the lowest round value at which 95% of 50
    # questions on subjects no document covers are not found (0.9: 96%), refusing 2.8% of
    # its answerable questions; see EVALUATION.md.
    # Off by default: the shipped reader (bundled-models/rag-reader, imported at install as
    # rag-reader), trained on ten articles of SQuAD 2.0's training set, did not beat the
    # pipeline without it on eval/squad2-dev (page-hit@1 0.841 vs 0.850, not_found recall
    # 0.104 vs 0.083) and adds a pass over 8 passages to every question (EVALUATION.md,
    # "Issue 27"). A reader trained on your documents (scripts/train.py) is what to turn on.
    reader_model: str = Field(
        "none",
        description=(
            "Model-store tag of the reader: a cross-encoder that reads the question with each "
            "of the best candidates, puts the one that answers it first and answers 'not "
            "found' when none does (its threshold is stored with it); 'none' (the default) "
            "turns it off, 'rag-reader:latest' serves the shipped one. A variant's 'reader' "
            "overrides it."
        ),
    )
    reader_candidates: int = Field(
        8,
        ge=1,
        le=50,
        description="How many of the first stage's best passages the reader reads per question.",
    )
    route_documents: bool = Field(
        True,
        description=(
            "Answer a question that names documents (a company, a fiscal year: words of "
            "their file names or metadata that few other documents share) from those "
            "documents only; responses say which under 'routing'."
        ),
    )
    min_evidence: float = Field(
        0.9,
        ge=0.0,
        le=2.0,
        description=(
            "Evidence strength below which a question is answered 'not found' "
            "(reason no_relevant_passage): the cosine similarity of the question and its "
            "best sentence plus the share of the question's rare-word weight found in the "
            "relevant passages. Higher refuses more."
        ),
    )

    # Gateway: keys, limits, backpressure, logs.
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description=(
            "JSON list of API keys: [{name, sha256, role: reader|admin, collections, "
            "rate_limits}] (scripts/api_key.py makes one); empty = open development mode."
        ),
    )
    rate_limit_query: str = Field(
        "600/minute",
        description=(
            "Per key: query, query_stream, search, list_documents, task polling "
            "('limits' notation, e.g. '10/second;600/minute'; empty = none)."
        ),
    )
    rate_limit_ingest: str = Field(
        "60/minute",
        description="Per key: ingest, delete_document, ingest_s3 (same notation).",
    )
    max_concurrency: int = Field(
        32,
        ge=1,
        description=(
            "Requests in flight per instance, counted by the gateway once their body is in; "
            "more get an immediate 429 instead of a queue."
        ),
    )
    max_inflight_per_key: int = Field(
        8,
        ge=1,
        description=(
            "Requests one API key may have in flight at once (counted once their body is "
            "in), and request bodies it may be sending at once; more get 429. Not applied "
            "in open development mode."
        ),
    )
    # A JSON body is a question and a few parameters: a client that has not sent it after
    # 10 s is stalled or hostile, and holds a connection meanwhile.
    body_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest a request body may take to arrive, plus 1 s per RAG_BODY_MIN_RATE_KIB "
            "KiB of its size; later: 408."
        ),
    )
    # 64 KiB/s (about 0.5 Mbit/s, a poor mobile uplink) lets a 50 MiB upload take 13 min.
    body_min_rate_kib: float = Field(
        64.0,
        gt=0,
        description=(
            "Slowest rate (KiB/s) at which the size-dependent part of a body's time to "
            "arrive is counted: a large upload over a slow link still gets in."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of this service's JSON log lines."
    )
    log_payloads: bool = Field(
        False,
        description=(
            "Debugging only: also log request bodies (questions, parameters) in the access "
            "log. Keys are never logged."
        ),
    )
    metrics_dir: Path | None = Field(
        None,
        description=(
            "Directory in which every server (bentoml serve) on this host keeps its "
            "Prometheus files, in a folder <host>-<pid> of its own that it removes when it "
            "exits; unset = $BENTOML_HOME/prometheus_multiproc_servers."
        ),
    )

    # Model versions side by side (experiments/, README "Model versions, A/B tests and
    # canaries").
    variants_file: Path | None = Field(
        None,
        description=(
            "YAML or JSON file declaring variants (answer pipelines), their rollout weights "
            "and guardrails; unset = one variant, 'default', built from these settings."
        ),
    )
    guardrail_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often each replica looks whether the running experiment's "
        "analysis is due (its guardrails' interval_s says how often it runs) (s).",
    )
    webhook_private_addresses: bool = Field(
        False,
        description="Whether rollout webhooks may point at loopback, private or link-local "
        "addresses (refused by default: a webhook must not reach into the service's own "
        "network).",
    )
    rollout_refresh_s: float = Field(
        2.0,
        ge=0,
        description="How long a replica uses the weights it read before reading them again (s).",
    )
    alias_refresh_s: float = Field(
        3.0,
        gt=0,
        description="How often a generator service that follows a model alias reads it (a "
        "moved alias is served within this plus the new version's load time), and how long "
        "the API uses the version it read (s).",
    )
    feedback_ttl_s: int = Field(
        90 * 24 * 3600,
        ge=60,
        description="With Redis: how long an answer can be voted on and its log kept (s).",
    )
    unlogged_collections: list[str] = Field(
        default_factory=list,
        description=(
            "Collections whose questions and answers are never written to the query log "
            "(export_feedback); '*' = all. Their answers still get an answer_id and votes."
        ),
    )

    batch_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description=(
            "Batch rows (batch_query) answered at once per worker while no interactive "
            "request is in flight: enough to fill the model services' batches."
        ),
    )
    batch_busy_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Batch rows answered at once per worker while interactive requests are in "
            "flight (or were in the last 0.5 s): the share a batch job may take of the "
            "model services when people are asking questions."
        ),
    )
    batch_yield_s: float = Field(
        5.0,
        ge=0,
        description=(
            "While interactive requests are in flight (or were in the last 0.5 s), a "
            "batch row starts only after no batch row has started or ended for this long: "
            "batch jobs yield to people, yet are never starved."
        ),
    )
    batch_max_rows: int = Field(
        100_000, ge=1, description="Rows (questions) one batch_query job may hold."
    )

    @field_validator("api_keys")
    @classmethod
    def _unique_keys(cls, keys: list[ApiKeySpec]) -> list[ApiKeySpec]:
        KeyRing(keys)  # raises ValueError on a repeated name or hash
        for key in keys:
            for spec in key.rate_limits.values():
                parse_limits(spec)
        return keys

    @field_validator("rate_limit_query", "rate_limit_ingest")
    @classmethod
    def _limit_notation(cls, spec: str) -> str:
        parse_limits(spec)
        return spec

    @field_validator("embedder_url", "generator_url", "openai_base_url")
    @classmethod
    def _http_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None or not url.strip():
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"RAG_{str(info.field_name).upper()} must be an http(s) URL such as "
                f"http://host:3000, got {url!r}"
            )
        return url.strip().rstrip("/")

    @model_validator(mode="after")
    def _openai_backend_complete(self) -> Settings:
        if self.generator_backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError(
                "RAG_GENERATOR_BACKEND=openai needs RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL"
            )
        if self.generator_backend == "openai" and self.generator_url:
            raise ValueError(
                "RAG_GENERATOR_URL names a generator service, RAG_GENERATOR_BACKEND=openai a "
                "remote API instead of one: set only one of them"
            )
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def server_max_concurrency(self) -> int:
        """BentoML's traffic.max_concurrency: it counts a request from its first byte, before
        the gateway runs, so it leaves room beyond RAG_MAX_CONCURRENCY (which the gateway
        enforces once a body is in) for bodies still arriving and for submitted tasks,
        which keep their request's place in it while they run."""
        return self.max_concurrency * SERVER_CONCURRENCY_FACTOR


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
