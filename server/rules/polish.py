"""Polish text normalization for matching: folding, tokens, stop words, a light stemmer.

Shared by the help-centre search (`server.rules.helpsearch`) and ticket routing
(`server.rules.intake`), so a query and an article, or a title and a department keyword,
are reduced to the same terms. Customers type with and without Polish letters and in
any case ("PŁATNOŚCI", "platnosci"), so everything is lowercased and folded to ASCII
(ą→a, ł→l, ż→z …) before stemming; the stemmer works on folded text.

The stemmer is deliberately light: it strips one common inflectional suffix so that
"płatność / płatności / płatnościami", "działa / działają / działać" and "faktury /
fakturę / fakturach / fakturze" meet. It does not know the dictionary, so it
sometimes conflates unrelated words or misses an alternation (k→c, t→ć); that is
the accepted trade-off for a search box and keyword routing, not a linguistic tool.

Pure module: standard library only; it must not import starlette, redis, sqlalchemy
or asyncio, and holds no state.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# ł has no Unicode decomposition, so NFKD alone would keep it; the rest of the Polish
# letters decompose into a base letter plus a combining mark.
_NON_DECOMPOSING = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "ø": "o", "ß": "ss"})
_TOKEN = re.compile(r"[a-z0-9]+")
# "e-mail", "e mail", "email" and "mail" are one word to a customer.
_EMAIL_WORD = re.compile(r"\be[\s-]?mail")

STOP_WORDS: frozenset[str] = frozenset(
    """
    a aby ach ale albo ani az bo by byc byl byla bylo byly bede bedzie cie co czy czyli dla do dobry
    dzien dziekuje gdy gdyz gdzie go hej i ich ile ja jak jaki jaka jakie jako je jednak jego jej jest
    jestem jeszcze juz ku ma mam mamy mi mnie moj moja moje moze mozna my na nad nam nas nie niz no o od
    oraz po pod pozdrawiam prosze przez przy sa sie siebie sobie ta tak tam te tego tej ten to tu tutaj
    tylko u w wam was we wiec witam wszystko z za ze zeby ktory ktora ktore ktorego ktorej ktorych mozecie
    czemu dlaczego kiedy mój the and or of to in on is
    """.split()
)

# (suffix, replacement, shortest stem left behind). Tried longest first; the first
# that fits wins. Replacements undo the commonest stem alternations at the end of a
# word (fakturze → faktur, zwrocie → zwrot, paczce → paczk).
_RULES: tuple[tuple[str, str, int], ...] = (
    # -owanie / -ować verbs and verbal nouns: fakturowanie, importować, importuje
    ("owaniami", "", 3), ("owaniach", "", 3), ("owaniem", "", 3), ("owania", "", 3), ("owanie", "", 3),
    ("owaniu", "", 3), ("owalem", "", 3), ("owalam", "", 3), ("owala", "", 3), ("owali", "", 3),
    ("owal", "", 3), ("owac", "", 3), ("ujemy", "", 3), ("ujecie", "", 3), ("ujesz", "", 3), ("uja", "", 3),
    ("uje", "", 3),
    # -enie / -anie verbal nouns and -ień genitives: zamówienie, zamówień, działanie
    ("ieniami", "", 3), ("ieniach", "", 3), ("ieniem", "", 3), ("ienia", "", 3), ("ienie", "", 3),
    ("ieniu", "", 3), ("ien", "", 4),
    # (a longer stem here, or "domenie" would become "dom")
    ("eniami", "", 4), ("eniach", "", 4), ("eniem", "", 4), ("enia", "", 4), ("enie", "", 4), ("eniu", "", 4),
    ("aniami", "", 3), ("aniach", "", 3), ("aniem", "", 3), ("ania", "", 3), ("anie", "", 3), ("aniu", "", 3),
    # adjectives: rabatowy, rabatowych, kurierskiej
    ("owymi", "", 3), ("owych", "", 3), ("owego", "", 3), ("owemu", "", 3), ("owej", "", 3), ("owym", "", 3),
    ("owy", "", 3), ("owa", "", 3), ("owe", "", 3),
    ("skich", "", 3), ("skiej", "", 3), ("skie", "", 3), ("ska", "", 3), ("ski", "", 3),
    ("ego", "", 3), ("emu", "", 3), ("ych", "", 3), ("ymi", "", 3), ("ich", "", 3), ("imi", "", 3),
    # verbs: działają, działać, sprawdziłem; -ał forms need a longer stem, or "działa"
    # would lose its "ał" to the -ała rule and miss "działają"
    ("ilismy", "", 3), ("ilem", "", 3), ("ilam", "", 3), ("aja", "", 3), ("ajac", "", 3), ("acie", "", 3),
    ("alem", "", 4), ("alam", "", 4), ("ala", "", 4), ("ali", "", 4), ("alo", "", 4), ("al", "", 4),
    ("ac", "", 3), ("ic", "", 3), ("yc", "", 3), ("ec", "", 4),
    # noun cases
    ("ami", "", 3), ("ach", "", 3), ("iem", "", 3), ("owi", "", 3), ("ow", "", 3), ("om", "", 3),
    ("em", "", 3), ("ej", "", 3), ("ym", "", 3), ("im", "", 3),
    ("rze", "r", 3), ("cie", "t", 3), ("lce", "lk", 3), ("zce", "zk", 3), ("tce", "tk", 3),
    ("ie", "", 3), ("a", "", 3), ("e", "", 3), ("i", "", 3), ("o", "", 3), ("u", "", 3), ("y", "", 3),
)
_RULES_BY_LENGTH = tuple(sorted(_RULES, key=lambda rule: -len(rule[0])))
# Nouns in -ość (płatność, dostępność) in every case: -osc, -osci, -oscia, -osciami …
_OSC = re.compile(r"^(.{3,}s)c(?:i|ia|iach|iami|iom)?$")


def fold(text: str) -> str:
    """Lowercase and strip diacritics: "Płatność ŁÓDŹ" → "platnosc lodz"."""
    text = text.translate(_NON_DECOMPOSING)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def tokens(text: str) -> list[str]:
    """Folded alphanumeric words, in order (stop words included)."""
    return _TOKEN.findall(_EMAIL_WORD.sub("mail", fold(text)))


def stem(token: str) -> str:
    """Strip one inflectional suffix from a folded token; words with digits stay whole."""
    if len(token) < 4 or not token.isalpha():
        return token
    osc = _OSC.match(token)
    if osc:
        return osc.group(1)
    for suffix, replacement, min_stem in _RULES_BY_LENGTH:
        if token.endswith(suffix) and len(token) - len(suffix) >= min_stem:
            return token[: len(token) - len(suffix)] + replacement
    return token


def terms(text: str, *, keep_stop_words: bool = False) -> list[str]:
    """Stems of the words of `text`, in order; stop words dropped unless asked to keep."""
    return [stem(t) for t in tokens(text) if keep_stop_words or t not in STOP_WORDS]


def is_stop_word(token: str) -> bool:
    return fold(token) in STOP_WORDS


def find_phrase(haystack: list[str], phrase: list[str]) -> Iterator[int]:
    """Start indexes where the term sequence `phrase` occurs contiguously in `haystack`."""
    n = len(phrase)
    if n == 0:
        return
    for i in range(len(haystack) - n + 1):
        if haystack[i:i + n] == phrase:
            yield i
