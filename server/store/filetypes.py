"""What an uploaded file really is, decided by its content, and a safe name to show.

`classify(file)` reads a complete upload (a seekable binary file) and decides PDFs
and UTF-8 plain text itself; for PNG, JPEG, GIF and WebP it returns an `ImageClaim`
(what the first bytes say) that `check_image` must still prove by decoding. The
server never decodes in its own process: a bitmap costs memory by its pixels, not
its bytes, so `server.store.imagecheck` runs `check_image` in a child process with
its own memory and CPU limits. `sniff(file)` is both steps in one call (the child
and the tests use it). Unknown content raises `UnsupportedType` (415). The name and
the Content-Type the browser sent are never trusted: an HTML page named
`screenshot.png` is refused because it is not a PNG, and it is not accepted as text
either because markup (HTML, SVG, XML) is refused outright. Images are decoded by
Pillow to the last pixel, which catches truncated or corrupt files and, through a
pixel limit checked before decoding, decompression bombs (`TooLarge`, 413).

PDFs are refused when a name in them marks active content (`/JavaScript`, `/JS`,
`/Launch`, `/EmbeddedFile(s)`, `/RichMedia`, `/XFA`), with `#hh` escapes in names
decoded first, so `/J#61vaScript` is `/JavaScript`.

`display_name(raw, kind)` turns whatever file name the client sent into a short,
printable name for people to read; it is never used as a path (storage is
content-addressed, see `server.store.attachments`).

What this does not guarantee: a valid PDF can still carry hostile content that the
name scan misses — names inside compressed object streams are not looked at, and
scripts can hide in places the scan does not know; downloads are therefore always
served as attachments under a sandboxing CSP. Image metadata (EXIF, GPS) is kept as
uploaded.

Imports Pillow and the standard library only; no starlette, redis, sqlalchemy or
asyncio. CPU-bound: callers run it in a worker thread (and images in a child).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from server.errors import BadRequest, PomocError, TooLarge

# About 40 megapixels: larger than any screenshot or phone photo, far below what
# would let a 10 MB file expand into gigabytes of pixels.
DEFAULT_MAX_PIXELS = 40_000_000
MAX_NAME_CHARS = 120
_CHUNK = 64 * 1024
_TEXT_HEAD_CHARS = 1024


class UnsupportedType(PomocError):
    """The content is not one of the accepted types (HTTP 415).

    The protocol has no dedicated code for this; it is a `bad_request` answered
    with status 415.
    """

    code = "bad_request"
    http_status = 415


class EmptyFile(BadRequest):
    """A zero-byte upload: nothing to show an agent."""


@dataclass(frozen=True, slots=True)
class FileKind:
    content_type: str
    extensions: tuple[str, ...]  # the first is the canonical one
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def extension(self) -> str:
        return self.extensions[0]


@dataclass(frozen=True, slots=True)
class ImageClaim:
    """What an upload's first bytes say it is; proved only by `check_image`."""

    pil_format: str
    content_type: str
    extensions: tuple[str, ...]
    # Memory decoding takes per pixel, for the check to refuse up front what cannot
    # fit its budget. Measured with Pillow 13: PNG and JPEG about 4 bytes (the
    # bitmap) plus ~45 MB for the interpreter and the file — that rest is left to the
    # child's own memory limit; WebP about 25 bytes plus ~65 MB (libwebp keeps several
    # RGBA canvases, and fails with a bare OSError when it cannot), so its figure
    # covers the rest too.
    decode_bytes_per_pixel: int = 4


# Magic number → what it claims.
_IMAGES: tuple[tuple[bytes, ImageClaim], ...] = (
    (b"\x89PNG\r\n\x1a\n", ImageClaim("PNG", "image/png", (".png",))),
    (b"\xff\xd8\xff", ImageClaim("JPEG", "image/jpeg", (".jpg", ".jpeg"))),
    (b"GIF87a", ImageClaim("GIF", "image/gif", (".gif",), 1)),
    (b"GIF89a", ImageClaim("GIF", "image/gif", (".gif",), 1)),
)
WEBP = ImageClaim("WEBP", "image/webp", (".webp",), 32)
# Every claim by its content type (the image checker's command line names one).
IMAGE_CLAIMS = {claim.content_type: claim for _, claim in _IMAGES} | {WEBP.content_type: WEBP}
PDF = ("application/pdf", (".pdf",))
TEXT = ("text/plain; charset=utf-8", (".txt", ".log"))
ALLOWED_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", PDF[0], TEXT[0]})

