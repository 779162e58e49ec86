"""What search treats as a word: folding, tokens, the query a client may ask, snippets.

One rule for both databases, so that what is indexed and what is asked meet. Text
is folded character by character — ASCII capitals to small letters, the Polish
letters with diacritics (both cases) to their base letter, ł → l included, which
Unicode does not decompose — and a word is then a run of `a-z0-9`: "Płatność
Przelewy24!" is `platnosc przelewy24`, and so is "PLATNOSC przelewy24". Everything
else separates words, letters of other alphabets and other letters with diacritics
too ("Müller" is `m ller`): they are not searchable. Polish only, on purpose: the
database folds every message it stores this way, and each letter more in the
mapping costs every write (PostgreSQL's `translate()` compares each character with
every letter of the mapping).

The mapping is one character to one character, so a folded text has the length of
its original and a match found in the folded body is at the same place in the body
(the snippet uses that).

The databases apply the same rule: PostgreSQL through the SQL function
`pomoc_search_text` (`lower()` for the ASCII capitals, a `translate()` with
`POLISH`/`POLISH_BASE` and a `regexp_replace`, installed by migration 0012 —
changing the mapping here needs a migration that replaces the function and rebuilds
its indexes; a unit test holds the two together), SQLite through FTS5's `unicode61
remove_diacritics 2` tokenizer with ł/Ł replaced before indexing (the only Polish
letters it does not fold). The one difference: SQLite's tokenizer keeps other
letters in words and folds other diacritics too, so there "Müller" is one word.

Pure module: standard library only; it must not import starlette, redis, sqlalchemy
or asyncio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 200
MAX_WORDS = 10
MIN_WORD_CHARS = 2
SNIPPET_CHARS = 160

POLISH = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"
POLISH_BASE = "acelnoszzacelnoszz"
_TABLE = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ" + POLISH, "abcdefghijklmnopqrstuvwxyz" + POLISH_BASE)
_WORD = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """Small letters without diacritics, same length: "Płatność" → "platnosc"."""
    return text.translate(_TABLE)


def words(text: str) -> list[str]:
    """The words of `text` as they are indexed, in order (repeats kept)."""
    return _WORD.findall(fold(text))


@dataclass(frozen=True, slots=True)
class Query:
    """What a search looks for: every one of `terms` (folded words of 2+ characters)."""

    terms: tuple[str, ...]

    def tsquery(self) -> str:
        """PostgreSQL `to_tsquery('simple', …)` text: all terms (they are `[a-z0-9]+`)."""
        return " & ".join(self.terms)

    def fts5(self) -> str:
        """SQLite FTS5 MATCH text: every term as a quoted string (implicit AND)."""
        return " ".join(f'"{t}"' for t in self.terms)


def query_problem(q: str) -> str | None:
    """Why `q` is not a query one can search for (after the text rules), or None."""
    if not 1 <= len(q) <= MAX_QUERY_CHARS:
        return f"must be 1 to {MAX_QUERY_CHARS} characters"
    found = [w for w in dict.fromkeys(words(q)) if len(w) >= MIN_WORD_CHARS]
    if not found:
        return f"needs at least one word of {MIN_WORD_CHARS} or more letters or digits"
    if len(found) > MAX_WORDS:
        return f"has more than {MAX_WORDS} words"
    return None


def parse_query(q: str) -> Query:
    """The terms of a valid query (check `query_problem` first): its distinct words of
    two characters or more, in order. One-letter words ("a", "w", "z") are left out:
    they are in nearly every message and narrow nothing."""
    return Query(tuple(w for w in dict.fromkeys(words(q)) if len(w) >= MIN_WORD_CHARS))


def snippet(text: str, query: Query, width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` around the first word that is a query term,
    whitespace collapsed, with "…" where it was cut."""
    folded = fold(text)
    start = 0
    terms = set(query.terms)
    for match in _WORD.finditer(folded):
        if match.group() in terms:
            start = match.start()
            break
    begin = max(0, start - width // 4)
    end = min(len(text), begin + width)
    begin = max(0, min(begin, end - width))
    if begin > 0:
        # Start at a word boundary when one is near.
        space = text.find(" ", begin, start)
        if space != -1:
            begin = space + 1
    piece = _SPACE.sub(" ", text[begin:end]).strip()
    return ("…" if begin > 0 else "") + piece + ("…" if end < len(text) else "")
