"""The files.list `q` language: tokenizer, recursive-descent parser, evaluator.

Grammar (the subset clients use):
    expr    := and_expr ("or" and_expr)*
    and_expr:= unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | term
    term    := STRING "in" "parents"
             | FIELD ("=" | "!=") value            (name, mimeType, trashed, starred)
             | FIELD "contains" STRING             (name, mimeType)
             | TIMEFIELD CMP STRING                (modifiedTime, createdTime; =, !=, <, <=, >, >=)
Strings are quoted with ' or "; inside them \\' and \\\\ are escapes.
Any syntax error raises QueryError (the server answers 400 `invalid` "Invalid Value").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devstack.drive_emulator.tree import Entry

Predicate = Callable[[Entry], bool]
_STRING_FIELDS = {"name", "mimeType"}
_BOOL_FIELDS = {"trashed", "starred"}
_TIME_FIELDS = {"modifiedTime", "createdTime"}
_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">")
_WORD_SPLIT = re.compile(r"[^0-9A-Za-zÀ-ɏ]+")


class QueryError(ValueError):
    """The query does not parse or uses an unsupported term."""


@dataclass(frozen=True)
class Token:
    kind: str  # "str", "word", "op", "(", ")"
    text: str
    pos: int


def tokenize(q: str) -> list[Token]:
    """Split `q` into tokens; quoted strings are unescaped."""
    tokens: list[Token] = []
    i = 0
    while i < len(q):
        ch = q[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch in "'\"":
            value, i = _read_string(q, i)
            tokens.append(Token("str", value, i))
        elif op := next((op for op in _COMPARATORS if q.startswith(op, i)), None):
            tokens.append(Token("op", op, i))
            i += len(op)
        elif ch.isalnum() or ch == "_":
            start = i
            while i < len(q) and (q[i].isalnum() or q[i] in "_."):
                i += 1
            tokens.append(Token("word", q[start:i], start))
        else:
            raise QueryError(f"unexpected character {ch!r} at {i}")
    return tokens


def _read_string(q: str, start: int) -> tuple[str, int]:
    quote = q[start]
    out: list[str] = []
    i = start + 1
    while i < len(q):
        ch = q[i]
        if ch == "\\":
            if i + 1 >= len(q):
                break
            out.append(q[i + 1])
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise QueryError(f"unterminated string starting at {start}")


def parse(q: str) -> Query:
    """Parse `q` into a Query; raises QueryError on anything it cannot read."""
    parser = _Parser(tokenize(q))
    if not parser.tokens:
        raise QueryError("empty query")
    node = parser.expr()
    if parser.pos != len(parser.tokens):
        raise QueryError(f"unexpected {parser.tokens[parser.pos].text!r}")
    return node


class Query:
    """A parsed query node."""

    def matches(self, entry: Entry) -> bool:
        raise NotImplementedError

    def parent_ids(self) -> set[str] | None:
        """Folder ids every match must be a child of, or None if the query does not restrict."""
        return None


@dataclass(frozen=True)
class And(Query):
    parts: tuple[Query, ...]

    def matches(self, entry: Entry) -> bool:
        return all(p.matches(entry) for p in self.parts)

    def parent_ids(self) -> set[str] | None:
        restrictions = [r for p in self.parts if (r := p.parent_ids()) is not None]
        return set.intersection(*restrictions) if restrictions else None


@dataclass(frozen=True)
class Or(Query):
    parts: tuple[Query, ...]

    def matches(self, entry: Entry) -> bool:
        return any(p.matches(entry) for p in self.parts)

    def parent_ids(self) -> set[str] | None:
        restrictions = [p.parent_ids() for p in self.parts]
        if any(r is None for r in restrictions):
            return None
        return set().union(*[r for r in restrictions if r is not None])


@dataclass(frozen=True)
class Not(Query):
    part: Query

    def matches(self, entry: Entry) -> bool:
        return not self.part.matches(entry)


@dataclass(frozen=True)
class InParents(Query):
    folder_id: str

    def matches(self, entry: Entry) -> bool:
        return entry.parent_id == self.folder_id

    def parent_ids(self) -> set[str] | None:
        return {self.folder_id}


@dataclass(frozen=True)
class Compare(Query):
    field: str
    op: str
    value: str | bool | datetime

    def matches(self, entry: Entry) -> bool:
        actual = _field_value(entry, self.field)
        if self.op == "contains":
            assert isinstance(actual, str) and isinstance(self.value, str)
            return _contains(self.field, actual, self.value)
        return _OPS[self.op](actual, self.value)


_OPS: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _field_value(entry: Entry, field: str) -> str | bool | datetime:
    if field == "name":
        return entry.name
    if field == "mimeType":
        return entry.mime_type
    if field == "trashed":
        return entry.trashed
    if field == "starred":
        return False
    return parse_time(entry.modified_time)


def _contains(field: str, actual: str, needle: str) -> bool:
    """`name contains` is a case-insensitive prefix match on the name's words, as in Drive."""
    needle_l = needle.lower()
    if field != "name":
        return needle_l in actual.lower()
    if actual.lower().startswith(needle_l):
        return True
    return any(word.startswith(needle_l) for word in _WORD_SPLIT.split(actual.lower()) if word)


