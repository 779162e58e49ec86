"""Browser-facing pages: the agent console and, in embedded mode, the demo shop.

Routes only; the pages themselves are static files under `widget/`.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from server.settings import Settings


def routes(settings: Settings) -> list[BaseRoute]:
    return []
