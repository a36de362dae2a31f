"""Training data, one format: (question, passage, label) pairs, grouped by question.

Every source -- a labelled folder (``qa.jsonl``), a feedback export, a SQuAD-format file --
becomes ``Pair`` rows written as JSON lines, so the reader and the embedder train from the
same file and a run names what it learnt from by the file's hash.

A pair says whether ``passage`` answers ``question`` (label 1) or not (0). ``kind`` says why:

- ``answer``: the passage holds a gold answer (or was cited by an up-voted answer);
- ``hard_negative``: a passage the index ranks high for the question that does not hold it;
- ``unanswerable``: the closest passages of a question the documents do not answer;
- ``perturbed``: a question changed (a name or number swapped) so its passage no longer
  answers it -- SQuAD 2.0's adversarial questions are made the same way by people;
- ``down_voted``: a passage cited by an answer its reader voted down.

Splits never cut a question (``by="question"``) or a document (``by="document"``) in two,
so a held-out question is never seen in training, in any of its pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

KINDS = ("answer", "hard_negative", "unanswerable", "perturbed", "down_voted")
SPLITS = ("question", "document")
SplitBy = Literal["question", "document"]


class TrainingDataError(ValueError):
    """Training input that cannot train anything; the message says what is wrong."""


@dataclass(frozen=True)
class Pair:
    question_id: str
    question: str
    passage: str
    label: int  # 1: the passage answers the question; 0: it does not
    document: str  # the file (or article) the question was asked about
    kind: str
    source: str = ""  # what built it: squad, qa, feedback
    page: int = 0  # the passage's page, where known (0: not known)

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise TrainingDataError(f"label must be 0 or 1, got {self.label!r}")
        if self.kind not in KINDS:
            raise TrainingDataError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def write_pairs(path: Path, pairs: Iterable[Pair]) -> int:
    """Write ``pairs`` as JSON lines; the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a file ``write_pairs`` wrote. Raises TrainingDataError naming the line
    of a row that is not a pair."""
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                pairs.append(Pair(**json.loads(line)))
            except (TypeError, ValueError) as exc:
                raise TrainingDataError(f"{path}:{number}: not a training pair ({exc})") from exc
    return pairs


def data_hash(pairs: Sequence[Pair]) -> str:
    """sha256 of the pairs in a canonical order: the same data, the same hash, whatever
    order a builder produced it in."""
    digest = hashlib.sha256()
    for line in sorted(json.dumps(asdict(p), sort_keys=True) for p in pairs):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def check_trainable(pairs: Sequence[Pair]) -> None:
    """Raise TrainingDataError unless ``pairs`` hold a positive and a negative."""
    if not pairs:
        raise TrainingDataError("the training data holds no pairs")
    if not any(p.label == 1 for p in pairs):
        raise TrainingDataError(
            "the training data holds no positive pair (no question with a passage that answers "
            "it): label some answerable questions, or export up-voted answers"
        )
    if not any(p.label == 0 for p in pairs):
        raise TrainingDataError("the training data holds no negative pair")


def split_pairs(
    pairs: Sequence[Pair], by: SplitBy, held_out: float, seed: int
) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, held-out pairs): a share ``held_out`` of the questions (or of the
    documents) is held out whole. Deterministic for a seed."""
    if by not in SPLITS:
        raise TrainingDataError(f"split must be one of {', '.join(SPLITS)}, got {by!r}")
    if not 0 < held_out < 1:
        raise TrainingDataError(f"held_out must be between 0 and 1, got {held_out}")
    groups = sorted({_group(p, by) for p in pairs})
    if len(groups) < 2:
        raise TrainingDataError(
            f"splitting by {by} needs at least two {by}s; the data has {len(groups)}"
        )
    random.Random(seed).shuffle(groups)
    count = min(len(groups) - 1, max(1, round(len(groups) * held_out)))
    held = set(groups[:count])
    return (
        [p for p in pairs if _group(p, by) not in held],
        [p for p in pairs if _group(p, by) in held],
    )


def _group(pair: Pair, by: SplitBy) -> str:
    return pair.question_id if by == "question" else pair.document


def by_question(pairs: Iterable[Pair]) -> dict[str, list[Pair]]:
    """The pairs of each question, in their order."""
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair.question_id, []).append(pair)
    return groups


def summary(pairs: Sequence[Pair]) -> dict[str, int]:
    """Counts for a progress line and the model card: pairs, questions, documents, kinds."""
    counts = {
        "pairs": len(pairs),
        "questions": len({p.question_id for p in pairs}),
        "documents": len({p.document for p in pairs}),
        "positives": sum(p.label for p in pairs),
    }
    for kind in KINDS:
        counts[kind] = sum(p.kind == kind for p in pairs)
    return counts
