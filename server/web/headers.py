"""Security headers on every HTTP response: what a browser may do with what Pomoc serves.

One ASGI middleware, `SecurityHeaders`, and a table of policies by path:

- the agent console (`/agent`, its script and styles): a strict Content Security
  Policy — scripts, styles, images and connections from Pomoc's own origin only, no
  inline script, no `eval` — and it may not be framed by anyone (`frame-ancestors
  'none'`, `X-Frame-Options: DENY`): nobody can overlay an agent's console;
- help articles (`/help/…`, the links of the widget's suggestions): no script at all;
  framed only by Pomoc itself and the shop origins of `POMOC_ALLOWED_ORIGINS` (they
  are read-only public pages a shop may show in its panel);
- the demo shop (`/demo`): a shop's admin page in miniature — its own scripts only,
  framed only by Pomoc's own origin. Styles may be inline: the widget styles its
  Shadow DOM with a `<style>` element, as it does on every shop's page;
- `/embed.js`: loaded by shops' pages from their own origins, so no frame rules (it
  is no document) and `Cross-Origin-Resource-Policy: cross-origin`, which keeps it
  loadable from pages that isolate themselves (COEP);
- the mail pages (`/mail/…`, the unsubscribe links; `/demo/mailbox`): plain HTML
  with their own inline styles and a form posting to Pomoc, no script, never framed;
  a mail's HTML is shown in a sandboxed `srcdoc` frame, which inherits this policy;
- anything else (the JSON API, probes, the favicon, errors): nothing may run or frame it.

Every response also gets `X-Content-Type-Options: nosniff` and `Referrer-Policy:
no-referrer` (the console's and the pages' URLs stay theirs). A header a route set
itself is kept: the attachment downloads carry their own sandboxing CSP.

WebSocket upgrades pass untouched (the Origin check is `server.ws`'s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_OWN = ("default-src 'none'; script-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'")
CONSOLE = {"Content-Security-Policy": f"{_OWN}; style-src 'self'; frame-ancestors 'none'",
           "X-Frame-Options": "DENY"}
DEMO = {"Content-Security-Policy": f"{_OWN}; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
        "X-Frame-Options": "SAMEORIGIN"}
SCRIPT = {"Cross-Origin-Resource-Policy": "cross-origin"}
MAIL = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                   "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY"}
NOTHING = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'", "X-Frame-Options": "DENY"}


def help_policy(framers: Sequence[str]) -> dict[str, str]:
    """Help articles: no script; framed by Pomoc and the shops allowed to embed it."""
    ancestors = "*" if "*" in framers else " ".join(["'self'", *framers])
    return {"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                       f"base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"}


def policy_for(path: str, help_headers: Mapping[str, str]) -> Mapping[str, str]:
    if path in ("/agent", "/agent/") or path.startswith("/agent/"):
        return CONSOLE
    if path.startswith("/help/") or path == "/help.css":
        return help_headers
    if path == "/demo":
        return DEMO
    if path == "/embed.js":
        return SCRIPT
    if path.startswith("/mail/") or path == "/demo/mailbox":
        return MAIL
    return NOTHING


class SecurityHeaders:
    """Adds the path's policy and the common headers to each HTTP response."""

    def __init__(self, app: ASGIApp, framers: Sequence[str] = ()) -> None:
        self.app = app
        self.help = help_policy(framers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = {**COMMON, **policy_for(scope["path"], self.help)}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
