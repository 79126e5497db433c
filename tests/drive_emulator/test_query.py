"""Unit tests of the q parser and evaluator (pure logic, no server)."""

from __future__ import annotations

import pytest

from devstack.drive_emulator.query import And, InParents, Or, QueryError, parse, tokenize
from devstack.drive_emulator.tree import Entry


def entry(name: str, *, parent: str = "P", mime: str = "text/csv", trashed: bool = False,
          modified: str = "2024-03-01T10:00:00.000Z") -> Entry:  # fmt: skip
    return Entry(
        id=name,
        relpath=name,
        name=name,
        mime_type=mime,
        kind="binary",
        parent_id=parent,
        modified_time=modified,
        trashed=trashed,
    )


def test_escaped_quote_and_backslash_are_unescaped() -> None:
    tokens = tokenize(r"name = 'O\'Brien \\ co'")
    assert [t.text for t in tokens] == ["name", "=", "O'Brien \\ co"]
    assert parse(r"name = 'O\'Brien'").matches(entry("O'Brien"))


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    loose = parse("name = 'a' or name = 'b' and trashed = true")
    assert loose.matches(entry("a"))  # a or (b and trashed)
    grouped = parse("(name = 'a' or name = 'b') and trashed = true")
    assert not grouped.matches(entry("a"))
    assert grouped.matches(entry("b", trashed=True))


def test_not_negates_the_following_term_or_group() -> None:
    q = parse("not name contains 'draft' and not (mimeType = 'text/plain')")
    assert q.matches(entry("final.csv"))
    assert not q.matches(entry("draft v2.csv"))
    assert not q.matches(entry("x.txt", mime="text/plain"))


def test_name_contains_is_a_word_prefix_match() -> None:
    q = parse("name contains 'sales'")
    assert q.matches(entry("Sales 2024.csv"))
    assert q.matches(entry("q1 sales.csv"))
    assert not q.matches(entry("presales.csv"))


def test_time_comparisons_accept_naive_and_zoned_values() -> None:
    e = entry("x", modified="2024-03-01T10:00:00.000Z")
    assert parse("modifiedTime > '2024-03-01T09:59:59'").matches(e)
    assert parse("modifiedTime >= '2024-03-01T10:00:00Z'").matches(e)
    assert not parse("modifiedTime < '2024-03-01T11:00:00+02:00'").matches(e)
    assert parse("modifiedTime != '2020-01-01T00:00:00Z'").matches(e)


def test_parent_restriction_is_extracted_for_and_or() -> None:
    assert parse("'A' in parents and trashed = false").parent_ids() == {"A"}
    assert parse("('A' in parents or 'B' in parents) and name = 'x'").parent_ids() == {"A", "B"}
    assert parse("'A' in parents or name = 'x'").parent_ids() is None
    assert parse("not 'A' in parents").parent_ids() is None
    node = parse("'A' in parents and 'B' in parents")
    assert isinstance(node, And) and node.parent_ids() == set()
    assert isinstance(parse("'A' in parents or 'B' in parents"), Or)
    assert parse("'A' in parents") == InParents("A")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "name = ",
        "name = 'unterminated",
        "name == 'x'",
        "(name = 'x'",
        "name = 'x')",
        "name = 'x' and",
        "size > '3'",
        "trashed = maybe",
        "modifiedTime > 'yesterday'",
        "'A' in owners",
        "name = 'x' name = 'y'",
        "name ~ 'x'",
    ],
)
def test_malformed_queries_are_rejected(bad: str) -> None:
    with pytest.raises(QueryError):
        parse(bad)
