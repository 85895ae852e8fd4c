"""The one shared params code: read params.yaml and validate the sections a stage reads.

Each params section's schema lives in its own module of this package (``params/train.py`` holds
``train``), next to nothing else: a frozen dataclass whose fields carry a type, a one-line
explanation and their bounds (``key(...)``), and a ``check(p)`` for the rules that span fields or
sections. A stage loads only the sections it reads (``load(path, Train)``; a section's ``NEEDS``
come with it), so its import closure, and with it its DVC dependencies, hold only their schemas:
a new field in one section reruns the stages that read that section, nothing else.
``ptychostudy check-params`` (module ``config``) validates the whole file up front; no stage
depends on it.

Every key is required and every unknown key is an error; each problem is one sentence naming the
key (``ParamsError``, exit code 2). Duplicate keys and YAML aliases are refused, as DVC refuses them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ptychostudy import StudyError

MAX_QUOTED = 60  # characters of a value quoted in an error sentence (a sentence stays under 300)
MAX_LISTED = 100  # characters of a list of allowed keys in an error sentence


class ParamsError(StudyError):
    """params.yaml is malformed or describes an impossible study."""


def key(doc: str, *, min=None, max=None, gt=None, choices=None, kind: str | None = None):
    """A section field: its one-line explanation and bounds (``min``/``max`` inclusive, ``gt``
    exclusive, applied to every number it holds), the values allowed (``choices``), or a ``kind``
    ("dose": a positive integer number of photons; "name": a view's name, see ``check_name``; "sha256": 64
    lowercase hex digits). Every key of a mapping keyed by strings is a name too."""
    return dataclasses.field(metadata={"doc": doc, "min": min, "max": max, "gt": gt, "choices": choices, "kind": kind})


def quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "…"


def listing(names) -> str:
    """Allowed names, cut to a readable length."""
    text = ", ".join(map(str, names))
    return text if len(text) <= MAX_LISTED else text[:MAX_LISTED].rsplit(", ", 1)[0] + ", …"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses what DVC refuses (a key twice) and aliases (a bomb's tool)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ParamsError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in params")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            name = self.construct_object(key_node, deep=True)
            if isinstance(name, typing.Hashable) and name in seen:
                raise ParamsError(f"line {key_node.start_mark.line + 1}: the key {quote(name)} appears twice in one "
                                  "mapping (DVC refuses such a file)")
            seen.add(name)
        return super().construct_mapping(node, deep)


def read(path: str | Path) -> dict:
    """params.yaml as a mapping of sections; any problem is one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=_Loader)
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {' '.join(str(exc).split())[:150]}") from None
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    if raw is None:
        raise ParamsError(f"{path} is empty")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {quote(raw)}")
    return raw


def check_keys(raw: Any, allowed: list[str], where: str) -> None:
    """``raw`` is a mapping with exactly the keys ``allowed``."""
    prefix = "" if where == "params.yaml" else where + "."
    if not isinstance(raw, dict):
        raise ParamsError(f"{where} must be a mapping of keys ({listing(allowed)}), got {quote(raw)}")
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise ParamsError(f"unknown key {prefix}{unknown[0][:MAX_QUOTED]}; allowed keys here: {listing(allowed)}")
    missing = [k for k in allowed if k not in raw]
    if missing:
        raise ParamsError(f"missing key {prefix}{missing[0]}; every key of the study design must be set explicitly")


def parse_dose(value: Any, key: str) -> int:
    """A dose (expected photons per pattern): a positive integer, written as one (DVC names the stage and the
    folder ``dose_<dose>`` from its spelling: ``1e5`` would become ``dose_100000.0``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParamsError(f"{key} must be a positive whole number of photons, got {quote(value)}")
    if not isinstance(value, int):
        raise ParamsError(f"{key} must be a whole number of photons written as an integer (e.g. 100000, not 1e5 or "
                          f"100000.0: it names the stage and the folder dose_<int>), got {quote(value)}")
    if value <= 0:
        raise ParamsError(f"{key} must be positive (photons per pattern), got {value!r}")
    return value


NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_name(value: Any, key: str) -> str:
    """A name that becomes a path, a stage name and a word of a shell command (a view, an arm)."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ParamsError(f"{key} must be a name of lowercase letters, digits and _, a letter first, at most 32 "
                          f"(it names folders, stages and shell words), got {quote(value)}")
    return value


