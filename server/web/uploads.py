"""Receiving one uploaded file from a multipart/form-data request, with a hard byte cap.

Starlette's `request.form()` spools file parts to a temporary file without any size
limit (its `max_part_size` applies only to plain fields), so an endless upload would
fill the disk. `receive_upload` drives python-multipart's streaming parser itself and
stops reading the moment the file passes `max_bytes` or the whole body passes
`max_bytes + form_overhead`: memory holds at most one network chunk plus the spool's
in-memory part, and disk at most `max_bytes`. A declared Content-Length that is
already too big is refused before a byte of the body is read.

The file arrives in a `SpooledTemporaryFile` together with its size and SHA-256,
computed while streaming. Nothing here looks at the content (see `server.store.filetypes`)
or touches the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from server.errors import BadRequest, TooLarge
from server.store.attachments import ReceivedFile

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int = 10 * MiB
    # Boundaries, part headers and small extra fields around the file.
    form_overhead: int = 64 * 1024
    # Kept in memory up to this size, then on disk.
    spool_bytes: int = 1 * MiB
    max_fields: int = 8

    @property
    def max_body(self) -> int:
        return self.max_bytes + self.form_overhead


class _Collector:
    """python-multipart callbacks: remembers part headers and routes file bytes."""

    def __init__(self, field: str, limits: UploadLimits) -> None:
        self.field = field
        self.limits = limits
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.in_file = False
        self.filename: str | None = None
        self.files = 0
        self.fields = 0
        self.pending: list[bytes] = []

    def on_part_begin(self) -> None:
        self.disposition = b""
        self.in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None:
            raise BadRequest("a multipart part has no name")
        if b"filename" in options:
            self.files += 1
            if name.decode("utf-8", "replace") != self.field or self.files > 1:
                raise BadRequest(f"send exactly one file, in the multipart field {self.field!r}")
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.in_file = True
        else:
            self.fields += 1
            if self.fields > self.limits.max_fields:
                raise BadRequest("too many form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        # Plain fields are not used; their size is bounded by the body cap.
        if self.in_file:
            self.pending.append(data[start:end])

    def on_part_end(self) -> None:
        self.in_file = False


async def receive_upload(request: Request, limits: UploadLimits, *, field: str = "file") -> ReceivedFile:
    """Stream the multipart body of `request` into a temporary file (see the module doc)."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest("send the file as multipart/form-data")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if declared_size > limits.max_body:
            raise TooLarge(f"files are limited to {limits.max_bytes // MiB} MB")

    collector = _Collector(field, limits)
    try:
        parser = MultipartParser(params[b"boundary"], {
            "on_part_begin": collector.on_part_begin,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
        })
    except FormParserError:
        raise BadRequest("the multipart boundary is invalid") from None
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=limits.spool_bytes)
    digest = hashlib.sha256()
    size = received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_body:
                raise TooLarge(f"files are limited to {limits.max_bytes // MiB} MB")
            parser.write(chunk)
            for data in collector.pending:
                size += len(data)
                if size > limits.max_bytes:
                    raise TooLarge(f"files are limited to {limits.max_bytes // MiB} MB")
                digest.update(data)
                if size > limits.spool_bytes:
                    # Past the in-memory part the spool writes to disk: keep that off
                    # the event loop.
                    await anyio.to_thread.run_sync(spool.write, data)
                else:
                    spool.write(data)
            collector.pending.clear()
        parser.finalize()
    except FormParserError:
        spool.close()
        raise BadRequest("the multipart body is malformed") from None
    except ClientDisconnect:
        spool.close()
        raise BadRequest("the upload was interrupted") from None
    except BaseException:
        spool.close()
        raise
    if collector.filename is None:
        spool.close()
        raise BadRequest(f"the multipart field {field!r} with a file is missing")
    spool.seek(0)
    return ReceivedFile(spool, collector.filename, size, digest.hexdigest())