def parse_time(text: str) -> datetime:
    """RFC 3339 (timezone optional, default UTC) to an aware datetime; QueryError if bad."""
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise QueryError(f"invalid date-time {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, word: str | None = None) -> Token:
        tok = self.peek()
        if tok is None:
            raise QueryError("query ends early")
        if kind is not None and tok.kind != kind:
            raise QueryError(f"expected {kind}, got {tok.text!r} at {tok.pos}")
        if word is not None and tok.text.lower() != word:
            raise QueryError(f"expected {word!r}, got {tok.text!r} at {tok.pos}")
        self.pos += 1
        return tok

    def at_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text.lower() == word

    def expr(self) -> Query:
        parts = [self.and_expr()]
        while self.at_word("or"):
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Query:
        parts = [self.unary()]
        while self.at_word("and"):
            self.pos += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Query:
        if self.at_word("not"):
            self.pos += 1
            return Not(self.unary())
        tok = self.peek()
        if tok is not None and tok.kind == "(":
            self.pos += 1
            node = self.expr()
            self.take(")")
            return node
        return self.term()

    def term(self) -> Query:
        tok = self.take()
        if tok.kind == "str":
            self.take("word", "in")
            collection = self.take("word")
            if collection.text != "parents":
                raise QueryError(f"unsupported collection {collection.text!r}")
            return InParents(tok.text)
        if tok.kind != "word":
            raise QueryError(f"unexpected {tok.text!r} at {tok.pos}")
        field = tok.text
        op_tok = self.take()
        op = op_tok.text if op_tok.kind == "op" else op_tok.text.lower()
        if field in _STRING_FIELDS and op in ("=", "!=", "contains"):
            return Compare(field, op, self.take("str").text)
        if field in _BOOL_FIELDS and op in ("=", "!="):
            value = self.take("word").text.lower()
            if value not in ("true", "false"):
                raise QueryError(f"{field} compares with true or false, not {value!r}")
            return Compare(field, op, value == "true")
        if field in _TIME_FIELDS and op_tok.kind == "op":
            return Compare(field, op, parse_time(self.take("str").text))
        raise QueryError(f"unsupported term {field} {op_tok.text}")


def resolve_alias(node: Query, alias: str, folder_id: str) -> Query:
    """Copy of `node` with `'ALIAS' in parents` read as `'FOLDER_ID' in parents` (for 'root')."""
    if isinstance(node, InParents):
        return InParents(folder_id) if node.folder_id == alias else node
    if isinstance(node, And):
        return And(tuple(resolve_alias(p, alias, folder_id) for p in node.parts))
    if isinstance(node, Or):
        return Or(tuple(resolve_alias(p, alias, folder_id) for p in node.parts))
    if isinstance(node, Not):
        return Not(resolve_alias(node.part, alias, folder_id))
    return node