# Names that mark active content in a PDF (a heuristic, see above), compared after
# their #hh escapes are decoded.
_PDF_ACTIVE_NAMES = frozenset({b"JavaScript", b"JS", b"Launch", b"EmbeddedFile", b"EmbeddedFiles", b"RichMedia",
                               b"XFA"})
# A PDF name: a solidus, then regular characters up to a delimiter or white space
# (ISO 32000-1, 7.2.2 and 7.3.5).
_PDF_NAME = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_PDF_HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
# Longer than any escaped active name (3 bytes a character): a name cut by a chunk
# boundary is seen whole in the next window.
_PDF_OVERLAP = 128
# Markup a browser would render if it ever ignored nosniff; a log mentioning a tag
# deep inside is fine, a document that is markup is not.
_MARKUP_HEAD = ("<!doctype", "<html", "<head", "<body", "<script", "<svg", "<iframe", "<object", "<embed",
                "<?xml", "<xsl", "<meta")
# Control characters allowed in logs: tab, LF, CR, form feed, and ESC (ANSI colours).
_TEXT_CONTROLS_OK = frozenset("\t\n\r\f\x1b")


def classify(file: IO[bytes]) -> FileKind | ImageClaim:
    """The kind of the complete file `file`, except that an image is only claimed
    (read from the start; position is not kept)."""
    file.seek(0)
    head = file.read(64)
    if not head:
        raise EmptyFile("the file is empty")
    for magic, claim in _IMAGES:
        if head.startswith(magic):
            return claim
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return _pdf(file)
    return _text(file)


def sniff(file: IO[bytes], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> FileKind:
    """The kind of the complete file `file`, images decoded here (see the module doc)."""
    kind = classify(file)
    if isinstance(kind, ImageClaim):
        return check_image(file, kind, max_pixels)
    return kind


def check_image(file: IO[bytes], claim: ImageClaim, max_pixels: int, *, memory_bytes: int | None = None
                ) -> FileKind:
    """Decode every pixel of `file` as `claim` says it is; raise TooLarge past
    `max_pixels` or when decoding would certainly need more than `memory_bytes`,
    UnsupportedType when it does not decode. Memory grows with the pixels: the
    server calls this only in a child process (`server.store.imagecheck`)."""
    name = claim.content_type.split("/")[1].upper()
    try:
        # Pillow's WebP decoder allocates its canvases on opening: judge the size
        # the header declares before that.
        if claim is WEBP and (declared := _webp_size(file)) is not None:
            _check_size(*declared, claim, max_pixels, memory_bytes)
        file.seek(0)
        # `formats=` keeps Pillow from falling back to another decoder: a file that
        # starts like a PNG must be a PNG.
        with Image.open(file, formats=[claim.pil_format]) as probe:
            width, height = probe.size
            _check_size(width, height, claim, max_pixels, memory_bytes)
            probe.verify()
        # verify() leaves the image unusable; decoding every pixel is what catches
        # truncated files (Pillow's LOAD_TRUNCATED_IMAGES stays at its default, off).
        file.seek(0)
        with Image.open(file, formats=[claim.pil_format]) as image:
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit (above ours) fired while reading the header.
        raise TooLarge(f"the image has too many pixels; at most {max_pixels:,} are accepted") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports corrupt data with any of these; the detail is for the log, the
        # customer needs to know the file is broken.
        raise UnsupportedType(f"the file looks like {name} but cannot be decoded ({type(exc).__name__})") from None
    return FileKind(claim.content_type, claim.extensions, width, height)


def _check_size(width: int, height: int, claim: ImageClaim, max_pixels: int, memory_bytes: int | None) -> None:
    if width * height > max_pixels:
        raise TooLarge(f"the image is {width}×{height} pixels; at most {max_pixels:,} pixels are accepted")
    if memory_bytes is not None and width * height * claim.decode_bytes_per_pixel > memory_bytes:
        name = claim.content_type.split("/")[1].upper()
        raise TooLarge(f"the image is {width}×{height} pixels, more than a {name} image may have here; "
                       "send a smaller one, or a PNG or JPEG")


def _webp_size(file: IO[bytes]) -> tuple[int, int] | None:
    """The canvas a WebP header declares (RFC 9649: VP8X, VP8L or VP8 first); None
    when the header is not one of those (Pillow then judges the file)."""
    file.seek(0)
    head = file.read(30)
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF)
    return None


