"""PDFs with exact, known content, generated for tests (reportlab)."""

from __future__ import annotations

import io
import random
import re
import textwrap
import zlib
from pathlib import Path

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


# Raw PDFs, written object by object: shapes that no PDF library would produce.

_FONT = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"


def raw_stream(data: bytes, entries: bytes = b"") -> bytes:
    """The body of a stream object holding ``data`` uncompressed, with its exact /Length."""
    return b"<< %s/Length %d >>\nstream\n%s\nendstream" % (entries, len(data), data)


def raw_pdf(objects: list[bytes], *, root: int = 1) -> bytes:
    """A PDF whose object ``n`` has the body ``objects[n - 1]``, with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    startxref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\n" % (len(objects) + 1, root)
    out += b"startxref\n%d\n%%%%EOF\n" % startxref
    return bytes(out)


def _page(parent: int, contents: int) -> bytes:
    entries = b"/Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R" % (parent, contents)
    return b"<< /Type /Page %s /Resources %s >>" % (entries, _FONT)


def _text(words: bytes) -> bytes:
    return raw_stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % words)


def deep_page_tree_pdf(depth: int) -> bytes:
    """One text page under ``depth`` nested /Pages nodes: Pages -> Kids -> Pages -> ... -> Page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        number = 2 + level
        parent = b" /Parent %d 0 R" % (number - 1) if level else b""
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (number + 1, parent))
    page = depth + 2
    objects += [_page(page - 1, page + 1), _text(b"at the bottom of a deep page tree")]
    return raw_pdf(objects)


def many_pages_pdf(count: int, content: bytes = b"BT /F1 12 Tf 72 720 Td (a page) Tj ET") -> bytes:
    """``count`` pages that share one content stream (small however many pages)."""
    kids = b" ".join(b"%d 0 R" % (4 + n) for n in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d /MediaBox [0 0 612 792] /Resources %s >>"
        % (kids, count, _FONT),
        raw_stream(content),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R >>"] * count
    return raw_pdf(objects)


def self_referencing_length_pdf() -> bytes:
    """A content stream whose /Length is a reference to the stream itself."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _page(2, 4),
        b"<< /Length 4 0 R >>\nstream\nBT /F1 12 Tf 72 720 Td (loop) Tj ET\nendstream",
    ]
    return raw_pdf(objects)


def self_referencing_kids_pdf() -> bytes:
    """A page tree whose /Kids is a stream whose /Length refers to itself: the loop is
    met while the file is opened (pages counted), so no reader gets past it."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids 3 0 R /Count 1 >>",
        b"<< /Length 3 0 R >>\nstream\n[4 0 R]\nendstream",
        _page(2, 5),
        raw_stream(b"BT /F1 12 Tf 72 720 Td (loop) Tj ET"),
    ]
    return raw_pdf(objects)


def nested_arrays_pdf(depth: int) -> bytes:
    """A page whose content stream holds arrays nested ``depth`` deep: [[[...]]]."""
    content = b"BT /F1 12 Tf 72 720 Td (nested) Tj ET " + b"[" * depth + b"]" * depth
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _page(2, 4),
        raw_stream(content),
    ]
    return raw_pdf(objects)


