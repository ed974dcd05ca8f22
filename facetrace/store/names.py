"""Names across scripts and spellings: one normalised search key per name, and the ranking of stored
keys against a query.

Names of the missing arrive in Ukrainian, Russian and Latin spellings, with or without diacritics:
``Melnyk`` (Ukrainian national system), ``Melnik`` (Russian BGN), ``Мельник``, ``Мельнік``,
``Mel'nik``. :func:`name_key` turns every one of them into the same key, ``melnik``; the stored key
(``reports.name_key``, ``persons.name_key``, indexed) is what searches and the duplicate check compare.

How a key is made (each step applies to every name, so a rule never separates two spellings that it
would otherwise join):

1. Unicode NFKC, case folded; apostrophes (``' ’ ʼ ʹ``) dropped, as the soft sign is.
2. Cyrillic letters are written with one table shared by Ukrainian and Russian (the variants of the
   national, BGN/PCGN and ISO systems folded to one letter), for example ``и і ї й ы → i``,
   ``е є э ё → e``, ``г ґ → g``, ``х → kh``, ``ж → zh``, ``ц → c``, ``ч → ch``, ``ш → sh``,
   ``щ → shch``, ``я → ia``, ``ю → iu``, ``ь ъ`` dropped. Other scripts and Latin diacritics go
   through ``anyascii`` (``José → jose``, ``Müller → muller``), except the scholarly ``š č ž ŝ`` and
   Polish ``ż``, which become ``sh ch zh shch zh`` as the Cyrillic letters they stand for.
3. Latin spellings are folded to the same letters, longest pattern first: German
   ``schtsch → shch``, ``tsch → ch``, ``sch → sh`` (Schewtschenko → shevchenko), Polish
   ``szcz → shch``, ``sz → sh``, ``cz → ch`` (Szewczenko), ``tch → ch``,
   ``ts tz → c``, ``ck → k``, ``ph → f``, ``w → v``, ``x → ks``, ``q → k``, ``y j → i`` (Melnyk,
   Hryhoriy, Jurij), and a lone ``h → g`` (Ukrainian ``г`` is ``h``, Russian ``g``: Hryhoriy and
   Grigoriy meet) while ``kh zh ch sh`` stay as they are. German ``z`` (for ``ц``) and ``ch`` (for
   ``х``) are not folded: they would break the far more common English ``z`` and ``ch``; such
   spellings still rank as close spellings.
4. Doubled letters collapse (``Hanna → gana``, ``Andrii → andri``), then ``ie → e`` (``є`` written
   ``ie``/``ye``/``je``: Yevhen, Євген → evgen) and ``ae oe ue → a o u`` (Mueller = Müller = muler).
5. Anything but ``a-z`` and ``0-9`` separates tokens; spaces collapse.

Examples: ``Melnyk``, ``MELNIK``, ``Мельник``, ``Мельнік``, ``Mel'nik``, ``Melnick`` → ``melnik``;
``Shevchenko``, ``Шевченко``, ``Schewtschenko``, ``Ševčenko`` → ``shevchenko``;
``Hryhoriy``, ``Grigoriy``, ``Григорій``, ``Григорий`` → ``grigori``; ``Zhuk``, ``Жук``, ``Żuk`` → ``zhuk``;
``Olha``, ``Olga``, ``Ольга`` → ``olga``; ``Müller``, ``Mueller``, ``Muller`` → ``muler``.

Different name *forms* are not folded: ``Oleksandr``/``Олександр`` (Ukrainian) and
``Aleksandr``/``Александр`` (Russian) are the same given name in two languages, not two spellings of
one word, so they keep two keys (``oleksandr``, ``aleksandr``). Folding ``o``/``a`` would join
unrelated names; the two forms still meet as close spellings in the ranking below (score 89).

Ranking (:func:`rank_keys`): a stored key matches a query in one of three tiers, listed in this
order: **exact** (every token of the query is a token of the name: "melnik" finds "Olena Melnyk"),
**contains** (every query token is part of a name token: "meln", "o melnik"), then **close spelling**:
every query token has a name token whose ``rapidfuzz`` ``fuzz.ratio`` is at least
:data:`CLOSE_SPELLING` (80 of 100); the score is the weakest of these. So "melnick olena" finds
"Olena Melnyk" (92), "Oleksandr Melnyk" finds "Александр Мельник" (89), but neither "Petro Melnyk"
nor "Olena Melnychenko" (71: another family name) is a close spelling of "Olena Melnyk": a shared
given name does not make up for a different family name.

Keys are stored in clear, beside the names they come from: report and person names are not encrypted
at rest (docs/security.md lists them among the data stored as is), so a key reveals nothing that the
row does not already show. Were names ever encrypted, a clear key would give them away: the key
column would then have to become a keyed blind index (an HMAC of each token under a key derived from
the keyring), which matches exact tokens only, with close spellings ranked in Python on decrypted
candidates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from anyascii import anyascii
from rapidfuzz import fuzz, process

CLOSE_SPELLING = 80.0  # the least similarity (0-100, fuzz.ratio) of each query token to a name token

# Ukrainian and Russian letters, with the variants of the transliteration systems folded (step 2).
CYRILLIC = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "ґ": "g",
    "д": "d",
    "е": "e",
    "є": "e",
    "ё": "e",
    "э": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "і": "i",
    "ї": "i",
    "й": "i",
    "ы": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ў": "u",
    "ф": "f",
    "х": "kh",
    "ц": "c",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ь": "",
    "ъ": "",
    "ю": "iu",
    "я": "ia",
}
# Latin letters with a diacritic that stand for one Cyrillic letter (ISO 9, scholarly, Polish).
LATIN_LETTERS = {"š": "sh", "č": "ch", "ž": "zh", "ŝ": "shch", "ż": "zh"}
# Latin spellings folded to the letters above (step 3); the regex tries the longest first.
LATIN_FOLDS = {
    "schtsch": "shch",
    "szcz": "shch",
    "shch": "shch",
    "tsch": "ch",
    "sch": "sh",
    "tch": "ch",
    "sz": "sh",
    "cz": "ch",
    "zh": "zh",
    "kh": "kh",
    "ch": "ch",
    "sh": "sh",
    "ts": "c",
    "tz": "c",
    "ck": "k",
    "ph": "f",
    "h": "g",
    "w": "v",
    "x": "ks",
    "q": "k",
    "y": "i",
    "j": "i",
}
VOWEL_FOLDS = {"ie": "e", "ae": "a", "oe": "o", "ue": "u"}
APOSTROPHES = "'’ʼʹ`´‘"

_LATIN_FOLD = re.compile("|".join(sorted(LATIN_FOLDS, key=len, reverse=True)))
_VOWEL_FOLD = re.compile("|".join(VOWEL_FOLDS))
_DOUBLED = re.compile(r"([a-z])\1+")
_CYRILLIC_RUN = re.compile(r"([\u0400-\u052f]+)")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_DROPPED = str.maketrans("", "", APOSTROPHES)


def _latin(text: str) -> str:
    """Return non-Cyrillic text in folded Latin letters (steps 2 and 3)."""
    text = "".join(LATIN_LETTERS.get(ch, ch) for ch in text)
    ascii_text = anyascii(text).lower().translate(_DROPPED)  # anyascii writes ь, ʼ... as apostrophes
    return _LATIN_FOLD.sub(lambda m: LATIN_FOLDS[m.group(0)], ascii_text)


def _cyrillic(run: str) -> str:
    """Return a run of Cyrillic letters in folded Latin letters (letters outside the table: anyascii)."""
    return "".join(CYRILLIC[ch] if ch in CYRILLIC else _latin(ch) for ch in run)


def name_key(name: str) -> str:
    """Return the normalised search key of ``name``: folded Latin tokens joined by single spaces
    (empty when the name has no letter or digit). The rules are in the module's docstring."""
    text = unicodedata.normalize("NFKC", name).casefold().translate(_DROPPED)
    parts = _CYRILLIC_RUN.split(text)  # odd items are Cyrillic runs
    folded = "".join(_cyrillic(part) if n % 2 else _latin(part) for n, part in enumerate(parts))
    folded = _DOUBLED.sub(r"\1", folded)
    folded = _VOWEL_FOLD.sub(lambda m: VOWEL_FOLDS[m.group(0)], folded)
    folded = _DOUBLED.sub(r"\1", folded)
    return " ".join(_SEPARATORS.split(folded)).strip()


