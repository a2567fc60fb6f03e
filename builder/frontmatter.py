"""README.md YAML front matter → `core.config.SpaceConfig` (reference §1).

Contract: `parse_readme(text)` returns the typed config, or raises `ConfigError(message, key=, line=)` for the
first problem, where `line` counts lines of README.md itself (the opening `---` is line 1). No front matter →
the default `SpaceConfig()`. Unknown keys are kept in `extra`, never fatal. `validate_readme(text)` collects
every error and warning instead (the hub's `/api/validate-yaml`).

String-typed keys take the scalar's text as written, so `python_version: 3.10` stays "3.10" rather than the
float 3.1 that YAML would make of it.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import yaml

from core.config import COLORS, CUSTOM_HEADER_VALUES, SpaceConfig
from core.durations import parse_duration
from core.errors import ConfigError
from core.hardware import Hardware
from core.stages import Sdk

OAUTH_SCOPES = (
    "openid", "profile", "email", "read-billing", "read-memberships", "read-repos", "gated-repos",
    "contribute-repos", "write-repos", "manage-repos", "read-collections", "write-collections", "inference-api",
    "read-endpoints", "write-endpoints", "jobs", "webhooks", "write-discussions",
)
STORAGE = ("small", "medium", "large")
_PYTHON_VERSION = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")
_SDK_VERSION = re.compile(r"\d+(\.\d+)*([.+-]?[0-9A-Za-z.]+)?")
_FENCE = re.compile(r"---[ \t]*")
_FIRST_LINE = 2  # YAML marks are 0-based from the line after the opening `---` (file line 1)


@dataclass(frozen=True)
class _Item:
    key: str
    key_line: int
    value: yaml.Node


Check = Callable[[_Item], Any]


# ---- front matter extraction ----------------------------------------------------------------------------

def front_matter(text: str) -> str | None:
    """The YAML between the opening `---` (the first line) and the next `---` line; None without one."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not _FENCE.fullmatch(lines[0]):
        return None
    for i in range(1, len(lines)):
        if _FENCE.fullmatch(lines[i]):
            return "\n".join(lines[1:i]) + "\n"
    raise ConfigError("the front matter opened with '---' is never closed by a '---' line", line=1)


MAX_YAML_BYTES = 128 * 1024  # the front matter of a README; Hugging Face's largest Space cards are ~20 KiB
MAX_YAML_NODES = 20_000  # values after aliases are expanded: a 336-byte alias bomb expands to 10^9
MAX_YAML_DEPTH = 64  # nesting; PyYAML's composer recurses per level
_FAST_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where built in: the check costs ~1 µs a node


def check_shape(block: str) -> None:
    """ConfigError if the YAML `block` is over the size, depth or expanded-node limits, or has an alias to a
    collection that contains it (a cycle). One linear pass over the parser's events, before anything is built:
    each anchor's expanded size is counted once, so an alias bomb costs what its text costs. Syntax errors are
    left to the composer, which reports them with their line (the walk itself recurses nowhere)."""
    if len(block.encode()) > MAX_YAML_BYTES:
        raise ConfigError(f"the front matter is over {MAX_YAML_BYTES // 1024} KiB")
    for parser in dict.fromkeys((_FAST_PARSER, yaml.SafeLoader)):
        try:
            _walk(yaml.parse(block, Loader=parser))
            return
        except yaml.YAMLError:
            continue  # libyaml refuses some YAML (e.g. nesting over 1000) that PyYAML reports better


def _walk(events: Iterable[yaml.Event]) -> None:
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []  # (anchor, nodes so far) of each open collection
    for ev in events:
        if isinstance(ev, yaml.CollectionStartEvent):
            stack.append((ev.anchor, 1))
            if len(stack) > MAX_YAML_DEPTH:
                raise ConfigError(f"the front matter nests deeper than {MAX_YAML_DEPTH} levels",
                                  line=ev.start_mark.line + _FIRST_LINE)
            continue
        if isinstance(ev, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(ev, yaml.AliasEvent):
            if any(a == ev.anchor for a, _ in stack):
                raise ConfigError(f"alias *{ev.anchor} refers to a value that contains it",
                                  line=ev.start_mark.line + _FIRST_LINE)
            anchor, size = None, sizes.get(str(ev.anchor), 1)
        elif isinstance(ev, yaml.ScalarEvent):
            anchor, size = ev.anchor, 1
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1] = (stack[-1][0], stack[-1][1] + size)
        if size > MAX_YAML_NODES or (stack and stack[-1][1] > MAX_YAML_NODES):
            raise ConfigError(f"the front matter expands to more than {MAX_YAML_NODES} values (through "
                              "aliases, e.g. a 'billion laughs' bomb)", line=ev.start_mark.line + _FIRST_LINE)


