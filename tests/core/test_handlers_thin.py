"""The cloud handler modules stay thin: parse the event, call the core, shape the response.

Measured on the source with ``ast``: a handler is a decorated function (at module level or
under an ``if``, as the fan-out handlers are); its logic is every non-blank, non-comment line
of its body after the docstring. The two modules together are counted the same way.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLER_FILES = (ROOT / "chalice_app" / "app.py", ROOT / "gcp_functions" / "main.py")
MAX_HANDLER_LOGIC_LINES = 10
MAX_TOTAL_LINES = 140  # 120 until Drive push added a webhook and a worker on each cloud


def code_lines(source: str) -> set[int]:
    """Line numbers holding code or docstrings: not blank, not only a comment."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER):
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def handlers(tree: ast.Module) -> list[ast.FunctionDef]:
    """Decorated functions at module level or nested in module-level ``if`` blocks."""
    found: list[ast.FunctionDef] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            found.append(node)
        elif isinstance(node, ast.If):
            pending.extend([*node.body, *node.orelse])
    return found


def logic_lines(function: ast.FunctionDef, code: set[int]) -> int:
    """Code lines of the function's body, its docstring left out."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return 0
    first, last = body[0].lineno, max(node.end_lineno or node.lineno for node in body)
    return len([n for n in code if first <= n <= last])


def measure(source: str) -> dict[str, int]:
    """Logic lines per handler of one module's source."""
    tree = ast.parse(source)
    code = code_lines(source)
    return {f.name: logic_lines(f, code) for f in handlers(tree)}


def test_the_measure_sees_a_fat_handler() -> None:
    steps = "".join(f"    x{i} = {i}  # a comment is not logic\n\n" for i in range(11))
    fat = f'@app.route("/x")\ndef fat(event):\n    """Docstring."""\n{steps}'
    assert measure(fat) == {"fat": 11}
    nested = textwrap.dedent(
        """
        if FLAG:

            @app.on_sqs_message(queue="q")
            def worker(event):
                \"\"\"Docstring.\"\"\"
                return handle(
                    event
                )
        """
    )
    assert measure(nested) == {"worker": 3}


@pytest.mark.parametrize("path", HANDLER_FILES, ids=lambda p: p.parent.name)
def test_each_handler_has_at_most_ten_lines_of_logic(path: Path) -> None:
    found = measure(path.read_text(encoding="utf-8"))
    assert len(found) >= 5, found  # the measure found the handlers at all
    fat = {name: n for name, n in found.items() if n > MAX_HANDLER_LOGIC_LINES}
    assert not fat, f"{path.name}: handlers with more than {MAX_HANDLER_LOGIC_LINES} lines: {fat}"


def test_the_two_handler_modules_are_small() -> None:
    sizes = {p.name: len(code_lines(p.read_text(encoding="utf-8"))) for p in HANDLER_FILES}
    assert sum(sizes.values()) < MAX_TOTAL_LINES, sizes
