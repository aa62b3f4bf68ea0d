"""The surface model: what a .aip file says, node by node, each with its span.

This is the syntax, typed: declarations are distinct classes, values are
strings (with their interpolations), numbers (with an optional unit), bare
words, lists, maps and ranges. What an attribute *means* (which attributes a
stage accepts, which unit fits) is the compiler's business, not this module's.

Nodes are frozen pydantic models. The parser builds them with
:func:`construct` (its output is well-typed by construction, and validation
would double the cost of a large file); :mod:`aipc.dsl.format` writes a parsed
model back as canonical source that parses to an equal model.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from aipc.diagnostics import Span
from aipc.dsl.vocabulary import STAGE_KINDS


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    span: Span


class Name(Node):
    """An identifier where a declaration or reference expects one."""

    value: str


# ------------------------------------------------------------------------ values


class Interpolation(Node):
    """``${name}`` inside a string; ``name`` may be dotted (``pipeline.name``).
    ``span`` covers ``${...}``, ``name_span`` the name alone."""

    name: str
    name_span: Span


class Str(Node):
    """A string: literal text and interpolations, in order.

    ``parts`` never holds two adjacent literals nor an empty literal.
    """

    kind: Literal["string"] = "string"
    parts: tuple[Union[str, Interpolation], ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    @property
    def literal(self) -> str:
        """The text with interpolations written back as ``${name}``."""
        return "".join(p if isinstance(p, str) else "${" + p.name + "}" for p in self.parts)

    @property
    def sole_interpolation(self) -> Interpolation | None:
        """The interpolation, when the string is exactly one ``${param}``."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Interpolation):
            return self.parts[0]
        return None


class Number(Node):
    """A number as written, with the unit that follows it directly, if any."""

    kind: Literal["number"] = "number"
    text: str
    value: Union[int, float]
    unit: str | None = None


class Word(Node):
    """A bare word: a reference, an enumerated value or a boolean."""

    kind: Literal["word"] = "word"
    value: str


class ListValue(Node):
    kind: Literal["list"] = "list"
    items: tuple["Value", ...]


class Entry(Node):
    key: str
    key_span: Span
    value: "Value"


class MapValue(Node):
    kind: Literal["map"] = "map"
    entries: tuple[Entry, ...]


class RangeValue(Node):
    kind: Literal["range"] = "range"
    low: "Value"
    high: "Value"


class Reference(Node):
    """A name that refers to a declaration, each part with its span: one part
    after ``from`` (``trainer``), two joined by ``.`` after ``from``, after
    ``input`` and as a value (``gpu.h100_trainer``, ``model.metrics``,
    ``hf.token``). A bare name as a value stays a :class:`Word`."""

    kind: Literal["reference"] = "reference"
    parts: tuple[Name, ...]

    @property
    def dotted(self) -> str:
        """The reference as written without spaces: ``hf.token``."""
        return ".".join(part.value for part in self.parts)


Value = Annotated[
    Union[Str, Number, Word, ListValue, MapValue, RangeValue, Reference], Field(discriminator="kind")
]


# ------------------------------------------------------------------- block items


class Attribute(Node):
    item: Literal["attribute"] = "attribute"
    name: str
    name_span: Span
    value: Value


class Mount(Node):
    item: Literal["mount"] = "mount"
    volume: Name
    path: Str
    readonly: bool = False


class Output(Node):
    """``output NAME at "/path"``: a directory the stage writes and aipc keeps."""

    item: Literal["output"] = "output"
    name: Name
    path: Str


class Input(Node):
    """``input STAGE.OUTPUT at "/path"``: another stage's output, read-only."""

    item: Literal["input"] = "input"
    source: Reference
    path: Str


class Block(Node):
    """A nested block such as ``resources { ... }``."""

    item: Literal["block"] = "block"
    name: str
    name_span: Span
    items: tuple["Item", ...]


Item = Annotated[Union[Attribute, Mount, Output, Input, Block], Field(discriminator="item")]


# ------------------------------------------------------------------ declarations


class PipelineDecl(Node):
    decl: Literal["pipeline"] = "pipeline"
    name: str
    name_span: Span
    items: tuple[Item, ...]


