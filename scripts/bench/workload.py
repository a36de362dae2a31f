"""Deterministic inputs: query- and chunk-length texts, a many-page PDF, RAG prompts."""

from __future__ import annotations

import io
import random
import textwrap
from typing import Any

_VOCABULARY = (
    "battery charger radio housing water warranty signal antenna speaker volume channel "
    "frequency station weather storm coast harbour vessel engine pump valve pressure "
    "temperature sensor cable switch panel display button light power supply voltage "
    "current fuse circuit board memory storage record report manual chapter section page "
    "table figure value limit range hour minute second day week month year time cycle "
    "level rate speed distance depth height width length weight load capacity volume "
    "service repair check clean replace install connect remove adjust measure test "
    "operator user owner team crew captain engineer technician inspector supplier "
    "north south east west port starboard upper lower inner outer front rear main spare "
    "safety alarm warning notice rule procedure step order schedule plan route map"
)
_WORDS = _VOCABULARY.split()


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(8, 16))
    number = rng.choice(
        ["", f" of {rng.randint(2, 500)} units", f" within {rng.randint(1, 48)} hours"]
    )
    return " ".join(words).capitalize() + number + "."


def query_texts(n: int, seed: int = 1) -> list[str]:
    """Question-like texts of about 15 word pieces."""
    rng = random.Random(seed)
    return [
        f"How long does the {rng.choice(_WORDS)} {rng.choice(_WORDS)} take to "
        f"{rng.choice(['charge', 'repair', 'replace', 'check'])} in {rng.choice(_WORDS)} {i}?"
        for i in range(n)
    ]


def embedder_counter() -> Any:
    """The embedder's own word-piece counter (what chunking measures with)."""
    from core.settings import get_settings
    from models.store import ModelSource
    from retrieval.chunking import WordPieceCounter

    path, _ = ModelSource(get_settings().embedder_model).resolve()
    return WordPieceCounter(path / "tokenizer.json")


def chunk_texts(n: int, counter: Any, tokens: int = 200, seed: int = 2) -> list[str]:
    """Passage-like texts of ``tokens`` word pieces (by ``counter``, the embedder's own)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        text = ""
        while counter.count([text])[0] < tokens:
            text = f"{text} {_sentence(rng)}".strip()
        texts.append(text)
    return texts


def page_texts(pages: int, seed: int = 3) -> list[str]:
    """Pages of about 250 words of prose, each naming its own page number."""
    rng = random.Random(seed)
    return [
        f"Section {p}. " + " ".join(_sentence(rng) for _ in range(20)) for p in range(1, pages + 1)
    ]


def make_pdf(pages: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    _, height = A4
    for text in pages:
        y = height - 60
        for line in textwrap.wrap(text, 95):
            pdf.drawString(50, y, line)
            y -= 13
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def rag_prompts(n: int, seed: int = 4) -> list[tuple[str, str]]:
    """(system, user) prompts shaped like the service's: three numbered sentences, a question."""
    from retrieval.grounding import SupportingSentence
    from retrieval.prompting import build_prompt

    rng = random.Random(seed)
    prompts = []
    for i, question in enumerate(query_texts(n, seed)):
        support = [
            SupportingSentence(source=k, text=_sentence(rng), page=k, score=0.5) for k in (1, 2, 3)
        ]
        prompts.append(build_prompt(f"{question} ({i})", support))
    return prompts
