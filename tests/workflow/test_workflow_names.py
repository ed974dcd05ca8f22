"""Names across scripts in the workflow, on SQLite and PostgreSQL: the name key follows every change
of a report's (and its gallery person's) name; the case list finds a case by the name of a report
its leads name; a new report lists the reports registered before under the same name or a close
spelling (the duplicate check by name); and migration 0006 fills the keys of existing rows."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import text
from wftest import insert_lead, make_world

from facetrace.store.accounts import User
from facetrace.store.db import alembic_config
from facetrace.store.models import Person
from facetrace.store.workflow_models import Lead, Report
from facetrace.workflow import Workflow


def _report(wf: Workflow, users: dict[str, User], name: str, **extra: Any) -> dict[str, Any]:
    return wf.reports.create_report(
        users["ivan"], name=name, reported_by="a neighbour", source="hotline", legal_basis="consent", **extra
    )


def _keys(wf: Workflow, table: str) -> dict[int, tuple[str, str]]:
    with wf.db.engine.connect() as conn:
        return {i: (n, k) for i, n, k in conn.execute(text(f"SELECT id, name, name_key FROM {table}"))}


def test_the_name_key_follows_create_update_and_the_gallery_person(wf: Workflow, users: dict[str, User]) -> None:
    created = _report(wf, users, "Олена Мельник")["report"]
    assert _keys(wf, "reports")[created["id"]] == ("Олена Мельник", "olena melnik")
    wf.reports.update_report(users["ivan"], created["reference"], name="Olena Kovalenko")
    assert _keys(wf, "reports")[created["id"]] == ("Olena Kovalenko", "olena kovalenko")
    found = wf.reports.list_reports(users["olena"], query="Коваленко")
    assert [r["reference"] for r in found] == [created["reference"]]
    assert wf.reports.list_reports(users["olena"], query="melnyk") == []
    # The report's gallery person is renamed with it, and so is its key.
    with wf.db.session() as session:
        person = Person(external_id="report:x", name="Petro Shevchenko", source="s", legal_basis="b")
        session.add(person)
        session.flush()
        session.get(Report, created["id"]).person_id = person.id  # type: ignore[union-attr]
        person_id = person.id
    wf.reports.update_report(users["ivan"], created["reference"], name="Петро Шевченко")
    assert _keys(wf, "persons")[person_id] == ("Петро Шевченко", "petro shevchenko")
    assert [p["external_id"] for p in wf.gallery.list_persons(query="Schewtschenko")] == ["report:x"]


def test_a_case_is_found_by_the_names_of_its_live_leads(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users, name="Olha Kovalenko")
    other_case = wf.cases.create_case(users["ivan"], condition="alive")["case"]
    rejected = _report(wf, users, "Hryhoriy Zhuk")["report"]
    lead_id = insert_lead(wf, other_case["id"], rejected["id"])
    case_ref = world.case["case"]["reference"]
    for query in ("Ольга Коваленко", "olga kovalenko", "KOVALENKO"):
        found = wf.cases.list_cases(users["olena"], query=query)
        assert [(c["reference"], c["name_match"]["tier"]) for c in found] == [(case_ref, "exact")], query
    assert [c["reference"] for c in wf.cases.list_cases(users["olena"], query="Григорий Жук")] == [
        other_case["reference"]
    ]
    assert [c["reference"] for c in wf.cases.list_cases(users["olena"], query=case_ref)] == [case_ref]
    with wf.db.session() as session:
        session.get(Lead, lead_id).status = "rejected"  # type: ignore[union-attr]
    assert wf.cases.list_cases(users["olena"], query="Григорий Жук") == []
    assert wf.cases.list_cases(users["olena"], query="Kovalenko", status="closed") == []


def test_a_new_report_lists_the_reports_with_the_same_name_in_any_script(wf: Workflow, users: dict[str, User]) -> None:
    first = _report(wf, users, "Olena Melnyk", date_of_birth="1980")["report"]
    close = _report(wf, users, "Olena Melnic")["report"]
    _report(wf, users, "Petro Melnyk")  # another person of the family: not a duplicate
    _report(wf, users, "Olena Melnychenko")
    created = _report(wf, users, "Мельник Олена")
    similar = [(s["reference"], s["name_match"]["tier"]) for s in created["similar_names"]]
    assert similar == [(first["reference"], "exact"), (close["reference"], "close")]
    assert created["similar_names"][0]["date_of_birth"] == "1980"
    detail = wf.reports.get_report(users["olena"], first["reference"])
    assert [s["reference"] for s in detail["similar_names"]] == [created["report"]["reference"], close["reference"]]
    # A report merged into another is no longer listed.
    wf.matching.merge_reports(users["olena"], close["reference"], first["reference"], rationale="same person")
    detail = wf.reports.get_report(users["olena"], first["reference"])
    assert [s["reference"] for s in detail["similar_names"]] == [created["report"]["reference"]]
    assert _report(wf, users, "Zhuk")["similar_names"] == []


def test_migration_0006_fills_the_keys_of_existing_rows(wf: Workflow, users: dict[str, User]) -> None:
    report = _report(wf, users, "Григорій Шевченко")["report"]
    with wf.db.session() as session:
        session.add(Person(external_id="p1", name="Müller-Жук", source="s", legal_basis="b"))
    cfg = alembic_config(wf.db.url)
    with wf.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    with wf.db.engine.begin() as conn:  # rows written before 0006: no key column
        conn.execute(text("UPDATE reports SET name = 'Hryhoriy Schewtschenko' WHERE id = :id"), {"id": report["id"]})
    wf.db.migrate()
    assert _keys(wf, "reports")[report["id"]] == ("Hryhoriy Schewtschenko", "grigori shevchenko")
    assert sorted(k for _, k in _keys(wf, "persons").values()) == ["muler zhuk"]
    found = wf.reports.list_reports(users["olena"], query="Григорий Шевченко")
    assert [(r["reference"], r["name_match"]["tier"]) for r in found] == [(report["reference"], "exact")]
