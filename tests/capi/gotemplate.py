"""A small interpreter for the subset of Go's text/template that Cluster API's cloud-init templates use.

Why an interpreter and not string substitution: the templates in tests/capi/templates/ are upstream's text,
byte for byte, and their output depends on text/template's rules (``{{-``/``-}}`` trim every space, tab
and newline next to the action; ``if`` is false for "", 0, nil and empty lists but true for any non-nil
pointer, even one to ``false``; ``printf "%q"`` is Go's strconv.Quote). Running the verbatim text under those
rules is what makes "rendered as Cluster API renders it" checkable.

Supported (and nothing else; anything else raises GoTemplateError):
- actions ``{{ pipeline }}``, ``{{ if pipeline }} … {{ else }} … {{ end }}``, ``{{ range pipeline }} …
  {{ else }} … {{ end }}`` (over lists), ``{{ define "name" }} … {{ end }}``, ``{{ template "name" pipeline }}``,
  and the trim markers ``{{- `` and `` -}}``;
- operands: ``.``, field chains ``.A.B`` on dicts keyed by Go field names (a missing key is an error, as a
  missing struct field is), string literals with ``\\ \\" \\n \\t`` escapes, integers, true, false, nil;
- pipelines ``a | f b`` (the piped value becomes the last argument) and the functions ``printf`` (verbs
  %q %s %v %d %%), ``eq``, ``ne`` and whatever the caller passes in ``funcs``.
Values: str, bool, int, list/tuple, dict (a Go struct), None (Go nil) and :class:`Ptr` (a non-nil pointer;
printing and field access see through it). No methods, variables, ``with``, ``block``, comments or parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class GoTemplateError(Exception):
    """The template uses something outside the supported subset, or fails as Go's would."""


@dataclass(frozen=True)
class Ptr:
    """A non-nil Go pointer: true in ``if`` whatever it points at, printed as what it points at."""

    value: Any


# --- Go's formatting -------------------------------------------------------------------------------

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: double quotes; \\\\ and \\"; \\a \\b \\f \\n \\r \\t \\v; other control characters \\xNN;
    other non-printable runes \\uNNNN or \\UNNNNNNNN; printable runes as they are (unicode.IsPrint, whose
    only space is U+0020, as str.isprintable's)."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_print(value: Any) -> str:
    """How text/template prints a value (fmt.Print after dereferencing a pointer; nil is "<no value>")."""
    if isinstance(value, Ptr):
        return go_print(value.value)
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise GoTemplateError(f"printing a {type(value).__name__} is not supported")


def go_printf(fmt: str, *args: Any) -> str:
    out, i, n = [], 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        verb = fmt[i + 1 : i + 2]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            raise GoTemplateError(f"printf {fmt!r}: missing argument")
        arg = args[n].value if isinstance(args[n], Ptr) else args[n]
        n += 1
        if verb == "q" and isinstance(arg, str):
            out.append(go_quote(arg))
        elif verb in ("s", "v"):
            out.append(go_print(arg))
        elif verb == "d" and isinstance(arg, int) and not isinstance(arg, bool):
            out.append(str(arg))
        else:
            raise GoTemplateError(f"printf verb %{verb} with {type(arg).__name__} is not supported")
    if n != len(args):
        raise GoTemplateError(f"printf {fmt!r}: {len(args) - n} extra arguments")
    return "".join(out)


def is_true(value: Any) -> bool:
    """text/template's truth: false, 0, nil and empty strings/lists/maps are false; a non-nil pointer is true."""
    if isinstance(value, Ptr):
        return True
    if value is None:
        return False
    if isinstance(value, bool | int | str | list | tuple | dict):
        return bool(value)
    raise GoTemplateError(f"truth of a {type(value).__name__} is not supported")


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, Ptr) or isinstance(b, Ptr) or type(a) is not type(b):
        raise GoTemplateError(f"eq/ne on {type(a).__name__} and {type(b).__name__} is not supported")
    return bool(a == b)


