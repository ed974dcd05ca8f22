"""Names across scripts and spellings (facetrace.store.names): real spelling variants of one name
meet in one key, in both directions (Cyrillic and Latin), different names do not, and the ranking
puts exact names before containing ones before close spellings."""

from __future__ import annotations

import itertools

import pytest

from facetrace.store.names import CLOSE_SPELLING, Tier, name_key, rank_keys, similarity
from facetrace.store.schema import encrypted_columns

# Each row: the spellings of one name that must share one key, and that key.
SAME_NAME = [
    (("Melnyk", "Melnik", "Мельник", "Мельнік", "Mel'nik", "Mel’nyk", "MELNIK", "Melnick"), "melnik"),
    (("Oleksandr", "Олександр", "OLEKSANDR", "Olexandr"), "oleksandr"),
    (("Aleksandr", "Александр", "Alexandr"), "aleksandr"),
    (("Kovalenko", "Коваленко", "KOVALENKO"), "kovalenko"),
    (("Shevchenko", "Шевченко", "Schewtschenko", "Ševčenko", "Szewczenko"), "shevchenko"),
    (("Hryhoriy", "Grigoriy", "Григорій", "Григорий", "Hryhorii", "Grigorij"), "grigori"),
    (("Zhuk", "Жук", "Żuk", "Žuk"), "zhuk"),
    (("Müller", "Mueller", "Muller", "MÜLLER"), "muler"),
    (("José", "Jose", "JOSÉ"), "iose"),
    (("Olha", "Olga", "Ольга"), "olga"),
    (("Yevhen", "Ievgen", "Євген", "Jewgen"), "evgen"),
    (("Tetiana", "Tetyana", "Тетяна"), "tetiana"),
    (("Mariana", "Maryana", "Мар'яна", "Мар’яна", "Marjana"), "mariana"),
    (("Khreshchatyk", "Хрещатик", "Khreščatyk"), "khreshchatik"),
    (("Tsybulskyi", "Cybulski", "Цибульський", "Tsybulskyy"), "cibulski"),
    (("Dmitriev", "Dmitriyev", "Дмитриев", "Дмитрієв"), "dmitrev"),
    (("Iosyp", "Yosyp", "Йосип", "Josyp"), "iosip"),
]


@pytest.mark.parametrize(("spellings", "key"), SAME_NAME, ids=[row[1] for row in SAME_NAME])
def test_spelling_variants_share_one_key(spellings: tuple[str, ...], key: str) -> None:
    assert {s: name_key(s) for s in spellings} == dict.fromkeys(spellings, key)


@pytest.mark.parametrize(("spellings", "key"), SAME_NAME, ids=[row[1] for row in SAME_NAME])
def test_every_spelling_finds_every_other_in_both_directions(spellings: tuple[str, ...], key: str) -> None:
    for query, stored in itertools.permutations(spellings, 2):
        (match,) = rank_keys(query, [(1, name_key(stored))])
        assert match.tier == Tier.EXACT, (query, stored)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Melnyk", "Kovalenko"),
        ("Melnyk", "Melnychenko"),  # another family name, not a spelling of Melnyk
        ("Мельник", "Мельниченко"),
        ("Shevchenko", "Shevchuk"),
        ("Zhuk", "Zhukov"),
        ("Olha", "Olena"),
        ("Oleksandr", "Aleksandr"),  # one given name in two languages: two keys (see the module)
        ("Andrii", "Andrei"),
    ],
)
def test_different_names_keep_different_keys(one: str, other: str) -> None:
    assert name_key(one) != name_key(other)


def test_diacritics_punctuation_and_spaces_fold() -> None:
    assert name_key("  José-María   O'Neill ") == "iose maria oneil"
    assert name_key("Ivanenko-Melnyk, Olena") == "ivanenko melnik olena"
    assert name_key("---") == "" and name_key("") == ""


def test_ukrainian_and_russian_forms_of_a_given_name_meet_only_as_close_spellings() -> None:
    # Oleksandr (Ukrainian) and Aleksandr (Russian) are one given name in two languages: no shared
    # key, so the duplicate check does not take them as one, but a search lists them as close.
    assert similarity(name_key("Олександр"), name_key("Aleksandr")) >= CLOSE_SPELLING
    (match,) = rank_keys("Oleksandr Melnyk", [(7, name_key("Александр Мельник"))])
    assert (match.row_id, match.tier) == (7, Tier.CLOSE) and match.score == pytest.approx(88.9, abs=0.1)


def test_ranking_exact_then_contains_then_close_in_the_given_order_within_a_tier() -> None:
    names = {
        1: "Olena Melnyk",
        2: "Petro Melnychenko",
        3: "Oksana Kovalenko",
        4: "Петро Мельник",
        5: "Ivan Melnic",  # a close spelling
        6: "Melnikova Iryna",  # contains melnik
    }
    rows = [(i, name_key(n)) for i, n in sorted(names.items(), reverse=True)]  # newest first
    ranked = rank_keys("melnik", rows)
    assert [(m.row_id, m.tier) for m in ranked] == [
        (4, Tier.EXACT),
        (1, Tier.EXACT),
        (6, Tier.CONTAINS),
        (5, Tier.CLOSE),
    ]
    assert ranked[-1].score == pytest.approx(83.3, abs=0.1)  # Melnic: the Moldovan spelling
    # A literal match of the caller (a reference) is listed with the containing ones.
    assert [m.row_id for m in rank_keys("R-000003", rows, literal=[3])] == [3]
    # Every word of the query counts: another given name is not a close spelling.
    assert [m.row_id for m in rank_keys("Olena Melnick", rows)] == [1]
    assert rank_keys("Olena Melnychenko", [(1, name_key("Olena Melnyk"))]) == []
    assert [m.row_id for m in rank_keys("Мельник Олена", rows)] == [1]
    assert rank_keys("", rows) == [] and rank_keys("melnik", []) == []


def test_names_are_stored_in_clear_so_their_keys_may_be() -> None:
    # The name keys are stored in clear beside the names (docs/security.md). If names were ever
    # encrypted, their keys would give them away: they would have to become a keyed blind index.
    encrypted = {(c.table, c.column) for c in encrypted_columns()}
    assert ("reports", "name") not in encrypted and ("persons", "name") not in encrypted
