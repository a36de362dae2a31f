"""Where exports go: a local folder or an S3 bucket and prefix. Shared by every export job
(the feedback export, jobs.feedback_export; the embeddings export, jobs.embeddings_export).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from retrieval.locations import Location

# S3's bucket naming rules (3-63 characters: lower case, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class Destination:
    """Where exports go: an absolute local directory, or an S3 bucket and key prefix."""

    local_dir: Path | None = None
    bucket: str = ""
    prefix: str = ""

    @classmethod
    def parse(cls, destination: str) -> Destination:
        """Raises ValueError unless ``destination`` is an absolute local path or
        ``s3://bucket[/prefix]``."""
        if destination.startswith("s3://"):
            bucket, _, prefix = destination.removeprefix("s3://").partition("/")
            if not _BUCKET.fullmatch(bucket):
                raise ValueError(
                    f"export destination {destination!r}: {bucket!r} is not a valid S3 "
                    "bucket name (3-63 characters: a-z, 0-9, '.', '-')"
                )
            return cls(bucket=bucket, prefix=prefix.strip("/"))
        if "://" in destination or not destination or not Path(destination).is_absolute():
            raise ValueError(
                f"export destination {destination!r} must be an absolute local directory "
                "(/path/to/dir) or an S3 location (s3://bucket/prefix)"
            )
        return cls(local_dir=Path(destination))

    @property
    def name(self) -> str:
        """The canonical spelling, under which the store keeps this destination's cursor
        (so "s3://b/p/" and "s3://b/p" share one)."""
        if self.local_dir is not None:
            return str(self.local_dir)
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def locate(self, filename: str) -> str:
        if self.local_dir is not None:
            return str(self.local_dir / filename)
        return f"{self.name}/{filename}"


def served_destination(
    destination: Location, exports_root: Path, reserved: Collection[str] = ()
) -> str:
    """Where a service-side export writes the folder ``destination`` (parsed and allowed by
    the service): an S3 folder as it is, or a folder under ``exports_root`` -- never
    elsewhere on the server's disk, nor in one of its ``reserved`` folders (batch outputs).
    Raises ValueError."""
    if destination.is_s3:
        return str(destination)
    if destination.key.split("/")[0] in reserved:
        raise ValueError(
            f"export destination {str(destination)!r} is in a folder of exports/ kept for "
            f"other outputs ({', '.join(sorted(reserved))}/): name another folder"
        )
    root = exports_root.resolve()
    path = (root / destination.key).resolve()
    # The name is canonical (no '..'); resolving also catches a symlink out of exports/.
    if not path.is_relative_to(root):
        raise ValueError(
            f"export destination {str(destination)!r} must be s3://bucket/prefix or a folder "
            "name under the data directory's exports/"
        )
    return str(path)
