"""Docs about rules, layers and the lowering table are generated from the data; committed copies must be fresh."""
from __future__ import annotations

from dlarules import docs

from conftest import ROOT


def test_committed_docs_are_not_stale(db):
    stale = [name for name, text in docs.generated(db).items()
             if not (ROOT / "docs" / name).is_file() or (ROOT / "docs" / name).read_text() != text]
    assert not stale, f"regenerate with `dlarules rules docs`: {stale}"


def test_every_rule_has_a_page_and_matrix_row(db):
    files = docs.generated(db)
    for rid in db.ids:
        assert f"rules/{rid}.md" in files
        assert f"[{rid}]({rid}.md)" in files["rules/matrix.md"]
    assert "| [SOFTMAX-XAVIER](SOFTMAX-XAVIER.md) |" in files["rules/README.md"]


def test_docs_check_command(tmp_path):
    from conftest import run_cli
    r = run_cli("rules", "docs", "--out", str(tmp_path), "--check")
    assert r.returncode == 1 and "stale" in r.stdout
    assert run_cli("rules", "docs", "--out", str(tmp_path)).returncode == 0
    assert run_cli("rules", "docs", "--out", str(tmp_path), "--check").returncode == 0
