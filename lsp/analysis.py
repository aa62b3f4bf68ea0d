"""What the editor asks about a document: names, their uses, hover text, outline.

Pure functions over a :class:`~aipc.lsp.incremental.ParsedDocument`; they take
and return real character offsets and know nothing of the protocol. The
server turns their answers into LSP objects. Names and their uses come from
the compiler's resolver (:func:`aipc.compiler.resolve.symbol_table`), what
attributes mean from its schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from aipc.compiler import matrix, resolve, schema, units
from aipc.compiler.schema import AttributeSpec
from aipc.diagnostics import Span
from aipc.dsl import model as m
from aipc.lsp.incremental import ParsedDocument

STAGE_KIND_DOCS = {
    "data": "a batch stage that prepares data; it runs to completion",
    "train": "a batch stage that trains a model; it runs to completion",
    "eval": "a batch stage that evaluates a model; it runs to completion",
    "serve": "a service: it runs until stopped, on `port`, probed at `health`",
}
KEYWORD_DOCS = {
    "pipeline": '`pipeline "name" { ... }`: the optional header (description, namespace, labels, '
                "registry, a default image)",
    "param": "`param NAME: TYPE = DEFAULT`: a parameter, used as `${NAME}` and overridable with "
             "`aipc compile -p NAME=VALUE`",
    "volume": "`volume NAME { size, access, class }`, `{ host = \"path\" }` or `{ claim = \"pvc\" }`: "
              "storage that stages mount",
    "secret": "`secret NAME { keys = [...] }`: keys that become environment variables of the stages "
              "listing the secret; values never appear in any output",
    **{kind: f"`{kind} NAME {{ ... }}`: {doc}" for kind, doc in STAGE_KIND_DOCS.items()},
    "import": '`import "PATH" [as NAME]`: the templates of another file, used as `NAME.TEMPLATE`; '
              "NAME defaults to the file's stem",
    "template": "`template NAME: KIND [from BASE] { ... }`: attributes for stages of KIND, which start from "
                "it with `KIND NAME from TEMPLATE`; it never runs by itself",
    "from": "`KIND NAME from TEMPLATE { ... }`: the stage starts from the template's attributes; its own win",
    "as": '`import "PATH" as NAME`: the name the imported templates are used by (`NAME.TEMPLATE`)',
    **{keyword: spec.documentation for keyword, spec in schema.STATEMENTS.items()},
}
_BLOCK_PURPOSES = {
    "resources": "what the stage requests and is limited to",
    "health": "how and when the service is checked (serve stages)",
    "schedule": "where the stage's pods may run and how they wait: a node selector, tolerations, a "
                "PriorityClass and a Kueue queue (in the `pipeline` header: defaults for every stage)",
    "autoscale": "how `replicas = MIN..MAX` scales: on CPU use (`cpu`, percent) or a per-pod `metric`",
    "artifacts": "the claim that holds every stage's outputs on Kubernetes and Argo (in the header)",
}
BLOCK_DOCS = {  # the blocks of stages and of the header, as the schema has them
    name: f"`{name} {{ {', '.join(table)} }}`" + (f": {_BLOCK_PURPOSES[name]}" if name in _BLOCK_PURPOSES else "")
    for blocks in schema.BLOCKS.values() for name, table in blocks.items()
}
BLOCK_DOCS["matrix"] = schema.MATRIX_DOC  # its attributes are the axes the user names
REFERENCE_KINDS = tuple(resolve.WHAT)
_WHAT = {**resolve.WHAT, "pipeline": "pipeline"}


@dataclass(frozen=True)
class Declared:
    kind: str  # stage, volume, secret, param, pipeline, template, import
    name: str
    name_span: Span  # real offsets
    span: Span
    node: object
    detail: str = ""


@dataclass(frozen=True)
class Place:
    """The innermost thing under the cursor that hover cares about."""

    declaration: object | None = None
    block: str | None = None  # a nested block's name (resources)
    attribute: object | None = None  # m.Attribute or m.Entry (in `resources = { ... }`)
    spec: AttributeSpec | None = None
    on_name: bool = False
    value: object | None = None  # the scalar under the cursor


@dataclass
class Index:
    """Every declared name and every use of one, in real offsets."""

    document: ParsedDocument
    declared: list[Declared] = field(default_factory=list)
    uses: list[resolve.Reference] = field(default_factory=list)
    imported: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # import -> its templates' (name, kind)

    def first(self, kind: str, name: str) -> Declared | None:
        for item in self.declared:
            if item.kind == kind and item.name == name:
                return item
        return None

    def names(self, kind: str) -> list[Declared]:
        seen, out = set(), []
        for item in self.declared:
            if item.kind == kind and item.name not in seen:
                seen.add(item.name)
                out.append(item)
        return out

    def known_names(self, kind: str) -> list[tuple[str, str]]:
        """(name, detail) of every declared name of a kind, those whose declaration
        does not parse right now included."""
        out = [(d.name, d.detail) for d in self.names(kind)]
        seen = {name for name, _ in out}
        for broken_kind, name in self.document.program.broken:
            if broken_kind == kind and name and name not in seen:
                seen.add(name)
                out.append((name, f"{kind} (being edited)"))
        return out

    def name_at(self, offset: int) -> tuple[str, str, Span] | None:
        """The (kind, name, span) of a declared name or a use under the cursor."""
        for use in self.uses:
            if use.span.start <= offset <= use.span.end:
                return use.kind, use.name, use.span
        for item in self.declared:
            if item.kind in REFERENCE_KINDS and item.name_span.start <= offset <= item.name_span.end:
                return item.kind, item.name, item.name_span
        return None

    def definition(self, offset: int) -> Declared | None:
        found = self.name_at(offset)
        return self.first(found[0], found[1]) if found else None

    def references(self, offset: int, include_declaration: bool = True) -> list[Span]:
        found = self.name_at(offset)
        if found is None:
            return []
        kind, name, _ = found
        spans = [u.span for u in self.uses if u.kind == kind and u.name == name]
        if include_declaration:
            spans += [d.name_span for d in self.declared if d.kind == kind and d.name == name]
        return sorted(set(spans))


def build_index(document: ParsedDocument) -> Index:
    """The resolver's symbol table of the document, in real offsets, with details for the editor."""
    index = Index(document)
    real = document.real_span
    table = resolve.symbol_table(document.program)
    for declared in table.declared:
        index.declared.append(Declared(declared.kind, declared.name, real(declared.name_span),
                                       real(declared.node.span), declared.node, _detail(declared.node)))
    index.uses = [dataclasses.replace(reference, span=real(reference.span)) for reference in table.references]
    return index