BUILTINS: dict[str, Callable[..., Any]] = {
    "printf": go_printf,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
}

# --- lexing and parsing ----------------------------------------------------------------------------

_SPACE = " \t\r\n"
_TOKEN = re.compile(
    r'\s+|(?P<str>"(?:[^"\\]|\\.)*")|(?P<pipe>\|)|(?P<field>(?:\.[A-Za-z_]\w*)+)|(?P<dot>\.)'
    r"|(?P<int>-?\d+)|(?P<ident>[A-Za-z_]\w*)|(?P<bad>.)"
)


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]


@dataclass(frozen=True)
class _Ident:
    name: str


_DOT = object()
Command = list[Any]
Pipeline = list[Command]


def _unquote(lit: str) -> str:
    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        table = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
        if esc not in table:
            raise GoTemplateError(f"string escape \\{esc} is not supported")
        return table[esc]

    return re.sub(r"\\(.)", sub, lit[1:-1])


def _pipeline(words: list[tuple[str, str]]) -> Pipeline:
    commands: Pipeline = [[]]
    for kind, text in words:
        if kind == "pipe":
            commands.append([])
        elif kind == "str":
            commands[-1].append(_unquote(text))
        elif kind == "int":
            commands[-1].append(int(text))
        elif kind == "field":
            commands[-1].append(_Field(tuple(text[1:].split("."))))
        elif kind == "dot":
            commands[-1].append(_DOT)
        elif kind == "ident" and text in ("true", "false"):
            commands[-1].append(text == "true")
        elif kind == "ident" and text == "nil":
            commands[-1].append(None)
        else:
            commands[-1].append(_Ident(text))
    if any(not c for c in commands):
        raise GoTemplateError("empty command in pipeline")
    return commands