def _pdf(file: IO[bytes]) -> FileKind:
    file.seek(0)
    tail = b""
    overlap = b""
    chunk = file.read(_CHUNK)
    while chunk:
        following = file.read(_CHUNK)
        window = overlap + chunk
        if _pdf_active(window, final=not following):
            raise UnsupportedType("PDF files with scripts, launch actions or embedded files are not accepted")
        overlap = window[-_PDF_OVERLAP:]
        tail = (tail + chunk)[-2048:]
        chunk = following
    if b"%%EOF" not in tail:
        raise UnsupportedType("the file starts like a PDF but is incomplete (no %%EOF trailer)")
    return FileKind(*PDF)


def _pdf_active(window: bytes, *, final: bool) -> bool:
    """Whether a name in `window` marks active content. A name running into the end
    of a window that is not the last may go on in the next chunk: it is judged there,
    whole (the overlap carries it)."""
    for match in _PDF_NAME.finditer(window):
        if match.end() == len(window) and not final:
            continue
        name = _PDF_HEX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group()[1:])
        if name in _PDF_ACTIVE_NAMES:
            return True
    return False


def _text(file: IO[bytes]) -> FileKind:
    file.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    head = ""
    chars = controls = 0
    first = True
    try:
        while chunk := file.read(_CHUNK):
            if b"\x00" in chunk:
                raise UnsupportedType("binary files of this type are not accepted")
            text = decoder.decode(chunk)
            if first:
                text = text.removeprefix("\ufeff")
                first = False
            if len(head) < _TEXT_HEAD_CHARS:
                head += text[: _TEXT_HEAD_CHARS - len(head)]
            chars += len(text)
            controls += sum(1 for ch in text if _is_bad_control(ch))
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UnsupportedType("only images (PNG, JPEG, GIF, WebP), PDF and UTF-8 text files are accepted") from None
    # A stray control character is tolerated (logs carry odd bytes); a file full of
    # them is binary in disguise.
    if controls > max(1, chars // 100):
        raise UnsupportedType("binary files of this type are not accepted")
    lowered = head.lstrip().lower()
    if lowered.startswith("<") or any(marker in lowered for marker in _MARKUP_HEAD):
        raise UnsupportedType("HTML, SVG and XML files are not accepted; send a screenshot or a .txt file")
    return FileKind(*TEXT)


def _is_bad_control(ch: str) -> bool:
    code = ord(ch)
    return (code < 32 and ch not in _TEXT_CONTROLS_OK) or 0x7F <= code <= 0x9F


_WINDOWS_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                               *(f"lpt{i}" for i in range(1, 10))})
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*;]')
_SPACES = re.compile(r"\s+")


def clean_name(raw: str | None, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """A printable file name without directories, control or bidi characters.

    Only the last path component survives (`../../etc/passwd` → `passwd`,
    `C:\\Users\\a\\x.png` → `x.png`); leading dots go (no hidden files); characters
    that mean something to a shell, a filesystem or a header are replaced by `_`.
    The result may be empty.
    """
    if not raw:
        return ""
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    # Cc: controls and NUL; Cf: format characters such as U+202E (right-to-left
    # override), which make "gpj.exe" display as "exe.jpg".
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    name = _UNSAFE_CHARS.sub("_", name)
    name = _SPACES.sub(" ", name).strip(" .")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.split(".")[0].lower() in _WINDOWS_RESERVED:
        stem = "_" + stem
    ext = ext[:16]
    budget = max_chars - (len(ext) + 1 if ext else 0)
    stem = stem[:max(budget, 1)].rstrip(" .")
    if not stem:
        return ""
    return f"{stem}.{ext}" if ext else stem


def display_name(raw: str | None, kind: FileKind, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """`clean_name`, ending in an extension that matches the content.

    A PNG named `photo.jpg` becomes `photo.jpg.png` and text named `page.html`
    becomes `page.html.txt`, so the name a person downloads never contradicts what
    the file is; a nameless upload is called `plik` (Polish for "file").
    """
    name = clean_name(raw, max_chars=max_chars)
    if name and name.lower().endswith(kind.extensions):
        return name
    return (clean_name(raw, max_chars=max_chars - len(kind.extension)) or "plik") + kind.extension
