"""A SQuAD-format file (``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``, as
published for SQuAD 2.0) -> training pairs over passages cut the way the service cuts pages.

The service never reads a SQuAD paragraph on its own: it reads chunks of ~200 word pieces
packed from whole sentences of a page, which may hold the end of one paragraph and the start
of the next. So each article is laid out as pages (paragraphs in order, a page full at
``page_words``) and cut with the service's chunker; a question's positives are the chunks
that hold the sentence with its answer, its hard negatives the chunks of the article that
BM25 ranks highest for it and that do not hold the answer. A SQuAD 2.0 unanswerable question
gets the chunks of the paragraph it was written on: on topic, yet not answering it.

``perturb`` adds questions made unanswerable by swapping one name or number for another
of the same article that the passage does not hold, paired with the passage that answered
the original (label 0).
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.training_data import Pair, TrainingDataError
from retrieval.chunking import TokenCounter, chunk_pages
from retrieval.text import STOPWORDS, normalize_text, split_sentences

_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_NUMBER = re.compile(r"\b\d{2,4}\b")


@dataclass(frozen=True)
class SquadOptions:
    max_tokens: int = 200  # the service's chunk_tokens
    overlap_tokens: int = 32  # its chunk_overlap_tokens
    page_words: int = 450  # about an A4 page of 11 pt text
    hard_negatives: int = 2
    perturb: float = 0.25  # share of answerable questions also asked perturbed
    seed: int = 0


def load_squad(path: Path) -> list[dict[str, Any]]:
    """The articles of a SQuAD-format file (``.json`` or ``.json.gz``). Raises
    TrainingDataError for a file of another shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: not a SQuAD-format JSON file ({exc})") from exc
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list) or not all(
        isinstance(a, dict) and "paragraphs" in a for a in articles
    ):
        raise TrainingDataError(f"{path}: expected {{'data': [{{'title', 'paragraphs'}}]}}")
    return articles


def squad_pairs(
    articles: list[dict[str, Any]], counter: TokenCounter, options: SquadOptions
) -> Iterator[Pair]:
    """The pairs of every question of ``articles`` (see the module docstring)."""
    import bm25s

    rng = random.Random(options.seed)
    for article in articles:
        title = str(article.get("title") or "untitled")
        paragraphs = [p for p in article["paragraphs"] if p.get("context")]
        chunks = _chunks([normalize_text(p["context"]) for p in paragraphs], counter, options)
        if not chunks:
            continue
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(chunks, stopwords="en", show_progress=False),
                        show_progress=False)  # fmt: skip
        names = _swappable(" ".join(p["context"] for p in paragraphs))
        for paragraph in paragraphs:
            context = paragraph["context"]
            sentences = split_sentences(normalize_text(context))
            for qa in paragraph.get("qas", []):
                yield from _question_pairs(
                    title, qa, context, sentences, chunks, retriever, names, rng, options
                )


def _chunks(paragraphs: list[str], counter: TokenCounter, options: SquadOptions) -> list[str]:
    pages: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        if current and sum(len(p.split()) for p in current) + len(paragraph.split()) > (
            options.page_words
        ):
            pages.append("\n\n".join(current))
            current = []
        current.append(paragraph)
    if current:
        pages.append("\n\n".join(current))
    chunks = chunk_pages(
        pages, counter, max_tokens=options.max_tokens, overlap_tokens=options.overlap_tokens
    )
    return [c.text for c in chunks]


def _question_pairs(
    title: str,
    qa: dict[str, Any],
    context: str,
    sentences: list[str],
    chunks: list[str],
    retriever: Any,
    names: dict[str, list[str]],
    rng: random.Random,
    options: SquadOptions,
) -> Iterator[Pair]:
    import bm25s

    question = str(qa.get("question") or "").strip()
    if not question:
        return
    qid = str(qa["id"])
    impossible = bool(qa.get("is_impossible")) or not qa.get("answers")
    tokens = bm25s.tokenize([question], stopwords="en", show_progress=False)
    k = min(len(chunks), options.hard_negatives + 4)
    ranked = [int(i) for i in retriever.retrieve(tokens, k=k, show_progress=False)[0][0]]

    def pair(passage: str, label: int, kind: str, q: str = question, i: str = qid) -> Pair:
        return Pair(i, q, passage, label, title, kind, "squad")

    if impossible:
        # The paragraph it was written on: every chunk holding one of its sentences.
        own = [c for c in chunks if any(s in c for s in sentences)]
        for passage in own[:2]:
            yield pair(passage, 0, "unanswerable")
        for i in ranked:
            if chunks[i] not in own:
                yield pair(chunks[i], 0, "hard_negative")
                break
        return
    answer = qa["answers"][0]
    evidence = _answer_sentence(context, answer, sentences)
    if evidence is None:
        return
    answers = {normalize_text(a["text"]) for a in qa["answers"] if a.get("text")}
    positives = [c for c in chunks if evidence in c]
    if not positives:
        return  # the sentence was cut between chunks: no chunk answers cleanly
    yield pair(positives[0], 1, "answer")
    negatives = [chunks[i] for i in ranked if not any(a in chunks[i] for a in answers)]
    for passage in negatives[: options.hard_negatives]:
        yield pair(passage, 0, "hard_negative")
    if rng.random() < options.perturb:
        changed = _perturbed(question, positives[0], names, rng)
        if changed is not None:
            yield pair(positives[0], 0, "perturbed", changed, qid + "-perturbed")


def _answer_sentence(context: str, answer: dict[str, Any], sentences: list[str]) -> str | None:
    """The sentence of ``context`` (normalized) that holds the answer at its offset."""
    start = int(answer.get("answer_start", -1))
    text = str(answer.get("text") or "")
    if start < 0 or not text:
        return None
    position = len(normalize_text(context[:start]))
    cursor = 0
    normalized = normalize_text(context)
    for sentence in sentences:
        found = normalized.find(sentence, cursor)
        if found < 0:
            continue
        cursor = found + len(sentence)
        if found <= position < cursor:
            return sentence if normalize_text(text) in sentence else None
    return None


def _swappable(text: str) -> dict[str, list[str]]:
    """The names and numbers of an article, by kind, for perturbed questions."""
    names = {m for m in _NAME.findall(text) if m.lower() not in STOPWORDS and len(m) > 3}
    return {"name": sorted(names), "number": sorted(set(_NUMBER.findall(text)))}


def _perturbed(
    question: str, passage: str, pool: dict[str, list[str]], rng: random.Random
) -> str | None:
    """``question`` with one of its names or numbers swapped for one of the article's that
    ``passage`` does not hold; None when it has none to swap."""
    # The first word of a question is capitalised whether or not it names anything.
    head, _, rest = question.partition(" ")
    found = [("number", m) for m in _NUMBER.findall(rest)]
    found += [("name", m) for m in _NAME.findall(rest) if m.lower() not in STOPWORDS]
    rng.shuffle(found)
    for kind, old in found:
        choices = [c for c in pool[kind] if c not in passage and c != old]
        if choices:
            return f"{head} {rest.replace(old, rng.choice(choices), 1)}"
    return None
