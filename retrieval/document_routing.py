"""Which documents a question names: "What was 3M's FY2018 capital expenditure?" is about
the 3M filing of 2018, whatever page of another filing says "capital expenditure".

Pure functions. A document is known by the words of its file name and its metadata (given
at ingest, or read from its first pages). A question names a document when the names and
numbers in it (capitalised words, figures, "FY2018") match words of that document that few
other documents share; the question is then answered from the documents that match best.
Ordinary words never route, so a question that names no document is searched everywhere.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from core.records import DocumentRecord, LiveIndex
from retrieval.document_facts import DETECTED
from retrieval.text import STOPWORDS

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9&'.]*")
_SPLIT = re.compile(r"[^a-z0-9&]+")
# "FY2018", "FY 18", "Q2'2023", "2022Q4": the period in them.
_PERIOD = re.compile(r"^(?:fy|q[1-4])?'?((?:19|20)\d\d)(?:q[1-4])?$")
# At least this much evidence (in units of inverse document frequency) routes a question:
# one word that at most a third of the documents share (in a collection of two, one word
# that only one of them holds).
MIN_SCORE = math.log(3)
_MIN_PREFIX = 3


# A routing decision as responses show it (Route.public): None when nothing was routed.
Routing = dict[str, list[str]] | None


@dataclass(frozen=True)
class Route:
    """The documents a question is answered from (empty: all) and the words that chose them."""

    documents: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()

    def public(self, filenames: Mapping[str, str]) -> Routing:
        """As responses show it: the chosen documents' file names and the words; None when
        the question was not routed."""
        if not self.documents:
            return None
        return {
            "documents": sorted(filenames.get(d, d) for d in self.documents),
            "terms": list(self.terms),
        }


def document_terms(filename: str, metadata: Mapping[str, object]) -> frozenset[str]:
    """The words a document is known by: its file name's and its metadata's string values."""
    values = (v for k, v in metadata.items() if isinstance(v, str) and k != DETECTED)
    texts = [filename.rsplit(".", 1)[0], *values]
    terms: set[str] = set()
    for text in texts:
        for part in _SPLIT.split(_camel_apart(text).lower()):
            terms.update(_variants(part))
    return frozenset(t for t in terms if len(t) > 1 and t not in STOPWORDS)


def question_terms(question: str) -> frozenset[str]:
    """The names and numbers of a question: words with a capital after its first word, words
    with a digit, and words in capitals ("3M", "FY2018", "Pfizer", "JPM").

    A run of capitalised words is one name: it gives its first word and its words run
    together, as file names write them ("General Mills": general, generalmills), not its
    later words alone ("the Syrian Civil War" does not name a file about civil rights)."""
    terms: set[str] = set()
    phrase: list[str] = []  # the name being read, lower case
    for position, match in enumerate(_TOKEN.finditer(question)):
        word = match.group().strip(".'")
        parts = [p for p in _SPLIT.split(word.lower()) if p]
        if parts and any(c.isdigit() for c in word):
            for part in parts:
                terms.update(_variants(part))
            phrase = []
            continue
        named = bool(parts) and (
            (word.isupper() and len(word) > 1) or (word[0].isupper() and position > 0)
        )
        if not named:
            phrase = []
            continue
        if not phrase:
            terms.add(parts[0])
        phrase.extend(parts)
        if len(phrase) > 1:
            terms.add("".join(phrase))
    return frozenset(t for t in terms if len(t) > 1 and t not in STOPWORDS)


class TermIndex:
    """Which documents hold which words (``document_terms``), for routing questions without
    a pass over every document: built once per version of a collection's index."""

    def __init__(self, documents: Mapping[str, frozenset[str]]) -> None:
        self.count = len(documents)
        self._holders: dict[str, set[str]] = {}
        for document, terms in documents.items():
            for term in terms:
                self._holders.setdefault(term, set()).add(document)
        self._vocabulary = sorted(self._holders)

    def hits(self, asked: frozenset[str]) -> dict[str, frozenset[str]]:
        """For each document holding any of ``asked``, which: the same word, or (for names
        of 3 letters or more) the start of one ("JPM" of "jpmorgan", "Activision" of
        "activisionblizzard")."""
        found: dict[str, set[str]] = {}
        for term in asked:
            for holder in self._holders_of(term):
                found.setdefault(holder, set()).add(term)
        return {document: frozenset(terms) for document, terms in found.items()}

    def _holders_of(self, term: str) -> set[str]:
        if not (len(term) >= _MIN_PREFIX and term.isalpha()):
            return self._holders.get(term, set())
        holders: set[str] = set()
        # Every word that starts with ``term`` sits right after it in sorted order.
        for word in self._vocabulary[bisect.bisect_left(self._vocabulary, term) :]:
            if not word.startswith(term):
                break
            holders |= self._holders[word]
        return holders


