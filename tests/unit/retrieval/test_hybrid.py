"""Lexical index, rank fusion and the three retrieval modes, on a real Chroma (embedded and
a `chroma run` server) with real BM25."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidRequest
from core.records import DocumentRecord
from retrieval.chunking import Chunk
from retrieval.hybrid import Retriever, check_retrieval_mode
from retrieval.lexical import LexicalIndex, reciprocal_rank_fusion

DIM = 8
TEXTS = {
    "bridge.pdf": ["The Larkspur suspension bridge opened in 1931.", "Its span is 842 metres."],
    "otters.pdf": ["Sea otters eat a quarter of their weight daily.", "Otters use stones."],
}


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def add(index, name: str, ingest: str, texts: list[str], offset: int) -> DocumentRecord:
    rec = DocumentRecord(f"id-{name}", "c", name, f"sha-{ingest}", len(texts), len(texts),
                         ingest, 0.0)  # fmt: skip
    index.begin(rec)
    chunks = [Chunk(n, text, n + 1, n + 1, 10) for n, text in enumerate(texts)]
    index.stage(rec, chunks, np.stack([unit(offset + n) for n in range(len(texts))]))
    previous = index.find_document(rec.document_id)
    index.commit(rec, previous)
    return rec


def test_fusion_adds_weighted_reciprocal_ranks_and_keeps_each_rank():
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "lexical": ["c", "d"]}, k=1)
    assert fused == [("c", {"dense": 3, "lexical": 1}), ("a", {"dense": 1}),
                     ("b", {"dense": 2}), ("d", {"lexical": 2})]  # fmt: skip
    rankings = {"dense": ["a", "d"], "lexical": ["d"]}
    # d: 1/3 + w/2 against a: 1/2
    assert [i for i, _ in reciprocal_rank_fusion(rankings, k=1)] == ["d", "a"]
    light = reciprocal_rank_fusion(rankings, k=1, weights={"lexical": 0.1})
    assert [i for i, _ in light] == ["a", "d"]
    assert reciprocal_rank_fusion({}) == []


def test_lexical_search_follows_commits_replacements_and_deletes(index):
    lexical = LexicalIndex(index, refresh_s=0)
    assert lexical.search("c", "bridge", 5) == []  # no collection yet: nothing, no error
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    hits = lexical.search("c", "When did the bridges open?", 5)  # stemmed: bridges -> bridg
    assert [chunk_id for chunk_id, _ in hits] == ["i1:0"]
    assert lexical.search("c", "the of a", 5) == []  # stop words only
    # A new version of a file replaces its chunks for lexical search too.
    add(index, "bridge.pdf", "i3", ["The Larkspur bridge was repainted green in 1990."], 4)
    assert [c for c, _ in lexical.search("c", "Larkspur bridge", 5)] == ["i3:0"]
    index.delete_document("id-otters.pdf")
    assert lexical.search("c", "otters stones", 5) == []


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


def test_warm_updates_at_once_and_a_search_never_waits_for_a_rebuild(index):
    lexical = LexicalIndex(index, refresh_s=3600)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    lexical.warm("c")
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    assert index.collections() == ["c"]
    lexical.warm("c")  # as after an ingest: no waiting for refresh_s
    assert sorted(c for c, _ in lexical.search("c", "otters", 5)) == ["i2:0", "i2:1"]
    # While a rebuild holds the index, a search answers from the index as it was.
    index.delete_document("id-otters.pdf")
    eager = LexicalIndex(index, refresh_s=0)
    eager.warm("c")
    add(index, "otters.pdf", "i3", ["Otters float on their backs."], 4)
    with eager._lock:  # a rebuild in progress
        assert eager.search("c", "otters float", 5) == []
    assert [c for c, _ in eager.search("c", "otters float", 5)] == ["i3:0"]


def test_term_weights_favour_rare_words_and_follow_the_collection(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)
    terms = lexical.key_terms("How many otters used the suspension bridges?")
    assert terms == {"otter", "use", "suspens", "bridg"}  # stemmed, no stop or question words
    weights = lexical.term_weights("c", terms | {"mars"})
    # "otter" is in two chunks of four, "suspens" in one, "mars" in none.
    assert weights["mars"] > weights["suspens"] > weights["otter"] > 0
    index.delete_document("id-otters.pdf")
    after = lexical.term_weights("c", {"otter", "mars"})
    assert after["otter"] == after["mars"]  # a deleted document's words are gone


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


def test_weights_as_if_bigger_keep_a_small_collections_common_words_meaningful(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)  # "otter" is in both chunks
    own = lexical.term_weights("c", {"otter", "mars"})
    padded = lexical.term_weights("c", {"otter", "mars"}, as_if_chunks=1000)
    # In its own two chunks "otter" weighs a fraction of an unseen word; padded, it is
    # nearly as telling.
    assert own["otter"] / own["mars"] < 0.3 < 0.6 < padded["otter"] / padded["mars"]
