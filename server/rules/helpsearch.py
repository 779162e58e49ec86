"""The help centre: Markdown articles and the search that suggests them before a ticket.

Seed 001 describes a "virtual assistant" that looks for an answer while the customer
types a question; seed 004 asks customers to read the Help Centre first. Articles
are Markdown files in one folder (`help/` by default): the file stem is the article
id (`/help/<id>`), the title comes from front matter (`title:`) or the first
`# Title` line, and optional front-matter `keywords:` add search terms that are not
in the text (brand spellings, synonyms).

`HelpIndex.build(articles)` builds an immutable BM25 index over title, keywords and
body (title weighted highest), using `server.rules.polish` so that "płatności", "Platnosc"
and "płatnościami" are one term. `search(query)` returns the best articles with a
plain-text snippet around the sentence that matches the query best.

Loading reads files once at startup (`load_articles`); searching is pure. This
module must not import starlette, redis, sqlalchemy or asyncio (the HTTP side is
`server.web.help_api`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import server.rules.polish as polish

MAX_QUERY_CHARS = 500
SNIPPET_CHARS = 200
_ARTICLE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
# BM25 parameters (the usual defaults) and per-field weights: a word in the title
# says far more about an article than the same word in its body.
_K1 = 1.2
_B = 0.75
FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "keywords": 2.0, "body": 1.0}
# A query word missing from the vocabulary may still share a long prefix with an
# indexed term (an inflection the light stemmer does not undo: "płatniczej" vs
# "płatnicza"); such matches count at this fraction.
_PREFIX_MIN = 5
_PREFIX_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    body: str  # Markdown without the front matter and the title line
    keywords: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"/help/{self.id}"


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str
    title: str
    snippet: str
    url: str
    score: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "snippet": self.snippet, "url": self.url,
                "score": self.score}


def parse_article(article_id: str, text: str) -> Article:
    """An article from its Markdown source; ValueError names what is wrong."""
    if not _ARTICLE_ID.match(article_id):
        raise ValueError(f"help article id {article_id!r} must be lowercase letters, digits and dashes")
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    meta: dict[str, str] = {}
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end < 0:
            raise ValueError(f"help article {article_id}: front matter is not closed with ---")
        for line in text[4:end].splitlines():
            if line.strip():
                key, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(f"help article {article_id}: front matter line {line!r} is not key: value")
                meta[key.strip().lower()] = value.strip()
        text = text[end + 4:].lstrip("\n")
    title = meta.get("title", "")
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        title = title or lines[0][2:].strip()
        lines = lines[1:]
    if not title:
        raise ValueError(f"help article {article_id}: no title (front matter `title:` or a first `# Title` line)")
    keywords = tuple(k.strip() for k in meta.get("keywords", "").split(",") if k.strip())
    return Article(article_id, title, "\n".join(lines).strip(), keywords)


def load_articles(directory: Path) -> tuple[Article, ...]:
    """Every `*.md` in `directory`, by id. Raises ValueError on a malformed article."""
    if not directory.is_dir():
        raise ValueError(f"help articles directory {directory} does not exist")
    return tuple(parse_article(p.stem, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.md")))


# Markdown to readable text for snippets: drop emphasis, code ticks, headings,
# quotes, list bullets, table pipes and link targets; keep "Ustawienia > Integracje".
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"[*_`#|]+")
_MD_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_MD_BULLET = re.compile(r"^\s*(?:[-+*]|\d+\.)\s+", re.MULTILINE)
_MD_RULE = re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.MULTILINE)
_BLOCK_START = re.compile(r"^\s*(?:[-+*#|>]|\d+\.\s)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _unwrap(markdown: str) -> str:
    """Join hard-wrapped paragraph lines, so a sentence is not cut at a line end."""
    out: list[str] = []
    for line in markdown.splitlines():
        if out and out[-1].strip() and line.strip() and not _BLOCK_START.match(line):
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
        else:
            out.append(line)
    return "\n".join(out)


def plain_text(markdown: str) -> str:
    text = _MD_LINK.sub(r"\1", _unwrap(markdown))
    text = _MD_RULE.sub("", text)
    text = _MD_QUOTE.sub("", text)
    text = _MD_BULLET.sub("", text)
    return _MD_MARKS.sub("", text)


@dataclass(frozen=True, slots=True)
class _Doc:
    article: Article
    fields: Mapping[str, Counter[str]]
    lengths: Mapping[str, int]
    sentences: tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True)
class HelpIndex:
    docs: tuple[_Doc, ...]
    document_frequency: Mapping[str, int]
    average_length: Mapping[str, float]
    by_id: Mapping[str, Article] = field(default_factory=dict)

    @classmethod
    def build(cls, articles: Iterable[Article]) -> HelpIndex:
        docs = []
        df: Counter[str] = Counter()
        totals: Counter[str] = Counter()
        seen: dict[str, Article] = {}
        for article in articles:
            if article.id in seen:
                raise ValueError(f"two help articles share the id {article.id!r}")
            seen[article.id] = article
            fields = {
                "title": Counter(polish.terms(article.title)),
                "keywords": Counter(polish.terms(" ".join(article.keywords))),
                "body": Counter(polish.terms(plain_text(article.body))),
            }
            lengths = {name: sum(c.values()) for name, c in fields.items()}
            totals.update(lengths)
            df.update(set().union(*fields.values()))
            sentences = tuple(
                (s.strip(), frozenset(polish.terms(s)))
                for s in _SENTENCE.split(plain_text(article.body)) if s.strip()
            )
            docs.append(_Doc(article, fields, lengths, sentences))
        n = max(len(docs), 1)
        average = {name: max(totals[name] / n, 1.0) for name in FIELD_WEIGHTS}
        return cls(tuple(docs), dict(df), average, seen)

    @classmethod
    def from_directory(cls, directory: Path) -> HelpIndex:
        return cls.build(load_articles(directory))

    def article(self, article_id: str) -> Article | None:
        return self.by_id.get(article_id)

    def __len__(self) -> int:
        return len(self.docs)

    def _query_terms(self, query: str) -> dict[str, float]:
        """Query term → weight; unknown words fall back to indexed terms sharing a
        long prefix, at a discount."""
        weights: dict[str, float] = {}
        for term in dict.fromkeys(polish.terms(query)):
            if term in self.document_frequency:
                weights[term] = max(weights.get(term, 0.0), 1.0)
                continue
            if len(term) < _PREFIX_MIN or not term.isalpha():
                continue
            prefix = term[:max(_PREFIX_MIN, len(term) - 3)]
            for known in self.document_frequency:
                if known.startswith(prefix):
                    weights[known] = max(weights.get(known, 0.0), _PREFIX_WEIGHT)
        return weights

    def _score(self, doc: _Doc, weights: Mapping[str, float]) -> tuple[float, set[str]]:
        n = len(self.docs)
        score = 0.0
        matched: set[str] = set()
        for term, weight in weights.items():
            # BM25F: length-normalised term frequencies summed over weighted fields,
            # then one saturation, so a title hit is not counted as an extra document.
            tf = 0.0
            for name, field_weight in FIELD_WEIGHTS.items():
                raw = doc.fields[name].get(term, 0)
                if raw:
                    norm = 1 - _B + _B * doc.lengths[name] / self.average_length[name]
                    tf += field_weight * raw / norm
            if tf == 0:
                continue
            matched.add(term)
            df = self.document_frequency.get(term, 0)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += weight * idf * tf * (_K1 + 1) / (tf + _K1)
        return score, matched

    def hits(self, query: str, limit: int = 5) -> list[SearchHit]:
        """The best articles for `query`, best first; ValueError for an empty or
        overlong query (the HTTP layer answers 400)."""
        if not query or not query.strip():
            raise ValueError("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        weights = self._query_terms(query)
        if not weights or limit <= 0:
            return []
        scored = []
        for doc in self.docs:
            score, matched = self._score(doc, weights)
            if score > 0:
                scored.append((score, doc, matched))
        scored.sort(key=lambda item: (-item[0], item[1].article.id))
        return [
            SearchHit(doc.article.id, doc.article.title, _snippet(doc, matched), doc.article.url, round(score, 3))
            for score, doc, matched in scored[:limit]
        ]

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """`hits` as JSON-ready dicts: `{"id", "title", "snippet", "url", "score"}`."""
        return [hit.public() for hit in self.hits(query, limit)]


def _snippet(doc: _Doc, matched: set[str]) -> str:
    if not doc.sentences:
        return ""
    # The sentence with the most distinct query terms; ties go to the earlier one.
    best_index, best = 0, -1
    for i, (_, terms) in enumerate(doc.sentences):
        hits = len(terms & matched)
        if hits > best:
            best_index, best = i, hits
    text = doc.sentences[best_index][0]
    # Fill up with the following sentences while there is room.
    for following, _ in doc.sentences[best_index + 1:]:
        if len(text) + 1 + len(following) > SNIPPET_CHARS:
            break
        text = f"{text} {following}"
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > SNIPPET_CHARS:
        cut = text.rfind(" ", 0, SNIPPET_CHARS - 1)
        text = text[:cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS - 1].rstrip(" ,;:") + "…"
    return text


def top_ids(index: HelpIndex, queries: Sequence[str], k: int = 3) -> list[list[str]]:
    """The top-k article ids per query (for evaluation scripts and tests)."""
    return [[hit.id for hit in index.hits(q, k)] for q in queries]