def scalar(value: Any, tp: type, key: str):
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key} must be true or false, got {quote(value)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key} must be an integer, got {quote(value)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key} must be a number, got {quote(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamsError(f"{key} must be a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key} must be a string, got {quote(value)}")
    else:  # pragma: no cover - a schema bug
        raise TypeError(tp)
    return value


def _bounded(value: Any, key: str, meta: Mapping) -> Any:
    if meta.get("kind") == "sha256" and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
        raise ParamsError(f"{key} must be 64 lowercase hex digits, got {quote(value)}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParamsError(f"{key} must be one of {', '.join(meta['choices'])}; got {quote(value)}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    low, high, gt = meta.get("min"), meta.get("max"), meta.get("gt")
    if gt is not None and not value > gt:
        raise ParamsError(f"{key} must be positive, got {value}" if gt == 0 else f"{key} must exceed {gt}, got {value}")
    if low is not None and value < low:
        if low == 0 and isinstance(value, int):
            raise ParamsError(f"{key} must be a non-negative integer, got {value}")
        raise ParamsError(f"{key} must be {low} or more, got {value}")
    if high is not None and value > high:
        raise ParamsError(f"{key} must be at most {high} (a bound against typos that would cost hours or memory), "
                          f"got {value}")
    return value


def _parse(value: Any, tp: Any, key: str, meta: Mapping) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    doc = meta.get("doc", "")
    if meta.get("kind") == "dose" and tp is int:
        return parse_dose(value, key)
    if meta.get("kind") == "name" and tp is str:
        return check_name(value, key)
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _parse(value, next(a for a in args if a is not type(None)), key, meta)
    if origin is tuple:
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key} must be a non-empty list of {doc}, got {quote(value)}")
        return tuple(_parse(v, args[0], f"{key}[{i}]", meta) for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict) or not value:
            raise ParamsError(f"{key} must map {doc}, got {quote(value)}")
        out = {}
        for name, item in value.items():
            name = scalar(name, args[0], f"{key} (a key)") if args[0] is not str else check_name(name, f"{key} (a key)")
            out[name] = _parse(item, args[1], f"{key}.{name}", meta)
        return dict(sorted(out.items()))
    return _bounded(scalar(value, tp, key), key, meta)


def parse_section(cls: type, raw: Any, where: str):
    """One section (or nested mapping) of params as ``cls``: its keys, types and bounds."""
    fields = dataclasses.fields(cls)
    hints = typing.get_type_hints(cls)
    check_keys(raw, [f.name for f in fields], where)
    return cls(**{f.name: _parse(raw[f.name], hints[f.name], f"{where}.{f.name}", f.metadata) for f in fields})


class Params:
    """The validated sections a stage loaded, as attributes (``p.train``)."""

    def __init__(self, sections: Mapping[str, Any]):
        self.__dict__.update(sections)

    def __eq__(self, other):
        return isinstance(other, Params) and vars(self) == vars(other)

    def replace(self, **sections) -> "Params":
        """A copy with some sections replaced (as ``dataclasses.replace`` does for one section)."""
        return Params({**vars(self), **sections})

    def dose(self, value) -> int:
        """``--dose`` (a command-line word or a number) as a dose of the study (needs the ``study`` section)."""
        dose = parse_dose(int(value) if isinstance(value, str) and value.isdigit() else value, "--dose")
        if dose not in self.study.doses:
            raise ParamsError(f"dose {dose} is not in study.doses ({', '.join(map(str, self.study.doses))})")
        return dose

    def object(self, name: str) -> str:
        """``--object`` as an object of the study (needs the ``study`` section)."""
        if name not in self.study.objects:
            raise ParamsError(f"object {name!r} is not in study.objects ({', '.join(self.study.objects)})")
        return name

    def view(self, name: str):
        """A view's definition (needs the ``views`` section)."""
        return self.views.view(name)


def _with_needs(classes) -> list[type]:
    order: list[type] = []

    def add(cls):
        if cls not in order:
            for need in getattr(cls, "NEEDS", ()):
                add(need)
            order.append(cls)

    for cls in classes:
        add(cls)
    return order


def from_dict(raw: Any, *classes: type) -> Params:
    """The sections ``classes`` (and their ``NEEDS``) of a parsed params mapping, validated."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {quote(raw)}")
    order = _with_needs(classes)
    sections = {}
    for cls in order:
        if cls.SECTION not in raw:
            raise ParamsError(f"missing key {cls.SECTION}; every key of the study design must be set explicitly")
        sections[cls.SECTION] = parse_section(cls, raw[cls.SECTION], cls.SECTION)
    p = Params(sections)
    for cls in order:
        sections[cls.SECTION].check(p)
    return p


def load(path: str | Path, *classes: type) -> Params:
    """Read ``path`` and validate the sections ``classes`` (and their ``NEEDS``); errors name the file."""
    raw = read(path)
    try:
        return from_dict(raw, *classes)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def as_dict(value) -> Any:
    """A JSON-friendly copy of a section (or any part of one), for the records a stage writes."""
    if dataclasses.is_dataclass(value):
        return {f.name: as_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: as_dict(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [as_dict(v) for v in value]
    return value


class Section:
    """Base of every section's schema: ``SECTION`` its name in params.yaml, ``NEEDS`` the sections its
    ``check`` reads, ``check(p)`` the rules beyond each field's type and bounds."""

    SECTION = ""
    NEEDS: tuple[type, ...] = ()

    def check(self, p: Params) -> None:
        pass
