"""Every output key has one owner: the pure rule (shared.run.ownership), with a property test."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.drive.naming import id_tag, unique_names
from shared.run.ownership import Candidate, assign_output_paths, quarantine_path, tagged_path
from shared.storage import layout

EXT = ".parquet"


def cand(file_id: str, path: str, **kwargs: object) -> Candidate:
    return Candidate(owner=f"{file_id}:{path}", file_id=file_id, path=path, **kwargs)  # type: ignore[arg-type]


def keys(candidates: list[Candidate], taken: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Each candidate's output key (its owner → key; absent: it failed)."""
    assigned = assign_output_paths(candidates, taken or {}, EXT)
    result = {}
    for c in candidates:
        choice = assigned.get(c.owner)
        if choice is not None and choice.output_path is None:
            continue
        path = choice.output_path if choice else c.path
        result[c.owner] = layout.output_key(path, EXT)
    return result


def test_distinct_names_keep_their_keys() -> None:
    candidates = [cand("1", "a.csv"), cand("2", "sub/b.csv"), cand("3", "sales.csv")]
    assert assign_output_paths(candidates, {}, EXT) == {}


def test_csv_and_xlsx_of_one_name_are_both_tagged() -> None:
    a, b = cand("id-a", "a.csv"), cand("id-b", "a.xlsx")
    got = keys([a, b])
    assert got == {a.owner: f"a~{id_tag('id-a')}{EXT}", b.owner: f"a~{id_tag('id-b')}{EXT}"}


def test_the_name_that_needed_no_sanitising_keeps_its_key() -> None:
    real, newline = cand("1", "a_b.csv"), cand("2", "a\nb.csv")
    assigned = assign_output_paths([real, newline], {}, EXT)
    assert set(assigned) == {newline.owner}
    assert assigned[newline.owner].output_path == f"a\nb~{id_tag('2')}.csv"
    assert "a_b.parquet is also 1:a_b.csv's" in assigned[newline.owner].reason


def test_backslash_root_file_yields_to_the_file_in_the_folder() -> None:
    inside, root = cand("1", "sub/b.csv"), cand("2", "sub\\b.csv")
    got = keys([inside, root])
    assert got[inside.owner] == f"sub/b{EXT}"
    assert got[root.owner] == f"sub/b~{id_tag('2')}{EXT}"


def test_file_whose_key_is_a_folder_of_other_outputs_yields() -> None:
    # k.tsv written as csv gives k.csv; the Drive folder k.csv/ holds x.tsv → k.csv/x.csv
    file, inner = cand("1", "k.tsv"), cand("2", "k.csv/x.tsv")
    assigned = assign_output_paths([file, inner], {}, ".csv")
    assert set(assigned) == {file.owner}
    assert assigned[file.owner].output_path == f"k~{id_tag('1')}.tsv"
    assert "k.csv is a folder of 2:k.csv/x.tsv's outputs" in assigned[file.owner].reason


def test_an_owner_in_the_state_keeps_its_key_and_a_newcomer_yields() -> None:
    old = cand("1", "a.csv", previous_path="a.csv")
    new = cand("2", "a.xlsx")
    got = keys([old, new])
    assert got == {old.owner: f"a{EXT}", new.owner: f"a~{id_tag('2')}{EXT}"}


def test_keys_other_ids_own_in_the_state_are_never_taken() -> None:
    new = cand("2", "a.csv")
    got = keys([new], taken={"1:a.xlsx": [f"a{EXT}"]})
    assert got == {new.owner: f"a~{id_tag('2')}{EXT}"}
    # the same id at another path (a move, a shortcut) does not block itself
    assert keys([new], taken={"2:old/a.csv": [f"a{EXT}"]}) == {new.owner: f"a{EXT}"}


def test_a_tagged_input_keeps_its_tag_when_the_clash_is_gone() -> None:
    tagged = f"a~{id_tag('2')}.xlsx"
    alone = cand("2", "a.xlsx", previous_path=tagged)
    assigned = assign_output_paths([alone], {}, EXT)
    assert assigned[alone.owner].output_path == tagged


def test_under_a_file_the_state_keeps_fails_clearly() -> None:
    inner = cand("2", "k.csv/x.csv")
    assigned = assign_output_paths([inner], {"1:k.tsv": ["k.csv"]}, ".csv")
    assert assigned[inner.owner].output_path is None
    assert "would be under 1:k.tsv's output" in assigned[inner.owner].reason


