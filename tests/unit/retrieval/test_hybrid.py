"""The three retrieval modes (dense, lexical, hybrid) and the evidence that orders them, on a
real Chroma (embedded and a `chroma run` server) with real BM25."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidRequest
from retrieval.hybrid import Retriever, check_retrieval_mode
from retrieval.lexical import LexicalIndex
from tests.unit.retrieval.test_lexical import TEXTS, add, unit


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_returns_visible_passages_with_cosine_scores_and_ranks(index, mode):
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    retriever = Retriever(index, LexicalIndex(index, refresh_s=0), candidates=4)
    # The query vector points at the otters' first chunk; its words at the bridge's.
    found = retriever.retrieve("c", "Larkspur bridge 1931", unit(2), 4, mode)
    by_id = {p.chunk_id: p for p in found}
    if mode == "dense":
        assert found[0].chunk_id == "i2:0" and found[0].ranks == {"dense": 1}
    elif mode == "lexical":
        assert [p.chunk_id for p in found] == ["i1:0"]
        assert found[0].ranks == {"lexical": 1}
    else:
        assert by_id["i1:0"].ranks == {"lexical": 1, "dense": by_id["i1:0"].ranks["dense"]}
        assert found[0].chunk_id == "i1:0"  # both retrievers found it; BM25 counts twice
    # Whoever found a passage, its score is the cosine similarity with the query vector.
    for p in found:
        assert p.score == pytest.approx(1.0 if p.chunk_id == "i2:0" else 0.0)


def test_a_bad_mode_is_refused_naming_the_modes():
    assert check_retrieval_mode("lexical") == "lexical"
    with pytest.raises(InvalidRequest, match="retrieval must be one of dense, lexical, hybrid"):
        check_retrieval_mode("semantic")


def test_the_registry_is_read_again_only_after_refresh_s(index):
    lexical = LexicalIndex(index, refresh_s=3600)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    assert [c for c, _ in lexical.search("c", "Larkspur", 5)] == ["i1:0"]
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    assert lexical.search("c", "otters", 5) == []  # not looked at the registry again yet
    # A deleted document's chunk is never returned by the retriever, stale BM25 or not.
    index.delete_document("id-bridge.pdf")
    retriever = Retriever(index, lexical, candidates=4)
    assert retriever.retrieve("c", "Larkspur bridge", unit(0), 4, "lexical") == []


def test_coverage_is_the_share_of_rare_words_each_text_holds(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    retriever = Retriever(index, lexical)
    texts = TEXTS["bridge.pdf"] + TEXTS["otters.pdf"]
    full = retriever.coverages("c", "When did the Larkspur suspension bridge open?", texts)
    assert full == [1.0, 0.0, 0.0, 0.0]
    partly = retriever.coverages("c", "When did the Larkspur bridge open on Mars?", texts)
    assert 0.3 < partly[0] < 1.0
    assert retriever.coverages("c", "Who painted the Mona Lisa?", texts) == [0.0] * 4
    assert retriever.coverages("c", "When did the bridge open?", []) == []


def test_hybrid_orders_the_fused_candidates_by_evidence(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    retriever = Retriever(index, lexical)
    question = "Do otters eat stones?"
    # The embedding points at the bridge; the words at the otters.
    vector = (unit(0) * 0.6 + unit(2) * 0.4) / np.linalg.norm(unit(0) * 0.6 + unit(2) * 0.4)
    passages = retriever.retrieve("c", question, vector, 4, "hybrid")
    coverage = retriever.coverages("c", question, [p.text for p in passages])
    evidence = [p.score + c for p, c in zip(passages, coverage, strict=True)]
    assert evidence == sorted(evidence, reverse=True)
    assert passages[0].filename == "otters.pdf"
    # Dense alone follows the embedding.
    assert retriever.retrieve("c", question, vector, 1, "dense")[0].filename == "bridge.pdf"


def test_each_pages_best_passage_comes_before_any_pages_second():
    from core.records import Passage
    from retrieval.hybrid import pages_first

    def at(document: str, page: int, n: int) -> Passage:
        return Passage(document, f"{document}.pdf", page, page, f"text {n}", 0.5, n)

    ranked = [at("a", 25, 0), at("a", 25, 1), at("a", 25, 2), at("b", 25, 3), at("a", 4, 4)]
    assert [p.chunk_index for p in pages_first(ranked)] == [0, 3, 4, 1, 2]
    assert pages_first([]) == []


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_routed_retrieval_reads_only_the_routed_documents(index, mode):
    bridge = add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    retriever = Retriever(index, LexicalIndex(index, refresh_s=0), candidates=4)
    # The vector points at the otters, the words at the bridge: only the bridge may come.
    found = retriever.retrieve("c", "Larkspur bridge 1931", unit(2), 4, mode, None, [bridge])
    assert found and {p.filename for p in found} == {"bridge.pdf"}
