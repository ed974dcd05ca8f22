"""The whole identification flow driven from the shell (``facetrace report|case|lead|...``, each
command a subprocess with ``--json``), on SQLite, with a real SMTP server on loopback; and the
CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from wftest import Inbox, face_images

from facetrace.cli.main import app
from facetrace.config import get_settings
from facetrace.store.accounts import User
from facetrace.store.db import Database

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def cli(tmp_home: Path, smtp: Inbox, run_cli: Run) -> Callable[..., Any]:
    """Run ``facetrace ARGS --json``; return the parsed output (asserting success)."""
    db = Database(get_settings().db_url)
    with db.session() as session:
        for name, roles in {
            "ivan": ["intake"],
            "olena": ["examiner"],
            "petro": ["reviewer"],
            "maria": ["reviewer"],
        }.items():
            session.add(User(username=name, display_name=name, password_hash="!", roles=roles, disabled=False))
    db.dispose()
    env = {
        "FACETRACE_SMTP_HOST": smtp.host,
        "FACETRACE_SMTP_PORT": str(smtp.port),
        "FACETRACE_ORGANISATION_NAME": "Tracing Service Kyiv",
        # Notifications need the organisation's contact and a sender (issue 15: no placeholder letters).
        "FACETRACE_ORGANISATION_CONTACT": "tracing@ident.example.org",
        "FACETRACE_SMTP_SENDER": "notify@ident.example.org",
        "FACETRACE_WORKERS": "1",
    }

    def run(*args: str | Path, ok: bool = True) -> Any:
        proc = run_cli(*args, "--json", env=env)
        if not ok:
            return proc
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.mark.slow  # ten CLI processes
def test_the_identification_flow_from_the_shell(cli: Callable[..., Any], smtp: Inbox) -> None:
    kelly = face_images("Kelly_Clarkson")
    report = cli(
        "report", "add", "--as", "ivan", "--name", "Kelly Clarkson", "--reported-by", "her mother",
        "--source", "tracing form", "--legal-basis", "consent", "--consent", "--consent-date", "2024-01-02",
        "--dob", "1982-04-24", "--photo", kelly[0], "--photo", kelly[1],
        "--contact", "name=Jeanne Taylor,relation=mother,email=jeanne@family.example,language=uk",
    )  # fmt: skip
    ref = report["report"]["reference"]
    assert report["photos"]["enrolled"] == 2
    case = cli(
        "case", "add", "--as", "ivan", "--condition", "deceased", "--found-at", "2024-04-11",
        "--found-place", "Irpin", "--holding-organisation", "Kyiv Forensic Bureau", "--photo", kelly[-1],
    )  # fmt: skip
    (lead_id,) = case["matching"]["leads"]["created"]

    cli("lead", "evidence", str(lead_id), "--as", "olena", "--kind", "dna", "--description", "DNA match report")
    first = cli("lead", "review", str(lead_id), "--as", "olena", "--decision", "confirm", "--rationale", "Match")
    assert first["identification"] is None
    second = cli("lead", "review", str(lead_id), "--as", "petro", "--decision", "confirm", "--rationale", "Agree")
    ident_id = second["identification"]["id"]
    (nid,) = second["notifications"]["drafted"]
    approved = cli("notification", "approve", str(nid), "--as", "maria")
    assert approved["status"] == "approved"
    sent = cli("notification", "send", "--as", "maria")
    assert sent["sent"] == 1
    assert [e.rcpt_tos for e in smtp.envelopes] == [["jeanne@family.example"]]

    withdrawn = cli("identification", "withdraw", str(ident_id), "--as", "maria", "--reason", "DNA excluded")
    (correction,) = withdrawn["notifications"]["corrections_drafted"]
    cli("notification", "approve", str(correction), "--as", "petro")
    assert cli("notification", "send", "--as", "petro")["sent"] == 1
    assert len(smtp.envelopes) == 2 and smtp.envelopes[1].rcpt_tos == ["jeanne@family.example"]
    shown = cli("report", "show", ref, "--as", "olena")
    assert shown["status"] == "missing" and shown["identifications"][0]["status"] == "withdrawn"


def test_cli_errors_are_one_line(cli: Callable[..., Any]) -> None:
    for args, message in [
        (("report", "list", "--as", "nobody"), "error: no user 'nobody'"),
        (
            ("report", "add", "--as", "olena", "--name", "X", "--reported-by", "Y", "--source", "Z"),
            "error: legal basis (provenance) is required",
        ),
        (("lead", "review", "1", "--as", "ivan", "--decision", "confirm", "--rationale", "x"), "needs the role"),
        (("case", "add", "--as", "ivan", "--condition", "asleep"), "condition must be one of deceased, alive"),
    ]:
        proc = cli(*args, ok=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_commands_reports_and_cases_share(cli: Callable[..., Any], special_dir: Path) -> None:
    """update, photo-add, match, show and erase of reports and cases: their lines (the first 80
    characters: the console wraps longer ones) and exit codes."""
    runner = CliRunner()

    def text(*args: str | Path, code: int = 0) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == code, result.output
        return str(result.output)

    kelly = face_images("Kelly_Clarkson")
    ref = cli(
        "report", "add", "--as", "ivan", "--name", "Kelly Clarkson", "--reported-by", "her mother",
        "--source", "tracing form", "--legal-basis", "consent", "--photo", kelly[0],
    )["report"]["reference"]  # fmt: skip
    case_ref = cli("case", "add", "--as", "ivan", "--condition", "alive", "--photo", kelly[-1])["case"]["reference"]

    out = text("report", "update", ref, "--as", "ivan", "--description", "Seen in Irpin", "--retain-until", "none")
    assert out.startswith(f"report {ref}: changed description; matching (threshold "), out
    assert text("report", "update", ref, "--as", "ivan", "--dob", "1982").startswith(
        f"report {ref}: changed date_of_birth"
    )
    out = text("report", "photo-add", ref, kelly[1], "--as", "ivan")
    assert out.startswith(f"report {ref}: 1 enrolled, 0 already there, 0 error(s); matching"), out
    out = text("report", "photo-add", ref, kelly[1], special_dir / "no_face.png", "--as", "ivan", code=1)
    assert out.startswith(f"report {ref}: 0 enrolled, 1 already there, 1 error(s)"), out
    assert "  no_face.png: " in out
    assert text("report", "match", ref, "--as", "olena").startswith(f"report {ref}; matching (threshold ")
    shown = text("report", "show", ref, "--as", "olena")
    assert shown.startswith(
        f"{ref}: Kelly Clarkson (born 1982) - missing\n  reported by her mother; source tracing form"
    )
    assert "  2 photo(s), 1 lead(s), 0 duplicate flag(s)" in shown

    out = text("case", "update", case_ref, "--as", "ivan", "--found-place", "Bucha", "--found-at", "2024-04-11")
    assert out.startswith(f"case {case_ref}: changed found_at, found_place; matching (threshold "), out
    out = text("case", "photo-add", case_ref, kelly[1], "--as", "ivan")
    assert out.startswith(f"case {case_ref}: 1 photo(s) added, 0 already there; matching"), out
    assert text("case", "match", case_ref, "--as", "olena").startswith(f"case {case_ref}; matching (threshold ")
    shown = text("case", "show", case_ref, "--as", "olena")
    assert shown.startswith(f"{case_ref}: alive, found 2024-04-11T00:00:00+00:00 at Bucha; held by ?"), shown
    assert "under_review" in shown
    assert "  2 photo(s), 1 lead(s)" in shown

    refused = cli("case", "erase", case_ref, "--as", "petro", "--yes", ok=False)
    assert refused.returncode == 1 and "needs the role" in refused.stderr
    out = text("case", "erase", case_ref, "--as", "ivan", "--yes", "--reason", "test")
    # One media file stays: the report holds the same photo (files are stored by content).
    assert out.startswith(f"case {case_ref} erased: 2 face(s), 2 image(s), 1 file(s), 1 lead(s),"), out
    out = text("report", "erase", ref, "--as", "ivan", "--yes", "--reason", "test")
    assert out.startswith(f"report {ref} erased: 2 face(s), 2 image(s), 2 file(s), 0 lead(s)"), out
