"""The connection to Chroma: a client (embedded on disk, or a server), the registry
collection, and the chunk collection of each generation, opened once per process.

Nothing here knows what the records mean (index_format.py says that); this module only
opens, caches and removes Chroma collections.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from retrieval.index_format import REGISTRY, chunks_name


def embedded_client(data_dir: Path) -> Any:
    """A Chroma PersistentClient that keeps its files under ``data_dir / "chroma"``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(data_dir / "chroma"),
        settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
    )


def parse_server_url(url: str) -> SplitResult:
    """``url`` split, if it names a Chroma server as ``http[s]://host[:port]``.

    Raises:
        ValueError: it does not.
    """
    parsed = urlsplit(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ValueError(f"Chroma URL must look like http://host:8000, got {url!r}")
    return parsed


def server_client(parsed: SplitResult) -> Any:
    """A client of the Chroma server at ``parsed`` (from ``parse_server_url``); raises
    whatever chromadb raises when the server does not answer (many types), and ValueError
    for a port that is not a number from 0 to 65535 (read here, as the caller treats any
    failure to connect alike)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.HttpClient(
        host=str(parsed.hostname),  # parse_server_url refused a URL without one
        port=parsed.port or (443 if parsed.scheme == "https" else 8000),
        ssl=parsed.scheme == "https",
        settings=ChromaSettings(anonymized_telemetry=False),
    )


class CountedWrites:
    """A Chroma collection that counts the writes this process makes to it, so that what
    was read from it can be known unchanged (retrieval/index_registry.py)."""

    _WRITES = ("add", "upsert", "update", "delete")

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in self._WRITES:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            # Counted before and after: a read that overlaps the write sees a count that
            # has moved on by the time the write is done.
            self.writes += 1
            try:
                return attribute(*args, **kwargs)
            finally:
                self.writes += 1

        return counted


class ChromaStore:
    """A Chroma client with the index's registry collection and its chunk collections.

    Blocking, like every Chroma call: use it from a thread.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.registry = CountedWrites(
            client.get_or_create_collection(REGISTRY, embedding_function=None)
        )
        self._chunks: dict[tuple[str, str], Any] = {}

    def chunks(self, collection: str, generation: str, create: bool = True) -> Any:
        """The Chroma collection of one generation's chunks; None if absent and not
        ``create``.

        Reads do not create: a mistyped collection name must not leave an empty one behind.
        """
        key = (collection, generation)
        if key not in self._chunks:
            from chromadb.errors import NotFoundError

            name = chunks_name(collection, generation)
            try:
                self._chunks[key] = (
                    self.client.get_or_create_collection(
                        name,
                        embedding_function=None,
                        configuration={"hnsw": {"space": "cosine"}},
                    )
                    if create
                    else self.client.get_collection(name, embedding_function=None)
                )
            except NotFoundError:
                return None
        return self._chunks[key]

    def forget(self, collection: str, generation: str) -> None:
        """Drop this process's handle on a generation's chunks, so that the next use reads
        the collection (and its metadata) from Chroma again."""
        self._chunks.pop((collection, generation), None)

    def delete_chunks(self, collection: str, generation: str) -> None:
        """Remove a generation's chunk collection, if there is one."""
        from chromadb.errors import NotFoundError

        self.forget(collection, generation)
        with contextlib.suppress(NotFoundError, ValueError):
            self.client.delete_collection(chunks_name(collection, generation))
