"""Partial-response `fields` masks: parse, validate against the schema, apply.

Mask syntax: `a,b/c,d(e,f/g),*`. A parsed mask is a dict: name -> sub-mask, or None for
"the whole value". Unknown names give FieldError("Invalid field selection NAME"), which the
server answers with 400 `invalidParameter` like the real API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.drive_emulator.errors import ApiError

if TYPE_CHECKING:
    from devstack.drive_emulator.params import Params

from devstack.drive_emulator.file_fields import (
    ABOUT_FIELDS,
    CHANGE_FIELDS,
    CHANGE_LIST_FIELDS,
    FILE_FIELDS,
    FILE_LIST_FIELDS,
    START_PAGE_TOKEN_FIELDS,
)

Mask = dict[str, "Mask | None"]


class FieldError(ValueError):
    """The mask names a field the resource does not have, or does not parse."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Invalid field selection {name}")
        self.name = name


def parse_mask(text: str) -> Mask:
    """Parse a mask string into a nested dict."""
    mask, pos = _parse_list(text, 0)
    if pos != len(text):
        raise FieldError(text[pos:].strip() or text)
    return mask


def _parse_list(text: str, pos: int) -> tuple[Mask, int]:
    mask: Mask = {}
    while True:
        pos = _skip_space(text, pos)
        start = pos
        while pos < len(text) and text[pos] not in ",()":
            pos += 1
        path = text[start:pos].strip()
        if not path or any(not part.strip() for part in path.split("/")):
            raise FieldError(path or text)
        sub: Mask | None = None
        if pos < len(text) and text[pos] == "(":
            sub, pos = _parse_list(text, pos + 1)
            if pos >= len(text) or text[pos] != ")":
                raise FieldError(path)
            pos += 1
        _merge(mask, [p.strip() for p in path.split("/")], sub)
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return mask, pos


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _merge(mask: Mask, parts: list[str], sub: Mask | None) -> None:
    head, rest = parts[0], parts[1:]
    if not rest:
        existing = mask.get(head, {})
        if sub is None or existing is None:
            mask[head] = None  # the whole value wins over any sub-selection
        else:
            existing.update(sub)
            mask[head] = existing
        return
    child = mask.get(head, {})
    if child is None:  # already selecting the whole value
        return
    mask[head] = child
    _merge(child, rest, sub)


def validate_file_mask(mask: Mask) -> None:
    """Check a mask applied to a File resource."""
    _validate_table(mask, FILE_FIELDS)


def _validate_table(mask: Mask, table: dict[str, tuple[str, ...] | None]) -> None:
    """Check names against a field table (sub-fields one level deep, as in file_fields)."""
    for name, sub in mask.items():
        if name == "*":
            continue
        if name not in table:
            raise FieldError(name)
        allowed = table[name]
        if sub is not None and allowed is not None:
            for child in sub:
                if child != "*" and child not in allowed:
                    raise FieldError(f"{name}/{child}" if "/" not in child else child)


def validate_list_mask(mask: Mask) -> None:
    """Check a mask applied to a FileList resource."""
    for name, sub in mask.items():
        if name == "*":
            continue
        if name not in FILE_LIST_FIELDS:
            raise FieldError(name)
        if name == "files" and sub is not None:
            validate_file_mask(sub)


def validate_change_list_mask(mask: Mask) -> None:
    """Check a mask applied to a ChangeList resource (`changes(file(...))` included)."""
    for name, sub in mask.items():
        if name != "*" and name not in CHANGE_LIST_FIELDS:
            raise FieldError(name)
        if name == "changes" and sub is not None:
            file_mask = sub.get("file")
            _validate_table({k: v for k, v in sub.items() if k != "file"}, CHANGE_FIELDS)
            if file_mask is not None:
                validate_file_mask(file_mask)


def validate_start_page_token_mask(mask: Mask) -> None:
    """Check a mask applied to a StartPageToken resource."""
    _validate_table(mask, dict.fromkeys(START_PAGE_TOKEN_FIELDS))


def validate_about_mask(mask: Mask) -> None:
    """Check a mask applied to an About resource."""
    _validate_table(mask, ABOUT_FIELDS)


def apply_mask(value: Any, mask: Mask | None) -> Any:
    """Keep only the masked parts of `value` (lists are masked item by item)."""
    if mask is None or ("*" in mask and len(mask) == 1):
        return value
    if isinstance(value, list):
        return [apply_mask(item, mask) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in mask:
        return {k: apply_mask(v, mask.get(k)) for k, v in value.items()}
    return {k: apply_mask(value[k], sub) for k, sub in mask.items() if k in value}


def requested_mask(params: Params, validate: Callable[[Mask], None], default: str) -> Mask:
    """The request's ``fields`` mask (else ``default``), validated; a bad one is Drive's 400."""
    text = params.text("fields")
    try:
        mask = parse_mask(text if text is not None else default)
        validate(mask)
    except FieldError as exc:
        raise ApiError(400, "invalidParameter", str(exc), location="fields") from None
    return mask