def _detail(declaration) -> str:
    if isinstance(declaration, m.ParamDecl):
        return declaration.type.value if declaration.type is not None else "param"
    if isinstance(declaration, m.StageDecl):
        return f"{declaration.kind} stage"
    if isinstance(declaration, m.TemplateDecl):
        return f"{declaration.kind} template"
    if isinstance(declaration, m.ImportDecl):
        return "import " + declaration.path.literal
    return declaration.decl


# --------------------------------------------------------------------------- places


def _contains(span: Span, offset: int) -> bool:
    return span.start <= offset <= span.end


def place_at(document: ParsedDocument, offset: int) -> Place | None:
    """Where ``offset`` (real) is: which declaration, block, attribute and value."""
    virtual = document.virtual(offset)
    for declaration in document.program.declarations:
        if _contains(declaration.span, virtual):
            return _place_in(declaration, virtual)
    return None


def _table(declaration, block: str | None) -> dict[str, AttributeSpec]:
    if block is not None:
        blocks = schema.HEADER_BLOCKS if isinstance(declaration, m.PipelineDecl) else schema.STAGE_BLOCKS
        return blocks.get(block, {})
    return {m.PipelineDecl: schema.HEADER, m.VolumeDecl: schema.VOLUME, m.SecretDecl: schema.SECRET,
            m.StageDecl: schema.STAGE, m.TemplateDecl: schema.STAGE}.get(type(declaration), {})


def _place_in(declaration, offset: int) -> Place:
    items = getattr(declaration, "items", ())
    block = None
    for item in items:
        if isinstance(item, m.Block) and _contains(item.span, offset):
            if _contains(item.name_span, offset):
                return Place(declaration, item.name, on_name=True)
            block, items = item.name, item.items
            break
    for item in items:
        if isinstance(item, m.Attribute) and _contains(item.span, offset):
            table = _table(declaration, block)
            owner = {m.StageDecl: "stage", m.TemplateDecl: "stage", m.PipelineDecl: "pipeline"}.get(type(declaration), "")
            if block is None and isinstance(item.value, m.MapValue) and item.name in schema.blocks_for(owner) \
                    and not _contains(item.name_span, offset):
                for entry in item.value.entries:
                    if _contains(entry.span, offset):
                        spec = schema.STAGE_BLOCKS[item.name].get(entry.key)
                        return Place(declaration, item.name, entry, spec,
                                     _contains(entry.key_span, offset), _scalar_at(entry.value, offset))
            return Place(declaration, block, item, table.get(item.name),
                         _contains(item.name_span, offset), _scalar_at(item.value, offset))
    return Place(declaration, block)


