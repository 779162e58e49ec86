"""Mail pages: the unsubscribe endpoint every mail links to, and the demo mailbox.

`GET /mail/unsubscribe/{token}` shows what the link will turn off and a button;
it changes nothing, so a mail scanner that follows links unsubscribes nobody.
`POST` to the same address turns the mail off at once — RFC 8058's one-click
(`List-Unsubscribe=One-Click` in the body, no cookie, no session) and the page's
button alike. The token is a single-purpose signed link (`server.rules.optout`):
one shop user, one ticket or all, nothing else. In embedded mode `/demo/mailbox`
shows the mails kept for the demo shop's owner when no SMTP server is configured.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import Parser

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.clock import Clock
from server.rules.optout import OptOut, verify
from server.settings import Settings
from server.store.notifications import NotificationStore

_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{title} — Pomoc</title>
<style>body{{margin:0;background:#f4f6f9;color:#1d2733;
font:15px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}}
header{{background:#17324d;color:#fff;padding:12px 24px;font-weight:800;letter-spacing:.04em}}
main{{max-width:760px;margin:24px auto;background:#fff;border:1px solid #e1e7ee;border-radius:10px;
padding:8px 32px 24px}}
h1{{font-size:22px;color:#17324d}} button{{font:inherit;font-weight:700;background:#17324d;color:#fff;border:0;
border-radius:6px;padding:10px 18px;cursor:pointer}}
pre{{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f6f9;padding:12px;border-radius:6px}}
article{{border-top:1px solid #e1e7ee;padding-top:8px}} iframe{{width:100%;height:420px;
border:1px solid #e1e7ee;border-radius:6px}} small{{color:#5b6b7b}}</style>
</head><body><header>POMOC</header><main><h1>{title}</h1>
{body}</main></body></html>"""

_WORDS = {
    "pl": {"ask": "Wypisać się?", "done": "Wypisano", "bad": "Nieprawidłowy link",
           "ticket": "wiadomości e-mail o zgłoszeniu #{ticket}", "all": "wszystkich wiadomości e-mail Pomocy",
           "question": "Po potwierdzeniu nie wyślemy Ci już {what}.", "button": "Tak, wypisz mnie",
           "confirmed": "Gotowe: nie wyślemy Ci już {what}. Zgłoszenia i odpowiedzi nadal zobaczysz w panelu "
                        "sklepu (przycisk POMOC).",
           "invalid": "Ten link do wypisania się jest nieprawidłowy albo niepełny. Skopiuj go z wiadomości w całości."},
    "en": {"ask": "Unsubscribe?", "done": "Unsubscribed", "bad": "Invalid link",
           "ticket": "e-mail about ticket #{ticket}", "all": "any Pomoc e-mail",
           "question": "Once you confirm, we will not send you {what} any more.", "button": "Yes, unsubscribe me",
           "confirmed": "Done: we will not send you {what} any more. You still see your tickets and the replies in "
                        "your shop's admin panel (the POMOC button).",
           "invalid": "This unsubscribe link is invalid or incomplete. Copy it from the mail in full."},
}


def _page(lang: str, title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(lang=lang, title=html.escape(title), body=body), status_code=status,
                        headers=_NO_STORE)


def _what(optout: OptOut) -> str:
    words = _WORDS[optout.lang]
    return words["ticket"].format(ticket=optout.ticket) if optout.ticket else words["all"]


def routes(settings: Settings, store_of: Callable[[Request], NotificationStore], clock_of: Callable[[Request], Clock],
           demo_email: str) -> list[BaseRoute]:
    def invalid() -> HTMLResponse:
        words = _WORDS["pl"]
        return _page("pl", words["bad"], f"<p>{html.escape(words['invalid'])}</p><p lang=\"en\">"
                     f"{html.escape(_WORDS['en']['invalid'])}</p>", status=400)

    async def unsubscribe(request: Request) -> Response:
        optout = verify(settings.secret, request.path_params["token"])
        if optout is None:
            return invalid()
        words = _WORDS[optout.lang]
        what = _what(optout)
        if request.method == "GET":
            return _page(optout.lang, words["ask"],
                         f"<p>{html.escape(words['question'].format(what=what))}</p>"
                         f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                         f"<button type=\"submit\">{html.escape(words['button'])}</button></form>")
        await store_of(request).opt_out(optout.shop, optout.user, optout.ticket, clock_of(request).now())
        return _page(optout.lang, words["done"], f"<p>{html.escape(words['confirmed'].format(what=what))}</p>")

    async def demo_mailbox(request: Request) -> Response:
        if not settings.demo:
            return JSONResponse({"error": {"code": "not_found", "message": "no such page"}}, status_code=404)
        mails = await store_of(request).mailbox(demo_email, limit=50)
        items = [_mail_item(row["message"], row["created_at"].isoformat(timespec="seconds")) for row in mails]
        note = (f"<p><small>Poczta właściciela sklepu demo ({html.escape(demo_email)}), zatrzymana tutaj, bo "
                "serwer nie ma ustawionego POMOC_SMTP_URL. Najnowsze na górze.</small></p>")
        response = _page("pl", "Skrzynka e-mail (demo)", note + ("".join(items) or "<p>Na razie pusto.</p>"))
        # The mails' HTML is shown in sandboxed frames: no script runs, nothing loads.
        response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                       "frame-src 'self'; form-action 'none'")
        return response

    return [
        Route("/mail/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/demo/mailbox", demo_mailbox),
    ]


def _mail_item(raw: str, when: str) -> str:
    message = Parser(EmailMessage, policy=policy.default).parsestr(raw)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = text_part.get_content() if text_part is not None else ""
    frame = ""
    if html_part is not None:
        frame = (f'<details><summary>HTML</summary><iframe sandbox="" title="HTML" '
                 f'srcdoc="{html.escape(html_part.get_content(), quote=True)}"></iframe></details>')
    return (f"<article><h3>{html.escape(str(message['Subject']))}</h3><small>{html.escape(when)} · "
            f"{html.escape(str(message['From']))} → {html.escape(str(message['To']))}</small>"
            f"<pre>{html.escape(text)}</pre>{frame}</article>")
