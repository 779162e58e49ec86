"""Logging as JSON lines with stable event names and fields.

Events are the log message (`ws.closed`, `bus.disconnected`); fields come through
`extra=`. Message bodies, e-mails and tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class Tally:
    """Repeated events (sockets refused during a flood) as one log line per interval:
    the first at once, then the counts summed, logged with the next event after the
    interval has passed. The log stays readable while a flood lasts."""

    def __init__(self, logger: logging.Logger, event: str, interval: float = 10.0, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.event = event
        self.interval = interval
        self.level = level
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._next = 0.0

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        now = self.clock()
        if now >= self._next:
            self.logger.log(self.level, self.event, extra=dict(self.counts))
            self.counts.clear()
            self._next = now + self.interval


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
    # Migrations announce every plugin at INFO; only their problems matter at startup.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # uvicorn logs every WebSocket open/close at INFO; Pomoc logs its own ws.* events.
    logging.getLogger("uvicorn.error").setLevel(max(root.level, logging.WARNING))