def _compose(block: str) -> yaml.Node | None:
    check_shape(block)
    try:
        return yaml.compose(block, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        if e.context_mark is not None and (mark is None or mark.line >= block.count("\n")):
            mark = e.context_mark  # the problem is "end of input": where the unclosed thing began helps more
        line = mark.line + _FIRST_LINE if mark is not None else None
        problem = ": ".join(filter(None, (e.context, e.problem))) or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}") from None


def _items(root: yaml.Node) -> list[_Item]:
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("the front matter must be a mapping of `key: value` lines",
                          line=root.start_mark.line + _FIRST_LINE)
    out = []
    for k, v in root.value:
        if not isinstance(k, yaml.ScalarNode):
            raise ConfigError("keys must be plain strings", line=k.start_mark.line + _FIRST_LINE)
        out.append(_Item(k.value, k.start_mark.line + _FIRST_LINE, v))
    return out


# ---- value readers: each returns the typed value or raises ConfigError naming key and line --------------

def _fail(item: _Item, message: str, node: yaml.Node | None = None) -> ConfigError:
    """The error for `item`, at the line of `node` (an element inside the value) or else of the key."""
    line = node.start_mark.line + _FIRST_LINE if node is not None else item.key_line
    return ConfigError(message, key=item.key, line=line)


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_document(node)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _text(item: _Item, node: yaml.Node | None = None) -> str:
    target = item.value if node is None else node
    if not isinstance(target, yaml.ScalarNode):
        raise _fail(item, "must be a string", node)
    return str(target.value)


def _str(item: _Item) -> str:
    return _text(item)


def _bool(item: _Item) -> bool:
    v = _construct(item.value) if isinstance(item.value, yaml.ScalarNode) else None
    if not isinstance(v, bool):
        raise _fail(item, "must be true or false")
    return v


def _int(item: _Item) -> int:
    v = _construct(item.value) if isinstance(item.value, yaml.ScalarNode) else None
    if not isinstance(v, int) or isinstance(v, bool):
        raise _fail(item, "must be an integer")
    return v


def _str_list(item: _Item) -> tuple[str, ...]:
    if not isinstance(item.value, yaml.SequenceNode):
        raise _fail(item, "must be a list of strings")
    return tuple(_text(item, n) for n in item.value.value)


def _one_of(allowed: tuple[str, ...]) -> Check:
    def check(item: _Item) -> str:
        v = _text(item)
        if v not in allowed:
            raise _fail(item, f"{v!r} is not allowed; use one of: {', '.join(allowed)}")
        return v
    return check


def _sdk(item: _Item) -> Sdk:
    return Sdk(_one_of(tuple(s.value for s in Sdk))(item))


def _python_version(item: _Item) -> str:
    v = _text(item)
    if not _PYTHON_VERSION.fullmatch(v):
        raise _fail(item, f"{v!r} is not a Python version; use 3.x or 3.x.y (e.g. \"3.11\", quoted)")
    return v


def _sdk_version(item: _Item) -> str:
    v = _text(item)
    if not _SDK_VERSION.fullmatch(v):
        raise _fail(item, f"{v!r} is not a version (e.g. \"5.0.1\")")
    return v


def _emoji(item: _Item) -> str:
    v = _text(item)
    # Emoji are symbols (So/Sk) joined by marks, ZWJ/variation selectors (Cf/Mn/Me) and keycap bases.
    ok = bool(v) and len(v) <= 16 and all(
        unicodedata.category(c) in ("So", "Sk", "Mn", "Me", "Cf") or (c in "0123456789#*" and len(v) > 1)
        or 0x1F1E6 <= ord(c) <= 0x1F1FF for c in v)
    if not ok:
        raise _fail(item, f"{v!r} is not an emoji (only emoji characters are allowed)")
    return v


def _app_file(item: _Item) -> str:
    v = _text(item)
    parts = v.split("/")
    if not v or v.startswith("/") or ".." in parts or "\\" in v:
        raise _fail(item, f"{v!r} must be a path relative to the root of the repository")
    return v


def _int_in(low: int, high: int, what: str) -> Check:
    def check(item: _Item) -> int:
        v = _int(item)
        if not low <= v <= high:
            raise _fail(item, f"{v} is out of range; use {low}..{high} {what}")
        return v
    return check


def _base_path(item: _Item) -> str:
    v = _text(item)
    if not v.startswith("/"):
        raise _fail(item, f"{v!r} must start with '/'")
    return v


def _duration(item: _Item) -> str:
    v = _text(item)
    try:
        parse_duration(v)
    except ValueError as e:
        raise _fail(item, str(e)) from None
    return v


def _scopes(item: _Item) -> tuple[str, ...]:
    scopes = _str_list(item)
    for s, node in zip(scopes, item.value.value, strict=True):
        if s not in OAUTH_SCOPES:
            raise _fail(item, f"unknown OAuth scope {s!r}; use some of: {', '.join(OAUTH_SCOPES)}", node)
    return scopes


