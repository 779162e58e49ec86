"""Content sniffing, display names and signed links of attachments (no network, no database)."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from server.errors import BadRequest, TooLarge, Unauthorized
from server.store.attachments import LinkSigner
from server.store.filetypes import (
    IMAGE_CLAIMS,
    TEXT,
    EmptyFile,
    FileKind,
    ImageClaim,
    UnsupportedType,
    _webp_size,
    check_image,
    classify,
    clean_name,
    display_name,
    sniff,
)
from tests import filesamples as samples

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

ACCEPTED = [
    ("png", samples.png(), "image/png", (40, 30)),
    ("jpeg", samples.jpeg(), "image/jpeg", (64, 48)),
    ("gif", samples.gif(), "image/gif", (40, 30)),
    ("webp", samples.webp(), "image/webp", (40, 30)),
    ("pdf", samples.pdf(), "application/pdf", None),
    ("log with ANSI colours", samples.text_log(), TEXT[0], None),
    ("text with BOM", "\ufeffZamówienie 1234 nie przeszło".encode(), TEXT[0], None),
    ("text mentioning a tag deep inside", b"line\n" * 400 + b"<script> seen in a log line\n", TEXT[0], None),
]


@pytest.mark.parametrize(("label", "data", "content_type", "size"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_types_are_recognised_by_content(label: str, data: bytes, content_type: str,
                                                  size: tuple[int, int] | None) -> None:
    kind = sniff(io.BytesIO(data))
    assert kind.content_type == content_type
    if size is not None:
        assert (kind.width, kind.height) == size
        assert kind.is_image
    else:
        assert kind.width is None and not kind.is_image


jpeg = samples.jpeg()
REFUSED = [
    ("HTML named .png", samples.HTML, UnsupportedType),
    ("SVG with script", samples.SVG, UnsupportedType),
    ("bare SVG with onload", samples.SVG_BARE, UnsupportedType),
    ("XHTML after whitespace", b"\n\n   <html xmlns='http://www.w3.org/1999/xhtml'></html>", UnsupportedType),
    ("truncated JPEG", jpeg[: len(jpeg) // 2], UnsupportedType),
    # A 16×16 canvas, then noise (fixed: random noise may declare a giant canvas).
    ("GIF header followed by garbage", b"GIF89a\x10\x00\x10\x00" + random.Random(7).randbytes(200), UnsupportedType),
    ("PNG signature then garbage", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, UnsupportedType),
    ("zip named .pdf", samples.zip_archive(), UnsupportedType),
    ("PDF with JavaScript", samples.pdf(b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >> "), UnsupportedType),
    ("PDF with /J#61vaScript", samples.pdf(b"/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >> "),
     UnsupportedType),
    ("PDF with /#4Aava#53cript", samples.pdf(b"/OpenAction << /S /#4Aava#53cript >> "), UnsupportedType),
    ("PDF with /#4a#73 in lower-case hex", samples.pdf(b"/OpenAction << /S /JavaScript /#4a#53 (x) >> "),
     UnsupportedType),
    ("PDF with /EmbeddedFiles", samples.pdf(b"/Names << /EmbeddedFiles << /Names [(a.exe) 3 0 R] >> >> "),
     UnsupportedType),
    ("PDF with /L#61unch", samples.pdf(b"/OpenAction << /S /L#61unch /F (cmd.exe) >> "), UnsupportedType),
    ("PDF with /XF#41", samples.pdf(b"/AcroForm << /XF#41 5 0 R >> "), UnsupportedType),
    ("PDF cut short", samples.pdf()[:-30], UnsupportedType),
    ("random binary", bytes(range(256)) * 8, UnsupportedType),
    ("UTF-16 text", "Zamówienie".encode("utf-16"), UnsupportedType),
    ("latin-2 text", "Zamówienie źle".encode("iso-8859-2"), UnsupportedType),
    ("text full of control characters", b"ab\x01\x02\x03\x04cd" * 50, UnsupportedType),
    ("ELF executable", b"\x7fELF\x02\x01\x01" + b"\x00" * 60, UnsupportedType),
    ("empty file", b"", EmptyFile),
    ("decompression bomb header", samples.png_claiming(50_000, 50_000), TooLarge),
    ("image above our pixel limit", samples.png_claiming(8_000, 6_000), TooLarge),
]


@pytest.mark.parametrize(("label", "data", "error"), REFUSED, ids=[r[0] for r in REFUSED])
def test_disguised_and_broken_files_are_refused(label: str, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        sniff(io.BytesIO(data))


PDF_ACCEPTED = [
    ("an escaped name that means nothing active", b"/PageMode /Use#4Futlines "),
    ("names that only start like active ones", b"/JSX 1 /JavaScripts 2 /Launcher 3 /EmbeddedFileX 4 "),
    ("an escaped solidus is part of the name", b"/A#2FJS 1 "),
]


@pytest.mark.parametrize(("label", "extra"), PDF_ACCEPTED, ids=[p[0] for p in PDF_ACCEPTED])
def test_pdf_names_are_compared_whole_after_decoding(label: str, extra: bytes) -> None:
    assert sniff(io.BytesIO(samples.pdf(extra))).content_type == "application/pdf"


def _pdf_with_name_at(name: bytes, position: int) -> bytes:
    """A PDF whose dictionary holds `name` starting at byte `position` (padded by a comment)."""
    def build(pad: int) -> bytes:
        return samples.pdf(b"%" + b"x" * pad + b"\n/OpenAction << /S " + name + b" >> ")

    pad = position - build(0).index(name)
    data = build(pad)
    assert data.index(name) == position
    return data


@pytest.mark.parametrize("cut", range(0, 17))
def test_an_escaped_name_across_a_chunk_boundary_is_still_seen(cut: int) -> None:
    # The scan reads 64 KiB at a time; the name is cut at every position of the seam.
    seam = 64 * 1024
    with pytest.raises(UnsupportedType):
        sniff(io.BytesIO(_pdf_with_name_at(b"/#4Aava#53cript", seam - cut)))
    # … and a harmless name cut at the seam is not mistaken for an active one.
    harmless = _pdf_with_name_at(b"/JSX", seam - min(cut, 4))
    assert sniff(io.BytesIO(harmless)).content_type == "application/pdf"


def _webp(mode: str, size: tuple[int, int], **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="WEBP", **options)
    return out.getvalue()


@pytest.mark.parametrize(("label", "data"), [
    ("lossy (VP8)", _webp("RGB", (123, 77))),
    ("lossless (VP8L)", _webp("RGB", (123, 77), lossless=True)),
    ("with alpha (VP8X)", _webp("RGBA", (123, 77))),
])
def test_a_webp_canvas_is_judged_from_its_header(label: str, data: bytes) -> None:
    # Pillow's WebP decoder allocates its canvases on opening, so the size comes first.
    assert _webp_size(io.BytesIO(data)) == (123, 77)
    kind = check_image(io.BytesIO(data), IMAGE_CLAIMS["image/webp"], 40_000_000)
    assert (kind.width, kind.height) == (123, 77)
    with pytest.raises(TooLarge):
        check_image(io.BytesIO(data), IMAGE_CLAIMS["image/webp"], 40_000_000, memory_bytes=123 * 77 * 10)
    # The same size as a PNG (4 bytes a pixel to decode) fits the same budget.
    png = samples.image("PNG", (123, 77))
    assert check_image(io.BytesIO(png), IMAGE_CLAIMS["image/png"], 40_000_000, memory_bytes=123 * 77 * 10).width == 123


def test_images_are_only_claimed_by_classify() -> None:
    claim = classify(io.BytesIO(samples.png_claiming(50_000, 50_000)))
    assert isinstance(claim, ImageClaim) and claim.content_type == "image/png"


def test_refusals_map_to_the_protocol_statuses() -> None:
    assert (UnsupportedType.http_status, UnsupportedType.code) == (415, "bad_request")
    assert (TooLarge.http_status, TooLarge.code) == (413, "too_large")
    assert issubclass(EmptyFile, BadRequest)


def test_pixel_limit_is_an_argument() -> None:
    with pytest.raises(TooLarge):
        sniff(io.BytesIO(samples.png()), max_pixels=100)
    assert sniff(io.BytesIO(samples.png()), max_pixels=40 * 30).width == 40


NAMES = [
    ("zrzut ekranu.png", "zrzut ekranu.png"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
    ("C:\\Users\\Ania\\Pulpit\\faktura.pdf", "faktura.pdf"),
    ("nul\x00byte.txt", "nulbyte.txt"),
    ("line\nbreak\r\tand\x1bescape.log", "linebreakandescape.log"),
    ("gpj.\u202eexe", "gpj.exe"),
    ("...hidden", "hidden"),
    ('quo"te<>|?*:.png', "quo_te______.png"),
    ("CON.txt", "_CON.txt"),
    ("   spaced    out   name .txt", "spaced out name.txt"),
    ("Zamówienie ŻÓŁĆ.pdf", "Zamówienie ŻÓŁĆ.pdf"),
    ("../", ""),
    ("", ""),
    (None, ""),
]


@pytest.mark.parametrize(("raw", "clean"), NAMES)
def test_clean_name(raw: str | None, clean: str) -> None:
    assert clean_name(raw) == clean


def test_very_long_names_keep_their_extension() -> None:
    name = clean_name("a" * 5000 + ".png")
    assert len(name) <= 120 and name.endswith(".png")


PNG_KIND = FileKind("image/png", (".png",), 1, 1)
TEXT_KIND = FileKind(*TEXT)


@pytest.mark.parametrize(("raw", "kind", "shown"), [
    ("screen.png", PNG_KIND, "screen.png"),
    ("SCREEN.PNG", PNG_KIND, "SCREEN.PNG"),
    ("photo.jpg", PNG_KIND, "photo.jpg.png"),
    ("page.html", TEXT_KIND, "page.html.txt"),
    ("server.log", TEXT_KIND, "server.log"),
    ("../../etc/passwd", TEXT_KIND, "passwd.txt"),
    ("", PNG_KIND, "plik.png"),
    ("\x00\x01", TEXT_KIND, "plik.txt"),
])
def test_display_name_matches_the_content(raw: str, kind: FileKind, shown: str) -> None:
    assert display_name(raw, kind) == shown


def test_display_name_is_never_a_path() -> None:
    for raw, _ in NAMES:
        name = display_name(raw, PNG_KIND)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".")
        assert 0 < len(name) <= 120


# ----------------------------------------------------------------- signed links

def _query(link: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in link.split("?", 1)[1].split("&"))


def test_signed_link_round_trip() -> None:
    signer = LinkSigner("s" * 32)
    link = signer.link("abcdefgh12345678", NOW)
    assert link.startswith("/api/attachments/abcdefgh12345678?")
    q = _query(link)
    signer.verify("abcdefgh12345678", q["exp"], q["sig"], NOW + timedelta(minutes=9))


@pytest.mark.parametrize("case", ["expired", "other id", "tampered exp", "tampered sig", "other secret",
                                  "missing sig", "garbage exp", "too far ahead"])
def test_signed_link_refusals(case: str) -> None:
    signer = LinkSigner("s" * 32)
    q = _query(signer.link("abcdefgh12345678", NOW))
    attachment_id, exp, sig, now = "abcdefgh12345678", q["exp"], q["sig"], NOW
    if case == "expired":
        now = NOW + timedelta(minutes=10, seconds=1)
    elif case == "other id":
        attachment_id = "abcdefgh12345679"
    elif case == "tampered exp":
        exp = str(int(exp) + 3600)
    elif case == "tampered sig":
        sig = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    elif case == "other secret":
        signer = LinkSigner("t" * 32)
    elif case == "missing sig":
        sig = ""
    elif case == "garbage exp":
        exp = "-1e9"
    elif case == "too far ahead":
        # Correctly signed by a signer with a much longer lifetime.
        long = LinkSigner("s" * 32, ttl=timedelta(days=30))
        q = _query(long.link(attachment_id, NOW))
        exp, sig = q["exp"], q["sig"]
    with pytest.raises(Unauthorized):
        signer.verify(attachment_id, exp, sig, now)
