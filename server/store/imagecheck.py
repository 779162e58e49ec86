"""Proving an uploaded image by decoding it in a child process with limits of its own.

A bitmap costs memory by its pixels, not its bytes: a 120 KB PNG declaring 40
megapixels decodes into 160 MB, and a few of them at once would hold a node's memory
long after they are done (the allocator keeps what it got). So the server never
decodes an image itself. `ImageChecker.check` runs

    python -m server.store.imagecheck FORMAT TYPE MAX_PIXELS MEMORY_BYTES CPU_SECONDS

with the upload on its standard input. The child first lowers its own RLIMIT_AS,
RLIMIT_CPU and RLIMIT_CORE with `resource.setrlimit` (in the child
itself: a `preexec_fn` is unsafe in a threaded server), then decodes with Pillow
(`server.store.filetypes.check_image`) and prints one JSON line, `{"ok": true,
"width", "height"}` or `{"ok": false, "status", "message"}`. Whatever it allocated
goes back to the system when it exits. It gets no environment but `PYTHONPATH`, so
no secret reaches the code that parses hostile bytes.

A node runs at most `concurrency` children at once (an `asyncio.Semaphore`); an
upload waiting for its turn is moved to disk first, so waiting costs a descriptor,
not memory. A child that runs out of memory or CPU time, overruns the wall-clock
timeout, crashes or answers nonsense means the image is refused — 413 when it ran
out of a budget, 415 otherwise — never a 500; a child that cannot be started at all
is 503 (try again). A cancelled upload kills its child.

What this does not do: bound the number of uploads waiting for a turn (the upload
rate limit and the connection limit do), or check anything but images.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import resource
import signal
import sys
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import IO, Any

import anyio.to_thread

from server.errors import PomocError, TooLarge, Unavailable
from server.store.filetypes import DEFAULT_MAX_PIXELS, IMAGE_CLAIMS, FileKind, ImageClaim, UnsupportedType, check_image

log = logging.getLogger(__name__)

MODULE = "server.store.imagecheck"
MiB = 1024 * 1024
# A 40-megapixel bitmap (4 bytes a pixel) plus the interpreter, Pillow and the file.
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
        self.cpu_seconds = cpu_seconds
        # Wall-clock time, generous beside the CPU budget: a busy machine shares its
        # cores, and the CPU limit is what bounds the work.
        self.timeout = timeout if timeout is not None else cpu_seconds * 3 + 10
        self.python = python
        self._slots = asyncio.Semaphore(concurrency)
        self._env = {"PYTHONPATH": _SOURCE_ROOT, "PYTHONDONTWRITEBYTECODE": "1"}

    async def check(self, file: SpooledTemporaryFile[bytes], claim: ImageClaim) -> FileKind:
        """The image in `file`, decoded to the last pixel by a child; raises TooLarge,
        UnsupportedType or Unavailable (see the module doc)."""
        fd = await anyio.to_thread.run_sync(_on_disk, file)
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
                str(max(1, round(self.cpu_seconds)))]
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", MODULE, *args, stdin=fd, stdout=asyncio.subprocess.PIPE,
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
        detail = err[-300:].decode("utf-8", "replace")
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            log.warning("image_check.out_of_budget", extra={"content_type": claim.content_type, "exit": code})
            raise TooLarge("the image needs more time to check than is allowed; send a smaller one")
        log.warning("image_check.failed", extra={"content_type": claim.content_type, "exit": code,
                                                  "detail": detail})
        raise UnsupportedType("the image could not be decoded")


def _on_disk(file: SpooledTemporaryFile[bytes]) -> int:
    """The descriptor of `file` moved to disk (if it was in memory), at its start."""
    fd = file.fileno()  # rolls an in-memory spool over to a temporary file
    file.flush()
    file.seek(0)
    return fd


# ------------------------------------------------------------------ the child
def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    """Lower the limit `kind` to `soft` (and `hard`, default the same); never above
    the hard limit the child inherited."""
    hard = soft if hard is None else hard
    _, inherited = resource.getrlimit(kind)
    if inherited != resource.RLIM_INFINITY:
        soft, hard = min(soft, inherited), min(hard, inherited)
    resource.setrlimit(kind, (soft, hard))


def _answer(out: IO[str], **fields: object) -> int:
    out.write(json.dumps(fields) + "\n")
    out.flush()
    return 0


def main(argv: list[str], stdin: IO[bytes], stdout: IO[str]) -> int:
    """The child: set the limits, read the file, decode it, print the answer."""
    if len(argv) != 5:
        sys.stderr.write("usage: python -m server.store.imagecheck FORMAT TYPE MAX_PIXELS MEMORY_BYTES CPU_SECONDS\n")
        return 2
    pil_format, content_type, max_pixels, memory_bytes, cpu_seconds = argv
    claim = IMAGE_CLAIMS.get(content_type)
    if claim is None or claim.pil_format != pil_format:
        sys.stderr.write(f"unknown image type {pil_format} {content_type}\n")
        return 2
    # Before anything touches the file: from here on the budget holds.
    _limit(resource.RLIMIT_CORE, 0)
    # SIGXCPU at the soft limit, SIGKILL a second later.
    _limit(resource.RLIMIT_CPU, int(cpu_seconds), int(cpu_seconds) + 1)
    _limit(resource.RLIMIT_AS, int(memory_bytes))
    try:
        kind = check_image(io.BytesIO(stdin.read()), claim, int(max_pixels), memory_bytes=int(memory_bytes))
    except MemoryError:
        return _answer(stdout, ok=False, status=TooLarge.http_status,
                       message="the image needs more memory to check than is allowed; send a smaller one")
    except PomocError as err:
        return _answer(stdout, ok=False, status=err.http_status, message=err.message)
    return _answer(stdout, ok=True, width=kind.width, height=kind.height)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin.buffer, sys.stdout))