def route(question: str, documents: Mapping[str, frozenset[str]] | TermIndex) -> Route:
    """The documents that ``question`` names (ids of ``documents``, which maps each to its
    ``document_terms``, or their TermIndex), or an empty Route when it names none or all of
    them equally.

    Names decide and numbers narrow: the documents whose names the question holds (rarer
    names weigh more), then among them those whose years and figures it holds. A year
    alone routes nowhere: "in 2019" is as likely a year a 2021 report looks back on."""
    index = documents if isinstance(documents, TermIndex) else TermIndex(documents)
    if index.count < 2:
        return Route()
    asked = question_terms(question)
    if not asked:
        return Route()
    hits = index.hits(asked)
    frequency = Counter(t for found in hits.values() for t in found)
    weight = {t: math.log(index.count / n) for t, n in frequency.items()}
    names = {t for t in weight if not t.isdigit()}
    # In a small collection, a name only one document holds is enough.
    chosen = _best(hits, names, weight, hits, min(MIN_SCORE, math.log(index.count)))
    if not chosen or len(chosen) == index.count:
        return Route()
    chosen = _best(hits, set(weight) - names, weight, chosen, floor=0.0) or chosen
    words = sorted(set().union(*(hits[d] for d in chosen)))
    return Route(tuple(chosen), tuple(t for t in words if weight[t] > 0))


def _best(
    hits: Mapping[str, frozenset[str]],
    terms: set[str],
    weight: Mapping[str, float],
    among: Iterable[str],
    floor: float = MIN_SCORE,
) -> list[str]:
    """Those of ``among`` whose ``terms`` weigh most, if that is more than ``floor``."""
    scores = {d: sum(weight[t] for t in hits[d] & terms) for d in among}
    best = max(scores.values(), default=0.0)
    if best <= 0 or best < floor:
        return []
    return sorted(d for d, score in scores.items() if score >= best - 1e-9)


def _variants(part: str) -> Iterable[str]:
    """A word and the period it names: "fy2018" -> fy2018, 2018; "2022q4" -> 2022q4, 2022."""
    yield part
    period = _PERIOD.match(part)
    if period:
        yield period.group(1)


def _camel_apart(text: str) -> str:
    """ "AnnualReport2023" -> "Annual Report 2023": file names run words together."""
    return re.sub(r"(?<=[a-z])(?=[A-Z0-9])", " ", text)


class DocumentRouter:
    """``route`` over a collection's documents as the index holds them, their words read
    once per index version (a question must not cost a read of every document record)."""

    def __init__(
        self, documents: Callable[[str, str], list[DocumentRecord]], enabled: bool = True
    ) -> None:
        """``documents(collection, generation)``: the records of that generation;
        ``enabled`` false routes nothing (RAG_ROUTE_DOCUMENTS)."""
        self._documents = documents
        self._enabled = enabled
        # (collection, generation) -> (index_version, records by id, their words).
        self._known: dict[
            tuple[str, str],
            tuple[str, dict[str, DocumentRecord], TermIndex],
        ] = {}

    def route(self, query: str, live: LiveIndex) -> tuple[list[DocumentRecord] | None, Routing]:
        """(the documents ``query`` names, None for all; the choice as responses show it).
        Reads the index on the first question after it changed: call from a thread."""
        if not self._enabled:
            return None, None
        key = (live.collection, live.generation)
        known = self._known.get(key)
        if known is None or known[0] != live.index_version:
            records = self._documents(live.collection, live.generation)
            known = (
                live.index_version,
                {r.document_id: r for r in records},
                TermIndex({r.document_id: document_terms(r.filename, r.metadata) for r in records}),
            )
            self._known[key] = known
        _, records_by_id, terms = known
        chosen = route(query, terms)
        if not chosen.documents:
            return None, None
        filenames = {d: records_by_id[d].filename for d in chosen.documents}
        return [records_by_id[d] for d in chosen.documents], chosen.public(filenames)