def _scalar_at(value, offset: int):
    if isinstance(value, m.RangeValue):
        return _scalar_at(value.low, offset) or _scalar_at(value.high, offset)
    if isinstance(value, (m.ListValue,)):
        for item in value.items:
            found = _scalar_at(item, offset)
            if found is not None:
                return found
        return None
    if isinstance(value, (m.Number, m.Word, m.Str)) and _contains(value.span, offset):
        return value
    return None


# ---------------------------------------------------------------------------- hover


def hover(document: ParsedDocument, index: Index, offset: int,
          merged: Callable[[str], str | None] | None = None) -> tuple[str, Span] | None:
    """Markdown for what is under the cursor, and the span it describes. ``merged``
    describes a stage that starts from a template, its templates merged in."""
    found = index.name_at(offset)
    if found is not None:
        kind, name, span = found
        declared = index.first(kind, name)
        if declared is not None and kind == "stage" and declared.node.base is not None and merged is not None:
            text = merged(name)
            if text is not None:
                return text, span
        if declared is not None:
            return _describe_declaration(document, declared), span
        return f"unknown {_WHAT[kind]} `{name}`", span
    word = _word_at(document.text, offset)
    place = place_at(document, offset)
    if place is not None and place.attribute is not None and (place.on_name or place.value is not None):
        return _describe_attribute(document, place), _attribute_span(document, place)
    if place is not None and place.on_name and place.block in BLOCK_DOCS:
        return BLOCK_DOCS[place.block], word[1] if word else Span(offset, offset)
    if word is not None and word[0] in KEYWORD_DOCS and _is_keyword_use(document, word[1]):
        return KEYWORD_DOCS[word[0]], word[1]
    return None


def _attribute_span(document: ParsedDocument, place: Place) -> Span:
    if place.value is not None and not place.on_name:
        return document.real_span(place.value.span)
    attribute = place.attribute
    return document.real_span(attribute.key_span if isinstance(attribute, m.Entry) else attribute.name_span)


def _describe_attribute(document: ParsedDocument, place: Place) -> str:
    attribute = place.attribute
    name = attribute.key if isinstance(attribute, m.Entry) else attribute.name
    spec = place.spec
    lines = []
    value = place.value
    if spec is not None and value is not None and not place.on_name:
        normalised = describe_quantity(spec, value)
        if normalised:
            lines += [normalised, ""]
        meaning = spec.explain(value.literal) if spec.explain and isinstance(value, m.Str) else None
        if meaning:
            lines += [meaning, ""]
    if spec is None and place.block == "matrix":
        return f"**`{name}`**: an axis of the matrix; each instance sees one of its values as `${{matrix.{name}}}`"
    if spec is None:
        where = f"`{place.block}`" if place.block else "here"
        lines.append(f"**`{name}`**: not an attribute {where}")
        return "\n".join(lines)
    where = _applies_to(spec, place)
    what = "one of " + ", ".join(f"`{c}`" for c in spec.choices) if spec.choices else spec.type.value
    lines.append(f"**`{name}`**: {what}" + (f" ({where})" if where else ""))
    lines += ["", spec.doc]
    if spec.ranges:
        lines += ["", "`LOW..HIGH` is the request..limit range; a single value sets both."]
    if spec.example:
        lines += ["", "```aip", spec.example, "```"]
    return "\n".join(lines)


def _applies_to(spec: AttributeSpec, place: Place) -> str:
    if not isinstance(place.declaration, (m.StageDecl, m.TemplateDecl)) or place.block is not None:
        return ""
    kind = place.declaration.kind
    if kind not in spec.kinds:
        allowed = "serve stages" if spec.kinds == schema.SERVE else "batch stages"
        return f"only for {allowed}, not `{kind}`"
    if spec.kinds == schema.SERVE:
        return "serve stages"
    if spec.kinds == schema.BATCH:
        return "batch stages"
    return ""


def describe_quantity(spec: AttributeSpec, value) -> str | None:
    """``16Gi = 17179869184 bytes``: a quantity in its base unit, or why it is not one."""
    kind = spec.type.quantity
    if kind is None or kind is units.Kind.COUNT or not isinstance(value, m.Number):
        return None
    try:
        amount = units.parse(kind, value.text)
    except units.UnitError as error:
        return f"`{value.text}`: {error.message}" + (f" ({error.help})" if error.help else "")
    if kind is units.Kind.BYTES:
        canonical = units.format_bytes(amount)
        extra = f" ({canonical})" if canonical != value.text else ""
        return f"`{value.text}` = {amount} bytes{extra}"
    if kind is units.Kind.CPU:
        cores = amount / 1000
        shown = f"{cores:g} core" + ("" if cores == 1 else "s")
        return f"`{value.text}` = {shown} ({amount} millicores)"
    return f"`{value.text}` = {amount} seconds ({units.format_duration(amount)})"


