"""The lexical index (BM25 over a collection's visible chunks, following commits, replacements
and deletes) and reciprocal rank fusion, on a real Chroma (embedded and a `chroma run`
server)."""

from __future__ import annotations

import numpy as np

from core.records import DocumentRecord
from retrieval.chunking import Chunk
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


def test_weights_as_if_bigger_keep_a_small_collections_common_words_meaningful(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "otters.pdf", "i2", TEXTS["otters.pdf"], 2)  # "otter" is in both chunks
    own = lexical.term_weights("c", {"otter", "mars"})
    padded = lexical.term_weights("c", {"otter", "mars"}, as_if_chunks=1000)
    # In its own two chunks "otter" weighs a fraction of an unseen word; padded, it is
    # nearly as telling.
    assert own["otter"] / own["mars"] < 0.3 < 0.6 < padded["otter"] / padded["mars"]


def test_a_search_routed_to_some_documents_finds_only_their_chunks(index):
    lexical = LexicalIndex(index, refresh_s=0)
    add(index, "bridge.pdf", "i1", TEXTS["bridge.pdf"], 0)
    add(index, "otters.pdf", "i2", [*TEXTS["otters.pdf"], "Otters swim under the bridge."], 2)
    question = "otters bridge"
    assert {c.split(":")[0] for c, _ in lexical.search("c", question, 5)} == {"i1", "i2"}
    assert {c for c, _ in lexical.search("c", question, 5, ingests=frozenset({"i1"}))} == {"i1:0"}
    only_otters = lexical.search("c", question, 5, ingests=frozenset({"i2", "gone"}))
    assert {c.split(":")[0] for c, _ in only_otters} == {"i2"}
    assert lexical.search("c", question, 5, ingests=frozenset()) == []
