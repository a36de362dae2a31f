"""A deterministic fuzz of parse_pdf: damaged copies of real and generated PDFs either parse
or fail with a domain error (a 4xx), never anything else (a 500)."""

from __future__ import annotations

import time

import pytest

from core.errors import DocumentTooLarge, UnsupportedDocument
from retrieval.parsing import parse_pdf
from tests.conftest import all_sample_pdfs
from tests.pdfs import MUTATIONS, fuzz_seeds, mutants

SEEDS = fuzz_seeds(all_sample_pdfs())
MUTANTS = mutants(SEEDS, count=300, seed=20240611)
# Far above the slowest mutant (about 0.5 s here): past it a parse has gone pathological.
PARSE_SECONDS = 10


@pytest.mark.parametrize(("name", "data"), MUTANTS, ids=[name for name, _ in MUTANTS])
def test_a_damaged_pdf_parses_or_fails_with_a_domain_error(name, data):
    started = time.monotonic()
    try:
        parsed = parse_pdf(data, filename="fuzz.pdf", max_pages=2000)
    except (UnsupportedDocument, DocumentTooLarge) as exc:
        assert str(exc).startswith("fuzz.pdf ")
        assert 400 <= exc.error_code.value < 500
    else:
        assert parsed.page_count >= 1
        assert all(isinstance(page, str) for page in parsed.pages)
    assert time.monotonic() - started < PARSE_SECONDS


def test_the_mutants_cover_every_mutation_and_are_reproducible():
    # A mutant's name is "seed.pdf:mutation+mutation#n".
    applied = [name.rsplit(":", 1)[1].split("#")[0] for name, _ in MUTANTS]
    used = {mutation for names in applied for mutation in names.split("+")}
    assert used == set(MUTATIONS)
    assert mutants(SEEDS, count=300, seed=20240611) == MUTANTS
    assert sum(data not in SEEDS.values() for _, data in MUTANTS) > 250
