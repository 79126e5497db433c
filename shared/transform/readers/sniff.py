"""Encoding and delimiter sniffing for delimited text, plus header-name checks."""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Sequence

from shared.errors import ReadError
from shared.transform.readers.options import DELIMITER_CANDIDATES

SAMPLE_BYTES = 64 * 1024
MAX_SAMPLE_RECORDS = 200

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def sniff_encoding(sample: bytes) -> str:
    """Guess the text encoding of ``sample`` (the first bytes of a file).

    Order: UTF-32/UTF-16/UTF-8 byte-order marks, then strict UTF-8, then cp1252, then latin-1.
    NUL bytes without a UTF-16/32 BOM mean binary content and raise ``ReadError``.
    """
    if sample.startswith(_UTF32_BOMS):
        return "utf-32"
    if sample.startswith(_UTF16_BOMS):
        return "utf-16"
    if sample.startswith(_UTF8_BOM):
        return "utf-8-sig"
    if b"\x00" in sample:
        raise ReadError("not a CSV: binary content (NUL bytes and no UTF-16 byte-order mark)")
    try:
        # final=False tolerates a multi-byte character cut off at the end of the sample.
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def decode_sample(sample: bytes, encoding: str) -> str:
    """Decode a file prefix, tolerating a character cut off at the end."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    return decoder.decode(sample, final=False)


def split_records(text: str, delimiter: str, quotechar: str = '"') -> list[int]:
    """Field counts of each complete record in ``text``, honouring quotes.

    A quoted field may contain delimiters and line breaks. Blank lines are skipped and the
    last record is dropped when ``text`` does not end with a line break (it may be cut off).
    """
    counts: list[int] = []
    fields = 1
    in_quotes = False
    line_has_content = False
    for char in text:
        if char == quotechar:
            in_quotes = not in_quotes
            line_has_content = True
        elif in_quotes:
            continue
        elif char == delimiter:
            fields += 1
            line_has_content = True
        elif char == "\n" or char == "\r":
            if line_has_content:
                counts.append(fields)
            fields = 1
            line_has_content = False
        else:
            line_has_content = True
        if len(counts) >= MAX_SAMPLE_RECORDS:
            break
    if line_has_content and len(counts) < MAX_SAMPLE_RECORDS and text.endswith(("\n", "\r")):
        counts.append(fields)
    return counts


def sniff_delimiter(
    text: str,
    quotechar: str = '"',
    candidates: Sequence[str] = DELIMITER_CANDIDATES,
    complete: bool = False,
) -> str:
    """Pick the delimiter giving the most consistent column count (> 1) over the sample.

    Scores each candidate by the share of records whose field count equals the most common
    count (ties: more columns, then candidate order). ``complete`` says ``text`` is the whole
    file, so its last record counts even without a final line break. A file where no
    candidate splits a line is a one-column file: "," is returned.
    """
    if complete and not text.endswith(("\n", "\r")):
        text += "\n"
    best: tuple[float, int, int] | None = None
    best_delimiter = ","
    for rank, delimiter in enumerate(candidates):
        counts = split_records(text, delimiter, quotechar)
        if not counts:
            continue
        modal_count, modal_hits = Counter(counts).most_common(1)[0]
        if modal_count < 2:
            continue
        score = (modal_hits / len(counts), modal_count, -rank)
        if best is None or score > best:
            best, best_delimiter = score, delimiter
    return best_delimiter


def check_column_names(names: Sequence[object], policy: str) -> list[str]:
    """Validate header names: empty names become ``column_<n>`` (1-based position);
    duplicates raise ``ReadError`` (policy "error") or get ``_2``, ``_3`` suffixes ("dedupe").
    """
    cleaned = [
        str(name).strip() if name is not None and str(name).strip() else f"column_{position}"
        for position, name in enumerate(names, start=1)
    ]
    counts = Counter(cleaned)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if not duplicates:
        return cleaned
    if policy == "error":
        shown = ", ".join(f"{name} (x{counts[name]})" for name in duplicates)
        raise ReadError(
            f"duplicate column names: {shown}; rename them in the source or set "
            "duplicate_columns='dedupe'"
        )
    return dedupe_names(cleaned)


def dedupe_names(names: Sequence[str]) -> list[str]:
    """Make names unique: the second ``a`` becomes ``a_2``, skipping names already taken."""
    taken = set(names)
    seen: set[str] = set()
    result: list[str] = []
    for name in names:
        if name not in seen:
            seen.add(name)
            result.append(name)
            continue
        suffix = 2
        while f"{name}_{suffix}" in taken:
            suffix += 1
        new_name = f"{name}_{suffix}"
        taken.add(new_name)
        seen.add(new_name)
        result.append(new_name)
    return result