def _orgs(item: _Item) -> tuple[str, ...]:
    if isinstance(item.value, yaml.SequenceNode):
        return _str_list(item)
    if _is_null(item.value):
        return ()
    return (_text(item),)


def _headers(item: _Item) -> tuple[tuple[str, str], ...]:
    if not isinstance(item.value, yaml.MappingNode):
        raise _fail(item, "must be a mapping of header: value")
    out = []
    for k, v in item.value.value:
        name, value = _text(item, k), _text(item, v)
        if name not in CUSTOM_HEADER_VALUES:
            hint = " (header names must be lower case)" if name.lower() in CUSTOM_HEADER_VALUES else ""
            raise _fail(item, f"header {name!r} is not allowed{hint}; only "
                        f"{', '.join(CUSTOM_HEADER_VALUES)}", k)
        if value not in CUSTOM_HEADER_VALUES[name]:
            raise _fail(item, f"{name}: {value!r} is not allowed; use one of: "
                        f"{', '.join(CUSTOM_HEADER_VALUES[name])} (lower case)", v)
        out.append((name, value))
    return tuple(out)


READERS: dict[str, Check] = {
    "title": _str,
    "emoji": _emoji,
    "colorFrom": _one_of(COLORS),
    "colorTo": _one_of(COLORS),
    "sdk": _sdk,
    "python_version": _python_version,
    "sdk_version": _sdk_version,
    "suggested_hardware": _one_of(tuple(h.value for h in Hardware)),
    "suggested_storage": _one_of(STORAGE),
    "app_file": _app_file,
    "app_build_command": _str,
    "app_port": _int_in(1, 65535, "(a TCP port)"),
    "base_path": _base_path,
    "fullWidth": _bool,
    "header": _one_of(("mini", "default")),
    "short_description": _str,
    "models": _str_list,
    "datasets": _str_list,
    "tags": _str_list,
    "thumbnail": _str,
    "pinned": _bool,
    "hf_oauth": _bool,
    "hf_oauth_scopes": _scopes,
    "hf_oauth_expiration_minutes": _int_in(1, 43200, "minutes (30 days)"),
    "hf_oauth_authorized_org": _orgs,
    "disable_embedding": _bool,
    "startup_duration_timeout": _duration,
    "custom_headers": _headers,
    "preload_from_hub": _str_list,
    "license": _str,
    "duplicated_from": _str,
}
assert set(READERS) == {f.name for f in fields(SpaceConfig)} - {"extra"}


def _jsonable(v: Any) -> Any:
    """Unknown keys' values as JSON-safe data (YAML dates become ISO strings)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, datetime.date | datetime.datetime):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


# ---- parse / validate -----------------------------------------------------------------------------------

def _parse(text: str) -> tuple[SpaceConfig, list[ConfigError], list[str]]:
    """The config from every valid key, the errors of the invalid ones, and warnings."""
    block = front_matter(text)
    if block is None:
        return SpaceConfig(), [], []
    root = _compose(block)
    if root is None or _is_null(root):
        return SpaceConfig(), [], []
    values: dict[str, Any] = {}
    extra: list[tuple[str, Any]] = []
    errors: list[ConfigError] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for item in _items(root):
        if item.key in seen:
            warnings.append(f"line {item.key_line}: key '{item.key}' repeats line {seen[item.key]}; "
                            "the last one wins")
        seen[item.key] = item.key_line
        reader = READERS.get(item.key)
        if reader is None:
            try:
                value = _construct(item.value)
            except yaml.YAMLError as e:
                errors.append(ConfigError(f"invalid value: {e}", key=item.key, line=item.key_line))
                continue
            extra = [(k, v) for k, v in extra if k != item.key] + [(item.key, _jsonable(value))]
            warnings.append(f"line {item.key_line}: unknown key '{item.key}' (kept, not used)")
            continue
        if _is_null(item.value):
            values.pop(item.key, None)
            continue
        try:
            values[item.key] = reader(item)
        except ConfigError as e:
            errors.append(e)
    if "suggested_storage" in values:
        warnings.append(f"line {seen['suggested_storage']}: suggested_storage is ignored "
                        "(persistent storage is no longer offered)")
    if "app_port" in values and values.get("sdk") not in (None, Sdk.DOCKER):
        warnings.append(f"line {seen['app_port']}: app_port is used only with sdk: docker")
    return SpaceConfig(**values, extra=tuple(extra)), errors, warnings


def parse_readme(text: str | None) -> SpaceConfig:
    """README.md text → SpaceConfig. Raises ConfigError (key, line) on the first invalid value."""
    if not text:
        return SpaceConfig()
    config, errors, _ = _parse(text)
    if errors:
        raise min(errors, key=lambda e: e.line or 0)
    return config


def validate_readme(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as messages, for `/api/validate-yaml`: every invalid key, not only the first."""
    try:
        _, errors, warnings = _parse(text)
    except ConfigError as e:
        return [e.message], []
    return [e.message for e in sorted(errors, key=lambda e: e.line or 0)], warnings
