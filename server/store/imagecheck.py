"""The image check, a program of its own: decode one uploaded image within limits it sets itself.

    python -m server.store.imagecheck FORMAT TYPE MAX_PIXELS MEMORY_BYTES CPU_SECONDS < file

The node never decodes an image (a bitmap costs memory by its pixels, not its
bytes); `server.store.images.ImageChecker` runs this in a child process instead.
Before it reads a byte the child lowers its own RLIMIT_AS to MEMORY_BYTES,
RLIMIT_CPU to CPU_SECONDS (SIGXCPU, then SIGKILL a second later) and RLIMIT_CORE
to nothing, with `resource.setrlimit` in the child itself — a `preexec_fn` in the
parent would be unsafe in a threaded server. It then decodes the file from its
standard input with Pillow (`server.store.filetypes.check_image`: FORMAT and TYPE
say what the first bytes claimed) and prints one JSON line:

    {"ok": true, "width": W, "height": H}
    {"ok": false, "status": 413 | 415, "message": "…for the customer…"}

Running out of memory is answered as 413; running out of CPU time kills the child,
which its parent reads as 413 too. Exit status 0 with an answer, 2 for a wrong
command line. Kept light to start: standard library, Pillow and `filetypes` only.
"""

from __future__ import annotations

import io
import json
import resource
import sys
from typing import IO

from server.errors import PomocError, TooLarge
from server.store.filetypes import IMAGE_CLAIMS, check_image

USAGE = "usage: python -m server.store.imagecheck FORMAT TYPE MAX_PIXELS MEMORY_BYTES CPU_SECONDS < file\n"


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


def main(argv: list[str], stdin: IO[bytes], stdout: IO[str], stderr: IO[str]) -> int:
    """Set the limits, read the file, decode it, print the answer."""
    try:
        pil_format, content_type = argv[0], argv[1]
        max_pixels, memory_bytes, cpu_seconds = (int(a) for a in argv[2:5])
    except (IndexError, ValueError):
        stderr.write(USAGE)
        return 2
    claim = IMAGE_CLAIMS.get(content_type)
    if len(argv) != 5 or claim is None or claim.pil_format != pil_format:
        stderr.write(USAGE)
        return 2
    # Before anything touches the file: from here on the budget holds.
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _limit(resource.RLIMIT_AS, memory_bytes)
    try:
        kind = check_image(io.BytesIO(stdin.read()), claim, max_pixels, memory_bytes=memory_bytes)
    except MemoryError:
        return _answer(stdout, ok=False, status=TooLarge.http_status,
                       message="the image needs more memory to check than is allowed; send a smaller one")
    except PomocError as err:
        return _answer(stdout, ok=False, status=err.http_status, message=err.message)
    return _answer(stdout, ok=True, width=kind.width, height=kind.height)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin.buffer, sys.stdout, sys.stderr))
