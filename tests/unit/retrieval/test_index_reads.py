"""The score that ``passages`` gives chunks it reads by id: the cosine similarity that
Chroma's search reports as ``1 - distance``. Visibility itself is tested through the facade
(tests/unit/retrieval/test_index.py, test_index_generations.py)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.index_reads import cosine


def test_cosine_of_parallel_orthogonal_and_opposite_rows():
    rows = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]], dtype=np.float32)
    assert cosine(np.array([5.0, 0.0], dtype=np.float32), rows) == pytest.approx([1, 0, -1])


def test_a_zero_row_or_query_scores_zero_rather_than_nan():
    rows = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert cosine(np.array([1.0, 0.0], dtype=np.float32), rows) == pytest.approx([0, 2**-0.5])
    assert cosine(np.zeros(2, dtype=np.float32), rows) == pytest.approx([0, 0])