def _describe_declaration(document: ParsedDocument, declared: Declared) -> str:
    text = document.text[declared.span.start:declared.span.end]
    lines = text.split("\n")
    if len(lines) > 12:
        lines = lines[:1] + ["  ..."]
    head = {"stage": f"**{declared.detail}** `{declared.name}`",
            "volume": f"**volume** `{declared.name}`", "secret": f"**secret** `{declared.name}`",
            "param": f"**parameter** `{declared.name}`",
            "pipeline": f"**pipeline** `{declared.name}`",
            "template": f"**{declared.detail}** `{declared.name}`",
            "import": f"**import** `{declared.name}`"}[declared.kind]
    out = [head, "", "```aip", *lines, "```"]
    if declared.kind == "stage":
        out += ["", STAGE_KIND_DOCS[declared.node.kind].capitalize() + "."]
        out += instances(document.program, declared.name)
    return "\n".join(out)


HOVER_INSTANCES = 20  # instances a hover lists by name


def instances(program: m.Program, stage: str) -> list[str]:
    """A matrix stage's instances, for its hover (a stage from a template: in the
    program with its templates merged in)."""
    names = matrix.instance_names(program).get(stage)
    if not names:
        return []
    shown = ", ".join(f"`{name}`" for name in names[:HOVER_INSTANCES])
    more = f", and {len(names) - HOVER_INSTANCES} more" if len(names) > HOVER_INSTANCES else ""
    return ["", f"Runs as {len(names)} instance{'s' if len(names) != 1 else ''}: {shown}{more}."]


def _word_at(text: str, offset: int) -> tuple[str, Span] | None:
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    end = offset
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return (text[start:end], Span(start, end)) if end > start else None


def _is_keyword_use(document: ParsedDocument, span: Span) -> bool:
    """Whether a keyword-looking word is used as the keyword (not as a name)."""
    virtual = document.virtual(span.start)
    for declaration in document.program.declarations:
        if isinstance(declaration, (m.StageDecl, m.TemplateDecl)) and virtual in (
                declaration.kind_span.start, declaration.from_span and declaration.from_span.start):
            return True
        if declaration.span.start == virtual:
            return True
        if isinstance(declaration, m.ImportDecl) and declaration.alias is not None \
                and declaration.path.span.end < virtual < declaration.alias.span.start:
            return True  # `as`
        for node in m.walk(declaration):
            if isinstance(node, (m.Mount, m.Output, m.Input)) and node.span.start == virtual:
                return True
    return False


# -------------------------------------------------------------------------- outline


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # pipeline, param, volume, secret, stage, template, import, attribute, block, mount, output, input
    detail: str
    span: Span
    selection: Span
    children: tuple["Symbol", ...] = ()


def outline(document: ParsedDocument, index: Index) -> list[Symbol]:
    """The declarations, each with its attributes, mounts and blocks."""
    out = []
    for declared in index.declared:
        children = tuple(_item_symbol(document, item) for item in getattr(declared.node, "items", ()))
        out.append(Symbol(declared.name, declared.kind, declared.detail, declared.span, declared.name_span,
                          children))
    return out


def _item_symbol(document: ParsedDocument, item) -> Symbol:
    real = document.real_span
    if isinstance(item, (m.Mount, m.Output, m.Input)):
        detail = document.text[real(item.path.span).start:real(item.path.span).end]
        if isinstance(item, m.Mount):
            return Symbol(f"mount {item.volume.value}", "mount", detail + (" readonly" if item.readonly else ""),
                          real(item.span), real(item.volume.span))
        subject = item.name if isinstance(item, m.Output) else item.source
        text = subject.value if isinstance(subject, m.Name) else subject.dotted
        return Symbol(f"{item.item} {text}", item.item, detail, real(item.span), real(subject.span))
    if isinstance(item, m.Block):
        children = tuple(_item_symbol(document, inner) for inner in item.items)
        return Symbol(item.name, "block", "", real(item.span), real(item.name_span), children)
    value = real(item.value.span)
    detail = document.text[value.start:value.end].split("\n")[0]
    return Symbol(item.name, "attribute", detail[:60], real(item.span), real(item.name_span))
