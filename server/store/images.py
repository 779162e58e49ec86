"""Proving uploaded images outside the node: `ImageChecker`, a few bounded child processes at a time.

A bitmap costs memory by its pixels, not its bytes: a 120 KB PNG declaring 40
megapixels decodes into 160 MB, and a handful at once would leave a node holding
that memory long after (the allocator keeps what it got). So the node never
decodes an image. `ImageChecker.check` runs `python -m server.store.imagecheck`
(the program that sets its own memory and CPU limits and decodes, see there) with
the upload's temporary file as its standard input, under a wall-clock timeout, and
reads its one-line answer. Whatever the child allocated goes back to the system
when it exits. The child gets no environment but `PYTHONPATH`, so no secret
reaches the code that parses hostile bytes.

A node runs at most `concurrency` children at once (an `asyncio.Semaphore`); an
upload waiting for its turn is moved to disk first, so waiting costs a descriptor,
not memory. A child that runs out of memory or CPU time, overruns the timeout,
crashes or answers nonsense means the image is refused — 413 when it ran out of a
budget, 415 otherwise — never a 500; a child that cannot be started at all is 503
(try again). A cancelled upload kills its child.

What this does not do: bound the number of uploads waiting for a turn (the upload
rate limit and the connection limit do), or check anything but images.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import Any

from server.errors import TooLarge, Unavailable
from server.store.filetypes import DEFAULT_MAX_PIXELS, FileKind, ImageClaim, UnsupportedType

log = logging.getLogger(__name__)

PROGRAM = "server.store.imagecheck"
MiB = 1024 * 1024
# A 40-megapixel PNG or JPEG needs about 220 MiB of address space (bitmap,
# interpreter, Pillow, the file); WebP about 32 bytes a pixel.
DEFAULT_MEMORY_BYTES = 384 * MiB
DEFAULT_CPU_SECONDS = 10.0
DEFAULT_CONCURRENCY = 2
# The child's answer is one short line; anything longer is not an answer.
_MAX_ANSWER = 4096
# The root of the source tree, so the child finds `server` wherever the node runs.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class ImageChecker:
    """Runs the image check in child processes, at most `concurrency` at a time."""

    def __init__(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 cpu_seconds: float = DEFAULT_CPU_SECONDS, concurrency: int = DEFAULT_CONCURRENCY,
                 timeout: float | None = None, python: str = sys.executable) -> None:
        self.max_pixels = max_pixels
        self.memory_bytes = memory_bytes
        self.cpu_seconds = max(1, round(cpu_seconds))  # RLIMIT_CPU counts whole seconds
        # Wall-clock time, generous beside the CPU budget: a busy machine shares its
        # cores, and the CPU limit is what bounds the work.
        self.timeout = timeout if timeout is not None else self.cpu_seconds * 3 + 10
        self.python = python
        self._slots = asyncio.Semaphore(concurrency)
        self._env = {"PYTHONPATH": _SOURCE_ROOT, "PYTHONDONTWRITEBYTECODE": "1"}

    async def check(self, file: SpooledTemporaryFile[bytes], claim: ImageClaim) -> FileKind:
        """The image in `file`, decoded to the last pixel by a child; raises TooLarge,
        UnsupportedType or Unavailable (see the module doc)."""
        fd = await asyncio.to_thread(_on_disk, file)
        async with self._slots:
            answer = await self._run(fd, claim)
        if answer.get("ok") is True:
            width, height = answer.get("width"), answer.get("height")
            if isinstance(width, int) and isinstance(height, int):
                return FileKind(claim.content_type, claim.extensions, width, height)
        elif answer.get("status") == TooLarge.http_status:
            raise TooLarge(str(answer.get("message") or "the image is too large"))
        elif answer.get("status") == UnsupportedType.http_status:
            raise UnsupportedType(str(answer.get("message") or "the image cannot be decoded"))
        log.error("image_check.bad_answer", extra={"answer": str(answer)[:200]})
        raise UnsupportedType("the image could not be checked")

    async def _run(self, fd: int, claim: ImageClaim) -> dict[str, Any]:
        args = [claim.pil_format, claim.content_type, str(self.max_pixels), str(self.memory_bytes),
                str(self.cpu_seconds)]
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", PROGRAM, *args, stdin=fd, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self._env, close_fds=True)
        except OSError as exc:
            log.error("image_check.not_started", extra={"error": type(exc).__name__})
            raise Unavailable("images cannot be checked right now; try again in a minute",
                              retry_after=60) from None
        try:
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            except TimeoutError:
                log.warning("image_check.timeout", extra={"content_type": claim.content_type,
                                                          "timeout_s": self.timeout})
                raise TooLarge("the image took too long to check; send a smaller one") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: the child goes too
                proc.kill()
                await proc.wait()
        code = proc.returncode
        if code == 0 and 0 < len(out) <= _MAX_ANSWER:
            try:
                answer = json.loads(out)
            except ValueError:
                answer = None
            if isinstance(answer, dict):
                return answer
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            log.warning("image_check.out_of_budget", extra={"content_type": claim.content_type, "exit": code})
            raise TooLarge("the image needs more time to check than is allowed; send a smaller one")
        log.warning("image_check.failed", extra={"content_type": claim.content_type, "exit": code,
                                                  "detail": err[-300:].decode("utf-8", "replace")})
        raise UnsupportedType("the image could not be decoded")


def _on_disk(file: SpooledTemporaryFile[bytes]) -> int:
    """The descriptor of `file` moved to disk (if it was in memory), at its start."""
    fd = file.fileno()  # rolls an in-memory spool over to a temporary file
    file.flush()
    file.seek(0)
    return fd