class Tier(IntEnum):
    """How a name matches a query; lower tiers are listed first."""

    EXACT = 0  # every query token is a token of the name
    CONTAINS = 1  # every query token is part of a name token (or the caller's literal match)
    CLOSE = 2  # a close spelling: every query token has a name token at least CLOSE_SPELLING alike


@dataclass(frozen=True)
class NameMatch:
    """One stored row that matches a query: its id, tier and similarity (0-100; 100 for exact)."""

    row_id: int
    tier: Tier
    score: float


def similarity(query_key: str, key: str) -> float:
    """Return how close ``key`` is to ``query_key`` (0-100): for each query token the best
    ``fuzz.ratio`` against the key's tokens, the weakest of these; 0 when either is empty."""
    query_tokens, tokens = query_key.split(), key.split()
    if not query_tokens or not tokens:
        return 0.0
    return min(max(fuzz.ratio(q, t) for t in tokens) for q in query_tokens)


def rank_keys(
    query: str, rows: Iterable[tuple[int, str]], *, literal: Iterable[int] = (), threshold: float = CLOSE_SPELLING
) -> list[NameMatch]:
    """Return the rows whose key matches ``query`` (a name as typed, normalised here), best first:
    exact, then contains, then close spellings by falling similarity; rows of one tier and score
    keep the order they came in (the caller's order: newest first, by external id...).

    ``rows`` are ``(id, stored name key)``; ``literal`` are ids the caller matched otherwise (a
    reference or the raw name containing the text as typed): they count as *contains* at least.
    One pass over the rows; the token similarities are computed once per distinct token
    (``rapidfuzz.process.cdist``): ranking 100,000 names takes well under a second.
    """
    literal_ids = set(literal)
    query_tokens = name_key(query).split()
    candidates = [(row_id, key.split()) for row_id, key in rows]
    vocabulary = sorted({token for _, tokens in candidates for token in tokens})
    token_scores: dict[str, list[float]] = {}  # name token -> its similarity to each query token
    if query_tokens and vocabulary:
        matrix = process.cdist(query_tokens, vocabulary, scorer=fuzz.ratio, dtype=np.float32)
        token_scores = dict(zip(vocabulary, matrix.T.tolist(), strict=True))
    # The tokens that can take part in a match; a row with none of them is passed over at once.
    relevant = {t for t, alike in token_scores.items() if max(alike) >= threshold or any(q in t for q in query_tokens)}
    out: list[NameMatch] = []
    for row_id, tokens in candidates:
        if relevant.isdisjoint(tokens):
            tier, score = None, 0.0
        else:
            tier, score = _tier(tokens, query_tokens, token_scores, threshold)
        if row_id in literal_ids and (tier is None or tier == Tier.CLOSE):
            tier, score = Tier.CONTAINS, 100.0
        if tier is not None:
            out.append(NameMatch(row_id, tier, score))
    out.sort(key=lambda m: (m.tier, -m.score))  # stable: ties keep the caller's order
    return out


def _tier(
    tokens: Sequence[str], query_tokens: Sequence[str], token_scores: dict[str, list[float]], threshold: float
) -> tuple[Tier | None, float]:
    if not tokens or not query_tokens:
        return None, 0.0
    if all(q in tokens for q in query_tokens):
        return Tier.EXACT, 100.0
    if all(any(q in t for t in tokens) for q in query_tokens):
        return Tier.CONTAINS, 100.0
    rows = [token_scores[t] for t in tokens]
    if max(max(r) for r in rows) < threshold:  # no token is close to any query token: cannot reach it
        return None, 0.0
    score = min(max(r[n] for r in rows) for n in range(len(query_tokens)))
    return (Tier.CLOSE, round(score, 1)) if score >= threshold else (None, 0.0)
