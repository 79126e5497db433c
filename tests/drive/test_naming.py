"""Unit tests of unique, order-independent child names."""

from __future__ import annotations

import itertools

from shared.drive.naming import id_tag, safe_name, tagged_name, unique_names


def test_unique_names_tag_every_member_of_a_collision_group() -> None:
    children = [("idA", "report.csv"), ("idB", "report.csv"), ("idC", "other.csv")]
    names = unique_names(children)
    assert names["idC"] == "other.csv"
    assert names["idA"] == f"report~{id_tag('idA')}.csv"
    assert names["idB"] == f"report~{id_tag('idB')}.csv"
    assert names["idA"] != names["idB"]


def test_unique_names_do_not_depend_on_listing_order() -> None:
    children = [("id1", "a.csv"), ("id2", "a.csv"), ("id3", "A.CSV"), ("id4", "b")]
    results = {
        tuple(sorted(unique_names(list(p)).items())) for p in itertools.permutations(children)
    }
    assert len(results) == 1


def test_case_insensitive_collisions_are_tagged() -> None:
    names = unique_names([("x", "Data.csv"), ("y", "data.csv")])
    assert names == {"x": f"Data~{id_tag('x')}.csv", "y": f"data~{id_tag('y')}.csv"}


def test_tag_goes_before_the_last_extension_only() -> None:
    tag = id_tag("f")
    assert tagged_name("archive.tar.gz", "f") == f"archive.tar~{tag}.gz"
    assert tagged_name("Budget", "f") == f"Budget~{tag}"
    assert tagged_name(".hidden", "f") == f".hidden~{tag}"
    assert len(tag) == 8 and tag == id_tag("f")


def test_safe_name_removes_separators_and_dot_names() -> None:
    assert safe_name("a/b.csv") == "a_b.csv"
    assert safe_name("..") == "_"
    assert safe_name("  ") == "_"
    assert unique_names([("i", "../etc/passwd")]) == {"i": ".._etc_passwd"}
