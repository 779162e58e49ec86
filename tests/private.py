"""Private Redis and PostgreSQL servers a test may freeze (SIGSTOP) or kill without
touching the shared ones: each on its own free port and directory, gone at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import children, free_port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)  # polling another process's readiness, bounded by the deadline
    raise RuntimeError(f"{what} did not answer within {timeout} s")


def freeze(pid: int) -> list[int]:
    """SIGSTOP a process and all its descendants (a hang, not a crash); returns them."""
    tree = [pid, *children(pid)]
    for p in tree:
        try:
            os.kill(p, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    return tree


def thaw(tree: list[int]) -> None:
    for p in tree:
        try:
            os.kill(p, signal.SIGCONT)
        except ProcessLookupError:
            pass


@dataclass
class PrivateRedis:
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    password: str | None = None  # --requirepass

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tempfile.gettempdir(),
             *(("--requirepass", self.password) if self.password else ())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _answers(self.port), 15, "private redis")
        return self

    def freeze(self) -> list[int]:
        assert self.proc is not None
        return freeze(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


@dataclass
class PrivatePostgres:
    """A throwaway cluster (initdb) run as the `postgres` user, trust auth on loopback."""

    port: int = field(default_factory=free_port)
    directory: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        return _bindir() is not None

    def _as_postgres(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> PrivatePostgres:
        bindir = _bindir()
        assert bindir is not None, "PostgreSQL binaries not found"
        self.directory = Path(tempfile.mkdtemp(prefix="pomoc-pg-"))
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(self._as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
                       check=True, capture_output=True)
        self.proc = subprocess.Popen(
            self._as_postgres(str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                              "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.directory}",
                              "-c", "fsync=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _answers(self.port), 30, "private postgres")
        return self

    def postmaster(self) -> int:
        """The postmaster's pid (runuser, when used, is its parent)."""
        assert self.proc is not None
        if os.geteuid() == 0:
            kids = children(self.proc.pid)
            return kids[0] if kids else self.proc.pid
        return self.proc.pid

    def freeze(self) -> list[int]:
        return freeze(self.postmaster())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            thaw([self.proc.pid, *children(self.proc.pid)])
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for p in [self.proc.pid, *children(self.proc.pid)]:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _bindir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    if not root.exists():
        return None
    for version in sorted(root.iterdir(), reverse=True):
        if (version / "bin" / "initdb").exists():
            return version / "bin"
    return None
