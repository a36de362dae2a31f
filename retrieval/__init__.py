"""Retrieval logic: parsing, chunking, indexing, ranking, prompting and grounding."""