def form_bomb_pdf(form_kb: int = 400, calls: int = 100) -> bytes:
    """A 2 KB PDF whose one page draws a form of ``form_kb`` KiB of text ``calls`` times:
    the reader interprets the form each time (at the defaults about 50 s for pypdf, 2 s
    for PDFium's text page)."""
    form = b"BT /F1 12 Tf 72 720 Td " + b"(abc) Tj 0 -1 Td " * (form_kb * 1024 // 17) + b"ET"
    packed = zlib.compress(form, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /XObject << /X 5 0 R >> >> >>",
        raw_stream(b"/X Do\n" * calls),
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources %s "
        b"/Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (_FONT, len(packed), packed),
    ]
    return raw_pdf(objects)


def render_bomb_pdf(rectangles: int = 50_000, calls: int = 100) -> bytes:
    """A ~125 KB PDF (at the defaults) whose one page has a line of text and then draws a
    form of ``rectangles`` small filled rectangles ``calls`` times: PDFium builds every
    rectangle of every use (5 million paths, ~6 s and ~1.7 GB to load the page), while
    pypdf reads its text in milliseconds, so it ingests like any other PDF."""
    form = b"".join(b"%d %d 3 3 re f\n" % (n % 600, n // 600 % 780) for n in range(rectangles))
    packed = zlib.compress(form, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> "
        b"/XObject << /X 5 0 R >> >> >>",
        raw_stream(
            b"BT /F1 12 Tf 72 720 Td (A page that draws a lot.) Tj ET\n" + b"/X Do\n" * calls
        ),
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Filter /FlateDecode "
        b"/Length %d >>\nstream\n%s\nendstream" % (len(packed), packed),
    ]
    return raw_pdf(objects)


def object_stream_pdf(*, stream_type: bytes = b"/ObjStm") -> bytes:
    """A one-page PDF 1.5 whose /Pages and /Page objects live in an object stream, indexed by
    a cross-reference stream. ``stream_type`` is the object stream's /Type: anything but
    /ObjStm makes the file invalid."""
    inner = [b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _page(2, 4)]
    offsets, body = [], b""
    for obj in inner:
        offsets.append(len(body))
        body += obj + b"\n"
    header = b"2 %d 3 %d\n" % tuple(offsets)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        None,
        None,
        _text(b"from an object stream"),
        raw_stream(header + body, b"/Type %s /N 2 /First %d " % (stream_type, len(header))),
    ]
    out = bytearray(b"%PDF-1.7\n")
    rows = [(0, 0, 65535), None, (2, 5, 0), (2, 5, 1), None, None, None]
    for number, obj in enumerate(objects, start=1):
        if obj is not None:
            rows[number] = (1, len(out), 0)
            out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    startxref = len(out)
    rows[6] = (1, startxref, 0)
    table = b"".join(
        kind.to_bytes(1, "big") + field.to_bytes(4, "big") + gen.to_bytes(2, "big")
        for kind, field, gen in rows
    )
    xref = raw_stream(table, b"/Type /XRef /Size 7 /W [1 4 2] /Root 1 0 R ")
    out += b"6 0 obj\n%s\nendobj\n" % xref
    out += b"startxref\n%d\n%%%%EOF\n" % startxref
    return bytes(out)


# Mutations for fuzzing: each takes a PDF and a seeded Random and returns damaged bytes.
# Most aim at the structures a parser trusts (xref offsets, /Length, object streams,
# object numbers) rather than at random bytes, so they reach deep into the parser.


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite_run(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    filler = rng.choice([b"\x00", b"\xff", b" ", b"0", b"(", b"<<", b"[", b"R "])
    return data[:start] + filler * rng.randint(1, 64) + data[start + 64 :]


def _replace_one(data: bytes, pattern: bytes, rng: random.Random, repl) -> bytes:
    """Replace one random match of ``pattern`` with ``repl(match)``; the same bytes if none."""
    matches = list(re.finditer(pattern, data, re.DOTALL))
    if not matches:
        return data
    m = rng.choice(matches)
    return data[: m.start()] + repl(m) + data[m.end() :]


def break_xref(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # startxref points somewhere else
        offset = rng.randrange(len(data) * 2)
        return _replace_one(data, rb"startxref\s+\d+", rng, lambda m: b"startxref\n%d" % offset)
    if choice == 1:  # no xref keyword: the reader has to rebuild the table
        return data.replace(b"xref", b"xfer")
    if choice == 2:  # an entry's offset is off
        return _replace_one(
            data, rb"\d{10} \d{5} n", rng, lambda m: b"%010d 00000 n" % rng.randrange(len(data))
        )
    return _replace_one(data, rb"startxref.*", rng, lambda m: b"")


def corrupt_lengths(data: bytes, rng: random.Random) -> bytes:
    value = rng.choice([b"0", b"-1", b"99999999", b"%d" % rng.randrange(100000), b"1 0 R"])
    return _replace_one(data, rb"/Length \d+( 0 R)?", rng, lambda m: b"/Length " + value)


def corrupt_object_stream(data: bytes, rng: random.Random) -> bytes:
    """Damage an /ObjStm: its /N, its /First, its /Type or the (often compressed) bytes it
    holds."""
    choice = rng.randrange(4)
    if choice == 0:
        value = rng.choice([b"-1", b"0", b"99999999", b"1.5"])
        return _replace_one(data, rb"/N \d+", rng, lambda m: b"/N " + value)
    if choice == 1:
        value = rng.choice([b"-5", b"0", b"99999999", b"3"])
        return _replace_one(data, rb"/First \d+", rng, lambda m: b"/First " + value)
    if choice == 2:  # the xref says "in an object stream"; the stream is something else
        return _replace_one(data, rb"/Type\s*/ObjStm", rng, lambda m: b"/Type /XObject")

    def scramble(m: re.Match) -> bytes:
        body = bytearray(m.group(2))
        for _ in range(rng.randint(1, 8)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        return m.group(1) + bytes(body)

    return _replace_one(data, rb"(/ObjStm.{0,200}?stream\r?\n)(.{1,400})", rng, scramble)


def self_reference(data: bytes, rng: random.Random) -> bytes:
    """Point a reference inside an object, or its stream's /Length, at the object itself."""

    def loop(m: re.Match) -> bytes:
        own = m.group(1) + b" 0 R"
        body = m.group(2)
        if rng.random() < 0.5 and re.search(rb"/Length \d+", body):
            body = re.sub(rb"/Length \d+( 0 R)?", b"/Length " + own, body, count=1)
        else:
            body = re.sub(rb"\d+ 0 R", own, body, count=1)
        return m.group(1) + b" 0 obj" + body

    return _replace_one(data, rb"(\d+) 0 obj(.{0,300}?(?:\d+ 0 R|/Length \d+))", rng, loop)


def mangle_endobj(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return _replace_one(data, rb"endobj", rng, lambda m: b"")
    return _replace_one(data, rb"endobj", rng, lambda m: b"endobj\nendobj")


def renumber_object(data: bytes, rng: random.Random) -> bytes:
    """An object header with another number, so the xref points at the wrong object."""
    return _replace_one(data, rb"\d+ 0 obj", rng, lambda m: b"%d 0 obj" % rng.randrange(1, 50))


MUTATIONS = {
    f.__name__: f
    for f in (
        truncate,
        flip_bytes,
        overwrite_run,
        break_xref,
        corrupt_lengths,
        corrupt_object_stream,
        self_reference,
        mangle_endobj,
        renumber_object,
    )
}


def mutants(seeds: dict[str, bytes], count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` damaged copies of the ``seeds`` PDFs, each named ``seed-name:mutation#n``;
    the same arguments give the same bytes. One to three mutations are stacked on each."""
    rng = random.Random(seed)
    names = sorted(seeds)
    out = []
    for n in range(count):
        name = names[n % len(names)]
        data, applied = seeds[name], []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutation = rng.choice(sorted(MUTATIONS))
            data = MUTATIONS[mutation](data, rng)
            applied.append(mutation)
        out.append((f"{name}:{'+'.join(applied)}#{n}", data))
    return out


def fuzz_seeds(paths: list[Path], *, max_bytes: int = 150_000) -> dict[str, bytes]:
    """The PDFs to mutate, by name: the files among ``paths`` up to ``max_bytes`` long
    (small ones parse fast, so a fuzz run can afford many mutants) and generated ones that
    hold an object stream, many pages and a page tree."""
    seeds = {path.name: path.read_bytes() for path in paths if path.stat().st_size <= max_bytes}
    seeds["generated-manual.pdf"] = make_pdf(MANUAL_PAGES)
    seeds["generated-object-stream.pdf"] = object_stream_pdf()
    seeds["generated-pages.pdf"] = many_pages_pdf(5)
    seeds["generated-page-tree.pdf"] = deep_page_tree_pdf(4)
    return seeds


# A report laid out as real ones are: running head and foot, bold headings, a statement
# as a table with right-aligned figures, two columns of prose, bookmarks.
REPORT_HEAD = "Northwind Devices Inc. | 2023 Annual Report"
REPORT_CASH_FLOWS = [
    ("Cash Flows from Operating Activities", None, None),
    ("Net income", "$ 5,363", "$ 4,869"),
    ("Depreciation and amortization", "1,488", "1,544"),
    ("Net cash provided by operating activities", "6,439", "6,240"),
    ("Cash Flows from Investing Activities", None, None),
    ("Purchases of property, plant and equipment", "(1,577)", "(1,373)"),
    ("Proceeds from sale of businesses", "846", "1,065"),
]
REPORT_LEFT = (
    "Northwind designs radios for hikers and sailors. The company sells through outdoor "
    "retailers in twelve countries and through its own web shop, which grew fastest. "
    "Sales of the marine line doubled after the new waterproof housing was introduced."
)
REPORT_RIGHT = (
    "Risks include the supply of chips from two foundries, the weather in the northern "
    "summer season and the exchange rate of the dollar against the euro and the pound. "
    "The board reviews each of these risks every quarter with the auditors present."
)


def report_pdf() -> bytes:
    """Four pages: a title page, a statement of cash flows (a table under bold headings),
    two columns of prose, and a page of notes; a running head and a page number on each,
    and bookmarks for the two parts."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    width, height = A4

    def furniture(number: int) -> None:
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, height - 40, REPORT_HEAD)
        pdf.drawCentredString(width / 2, 30, str(number))

    def heading(text: str, y: float, size: int = 14) -> None:
        pdf.setFont("Helvetica-Bold", size)
        pdf.drawString(72, y, text)

    furniture(1)
    heading("Northwind Devices Inc. Annual Report 2023", height - 200, 20)
    pdf.setFont("Helvetica", 10)
    pdf.drawString(72, height - 230, "Fiscal year ended December 31, 2023")
    pdf.showPage()

    furniture(2)
    pdf.bookmarkPage("statements")
    pdf.addOutlineEntry("Item 8. Financial Statements", "statements", level=0)
    heading("Item 8. Financial Statements", height - 90)
    heading("Consolidated Statement of Cash Flows", height - 120, 11)
    pdf.setFont("Helvetica", 10)
    y = height - 150
    pdf.drawString(72, y, "(Millions)")
    pdf.drawRightString(420, y, "2023")
    pdf.drawRightString(500, y, "2022")
    for label, this_year, last_year in REPORT_CASH_FLOWS:
        y -= 16
        pdf.drawString(72 if this_year is None else 84, y, label)
        if this_year is not None and last_year is not None:
            pdf.drawRightString(420, y, this_year)
            pdf.drawRightString(500, y, last_year)
    pdf.showPage()

    furniture(3)
    pdf.bookmarkPage("business")
    pdf.addOutlineEntry("Item 1. Business", "business", level=0)
    heading("Item 1. Business", height - 90)
    pdf.setFont("Helvetica", 10)
    for x, text in ((72, REPORT_LEFT), (316, REPORT_RIGHT)):
        y = height - 120
        for line in textwrap.wrap(text, 42):
            pdf.drawString(x, y, line)
            y -= 13
    pdf.showPage()

    furniture(4)
    pdf.setFont("Helvetica", 10)
    pdf.drawString(72, height - 90, "Notes continue on the next page of the printed report.")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def scan_pdf(pages: list[str], *, dpi: int = 150) -> bytes:
    """``make_pdf(pages)`` as a scanner returns it: every page an image of itself, without
    a text layer (rendered by PDFium, wrapped by Pillow)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(make_pdf(pages))
    try:
        images = [page.render(scale=dpi / 72, grayscale=True).to_pil() for page in document]
    finally:
        document.close()
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buffer.getvalue()


def mixed_pdf(text_pages: list[str], scanned_pages: list[str]) -> bytes:
    """The text pages with a text layer, then the scanned ones as images only."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in (make_pdf(text_pages), scan_pdf(scanned_pages)):
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