def _words(inner: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(inner):
        kind = m.lastgroup
        if kind is None:
            continue  # white space
        if kind == "bad":
            raise GoTemplateError(f"unsupported syntax {m.group()!r} in {{{{{inner}}}}}")
        out.append((kind, m.group()))
    return out


def _lex(text: str) -> list[tuple[str, str]]:
    """Text and action tokens, with the trim markers already applied to the neighbouring text."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if start < 0:
            tokens.append(("text", chunk))
            return tokens
        i = start + 2
        in_str = False
        while i < len(text):
            if in_str:
                if text[i] == "\\":
                    i += 1
                elif text[i] == '"':
                    in_str = False
            elif text[i] == '"':
                in_str = True
            elif text.startswith("}}", i):
                break
            i += 1
        else:
            raise GoTemplateError(f"unclosed action at offset {start}")
        inner = text[start + 2 : i]
        if len(inner) >= 2 and inner[0] == "-" and inner[1] in _SPACE:
            chunk = chunk.rstrip(_SPACE)
            inner = inner[1:]
        trim_next = len(inner) >= 2 and inner[-1] == "-" and inner[-2] in _SPACE
        if trim_next:
            inner = inner[:-1]
        if inner.strip().startswith("/*"):
            raise GoTemplateError("comments are not supported")
        tokens.append(("text", chunk))
        tokens.append(("action", inner.strip()))
        pos = i + 2


@dataclass
class _Node:
    kind: str  # text, action, if, range, template
    text: str = ""
    pipe: Pipeline | None = None
    body: list[_Node] | None = None
    orelse: list[_Node] | None = None
    name: str = ""


def _parse(text: str, defines: dict[str, list[_Node]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[str, list[_Node], _Node | None, str]] = []  # (kind, list being filled, node, define name)
    current = root
    for kind, value in _lex(text):
        if kind == "text":
            if value:
                current.append(_Node("text", text=value))
            continue
        words = _words(value)
        head = words[0][1] if words and words[0][0] == "ident" else ""
        if head in ("if", "range"):
            node = _Node(head, pipe=_pipeline(words[1:]), body=[], orelse=[])
            current.append(node)
            stack.append((head, current, node, ""))
            current = node.body  # type: ignore[assignment]
        elif head == "else":
            if len(words) != 1 or not stack or stack[-1][2] is None:
                raise GoTemplateError(f"unsupported else: {{{{{value}}}}}")
            current = stack[-1][2].orelse  # type: ignore[union-attr,assignment]
        elif head == "end":
            if not stack:
                raise GoTemplateError("end without a block")
            what, parent, node, name = stack.pop()
            if what == "define":
                defines[name] = current
            current = parent
        elif head == "define":
            if len(words) != 2 or words[1][0] != "str":
                raise GoTemplateError(f"bad define: {{{{{value}}}}}")
            stack.append(("define", current, None, _unquote(words[1][1])))
            current = []
        elif head == "template":
            if len(words) < 2 or words[1][0] != "str":
                raise GoTemplateError(f"bad template call: {{{{{value}}}}}")
            pipe = _pipeline(words[2:]) if len(words) > 2 else None
            current.append(_Node("template", name=_unquote(words[1][1]), pipe=pipe))
        elif head in ("with", "block", "break", "continue"):
            raise GoTemplateError(f"{head} is not supported")
        else:
            current.append(_Node("action", pipe=_pipeline(words)))
    if stack:
        raise GoTemplateError(f"unclosed {stack[-1][0]}")
    return root


# --- execution -------------------------------------------------------------------------------------


class TemplateSet:
    """Templates parsed together, as Cluster API parses its sub-templates into one set before the main one."""

    def __init__(self, sources: Sequence[str], funcs: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.defines: dict[str, list[_Node]] = {}
        self.funcs = {**BUILTINS, **(funcs or {})}
        self.main: list[_Node] = []
        for src in sources:
            self.main = _parse(src, self.defines)  # the last source's top level is the template executed

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.main, data, out)
        return "".join(out)

    def _run(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(go_print(self._pipe(node.pipe, dot)))  # type: ignore[arg-type]
            elif node.kind == "if":
                branch = node.body if is_true(self._pipe(node.pipe, dot)) else node.orelse  # type: ignore[arg-type]
                self._run(branch or [], dot, out)
            elif node.kind == "range":
                items = self._pipe(node.pipe, dot)  # type: ignore[arg-type]
                if items is None:
                    items = []
                if not isinstance(items, list | tuple):
                    raise GoTemplateError(f"range over a {type(items).__name__} is not supported")
                for item in items:
                    self._run(node.body or [], item, out)
                if not items:
                    self._run(node.orelse or [], dot, out)
            elif node.kind == "template":
                if node.name not in self.defines:
                    raise GoTemplateError(f'no template "{node.name}"')
                arg = self._pipe(node.pipe, dot) if node.pipe else None
                self._run(self.defines[node.name], arg, out)

    def _pipe(self, pipe: Pipeline, dot: Any) -> Any:
        value: Any = _NOTHING
        for command in pipe:
            value = self._command(command, dot, value)
        return value

    def _command(self, command: Command, dot: Any, piped: Any) -> Any:
        head, *rest = command
        if isinstance(head, _Ident):
            if head.name not in self.funcs:
                raise GoTemplateError(f'function "{head.name}" not defined')
            args = [self._operand(a, dot) for a in rest]
            if piped is not _NOTHING:
                args.append(piped)
            return self.funcs[head.name](*args)
        if rest or piped is not _NOTHING:
            raise GoTemplateError("arguments to a non-function are not supported")
        return self._operand(head, dot)

    def _operand(self, arg: Any, dot: Any) -> Any:
        if arg is _DOT:
            return dot
        if isinstance(arg, _Field):
            value = dot
            for name in arg.path:
                if isinstance(value, Ptr):
                    value = value.value
                if not isinstance(value, Mapping):
                    raise GoTemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
                if name not in value:
                    raise GoTemplateError(f"can't evaluate field {name}: not in {sorted(value)}")
                value = value[name]
            return value
        if isinstance(arg, _Ident):
            raise GoTemplateError(f"function {arg.name} used as an argument is not supported")
        return arg


_NOTHING = object()
