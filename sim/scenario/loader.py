"""A small, generic, validated configuration loader.

Schemas are frozen dataclasses whose fields are declared with :func:`param`, which carries the
field's documentation, unit and numeric bounds in the dataclass field metadata::

    @dataclass(frozen=True)
    class Traders:
        count: int = param(150, "Number of trader agents.", ge=0)
        leverage_max: float = param(20.0, "Largest leverage drawn.", unit="x", ge=1)

        def validate(self) -> None:          # optional cross-field checks
            if self.leverage_max < 2:
                raise ConfigError("leverage_max", "must be >= 2")

:func:`load` builds such a dataclass (recursively: nested dataclasses, tuples of dataclasses,
tuples of scalars) from a plain mapping, such as the one :mod:`tomllib` returns, and raises
:class:`ConfigError` naming the dotted path of the offending field and the reason.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted, bools never accepted as
numbers, non-finite values rejected), ``str``, ``typing.Literal[...]`` of strings, nested
dataclasses, ``tuple[X, ...]`` and ``tuple[X, Y]``, and ``X | None``.

:func:`apply_overrides` applies ``"a.b.c=value"`` assignments (values parsed as TOML literals)
to a mapping; :func:`to_dict` and :func:`to_toml` write a loaded object back out, with keys in
field declaration order so the output is deterministic.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

#: Range of every integer a schema accepts (numpy and Parquet store them in 64 bits).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Largest configuration file read (scenarios and positions files are a few kB).
MAX_FILE_BYTES = 1 << 20

__all__ = [
    "ConfigError",
    "ParamInfo",
    "apply_overrides",
    "check",
    "doc_meta",
    "iter_params",
    "load",
    "param",
    "parse_override",
    "parse_toml",
    "read_text_file",
    "to_dict",
    "to_toml",
    "type_name",
    "unknown_key",
    "with_defaults",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def join_path(prefix: str, key: str | int) -> str:
    """Join a dotted path and a key (``join_path("markets", 0) == "markets.0"``)."""
    if prefix == "":
        return str(key)
    if key == "":
        return prefix
    return f"{prefix}.{key}"


class ConfigError(ValueError):
    """A configuration value is invalid.

    ``path`` is the dotted path of the field (``"traders.leverage_max"``), ``reason`` says what is
    wrong, ``source`` optionally names the file the value came from. ``str(err)`` is the
    one-line message shown to users: ``"file.toml: traders.leverage_max: must be >= 1, got 0.5"``.
    An unknown key (``unknown_key=True``, ``reason`` holding an optional spelling hint) reads
    ``"unknown key 'traders.levrage' (did you mean 'leverage_max'?)"``.
    """

    def __init__(
        self, path: str, reason: str, *, source: str = "", unknown_key: bool = False
    ) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        self.unknown_key = unknown_key
        super().__init__(self.message)

    @property
    def body(self) -> str:
        """The message without the source."""
        if self.unknown_key:
            return f"unknown key '{self.path}'{self.reason}"
        return f"{self.path}: {self.reason}" if self.path else self.reason

    @property
    def message(self) -> str:
        text = f"{self.source}: {self.body}" if self.source else self.body
        return _printable(text)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable across worker processes
        return (_rebuild_error, (type(self), self.path, self.reason, self.source, self.unknown_key))

    def replace(self, cls: type[ConfigError] | None = None, **changes: Any) -> ConfigError:
        """A copy with some of path/reason/source changed, optionally as another subclass."""
        fields = {"path": self.path, "reason": self.reason, "source": self.source}
        fields.update(changes)
        return (cls or type(self))(
            fields["path"], fields["reason"], source=fields["source"], unknown_key=self.unknown_key
        )

    def with_prefix(self, prefix: str) -> ConfigError:
        """The same error with ``prefix`` prepended to its path."""
        return self.replace(path=join_path(prefix, self.path))

    def with_source(self, source: str) -> ConfigError:
        """The same error, naming the file (or other source) the value came from."""
        return self.replace(source=source)


def _printable(text: str) -> str:
    """``text`` on one line: control characters, lone surrogates and other unprintable
    characters escaped (``\\n``, ``\\udcff``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _rebuild_error(cls, path, reason, source, unknown_key):
    return cls(path, reason, source=source, unknown_key=unknown_key)


def _suggest(key: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(key, list(candidates), n=2, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(f"'{m}'" for m in matches) + "?)"


def unknown_key(path: str, key: str, candidates: Iterable[str]) -> ConfigError:
    """Error for ``key`` not among ``candidates`` at ``path``, with a spelling suggestion."""
    return ConfigError(join_path(path, key), _suggest(key, candidates), unknown_key=True)


_SHOWN_CHARS = 60


def _short(text: str) -> str:
    """``text`` cut to a length fit for a one-line message."""
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"


def _int_text(value: int) -> str:
    """An int as text, even one too long for ``str()`` (Python refuses > 4300 digits)."""
    try:
        text = f"{value:_}" if abs(value) >= 10_000 else str(value)
    except ValueError:
        return "an integer of more than 4,300 digits"
    return _short(text)


def describe(value: object) -> str:
    """Short description of a raw value for error messages: ``string 'abc'``, ``float 1.5``."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {_int_text(value)}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {_short(repr(value))}"
    if isinstance(value, list | tuple):
        return f"array of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, Mapping):
        return "table"
    return f"{type(value).__name__} {_short(str(value))}"


def _fmt(x: object) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return _int_text(int(x))
    if isinstance(x, int) and not isinstance(x, bool):
        return _int_text(x)
    return _short(repr(x)) if isinstance(x, str) else str(x)


# --------------------------------------------------------------------------------------------
# Field declaration and schema introspection
# --------------------------------------------------------------------------------------------


def param(
    default: Any = MISSING,
    doc: str = "",
    *,
    unit: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    factory: Any = None,
) -> Any:
    """Declare a schema field with documentation, unit and bounds.

    ``default`` is the default value (omit it for a required field); ``factory`` a zero-argument
    callable producing the default (for nested dataclasses and tuples of dataclasses). Bounds
    apply to numbers, and element-wise to tuples of numbers.
    """
    metadata = {**doc_meta(doc, unit), "ge": ge, "gt": gt, "le": le, "lt": lt}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def doc_meta(doc: str = "", unit: str = "") -> dict[str, Any]:
    """Field metadata for a ``dataclasses.field(...)`` that :func:`param` cannot express
    (e.g. nested sections: ``field(default_factory=Run, metadata=doc_meta("..."))``)."""
    return {"doc": doc, "unit": unit, "ge": None, "gt": None, "le": None, "lt": None}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp: Any) -> Any | None:
    """``X`` if ``tp`` is ``X | None`` (or ``Optional[X]``), else None."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def type_name(tp: Any) -> str:
    """Human-readable name of a schema type (for docs and messages)."""
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{type_name(inner)} (optional)"
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    if tp is str:
        return "string"
    if get_origin(tp) is Literal:
        return " | ".join(f'"{a}"' for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "table"
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            if dataclasses.is_dataclass(args[0]):
                return "array of tables"
            return f"list of {type_name(args[0])}"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    return getattr(tp, "__name__", str(tp))


@dataclass(frozen=True)
class ParamInfo:
    """One leaf field of a schema, as listed in generated documentation."""

    path: str
    type: str
    unit: str
    default: Any  # MISSING when required
    doc: str
    bounds: str


def _bounds_text(md: Mapping[str, Any]) -> str:
    parts = []
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if md.get(key) is not None:
            parts.append(f"{op} {_fmt(md[key])}")
    return ", ".join(parts)


def iter_params(cls: type, prefix: str = "") -> Iterator[tuple[str, type, ParamInfo | None]]:
    """Walk a schema depth-first in declaration order.

    Yields ``(path, section_class, None)`` when entering a nested dataclass (tuples of
    dataclasses are entered with path ``name[]``), and ``(path, owning_class, ParamInfo)`` for
    each leaf field.
    """
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        path = join_path(prefix, f.name)
        element = _tuple_element(tp)
        if dataclasses.is_dataclass(tp):
            yield path, tp, None
            yield from iter_params(tp, path)
        elif element is not None and dataclasses.is_dataclass(element):
            yield path + "[]", element, None
            yield from iter_params(element, path + "[]")
        else:
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = MISSING
            md = f.metadata
            yield (
                path,
                cls,
                ParamInfo(
                    path=path,
                    type=type_name(tp),
                    unit=md.get("unit", ""),
                    default=default,
                    doc=md.get("doc", ""),
                    bounds=_bounds_text(md),
                ),
            )


def _tuple_element(tp: Any) -> Any | None:
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(cls: type[T], mapping: object, path: str = "") -> T:
    """Build dataclass ``cls`` from ``mapping``, validating every field.

    Missing keys take the field defaults; unknown keys, wrong types and out-of-bounds values
    raise :class:`ConfigError` whose path is ``path`` joined with the field's dotted path. After
    construction, ``obj.validate()`` (if defined) runs for cross-field checks; a
    :class:`ConfigError` it raises has its (relative) path prefixed with ``path``.
    """
    return _convert(cls, mapping, path)


def _load_dataclass(cls: type, mapping: object, path: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise ConfigError(path, f"expected a table, got {describe(mapping)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if key not in fields:
            raise unknown_key(path, str(key), fields)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        fpath = join_path(path, name)
        if name in mapping:
            value = _convert(hints[name], mapping[name], fpath)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(fpath, "missing required key")
        else:
            continue
        _check_bounds(f.metadata, value, fpath)
        kwargs[name] = value
    obj = cls(**kwargs)
    _check_defaults_and_validate(obj, fields, path)
    return obj


def _check_defaults_and_validate(obj: Any, fields: Mapping[str, dataclasses.Field], path: str):
    for name, f in fields.items():
        _check_bounds(f.metadata, getattr(obj, name), join_path(path, name))
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as err:
            raise err.with_prefix(path) from None


def _check_bounds(md: Mapping[str, Any], value: Any, path: str) -> None:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_bounds(md, item, join_path(path, i))
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    ge, gt, le, lt = md.get("ge"), md.get("gt"), md.get("le"), md.get("lt")
    low_ok = (ge is None or value >= ge) and (gt is None or value > gt)
    high_ok = (le is None or value <= le) and (lt is None or value < lt)
    if low_ok and high_ok:
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise ConfigError(path, f"must fit in 64 bits (|x| < 2**63), got {_fmt(value)}")
        return
    if ge is not None and le is not None:
        raise ConfigError(path, f"must be between {_fmt(ge)} and {_fmt(le)}, got {_fmt(value)}")
    for bound, op in ((ge, ">="), (gt, ">"), (le, "<="), (lt, "<")):
        if bound is None:
            continue
        ok = {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}
        if not ok[op]:
            raise ConfigError(path, f"must be {op} {_fmt(bound)}, got {_fmt(value)}")


def _convert(tp: Any, value: object, path: str) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _convert(inner, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected a boolean (true or false), got {describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {describe(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                x = float(value)
            except OverflowError:  # an int beyond the float range
                x = math.inf if value > 0 else -math.inf
            if not math.isfinite(x):
                raise ConfigError(path, f"expected a finite number, got {describe(value)}")
            return x
        raise ConfigError(path, f"expected a number, got {describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return _text(value, path)
        raise ConfigError(path, f"expected a string, got {describe(value)}")
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if value in choices and type(value) is type(choices[0]):
            return value
        listed = ", ".join(repr(c) for c in choices)
        hint = _suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise ConfigError(path, f"expected one of {listed}, got {describe(value)}{hint}")
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, path)
    if get_origin(tp) is tuple:
        return _convert_tuple(tp, value, path)
    raise TypeError(f"{path}: unsupported schema type {tp!r}")


def _text(value: str, path: str) -> str:
    """A string that can be written back as UTF-8 (``sys.argv`` carries undecodable bytes as
    lone surrogates; they cannot go into a TOML or JSON file)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            path, "not valid UTF-8 text (the value holds undecodable bytes)"
        ) from None
    return value


def _convert_tuple(tp: Any, value: object, path: str) -> tuple:
    args = get_args(tp)
    if not isinstance(value, list | tuple):
        raise ConfigError(path, f"expected an array, got {describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, join_path(path, i)) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(path, f"expected an array of {len(args)} items, got {len(value)}")
    return tuple(
        _convert(a, v, join_path(path, i)) for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def with_defaults(cls: type, mapping: object) -> Any:
    """``mapping`` with every missing key filled in from the schema defaults, recursively
    (items of arrays of tables included), *without* validating anything: unknown keys and
    wrong values are kept for :func:`load` to report. Lets overrides address defaulted keys of
    a mapping that is not valid on its own."""
    if not isinstance(mapping, Mapping):
        return mapping
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = _optional_inner(hints[f.name]) or hints[f.name]
        element = _tuple_element(tp)
        if f.name in mapping:
            value = mapping[f.name]
            if dataclasses.is_dataclass(tp):
                value = with_defaults(tp, value)
            elif _is_table_list(element, value):
                value = [with_defaults(element, v) for v in value]
            out[f.name] = value
        elif f.default is not MISSING:
            if f.default is not None:
                out[f.name] = to_dict(f.default)
        elif f.default_factory is not MISSING:
            out[f.name] = to_dict(f.default_factory())
    for key, value in mapping.items():
        out.setdefault(key, value)
    return out


def _is_table_list(element: Any, value: object) -> bool:
    return (
        element is not None
        and dataclasses.is_dataclass(element)
        and isinstance(value, list | tuple)
    )


def check(obj: Any, path: str = "") -> None:
    """Re-run bounds and ``validate()`` checks on an already constructed schema object
    (for objects built in code or with :func:`dataclasses.replace`), children first."""
    cls = type(obj)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in fields:
        value = getattr(obj, name)
        fpath = join_path(path, name)
        if dataclasses.is_dataclass(value):
            check(value, fpath)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    check(item, join_path(fpath, i))
    _check_defaults_and_validate(obj, fields, path)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def read_text_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of the UTF-8 file ``path`` (at most ``max_bytes``), or a :class:`ConfigError`
    saying in plain words why not: missing, not a regular file, too large, unreadable, not
    text. ``what`` names the file in the message ("scenario file")."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise OSError(errno.EINVAL, f"it is {kind}")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError("", f"{what} not found") from None
    except OSError as err:
        raise ConfigError("", f"cannot read {what}: {err.strerror or err}") from None
    except ValueError as err:  # e.g. an embedded NUL character in the path
        raise ConfigError("", f"cannot read {what}: {err}") from None
    if len(data) > max_bytes:
        raise ConfigError("", f"{what} is larger than {max_bytes:,} bytes: is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            "",
            f"{what} is not UTF-8 text (undecodable byte at offset {err.start}): is it the "
            "right file?",
        ) from None


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` with every failure as a :class:`ConfigError` ("invalid TOML: ...")."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"invalid TOML: {err}") from None
    except RecursionError:
        raise ConfigError("", "invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise ConfigError("", f"invalid TOML: {_short(str(err))}") from None


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b.c=value"`` into the path and the value parsed as a TOML literal.

    Values that are not valid TOML (``ETH``, ``data/x.csv``) are taken as plain strings.
    """
    if "=" not in text:
        raise ConfigError("", f"override {text!r} is not of the form path.to.key=value")
    path, raw = text.split("=", 1)
    path = path.strip()
    if not path or any(part == "" for part in path.split(".")):
        raise ConfigError("", f"override {text!r} has an empty key path")
    return path, _parse_literal(raw.strip())


def _parse_literal(raw: str) -> Any:
    try:
        parsed = parse_toml(f"v = {raw}")
    except ConfigError:
        return raw
    if set(parsed) != {"v"}:
        return raw
    return parsed["v"]


def apply_overrides(mapping: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``mapping`` with each ``"path=value"`` override applied.

    Path segments are table keys or, for arrays, integer indices (``markets.0.initial_margin``).
    Every segment must already exist (apply overrides to a fully resolved mapping, e.g.
    :func:`to_dict` of a loaded object, so that defaulted keys exist); otherwise a
    :class:`ConfigError` names the path that does not exist.
    """
    result = _deep_copy(mapping)
    for text in overrides:
        path, value = parse_override(text)
        _set_path(result, path, value)
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value


def _set_path(root: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = root
    walked = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, Mapping):
            if part not in node:
                raise unknown_key(walked, part, node)
            if last:
                node[part] = value
            else:
                node = node[part]
        elif isinstance(node, list):
            if not re.fullmatch(r"-?\d+", part):
                raise ConfigError(
                    join_path(walked, part),
                    f"'{walked}' is an array; use an index 0..{len(node) - 1}",
                )
            index = int(part)
            if not 0 <= index < len(node):
                raise ConfigError(
                    join_path(walked, part),
                    f"index out of range ('{walked}' has {len(node)} items)",
                )
            if last:
                node[index] = value
            else:
                node = node[index]
        else:
            raise ConfigError(
                join_path(walked, part), f"'{walked}' is a value, not a table or array"
            )
        walked = join_path(walked, part)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """Plain-data form of a schema object: dataclasses become dicts (keys in field order),
    tuples become lists, ``None`` fields are left out (TOML has no null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is not None:
                out[f.name] = to_dict(value)
        return out
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    out = ['"']
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    escapes["\r"] = "\\r"
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Mapping):
        items = ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None)
        return "{ " + items + " }" if items else "{}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def _emit(lines: list[str], table: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
    for k, v in table.items():
        if not isinstance(v, Mapping) and not _is_table_array(v):
            lines.append(f"{_key(str(k))} = {_value(v)}")
    for k, v in table.items():
        name = ".".join(_key(p) for p in (*prefix, str(k)))
        if isinstance(v, Mapping):
            if lines:
                lines.append("")
            lines.append(f"[{name}]")
            _emit(lines, v, (*prefix, str(k)))
        elif _is_table_array(v):
            for item in v:
                if lines:
                    lines.append("")
                lines.append(f"[[{name}]]")
                _emit(lines, item, (*prefix, str(k)))


def to_toml(obj: Any) -> str:
    """Serialise a schema object (or a plain mapping) to TOML text.

    Scalars and inline arrays of a table come before its sub-tables; keys keep declaration
    order, so the same object always gives the same text; ``tomllib.loads(to_toml(x))`` equals
    ``to_dict(x)``.
    """
    data = to_dict(obj)
    if not isinstance(data, Mapping):
        raise TypeError("to_toml needs a dataclass instance or a mapping")
    lines: list[str] = []
    _emit(lines, data, ())
    return "\n".join(lines) + "\n"
