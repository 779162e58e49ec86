"""Small real files for attachment tests, generated on the fly (Pillow, zipfile)."""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib

from PIL import Image


def image(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    img = Image.new("RGB", size, (200, 40, 40))
    # A second colour so the encoders have something to compress.
    for x in range(size[0] // 2):
        img.putpixel((x, x % size[1]), (10, 120, 220))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def png() -> bytes:
    return image("PNG")


def jpeg() -> bytes:
    return image("JPEG", (64, 48))


def gif() -> bytes:
    return image("GIF")


def webp() -> bytes:
    return image("WEBP")


def pdf(extra: bytes = b"") -> bytes:
    """A minimal, valid one-page PDF."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + extra + b">>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def text_log() -> bytes:
    return (
        "2026-11-20 10:15:02 ERROR Płatność Przelewy24 odrzucona: błędny CRC\n"
        "2026-11-20 10:15:03 \x1b[31mWARN\x1b[0m ponawiam żądanie\n\tszczegóły: 401\n"
    ).encode()


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("faktura.pdf", pdf())
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose header claims other dimensions (a decompression bomb's header)."""
    data = bytearray(png())
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width, height.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def png_bomb(width: int = 8000, height: int = 5000) -> bytes:
    """A valid, all-black RGB PNG of width×height pixels that is tiny on the wire:
    the worst case for a decoder's memory per byte uploaded (8000×5000, exactly the
    default 40-megapixel cap, is 117 KB and decodes into 160 MB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


HTML = b"<!DOCTYPE html>\n<html><body><script>alert(document.cookie)</script></body></html>\n"
SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b"<script>alert(1)</script><rect width='10' height='10'/></svg>\n")
SVG_BARE = b'  <svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
