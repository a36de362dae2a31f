"""PDFs with exact, known content, generated for tests (reportlab)."""

from __future__ import annotations

import io
import textwrap

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

# Page -> text. Each fact sits on one known page among filler about other topics, so a
# test can check that an answer cites the page that holds the fact.
MANUAL_PAGES: list[str] = [
    "Aurora X2 field radio user manual. This manual describes setup, care and repair of the "
    "Aurora X2 radio. Read the safety notes before first use. Keep the manual with the radio.",
    "Battery. The battery of the Aurora X2 takes 3 hours to charge fully with the supplied "
    "charger. A full battery lasts for 40 hours of listening. Replace the battery after 500 "
    "charge cycles.",
    "Weather resistance. The housing of the Aurora X2 is rated IP67 and survives 30 minutes "
    "under 1 metre of water. Rinse it with fresh water after use at sea.",
    "Warranty. Northwind Devices gives a warranty of 24 months from the date of purchase. "
    "The warranty does not cover damage from dropping the radio.",
]


def make_pdf(pages: list[str], *, title: str = "Test document") -> bytes:
    """A PDF with one page per string, text drawn as real text (extractable)."""
    buffer = io.BytesIO()
    # invariant: same pages, same bytes (no timestamps or random ids).
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    pdf.setTitle(title)
    _, height = A4
    for text in pages:
        y = height - 72
        for paragraph in text.split("\n"):
            for line in textwrap.wrap(paragraph, 90) or [""]:
                pdf.drawString(72, y, line)
                y -= 14
                if y < 72:
                    pdf.showPage()
                    y = height - 72
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()
