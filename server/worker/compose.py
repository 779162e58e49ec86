"""A notification as a mail: the message with its headers, both parts and its links.

Every mail has a Message-ID made from its notification's idempotency key, so a
mail sent twice (a worker that died between sending and recording it) is the same
mail to the recipient's client; `In-Reply-To` and `References` name one root id per
ticket, so a client threads all the mails of a ticket together. A shop user's
mail carries a signed one-click unsubscribe link (RFC 8058: `List-Unsubscribe` and
`List-Unsubscribe-Post`) for all of Pomoc's mail, and in its footer one for this
ticket only; `Auto-Submitted` (RFC 3834) keeps autoresponders quiet. No token,
secret or session ever goes into a mail: the links are the ticket's panel page and
the single-purpose unsubscribe links. The wording is `server.rules.mailtext`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from typing import cast

from server.rules.mailtext import Links, Rendered
from server.rules.optout import OptOut, sign
from server.settings import Settings


class _OnePiece(UnstructuredHeader):
    """A header holding one long URL: never folded (a fold without whitespace would
    turn it into encoded-words, which no client reads in List-Unsubscribe). A header
    line may be 998 characters long (RFC 5322); the links are ASCII."""

    def fold(self, *, policy: Policy) -> str:
        header = cast(BaseHeader, self)  # the registry mixes BaseHeader in
        return f"{header.name}: {header}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", cast(type[BaseHeader], _OnePiece))
_POLICY = SMTP.clone(header_factory=_HEADERS)


@dataclass(frozen=True, slots=True)
class MailSettings:
    from_header: str  # "Pomoc <no-reply@shop.example>"
    envelope_from: str  # no-reply@shop.example
    domain: str  # of the Message-IDs
    panel_url: str  # "https://panel.example/pomoc?ticket={ticket}" or ""
    public_base: str  # where /mail/unsubscribe/… and /agent are served
    secret: str  # signs the unsubscribe links

    @classmethod
    def from_settings(cls, settings: Settings) -> MailSettings:
        _, address = parseaddr(settings.mail_from)
        panel = settings.panel_url or (f"{settings.public_base}/demo" if settings.demo else "")
        return cls(settings.mail_from, address, address.rpartition("@")[2] or "localhost", panel,
                   settings.public_base, settings.secret)

    def panel_link(self, ticket_id: int | None) -> str | None:
        if not self.panel_url or ticket_id is None:
            return None
        return self.panel_url.replace("{ticket}", str(ticket_id))

    def unsubscribe_link(self, optout: OptOut) -> str:
        return f"{self.public_base}/mail/unsubscribe/{sign(self.secret, optout)}"

    def customer_links(self, ticket_id: int | None, shop_id: str | None, user_id: str | None,
                       lang: str) -> Links:
        if shop_id is None or user_id is None:
            return Links(panel=self.panel_link(ticket_id))
        return Links(panel=self.panel_link(ticket_id),
                     unsubscribe_ticket=self.unsubscribe_link(OptOut(shop_id, user_id, ticket_id or 0, lang))
                     if ticket_id else None,
                     unsubscribe_all=self.unsubscribe_link(OptOut(shop_id, user_id, 0, lang)))


def message_id(key: str, domain: str) -> str:
    """The Message-ID of a notification: the same for every attempt to send it."""
    return f"<pomoc.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def ticket_root(ticket_id: int, domain: str) -> str:
    """The id every mail of one ticket replies to, so clients thread them together."""
    return f"<pomoc.ticket.{ticket_id}@{domain}>"


def compose(rendered: Rendered, *, key: str, recipient: str, lang: str, ticket_id: int | None,
            settings: MailSettings, links: Links, sent_at: datetime) -> EmailMessage:
    """The whole message: headers, a text/plain and a text/html part."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = settings.from_header
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id(key, settings.domain)
    if ticket_id is not None:
        root = ticket_root(ticket_id, settings.domain)
        message["In-Reply-To"] = root
        message["References"] = root
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    if links.unsubscribe_all:
        message["List-Unsubscribe"] = f"<{links.unsubscribe_all}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable: 7-bit clean for any server, readable where it is plain ASCII.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = lang  # after the parts: setting content clears Content-* headers
    return message
