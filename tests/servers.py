"""Real Pomoc server processes for tests: `python -m server serve` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    cwd: Path = ROOT
    # The command after `python -m server`; None: `serve --host 127.0.0.1 --port P`.
    args: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, inherit_env: bool = True) -> ServerProcess:
        env = {**(os.environ if inherit_env else {}), **self.env, "PYTHONPATH": str(ROOT)}
        args = self.args if self.args is not None else ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command = [sys.executable, "-m", "server", *args]
        if self.log_path is not None:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=log,
                                             stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.http + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)  # polling readiness of another process, bounded by the deadline
        raise RuntimeError(f"server did not become ready within {timeout} s; log: {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