class ParamDecl(Node):
    decl: Literal["param"] = "param"
    name: Name
    type: Name | None
    default: Value


class VolumeDecl(Node):
    decl: Literal["volume"] = "volume"
    name: Name
    items: tuple[Item, ...]


class SecretDecl(Node):
    decl: Literal["secret"] = "secret"
    name: Name
    items: tuple[Item, ...]


StageKind = Literal[STAGE_KINDS]  # data, train, eval, serve: the kinds grammar.lark spells


class StageDecl(Node):
    """``KIND NAME [from BASE] { ... }``; ``from_span`` is the span of ``from``."""

    decl: Literal["stage"] = "stage"
    kind: StageKind
    kind_span: Span
    name: Name
    base: Reference | None = None
    from_span: Span | None = None
    items: tuple[Item, ...]


class TemplateDecl(Node):
    """``template NAME: KIND [from BASE] { ... }``: a stage body that stages start from."""

    decl: Literal["template"] = "template"
    name: Name
    kind: StageKind
    kind_span: Span
    base: Reference | None = None
    from_span: Span | None = None
    items: tuple[Item, ...]


class ImportDecl(Node):
    """``import "PATH" [as NAME]``; without ``as``, ``alias`` is None."""

    decl: Literal["import"] = "import"
    path: Str
    alias: Name | None = None


Declaration = Annotated[
    Union[PipelineDecl, ParamDecl, VolumeDecl, SecretDecl, StageDecl, TemplateDecl, ImportDecl],
    Field(discriminator="decl"),
]


class Program(BaseModel):
    """A whole file: its declarations in source order.

    ``broken`` names the declarations whose text did not parse, by kind, so that
    references to them are not reported as unknown on top of the syntax error;
    ``incomplete`` names the attributes the error recovery dropped for want of a
    value, as ``(kind, declaration, attribute)``, so that they are not reported as
    missing on top of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    path: str
    declarations: tuple[Declaration, ...]
    broken: tuple[tuple[str, str], ...] = ()
    incomplete: tuple[tuple[str, str, str], ...] = ()


def children(node: Node):
    """The model nodes directly under ``node``, in field order (a string's interpolations included)."""
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple) and not isinstance(value, Span):
            for item in value:
                if isinstance(item, Node):
                    yield item


def walk(node: Node):
    """``node`` and every model node under it, depth first."""
    yield node
    for child in children(node):
        yield from walk(child)


def shifted(node, delta: int):
    """A copy of a model node with every span moved by ``delta`` (a chunk of a
    document re-parsed on its own, an imported file placed at its offsets)."""
    if isinstance(node, Span):
        return Span(node.start + delta, node.end + delta)
    if isinstance(node, BaseModel):
        return type(node).model_construct(**{name: shifted(value, delta) for name, value in node.__dict__.items()})
    if isinstance(node, tuple):
        return tuple(shifted(item, delta) for item in node)
    return node


# No `model_rebuild()` here: the forward references (`"Value"`, `"Item"`) are
# resolved when a schema is first needed (validation, `model_dump`), which the
# check path never does; building them all at import costs ~20 ms per process.


_new = object.__new__
_set = object.__setattr__
_FIELDS_SETS: dict[type, set[str]] = {}


def construct(cls: type[BaseModel], **values):
    """What ``cls.model_construct(**values)`` builds when ``values`` holds every
    field of ``cls`` in its declaration order, at half the cost and memory (the
    parser builds tens of thousands of nodes for a large file).

    Like ``model_construct`` it validates nothing and records every field as
    set. The set of set fields is one per class, shared by its nodes: nodes are
    frozen, and pydantic copies that set before changing it (``model_copy``).
    The tests compare both ways of building on every node kind.
    """
    fields_set = _FIELDS_SETS.get(cls)
    if fields_set is None:
        fields_set = _FIELDS_SETS[cls] = set(cls.model_fields)
    node = _new(cls)
    _set(node, "__dict__", values)
    _set(node, "__pydantic_fields_set__", fields_set)
    _set(node, "__pydantic_extra__", None)
    _set(node, "__pydantic_private__", None)
    return node