def test_a_workbook_of_sheets_yields_to_a_folder_of_its_name() -> None:
    book = cand("1", "book.xlsx", sheets_dir=True)
    inner = cand("2", "book/x.csv")
    assigned = assign_output_paths([book, inner], {}, EXT)
    assert set(assigned) == {book.owner}
    assert assigned[book.owner].output_path == f"book~{id_tag('1')}.xlsx"


def test_a_name_without_a_usable_key_fails_instead_of_crashing_the_run() -> None:
    bad = cand("1", "..csv")
    assert assign_output_paths([bad], {}, EXT)[bad.owner].output_path is None


def test_the_rule_does_not_depend_on_listing_order() -> None:
    items = [cand("1", "a.csv"), cand("2", "a.xlsx"), cand("3", "A.json"), cand("4", "a_b.csv")]
    assert assign_output_paths(items, {}, EXT) == assign_output_paths(items[::-1], {}, EXT)


def test_tagged_path_keeps_the_input_extension_and_unknown_suffixes() -> None:
    assert tagged_path("s/a.csv", "t") == "s/a~t.csv"
    assert tagged_path("s/a.v2", "t") == "s/a.v2~t"
    assert tagged_path("x.csv.csv", "t") == "x.csv~t.csv"


# ---- the property: distinct files in a folder get distinct, non-nested keys under the prefix
NAME = st.text(alphabet=st.sampled_from([*"aAbB_.~ /\\\x00\n\t", "é", "É"]), min_size=1, max_size=8)
SUFFIX = st.sampled_from(["", ".csv", ".tsv", ".xlsx", ".CSV", ".json", ".v2"])
ENTRY = st.tuples(st.sampled_from(["", "sub/", "k.csv/", "a/"]), NAME, SUFFIX)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, min_size=1, max_size=8), st.booleans())
def test_distinct_drive_files_get_distinct_unnested_keys_under_the_prefix(
    entries: list[tuple[str, str, str]], sheets: bool
) -> None:
    # Paths as the listing builds them: unique names per folder, then joined.
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for n, (folder, name, suffix) in enumerate(entries):
        by_folder.setdefault(folder, []).append((f"id{n}", name + suffix))
    candidates = []
    for folder, children in by_folder.items():
        for file_id, segment in unique_names(children).items():
            path = folder + segment
            candidates.append(cand(file_id, path, sheets_dir=sheets and path.endswith(".xlsx")))
    assigned = assign_output_paths(candidates, {}, EXT)
    leaves = []  # each input's key, or the folder its sheets go in
    for c in candidates:
        choice = assigned.get(c.owner)
        if choice is not None and choice.output_path is None:
            assert choice.reason  # failed clearly: fetched only for a quarantine copy
            continue
        path = choice.output_path if choice else c.path
        key = layout.output_key(path, EXT, sheet="S" if c.sheets_dir else None)
        assert not key.startswith("/") and ".." not in key.split("/")
        leaf = key.rsplit("/", 1)[0] if c.sheets_dir else key
        leaves.append(leaf.casefold())
    for i, a in enumerate(leaves):
        for b in leaves[i + 1 :]:
            assert a != b, f"two inputs share {a}"
            assert not b.startswith(a + "/") and not a.startswith(b + "/"), (a, b)
    assert assign_output_paths(candidates[::-1], {}, EXT) == assigned


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1", "2", "3"]), ENTRY), min_size=2, max_size=8))
def test_inputs_without_a_key_get_distinct_flat_quarantine_names(
    entries: list[tuple[str, tuple[str, str, str]]],
) -> None:
    """The quarantine copy of an input that got no output key: one flat, usable name per
    (Drive id, path), so two such copies never share a key or nest in one another."""
    inputs = {(file_id, folder + name + suffix) for file_id, (folder, name, suffix) in entries}
    names = [quarantine_path(file_id, path) for file_id, path in inputs]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and layout.safe_key(name) == name
        key = layout.quarantine_key("20260101T000000Z-00000000", name)
        assert key == f"_quarantine/20260101T000000Z-00000000/{name}"
    long_name = quarantine_path("1", "x" * 3000)  # no usable key from the name: the tag alone
    assert len(long_name) == 16 and int(long_name, 16) >= 0


def test_a_big_clash_is_resolved_quickly_and_told_briefly() -> None:
    inner = [cand(f"i{n}", f"k.csv/x{n}.tsv") for n in range(5000)]
    file = cand("f", "k.tsv")
    assigned = assign_output_paths([file, *inner], {}, ".csv")
    assert set(assigned) == {file.owner}
    assert assigned[file.owner].reason.endswith("and 4997 more's outputs")
