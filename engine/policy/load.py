"""Reading rule files: YAML to typed specs, with every problem located to its line and column.

PyYAML builds the node tree (`compose`), which keeps the position of every key and value; we turn
nodes into plain values ourselves so that each value's path (`("locations", 2, "ships_to", 0)`)
maps back to its mark. msgspec then checks the values against `engine.policy.schema`, one list
item at a time, so one run reports every broken item rather than the first. msgspec's messages
are rewritten into sentences a merchandiser can act on (what is wrong, where, what to write).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import msgspec
import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.countries import COUNTRY_CODES, MISTAKEN_CODES
from engine.errors import Problem, Severity, split_validation_message
from engine.model import CHANNEL_PATTERN, NO_SPACES, REGEX_MESSAGE, ReasonCode
from engine.policy.schema import (
    CRITERIA,
    NAME_PATTERN,
    URL_PATTERN,
    CatalogItemSpec,
    CountryGroupSpec,
    DefaultsSpec,
    LocationSpec,
    RuleFileSpec,
    RuleSpec,
    SourceSpec,
    UpstreamApi,
)

__all__ = (
    "MAX_DEPTH",
    "Loaded",
    "LoadedFiles",
    "SourceMap",
    "convert_located",
    "load_folder",
    "load_texts",
    "read_yaml",
    "rule_files",
    "suggest",
)

Path_ = tuple[str | int, ...]
T = TypeVar("T")

_COMPOSER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_BOOL_WORDS: Final = frozenset(
    w
    for base in ("yes", "no", "true", "false", "on", "off")
    for w in (base, base.title(), base.upper())
)
_SECTION_TYPES: Final[dict[str, type[Any]]] = {
    "country_groups": CountryGroupSpec,
    "sources": SourceSpec,
    "locations": LocationSpec,
    "catalog": CatalogItemSpec,
    "rules": RuleSpec,
}
_SECTION_NOUN: Final = {
    "country_groups": "country group",
    "sources": "source",
    "locations": "location",
    "catalog": "catalog item",
    "rules": "rule",
}
_SECTION_KEY: Final = {
    "country_groups": "name",
    "sources": "name",
    "locations": "id",
    "catalog": "sku",
    "rules": "name",
}
_TOP_LEVEL: Final = tuple(RuleFileSpec.__struct_fields__)
MAX_DEPTH: Final = 64
"""Mappings and lists nested in one another, at most. A rule file needs a handful; a deeper one
is refused before it is built, since building it recurses (PyYAML's C composer overflows the
stack some 30,000 levels down, and takes time quadratic in the depth long before)."""
_TOO_DEEP: Final = (
    f"nested more than {MAX_DEPTH} levels deep: a rule file is a few levels of mappings and lists"
)


@dataclass(frozen=True, slots=True)
class Mark:
    line: int
    column: int


@dataclass
class SourceMap:
    """Where each value of one file stands: value marks, key marks and the raw scalar nodes."""

    file: str
    values: dict[Path_, Mark] = field(default_factory=dict)
    keys: dict[Path_, Mark] = field(default_factory=dict)
    scalars: dict[Path_, ScalarNode] = field(default_factory=dict)
    unbuildable: set[Path_] = field(default_factory=set)
    """Values YAML could not build; already reported, so their items are not checked again."""

    def mark(self, path: Path_, *, key: bool = False) -> Mark:
        """The mark of `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = path
        while True:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            if not probe:
                return Mark(1, 1)
            probe = probe[:-1]

    def problem(
        self, path: Path_, message: str, *, key: bool = False, severity: Severity = Severity.ERROR
    ) -> Problem:
        mark = self.mark(path, key=key)
        # One line per problem, whatever characters the values it quotes hold.
        return _problem(self.file, mark.line, mark.column, message, severity)


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """A spec with the place it was written, for later checks and for explanations."""

    spec: T
    source: SourceMap
    path: Path_

    @property
    def line(self) -> int:
        """Where the item starts: its `- ` for a list item, its key for `defaults:`."""
        key = bool(self.path) and isinstance(self.path[-1], str)
        return self.source.mark(self.path, key=key).line

    def problem(
        self, sub: Path_, message: str, *, key: bool = False, severity: Severity = Severity.ERROR
    ) -> Problem:
        return self.source.problem(self.path + sub, message, key=key, severity=severity)


@dataclass
class LoadedFiles:
    """Every valid item of every file, in reading order, and every problem found so far."""

    country_groups: list[Loaded[CountryGroupSpec]] = field(default_factory=list)
    sources: list[Loaded[SourceSpec]] = field(default_factory=list)
    locations: list[Loaded[LocationSpec]] = field(default_factory=list)
    catalog: list[Loaded[CatalogItemSpec]] = field(default_factory=list)
    rules: list[Loaded[RuleSpec]] = field(default_factory=list)
    defaults: list[Loaded[DefaultsSpec]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    digest: str = ""
    files: tuple[str, ...] = ()
    broken: dict[str, set[str]] = field(default_factory=dict)
    """Section -> names of items that had errors (their problems are already listed)."""


# --- YAML to values with marks ------------------------------------------------------------------


class _Builder:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._seen: set[int] = set()

    def build(self, node: Node, path: Path_) -> Any:
        self.source.values[path] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if len(path) >= MAX_DEPTH and not isinstance(node, ScalarNode):
            # `_parse_yaml` refuses such a file before it is composed; this keeps the recursion
            # bounded whatever the node tree is.
            self.problems.append(self.source.problem(path, _TOO_DEEP))
            self.source.unbuildable.add(path)
            return None
        if id(node) in self._seen:
            # An alias: the same node reached twice. Refused, which also stops a file that
            # refers to itself, or one that multiplies itself ("billion laughs"), at once.
            anchored = self.source.values[path]
            used = self.source.keys.get(path)  # the key the alias is the value of, if any
            where = used or anchored
            repeats = f" (this repeats the value from line {anchored.line})" if used else ""
            self.problems.append(
                _problem(
                    self.source.file,
                    where.line,
                    where.column,
                    "anchors and aliases (`&name`, `*name`) are not supported in rule files: "
                    f"write the value out where it is needed{repeats}",
                )
            )
            self.source.unbuildable.add(path)
            return None
        self._seen.add(id(node))
        if isinstance(node, ScalarNode):
            self.source.scalars[path] = node
            try:
                return self._constructor.construct_object(node, deep=True)
            except (ValueError, yaml.YAMLError) as exc:
                self.problems.append(self._unbuildable(node, exc))
                self.source.unbuildable.add(path)
                return None
        if isinstance(node, SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            result: dict[str, Any] = {}
            seen: dict[str, Mark] = {}
            for key_node, value_node in node.value:
                key_mark = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key_node, ScalarNode):
                    self.problems.append(
                        _problem(
                            self.source.file,
                            key_mark.line,
                            key_mark.column,
                            "a key must be a plain word, not a list or a mapping",
                        )
                    )
                    continue
                key = str(key_node.value)
                if key in seen:
                    first = seen[key]
                    self.problems.append(
                        _problem(
                            self.source.file,
                            key_mark.line,
                            key_mark.column,
                            f"`{key}` is written twice in the same mapping (first on line "
                            f"{first.line}); YAML would silently keep only the last one: "
                            "remove one of them",
                        )
                    )
                    continue
                seen[key] = key_mark
                self.source.keys[(*path, key)] = key_mark
                result[key] = self.build(value_node, (*path, key))
            return result
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover - yaml has 3 kinds

    def _unbuildable(self, node: ScalarNode, exc: Exception) -> Problem:
        mark = node.start_mark
        line, column = mark.line + 1, mark.column + 1
        if node.tag == "tag:yaml.org,2002:timestamp":
            message = (
                f"`{node.value}` looks like a date but is not a real one; write it in "
                f'quotes ("{node.value}") if it is meant as text'
            )
        elif node.tag.startswith("tag:yaml.org,2002:"):
            kind = node.tag.rsplit(":", 1)[-1]
            message = f"`{node.value}` cannot be read as {kind}: remove the `!!{kind}` tag"
        else:
            message = f"the YAML tag `{node.tag}` is not supported here: remove it"
        return _problem(self.source.file, line, column, message)


_KEY_OR_ITEM: Final = re.compile(r"\s*(?:- |-$|[\w.-]+\s*:(?:\s|$))")
_CLOSER: Final = {"[": ("]", "list"), "{": ("}", "mapping")}


def _unclosed(file: str, lines: list[str], opened: yaml.Mark, stopped: yaml.Mark) -> Problem | None:
    """A `[` or `{` left open is reported where it was opened (where the fix goes), not where
    the parser gave up: that is when the bracket's own line opens more than it closes and the
    parser stopped at the next key or list item, or at the end of the file."""
    if opened.line >= len(lines):
        return None
    rest = lines[opened.line][opened.column :]
    opener = rest[:1]
    if opener not in _CLOSER:
        return None
    closer, kind = _CLOSER[opener]
    at_end = stopped.line >= len(lines)
    if rest.count(opener) <= rest.count(closer) or not (
        at_end or _KEY_OR_ITEM.match(lines[stopped.line])
    ):
        return None
    return _problem(
        file,
        opened.line + 1,
        opened.column + 1,
        f"not valid YAML: this `{opener}` is never closed: end the {kind} with `{closer}` "
        + (
            "(the file ended inside it)"
            if at_end
            else f"(line {stopped.line + 1} was read as still inside it)"
        ),
    )


def _too_deep(text: str, file: str) -> Problem | None:
    """The first mapping or list nested deeper than `MAX_DEPTH`, from the parser's events: the
    parser keeps its own stack, so this does not recurse, and it stops there. None also when
    the text is not valid YAML: composing it reports where."""
    loader = _COMPOSER(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    return _problem(file, line, column, _TOO_DEEP)
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _parse_yaml(text: str, source: SourceMap) -> tuple[Any, list[Problem]]:
    if deep := _too_deep(text, source.file):
        return None, [deep]
    try:
        root = yaml.compose(text, Loader=_COMPOSER)
    except RecursionError:
        # Not expected after `_too_deep`, but composing recurses, so it is not a crash either.
        return None, [_problem(source.file, 1, 1, _TOO_DEEP)]
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow in a file (a control character): no mark, a position.
        start = text.rfind("\n", 0, exc.position) + 1
        line, column = text.count("\n", 0, exc.position) + 1, exc.position - start + 1
        shown = chr(exc.character) if isinstance(exc.character, int) else "?"
        message = (
            f"not valid YAML: the character `{shown}` cannot be written in a YAML file; remove it"
        )
        return None, [_problem(source.file, line, column, message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "the file is not valid YAML"
        hint = ""
        lines = text.splitlines()
        if mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]:
            hint = " (indent with spaces, not tabs)"
        elif (
            mark is not None
            and exc.context
            and exc.context_mark is not None
            and exc.context_mark.line != mark.line
        ):
            if unclosed := _unclosed(source.file, lines, exc.context_mark, mark):
                return None, [unclosed]
            opened = exc.context_mark.line + 1
            advice = "is a bracket left open?" if "flow" in exc.context else "check the indentation"
            hint = f" ({exc.context} that starts on line {opened}: {advice})"
        return None, [_problem(source.file, line, column, f"not valid YAML: {what}{hint}")]
    except yaml.YAMLError as exc:
        return None, [_problem(source.file, 1, 1, f"not valid YAML: {exc}")]
    if root is None:
        return None, []
    builder = _Builder(source)
    value = builder.build(root, ())
    return value, builder.problems


# --- msgspec messages to merchandiser sentences -------------------------------------------------

_PATH_TOKEN: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _parse_path(text: str) -> Path_:
    return tuple(name if name else int(index) for name, index in _PATH_TOKEN.findall(text[1:]))


def _name_the_key(at: str, value: Any, spec: Any = None) -> Path_:
    """msgspec says `[...]` for "some value of this mapping"; name the key whose value is wrong,
    so the message can point at its line. With the `spec` `value` was converted to, that is
    the first value that does not convert on its own; without, the first that is not text or
    a mapping."""
    head, _, tail = at.partition("[...]")
    steps = _parse_path(head)
    node = _node_at(value, steps)
    if not isinstance(node, dict) or not node:
        return steps
    types = _mapping_types(spec, steps)
    key = None if types is None else _first_refused(node.items(), types[1])
    if key is None:
        key = next((k for k, v in node.items() if not isinstance(v, str | dict)), next(iter(node)))
    return (*steps, key, *_parse_path("$" + tail))


_KEY_AT: Final = re.compile(r"^(?P<msg>.*?) - at `key` in `(?P<path>\$[^`]*)`$", re.DOTALL)
"""msgspec's ending for a mapping's key that is not valid (it does not say which key)."""
_PATTERN_SENTENCES: Final = {
    repr(NO_SPACES): "is not valid for {name}: it cannot contain spaces or line breaks",
    repr(CHANNEL_PATTERN): "is not a valid channel: use lower-case letters, digits, `-` and "
    "`_`, starting with a letter or digit (as carts send it)",
    repr(NAME_PATTERN): "is not a valid name for {name}: use lower-case letters, digits, `-`, "
    "`_` and `.`, starting with a letter or digit",
    repr(URL_PATTERN): "is not a valid URL for {name}: `http://` or `https://`, a host, then "
    "a path if needed, with no spaces",
}
"""What each pattern of the rule files asks for, keyed as msgspec quotes it in its message."""


def _bad_key(value: Any, steps: Path_, spec: Any) -> str | None:
    """The first key of the mapping at `steps` in `value` that its key type refuses (with
    `spec`, the type `value` was converted to), else None."""
    node = _node_at(value, steps)
    if not isinstance(node, dict) or not node:
        return None
    types = _mapping_types(spec, steps)
    key = next(iter(node)) if types is None else _first_refused(((k, k) for k in node), types[0])
    return None if key is None else str(key)


def _node_at(value: Any, steps: Path_) -> Any:
    """What `value` holds at `steps`, or None where the steps leave it."""
    node = value
    for step in steps:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _first_refused(named: Iterable[tuple[Any, Any]], tp: Any) -> Any:
    """The name of the first (name, value) whose value does not convert to `tp`, else None."""
    for name, item in named:
        try:
            msgspec.convert(item, tp, strict=True)
        except msgspec.ValidationError:
            return name
    return None


def _problem(
    file: str, line: int, column: int, message: str, severity: Severity = Severity.ERROR
) -> Problem:
    """Every problem of a rule file is made here: one line, whatever characters the values it
    quotes hold (`_visible`)."""
    return Problem(file, line, column, _visible(message), severity)


def _visible(text: str) -> str:
    """`text` with each character that does not print written as its escape (`\\n`, `\\t`,
    `\\xa0`): the one thing wrong with a value may be a character that would not show, or that
    would break the message's line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _arms(tp: Any) -> Iterator[Any]:
    """`tp` without `Annotated`, or each member of a union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _arms(typing.get_args(tp)[0])
    elif origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(tp):
            yield from _arms(arg)
    else:
        yield tp


def _type_at(tp: Any, steps: Path_) -> Any:
    """The type found at `steps` (struct fields by their YAML names, mappings' values, list
    items) in `tp`, or None where the steps leave what the types say."""
    for step in steps:
        for arm in _arms(tp):
            if isinstance(step, int) and typing.get_origin(arm) in (list, tuple):
                tp = typing.get_args(arm)[0]
                break
            if isinstance(step, str) and typing.get_origin(arm) is dict:
                tp = typing.get_args(arm)[1]
                break
            if isinstance(step, str) and isinstance(arm, type) and issubclass(arm, msgspec.Struct):
                fields = msgspec.structs.fields(arm)
                found = next((f.type for f in fields if f.encode_name == step), None)
                if found is not None:
                    tp = found
                    break
        else:
            return None
    return tp


def _mapping_types(spec: Any, steps: Path_) -> tuple[Any, Any] | None:
    """(key type, value type) of the mapping at `steps` in the type `spec`, if it is (or may be)
    a mapping; else None (and None without a `spec`)."""
    if spec is None:
        return None
    for arm in _arms(_type_at(spec, steps)):
        if typing.get_origin(arm) is dict:
            key_type, value_type = typing.get_args(arm)
            return key_type, value_type
    return None


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    meant = MISTAKEN_CODES.get(word.upper())
    if meant is not None and meant[0] in choices:
        # `UK`, `IRL`: spelling is no guide (difflib offers `UA`, `IR`); say which code is meant.
        return f" (did you mean `{meant[0]}`? {meant[1]})"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


_FOUND_WORDS: Final = {
    "int": "a number",
    "float": "a number",
    "str": "text",
    "bool": "true/false",
    "array": "a list",
    "object": "a mapping",
    "null": "empty",
    "datetime": "a date",
    "date": "a date",
}
_MAPPING_EXAMPLES: Final = {
    "ship_to": "`ship_to: {deny: [GB]}`",
    "backorder": "`backorder: {allowed: true}`",
    "routing": "`routing: {max_shipments: 2}`",
    "match": "`match: {tags: [home]}`",
    "deny": "`deny: {message: ...}`",
}
_MISSING_EXAMPLES: Final = {
    "match": "`match:` with what the rule applies to, for example `match: {tags: [home]}` "
    "(`match: {}` for every line)",
    "country": "`country:` with the location's ISO 3166-1 alpha-2 code, for example `IE`",
    "countries": "`countries:` with a list of ISO 3166-1 alpha-2 codes, for example `[IE, GB]`",
}
_TYPE_WORDS: Final = {
    "int": "a whole number",
    "str": "text",
    "bool": "true or false",
    "array": "a list (for example `[IE, GB]`)",
    "object": "a mapping of keys to values",
    "null": "empty",
    "float": "a number",
    "datetime": "a date and time (ISO 8601, for example `2026-01-01T12:00:00Z`)",
}


def _type_words(expected: str) -> str:
    parts = [p.strip() for p in expected.split("|")]
    words = [_TYPE_WORDS.get(p, p) for p in parts if p != "null"]
    text = " or ".join(dict.fromkeys(words))
    if "null" in parts:
        text += " (or null)"
    return text


def _field_name(path: Path_) -> str:
    names = [p for p in path if isinstance(p, str)]
    return f"`{names[-1]}`" if names else "this value"


def _raw(source: SourceMap, path: Path_) -> str | None:
    node = source.scalars.get(path)
    return None if node is None else str(node.value)


def _translate(
    error: msgspec.ValidationError,
    source: SourceMap,
    base: Path_,
    noun: str,
    value: Any = None,
    *,
    root: type[Any] | None = None,
    spec: Any = None,
) -> Problem:
    text = str(error)
    bad_key = None
    if found := _KEY_AT.match(text):
        # `- at `key` in `$.upstream``: one of a mapping's keys is wrong, not a value.
        message, steps = found["msg"], _parse_path(found["path"])
        bad_key = _bad_key(value, steps, spec)
        rel = steps if bad_key is None else (*steps, bad_key)
        name = f"a key of {_field_name(steps) if steps else noun}"
    else:
        message, at = split_validation_message(text)
        if at and "[...]" in at:
            rel = _name_the_key(at, value, spec)
        else:
            rel = _parse_path(at) if at else ()
        name = _field_name(rel) if rel else noun
    path = base + rel

    if m := re.match(r"Object contains unknown field `(.+)`", message, re.DOTALL):
        key = m[1]
        # From the converted type when known: it also steps through mappings' values.
        target = _struct_in(_type_at(spec, rel)) if spec is not None else None
        if target is None:
            target = _target_type(base, rel) if root is None else _walk(root, rel)
        allowed = list(getattr(target, "__struct_fields__", ()))
        sentence = f"unknown key `{key}` in {_describe(rel, noun)}{_suggest(key, allowed)}"
        if allowed:
            sentence += "; allowed keys: " + ", ".join(allowed)
        return source.problem((*path, key), sentence, key=True)
    if m := re.match(r"Object missing required field `(.+)`", message, re.DOTALL):
        example = _MISSING_EXAMPLES.get(m[1], f"`{m[1]}: ...`")
        return source.problem(path, f"{_describe(rel, noun)} is missing `{m[1]}`: add {example}")
    raw = _raw(source, path) if bad_key is None else str(bad_key)
    node = source.scalars.get(path) if bad_key is None else None

    def report(where: Path_, sentence: str) -> Problem:
        return source.problem(where, sentence, key=bad_key is not None)

    if m := re.match(r"Expected `(.+?)`, got `(.+?)`$", message):
        expected, got = m[1], m[2]
        if got == "bool" and raw in _YAML_BOOL_WORDS and "str" in expected:
            truth = "true" if raw.lower() in {"yes", "true", "on"} else "false"
            choices = _choices(rel)
            if choices:
                return report(path, f"`{raw}` is read by YAML as {truth}; use one of: {choices}")
            country = raw.upper()
            if _is_country_field(rel) and country in COUNTRY_CODES:
                return report(
                    path,
                    f"`{raw}` is read by YAML as {truth}, not as text; write it in quotes "
                    f'("{country}") to mean the country code {country}',
                )
            return report(
                path,
                f'`{raw}` is read by YAML as {truth}, not as text; write it in quotes ("{raw}")',
            )
        if got in {"int", "float", "datetime", "date"} and "str" in expected and node is not None:
            kind = "a date" if got in {"datetime", "date"} else "a number"
            return report(
                path,
                f"{name} must be text, but `{raw}` is read as {kind}; write it in quotes "
                f'("{raw}") so it is kept exactly as written',
            )
        if (
            got == "str"
            and node is not None
            and node.style in {"'", '"'}
            and ("int" in expected or "bool" in expected)
        ):
            return report(
                path,
                f"{name} must be {_type_words(expected)}, but `{raw}` is in quotes, which "
                "makes it text: remove the quotes",
            )
        shown = f"`{raw}`" if raw is not None else _FOUND_WORDS.get(got, got)
        if got == "null":
            shown = "empty"
        wanted = _type_words(expected)
        last = rel[-1] if rel else None
        if "object" in expected and isinstance(last, str) and last in _MAPPING_EXAMPLES:
            wanted = f"a mapping, for example {_MAPPING_EXAMPLES[last]}"
        return report(path, f"{name} must be {wanted}, not {shown}")
    if m := re.match(r"Expected `(?:int|float)` >= (\d+)", message):
        if m[1] == "0":
            return report(path, f"{name} cannot be negative (`{raw}`): use 0 or more")
        return report(path, f"{name} must be at least {m[1]}, not `{raw}`")
    if m := re.match(r"Expected `(?:int|float)` <= (\d+)", message):
        return report(path, f"{name} is too large (`{raw}`): at most {m[1]}")
    if m := re.match(r"Invalid enum value '(.*)'", message):
        return report(path, _enum_sentence(rel, m[1]))
    if re.match(r"Expected `str` of length >= 1", message):
        return report(path, f"{name} cannot be empty")
    if m := re.match(r"Expected `(?:array|str)` of length <= (\d+)", message):
        return report(path, f"{name} is too long: at most {m[1]}")
    if re.match(r"Expected `array` of length >= 1", message):
        return report(path, f"{name} needs at least one entry")
    if message.startswith(REGEX_MESSAGE):
        sentence = _PATTERN_SENTENCES.get(
            message.removeprefix(REGEX_MESSAGE), "is not valid for {name}: {message}"
        )
        return report(path, f"`{raw}` " + sentence.format(name=name, message=message))
    return report(path, f"{name}: {message}")


def _enum_sentence(rel: Path_, value: str) -> str:
    names = [p for p in rel if isinstance(p, str)]
    last = names[-1] if names else ""
    if _is_country_field(rel):
        upper = value.upper()
        if upper in COUNTRY_CODES and upper != value:
            return f"`{value}`: write country codes in capitals (`{upper}`)"
        if upper in _COMMON_MISTAKES:
            mistake = _COMMON_MISTAKES[upper]
            return f"`{value}` is not an ISO 3166-1 alpha-2 country code ({mistake})"
        hint = _suggest(upper, sorted(COUNTRY_CODES))
        return f"`{value}` is not an ISO 3166-1 alpha-2 country code{hint}"
    if "criteria" in names:
        return (
            f"`{value}` is not a routing criterion{_suggest(value, CRITERIA)}; use one of: "
            + ", ".join(CRITERIA)
        )
    if last in {"code", "reasons"}:
        codes = [c.value for c in ReasonCode]
        if value.upper() in codes:
            return f"`{value}`: write reason codes in capitals (`{value.upper()}`)"
        return f"`{value}` is not a reason code{_suggest(value, codes)}; use one of: " + ", ".join(
            codes
        )
    if last == "unknown_availability":
        return f"`{value}` is not a policy for unknown availability; use deny, reserve or allocate"
    if names[-2:-1] == ["locations"]:
        verdicts = ("used", "passed_over", "excluded")
        return (
            f"`{value}` is not a verdict on a location{_suggest(value, verdicts)}; use one of: "
            + ", ".join(verdicts)
        )
    allowed = _ALLOWED_WORDS.get(last)
    if allowed:
        return (
            f"`{value}` is not an allowed value for `{last}`{_suggest(value, allowed)}; "
            "use one of: " + ", ".join(allowed)
        )
    return f"`{value}` is not an allowed value for `{last}`"


_ALLOWED_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "api": typing.get_args(UpstreamApi),
    "lookup": ("product_id", "external_reference_id"),
    "array_style": ("repeat", "comma", "brackets"),
    # Rule tests (engine.rule_tests) state expected decisions in the API's words.
    "decision": ("allocate", "reserve", "deny"),
    "status": ("allocated", "reserved", "denied"),
}


_COMMON_MISTAKES: Final = {
    "UK": "the United Kingdom is `GB`",
    "EL": "Greece is `GR`",
    "EU": "for the European Union define a country group, e.g. `eu`",
}


def _is_country_field(rel: Path_) -> bool:
    names = [p for p in rel if isinstance(p, str)]
    return bool(names) and (
        names[-1] == "country" or bool({"ships_to", "countries", "ship_to"} & set(names))
    )


def _choices(rel: Path_) -> str | None:
    """The allowed words of an enumerated setting, for messages; None for free text."""
    names = [p for p in rel if isinstance(p, str)]
    last = names[-1] if names else ""
    if last == "unknown_availability":
        return "deny, reserve or allocate"
    if "criteria" in names:
        return ", ".join(CRITERIA)
    if last in {"code", "reasons"}:
        return ", ".join(c.value for c in ReasonCode)
    return None


def _target_type(base: Path_, rel: Path_) -> type[Any] | None:
    """The struct a (section item relative) path points into, for listing its allowed keys."""
    section = base[0] if base else None
    current: Any = _SECTION_TYPES.get(str(section)) if section in _SECTION_TYPES else None
    if base == ("defaults",):
        current = DefaultsSpec
    if not base:
        current = RuleFileSpec
    return _walk(current, rel)


def _walk(current: Any, rel: Path_) -> type[Any] | None:
    """The struct `rel` points into from the struct `current` (None: not a struct)."""
    for part in rel:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        hints = msgspec.structs.fields(current)
        nxt = next((f for f in hints if f.name == part), None)
        if nxt is None:
            return None
        current = _struct_in(nxt.type)
    return current if isinstance(current, type) else None


def _struct_in(tp: Any) -> Any:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in getattr(tp, "__args__", ()):
        found = _struct_in(arg)
        if found is not None:
            return found
    return None


def _describe(rel: Path_, noun: str) -> str:
    names = [p for p in rel if isinstance(p, str)]
    return f"`{names[-1]}` of {noun}" if names else noun


# --- files and folders --------------------------------------------------------------------------


def rule_files(folder: Path) -> list[Path]:
    """The YAML files of a rule set: `*.yaml` and `*.yml` directly in the folder, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in {".yaml", ".yml"})


def load_folder(folder: Path) -> LoadedFiles:
    """Read every rule file of `folder`; problems are collected, never raised."""
    if not folder.is_dir():
        loaded = LoadedFiles()
        loaded.problems.append(_problem(str(folder), 1, 1, "no such folder of rule files"))
        return loaded
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for path in rule_files(folder):
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(_problem(str(path), 1, 1, f"cannot be read: {exc}"))
    loaded = load_texts(texts)
    loaded.problems[:0] = problems
    if not texts and not problems:
        loaded.problems.append(_problem(str(folder), 1, 1, "the folder has no rule files (*.yaml)"))
    return loaded


def load_texts(texts: list[tuple[str, str]]) -> LoadedFiles:
    """Read rule files given as (name, text) pairs, in that order."""
    loaded = LoadedFiles(files=tuple(name for name, _ in texts))
    digest = hashlib.sha256()
    for name, text in texts:
        digest.update(Path(name).name.encode() + b"\0" + text.encode() + b"\0")
        _load_one(name, text, loaded)
    loaded.digest = digest.hexdigest()
    return loaded


def _load_one(name: str, text: str, loaded: LoadedFiles) -> None:
    source = SourceMap(file=name)
    if not text.strip():
        # Never a rule set without this file's rules: an emptied file, or one caught while an
        # editor was still writing it, is refused (the live rules stay; the next save reloads).
        loaded.problems.append(
            source.problem(
                (),
                "the file is empty: write its sections back (" + ", ".join(_TOP_LEVEL) + "), "
                "or delete the file if it is not needed",
            )
        )
        return
    value, problems = _parse_yaml(text, source)
    loaded.problems.extend(problems)
    if value is None:
        return
    if not isinstance(value, dict):
        sentence = "a rule file must be a mapping of sections (" + ", ".join(_TOP_LEVEL) + ")"
        if section := _section_of_list(value):
            sentence += f": write `{section}:` above the list and indent it under that line"
        loaded.problems.append(source.problem((), sentence))
        return
    for key, section in value.items():
        if key not in _TOP_LEVEL:
            loaded.problems.append(
                source.problem(
                    (key,),
                    f"unknown section `{key}`{_suggest(key, _TOP_LEVEL)}; "
                    "a rule file has: " + ", ".join(_TOP_LEVEL),
                    key=True,
                )
            )
            continue
        if key == "defaults":
            if section is None:
                continue
            spec = _convert(section, DefaultsSpec, source, ("defaults",), "defaults", loaded)
            if spec is not None:
                loaded.defaults.append(Loaded(spec, source, ("defaults",)))
            continue
        for index, item in _items(section, key, source, loaded):
            path: Path_ = (key, index)
            noun = _noun(key, item)
            spec = _convert(item, _SECTION_TYPES[key], source, path, noun, loaded)
            if spec is not None:
                getattr(loaded, key).append(Loaded(spec, source, path))


_TELLING_KEYS: Final = (
    ("sku", "catalog"),
    ("match", "rules"),
    ("id", "locations"),
    ("api", "sources"),
    ("countries", "country_groups"),
)


def _section_of_list(value: Any) -> str | None:
    """The section a file that is a bare list was meant to be, from its first item's keys."""
    first = value[0] if isinstance(value, list) and value else None
    if not isinstance(first, dict):
        return None
    return next((section for key, section in _TELLING_KEYS if key in first), None)


def _items(
    section: Any, key: str, source: SourceMap, loaded: LoadedFiles
) -> Iterator[tuple[int, Any]]:
    if section is None:
        return
    if not isinstance(section, list):
        loaded.problems.append(
            source.problem(
                (key,),
                f"`{key}` must be a list: start each "
                f"{_SECTION_NOUN[key]} with `- {_SECTION_KEY[key]}: ...`",
            )
        )
        return
    yield from enumerate(section)


def _noun(section: str, item: Any) -> str:
    noun = _SECTION_NOUN[section]
    key = _SECTION_KEY[section]
    if isinstance(item, dict) and isinstance(item.get(key), str):
        return f"{noun} `{item[key]}`"
    return noun


def _convert(
    value: Any, spec: type[T], source: SourceMap, path: Path_, noun: str, loaded: LoadedFiles
) -> T | None:
    if value is None:
        loaded.problems.append(source.problem(path, f"{noun} is empty"))
        return None
    if any(bad[: len(path)] == path for bad in source.unbuildable):
        _note_broken(value, path, loaded)
        return None
    try:
        return msgspec.convert(value, spec, strict=True)
    except msgspec.ValidationError as exc:
        loaded.problems.append(_translate(exc, source, path, noun, value, spec=spec))
        _note_broken(value, path, loaded)
        return None


def _note_broken(value: Any, path: Path_, loaded: LoadedFiles) -> None:
    """Remember the name of an item that failed, so references to it are not reported as
    references to nothing: its own error is the one to fix."""
    section = path[0] if path else None
    if isinstance(section, str) and section in _SECTION_KEY and isinstance(value, dict):
        name = value.get(_SECTION_KEY[section])
        if isinstance(name, str):
            loaded.broken.setdefault(section, set()).add(name)


# --- for other YAML files read the same way (rule tests) ----------------------------------------


def read_yaml(name: str, text: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Plain values from YAML text, where each value and key stands, and the problems found:
    other files merchandisers write (rule tests) are read and reported like rule files."""
    source = SourceMap(file=name)
    value, problems = _parse_yaml(text, source)
    return value, source, problems


def convert_located(
    value: Any, spec: type[T], source: SourceMap, path: Path_, noun: str, *, root: type[Any]
) -> tuple[T | None, Problem | None]:
    """`value` (read from `source` at `path`) as a `spec`, or the problem that stops it, as a
    `file:line:column` sentence about `noun`; `root` is the struct `path` points at, so an
    unknown key is answered with the keys it allows. A value YAML could not build was already
    reported: None, None."""
    if any(bad[: len(path)] == path for bad in source.unbuildable):
        return None, None
    try:
        return msgspec.convert(value, spec, strict=True), None
    except msgspec.ValidationError as exc:
        return None, _translate(exc, source, path, noun, value, root=root, spec=spec)


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """` (did you mean `x`?)` for the closest of `choices`, or nothing."""
    return _suggest(word, choices)
