"""Audience labels: path rules, sidecar and front-matter overrides, defaults, visibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm.access.labels import audiences_for, can_see, match_glob, parse_labels
from slm.config import AccessSettings
from slm.kb.documents import load_document

TINY = Path(__file__).parents[2] / "corpora" / "tiny"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("hr/**", "hr/leave.md", True),
        ("hr/**", "hr/2024/pay.md", True),
        ("hr/**", "finance/hr/x.md", False),
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("*.md", "x/a.md", False),
        ("**", "anything/at/all.txt", True),
        ("docs/?.txt", "docs/a.txt", True),
        ("docs/?.txt", "docs/ab.txt", False),
        ("**/secret*", "a/b/secret-plan.pdf", True),
    ],
)
def test_match_glob(pattern, path, expected):
    assert match_glob(pattern, path) is expected


def test_parse_labels_forms():
    assert parse_labels("hr") == ("hr",)
    assert parse_labels("HR, Managers") == ("hr", "managers")
    assert parse_labels("[hr, 'sales']") == ("hr", "sales")
    assert parse_labels(["a", "A", "b"]) == ("a", "b")
    assert parse_labels("") == () and parse_labels(None) == ()


def test_rules_first_match_wins_then_default():
    access = AccessSettings(rules={"hr/**": ["hr"], "hr/public/**": ["employees"], "legal/**": ["legal", "hr"]},
                            default_audiences=["employees"])
    assert audiences_for("hr/public/x.md", {}, access) == ("hr",)
    assert audiences_for("legal/nda.pdf", {}, access) == ("legal", "hr")
    assert audiences_for("handbook.md", {}, access) == ("employees",)


def test_rule_labels_given_as_a_single_string():
    access = AccessSettings(rules={"hr/**": "hr"}, default_audiences="staff")  # type: ignore[arg-type]
    assert audiences_for("hr/a.md", {}, access) == ("hr",)
    assert audiences_for("b.md", {}, access) == ("staff",)


def test_document_metadata_overrides_rules():
    access = AccessSettings(rules={"**": ["employees"]})
    assert audiences_for("hr/x.md", {"audience": "hr, managers"}, access) == ("hr", "managers")
    assert audiences_for("hr/x.md", {"audiences": "hr"}, access) == ("hr",)
    assert audiences_for("hr/x.md", {"audience": ""}, access) == ("employees",)  # empty: not set


def test_can_see():
    assert can_see(("hr",), None)  # trusted caller
    assert can_see(("hr", "managers"), frozenset({"managers"}))
    assert can_see(("HR",), frozenset({"hr"}))
    assert not can_see(("hr",), frozenset({"employees"}))
    assert not can_see(("hr",), frozenset())
    assert not can_see((), frozenset({"employees"}))


def test_tiny_corpus_labels():
    def labels(rel: str, access: AccessSettings) -> tuple[str, ...]:
        return load_document(TINY / rel, TINY, max_bytes=1_000_000, access=access).audiences

    default = AccessSettings()
    assert labels("refund-policy.md", default) == ("employees",)
    assert labels("hr/leave-policy.md", default) == ("hr",)  # front matter
    assert labels("hr/salary-bands.txt", default) == ("hr", "managers")  # sidecar
    ruled = AccessSettings(rules={"hr/**": ["people-ops"], "**": ["staff"]})
    assert labels("shipping.html", ruled) == ("staff",)
    assert labels("hr/salary-bands.txt", ruled) == ("hr", "managers")  # the sidecar beats the rule


def test_sidecar_beats_front_matter_and_changes_the_hash(tmp_path):
    doc_path = tmp_path / "memo.md"
    doc_path.write_text("---\naudience: [sales]\n---\n# Memo\n\nQuarterly numbers.\n")
    before = load_document(doc_path, tmp_path, max_bytes=10_000)
    assert before.audiences == ("sales",)
    (tmp_path / "memo.md.meta.yaml").write_text("audience: [board]\n")
    after = load_document(doc_path, tmp_path, max_bytes=10_000)
    assert after.audiences == ("board",)
    assert after.content_hash != before.content_hash
