"""A real nginx in front of test servers, running the documented `docs/deploy/nginx.conf`.

The documented file is used as it is, with only its addresses, ports and paths
replaced (each replacement must match, so a change to the file that the harness no
longer understands fails loudly instead of testing something else). It is included
in a small main configuration of the harness's own: `daemon off`, pid, error log and
temporary directories in a private prefix under tmp. TLS uses a throwaway
self-signed certificate made with `openssl` for 127.0.0.1.

Locally, a missing nginx or openssl skips the tests with the reason; in CI
(`CI=true`) it fails them: `.ci/run` installs both.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port
from tests.services import IN_CI

DOCUMENTED = ROOT / "docs" / "deploy" / "nginx.conf"
UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002")


def tool(name: str) -> str:
    """The path of a binary the tests need (nginx lives in /usr/sbin, often off PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found:
        return found
    message = f"{name} is not installed (Debian: apt-get install {'nginx-light' if name == 'nginx' else name})"
    if IN_CI:
        pytest.fail(f"{message}: CI runs the proxy tests against a real nginx", pytrace=False)
    pytest.skip(message)


def self_signed(openssl: str, directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def render(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{DOCUMENTED.relative_to(ROOT)} no longer contains {old!r}; update tests/proxy.py")
        text = text.replace(old, new)
    return text


@dataclass
class Nginx:
    """nginx with the documented site on 127.0.0.1: `http_port` redirects, `https_port` proxies."""

    prefix: Path
    upstreams: tuple[int, int]
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    cert: Path | None = None

    @property
    def wss(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "pomoc.access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "pomoc.error.log"

    def ssl_context(self) -> ssl.SSLContext:
        assert self.cert is not None
        return ssl.create_default_context(cafile=str(self.cert))

    def configure(self) -> Path:
        openssl = tool("openssl")
        for sub in ("logs", "tls", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.cert, key = self_signed(openssl, self.prefix / "tls")
        site = render(DOCUMENTED.read_text(), {
            UPSTREAMS[0]: f"127.0.0.1:{self.upstreams[0]}",
            UPSTREAMS[1]: f"127.0.0.1:{self.upstreams[1]}",
            "listen 80;": f"listen 127.0.0.1:{self.http_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;",
            "/etc/ssl/pomoc/fullchain.pem": str(self.cert),
            "/etc/ssl/pomoc/privkey.pem": str(key),
            "/var/log/nginx/": f"{self.prefix / 'logs'}/",
        })
        (self.prefix / "pomoc.conf").write_text(site)
        temp = self.prefix / "temp"
        # Root's workers would otherwise run as nobody, who cannot enter pytest's tmp.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main = (
            f"{user}daemon off;\nworker_processes 2;\npid {self.prefix / 'nginx.pid'};\n"
            f"error_log {self.prefix / 'logs' / 'error.log'} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    access_log {self.prefix / 'logs' / 'access.log'};\n"
            + "".join(f"    {kind}_temp_path {temp / kind};\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"    include {self.prefix / 'pomoc.conf'};\n}}\n"
        )
        (self.prefix / "nginx.conf").write_text(main)
        return self.prefix / "nginx.conf"

    def start(self, timeout: float = 20.0) -> Nginx:
        conf = self.configure()
        nginx = tool("nginx")
        command = [nginx, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "logs" / "error.log")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise AssertionError(f"nginx -t refused the documented configuration:\n{check.stderr}")
        with open(self.prefix / "logs" / "stderr.log", "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
            if all(_accepts(port) for port in (self.http_port, self.https_port)):
                return self
            time.sleep(0.05)  # polling another process's readiness, bounded by the deadline
        raise RuntimeError(f"nginx did not listen within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown: SIGQUIT would wait for every WebSocket
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        parts = []
        for name in ("error.log", "pomoc.error.log", "stderr.log"):
            path = self.prefix / "logs" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
