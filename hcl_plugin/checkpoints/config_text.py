"""Read the config text stored inside a checkpoint without running it.

MMEngine saves ``cfg.pretty_text`` into ``checkpoint["meta"]["cfg"]``: Python source made of
assignments of literals and ``dict(...)`` calls. Reading it with ``Config.fromstring`` *executes* that
text (and imports its ``custom_imports``), so a downloaded checkpoint could run any code. This module
parses the text with :mod:`ast` and evaluates only this grammar::

    statement := NAME = value                      (one plain name per assignment, not a dunder)
    value     := str | bytes | int | float | complex | True | False | None
               | -value | +value                   (on numbers)
               | [value, ...] | (value, ...) | {value, ...} | {value: value, ...}
               | dict(NAME=value, ...)              (keywords only)

Anything else (imports, other calls, attribute access, names, comprehensions, f-strings, operators)
raises :class:`UnsafeConfigTextError` naming the line, so the caller can refuse the file. Nothing
is imported, no file is read (``_base_`` stays a plain string), no placeholder is substituted.
"""

from __future__ import annotations

import ast
from typing import Any, Dict

__all__ = ["UnsafeConfigTextError", "parse_config_text"]


class UnsafeConfigTextError(ValueError):
    """The config text holds something other than literal assignments; the message names the line."""


def _refuse(node: ast.AST, what: str) -> UnsafeConfigTextError:
    return UnsafeConfigTextError(f"line {getattr(node, 'lineno', '?')}: {what} is not allowed in stored config "
                                 "text (only assignments of literals and dict(...))")


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and not isinstance(node.value, type(Ellipsis)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        if isinstance(operand, bool) or not isinstance(operand, (int, float, complex)):
            raise _refuse(node, "a sign in front of a non-number")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.List):
        return [_value(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(item) for item in node.elts)
    if isinstance(node, ast.Set):
        return {_value(item) for item in node.elts}
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _refuse(node, "'**' unpacking")
        return {_value(key): _value(value) for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            name = ast.unparse(node.func) if hasattr(ast, "unparse") else type(node.func).__name__
            raise _refuse(node, f"a call to {name!r}")
        if node.args or any(keyword.arg is None for keyword in node.keywords):
            raise _refuse(node, "dict(...) with positional arguments or '**'")
        return {keyword.arg: _value(keyword.value) for keyword in node.keywords}
    what = f"the name {node.id!r}" if isinstance(node, ast.Name) else f"a {type(node).__name__} expression"
    raise _refuse(node, what)


def parse_config_text(text: str) -> Dict[str, Any]:
    """``{name: value}`` of a config text made of literal assignments (see the module docstring).

    Raises:
        UnsafeConfigTextError: the text is not a string, does not parse, or holds anything outside
            the literal grammar (the message names the line and the construct).
    """
    if not isinstance(text, str):
        raise UnsafeConfigTextError(f"config text must be a string, got {type(text).__name__}")
    try:
        tree = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError) as error:
        raise UnsafeConfigTextError(f"config text does not parse: {error}") from None
    except (RecursionError, MemoryError):
        raise UnsafeConfigTextError("config text is nested too deeply") from None
    result: Dict[str, Any] = {}
    try:
        for statement in tree.body:
            if not isinstance(statement, ast.Assign):
                raise _refuse(statement, f"a {type(statement).__name__} statement")
            if len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
                raise _refuse(statement, "an assignment to anything but one plain name")
            name = statement.targets[0].id
            if name.startswith("__") or name == "dict":
                raise _refuse(statement, f"an assignment to {name!r}")
            result[name] = _value(statement.value)
    except RecursionError:
        raise UnsafeConfigTextError("config text is nested too deeply") from None
    except TypeError as error:  # e.g. an unhashable set member or dict key
        raise UnsafeConfigTextError(f"config text holds an invalid literal: {error}") from None
    return result
