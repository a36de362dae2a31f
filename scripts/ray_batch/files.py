"""Where a job's files are: local paths and s3:// URIs for Ray Data, and an output file that
appears only when complete."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Storage:
    """Local paths and s3:// URIs as (pyarrow filesystem, path) pairs for Ray Data."""

    s3_endpoint: str | None = None
    s3_region: str | None = None

    def locate(self, location: str) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        if location.startswith("s3://"):
            return self._s3(), location.removeprefix("s3://")
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())

    def _s3(self) -> Any:
        import pyarrow.fs as pafs

        options: dict[str, Any] = {}
        if self.s3_endpoint:
            parts = urlsplit(self.s3_endpoint)
            options["endpoint_override"] = parts.netloc or parts.path
            options["scheme"] = parts.scheme or "https"
        if self.s3_region:
            options["region"] = self.s3_region
        return pafs.S3FileSystem(**options)


def storage_of(args: argparse.Namespace) -> Storage:
    return Storage(args.s3_endpoint, args.s3_region)


class Output:
    """A file written line by line that appears only when complete: a local file is
    renamed into place; an S3 object is uploaded in parts and completed on close."""

    def __init__(self, storage: Storage, location: str) -> None:
        self._fs, self._path = storage.locate(location)
        self._local = not location.startswith("s3://")
        self._target = self._path
        if self._local:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._path = f"{self._path}.part"
        self._stream = self._fs.open_output_stream(self._path)

    def write_line(self, line: str) -> None:
        self._stream.write(line.encode("utf-8") + b"\n")

    def commit(self) -> None:
        self._stream.close()
        if self._local:
            self._fs.move(self._path, self._target)

    def discard(self) -> None:
        self._stream.close()
        self._fs.delete_file(self._path)
