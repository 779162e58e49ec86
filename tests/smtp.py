"""A real SMTP server on loopback for mail tests (aiosmtpd), and a self-signed certificate.

`Inbox` records every mail it accepts, parsed with the email package; it can be
stopped and started again on the same port (an SMTP outage), offer STARTTLS or
speak TLS from the start, require a login, and refuse recipients. `wait_for`
waits for a number of mails with a timeout (no sleeping).
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        return str(part.get_content())

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, "no text/html part"
        return str(part.get_content())

    def __getitem__(self, header: str) -> str | None:
        value = self.message[header]
        return None if value is None else str(value)


@dataclass
class Inbox:
    port: int = field(default_factory=free_port)
    starttls: ssl.SSLContext | None = None  # offer STARTTLS with this server context
    implicit_tls: ssl.SSLContext | None = None  # TLS from the first byte (smtps)
    login: tuple[str, str] | None = None  # require AUTH with these credentials
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    mails: list[Mail] = field(default_factory=list)
    sessions: int = 0
    tls_sessions: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _controller: Controller | None = None

    def start(self) -> Inbox:
        inbox = self

        class Handler:
            async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,  # noqa: N802
                                  responses: list[str]) -> list[str]:
                session.host_name = hostname
                with inbox._changed:
                    inbox.sessions += 1
                    if session.ssl is not None:
                        inbox.tls_sessions += 1
                return responses

            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                                  options: list[str]) -> str:
                if address in inbox.refuse:
                    return "550 5.1.1 no such user"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                raw = bytes(envelope.original_content or envelope.content)
                message = BytesParser(EmailMessage, policy=policy.default).parsebytes(raw)
                with inbox._changed:
                    inbox.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), raw, message))
                    inbox._changed.notify_all()
                return "250 Message accepted"

        kwargs: dict[str, Any] = {}
        if self.starttls is not None:
            kwargs.update(tls_context=self.starttls, require_starttls=False)
        if self.implicit_tls is not None:
            kwargs.update(ssl_context=self.implicit_tls)
        if self.login is not None:
            user, password = self.login

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.login == user.encode() \
                    and data.password == password.encode()
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=self.starttls is not None or self.implicit_tls is not None)
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                      server_hostname="mail.test", **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls is not None else "smtp"
        auth = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    def wait_for(self, count: int, timeout: float = 30.0, where: Any = None) -> list[Mail]:
        """At least `count` mails (those matching `where`), waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self.mails if where is None or where(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails, got {len(found)}: "
                                         f"{[m['Subject'] for m in found]}")
                self._changed.wait(left)

    def to(self, address: str) -> list[Mail]:
        with self._changed:
            return [m for m in self.mails if address in m.recipients]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key (openssl), for TLS tests."""
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
