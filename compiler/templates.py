"""Templates: a stage written once, that stages start from with `from`.

``template NAME: KIND [from BASE] { ... }`` holds attributes of a KIND stage;
``KIND NAME from TEMPLATE { ... }`` starts a stage from it. Templates are
expanded before lowering: each stage that starts from a template gets the
template's items (and its bases') merged with its own, so the IR, the
backends, the runner and the plan only ever see plain stages.

Merging (LANGUAGE.md, v1), from the farthest base to the stage, the later one
winning; the header's defaults stay the lowering's (header < template < stage).
How an item merges is read from the schema, so attributes added to its tables
merge without a change here (a test holds every attribute to a rule):

- a block (``schema.STAGE_BLOCKS``: ``resources { }``...) merges key by key, and
  each value in it (a map such as ``schedule.node`` too) is replaced whole;
- an attribute whose type is a map (:data:`MERGE_BY_TYPE`: ``env``, ``labels``,
  ``ports``) merges key by key;
- any other attribute is replaced; ``command`` and ``script``, the two ways to
  say what runs, replace each other (and so do the kinds of a ``health { }``
  check, ``http``, ``tcp`` and ``command``);
- statements (``schema.STATEMENTS``: ``mount``, ``output``, ``input``) add to the
  template's, and one at the same path replaces the template's.

Names a template uses are resolved where the stage that uses it is declared:
the stage's lowering checks the merged items (see :class:`aipc.diagnostics.Use`:
a problem in a template's text is reported there with "used here" at the
stage, once per use). Each template is also checked on its own, without a
user: what is wrong whoever uses it (a wrong type, an attribute of another
kind) is reported once, at the template, and also in a library checked alone.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass, field
from typing import Callable

from aipc import codes
from aipc.compiler import schema
from aipc.compiler.imports import Imports, Module, Reader, load_imports
from aipc.compiler.lower import lower_detached_stage
from aipc.compiler.schema import Type
from aipc.compiler.values import did_you_mean
from aipc.diagnostics import Diagnostics, Label, Span, Use, locate
from aipc.dsl import model as m


class Merge(enum.Enum):
    REPLACE = "replaced by the stage's"
    KEYS = "merged key by key, the stage's keys winning"
    ADD = "added to the template's; one at the same path replaces it"


# How an attribute of each type merges: maps key by key, everything else replaced.
MERGE_BY_TYPE: dict[Type, Merge] = {
    Type.STRING: Merge.REPLACE, Type.PATH: Merge.REPLACE, Type.STRING_LIST: Merge.REPLACE,
    Type.STRING_MAP: Merge.KEYS, Type.STAGE_LIST: Merge.REPLACE, Type.SECRET_LIST: Merge.REPLACE,
    Type.INT: Merge.REPLACE, Type.BYTES: Merge.REPLACE, Type.CPU: Merge.REPLACE,
    Type.DURATION: Merge.REPLACE, Type.CHOICE: Merge.REPLACE, Type.BOOL: Merge.REPLACE, Type.PORT: Merge.REPLACE,
    Type.PORT_MAP: Merge.KEYS, Type.MAP_LIST: Merge.REPLACE, Type.STAGE_NAME: Merge.REPLACE,
    Type.USER: Merge.REPLACE,
}
# Attributes that fill one slot, as alternatives: a stage's `script` or `args`
# replaces a template's `command` (what runs: at most one of them), and in a `health { }` block a `tcp` or `command` check its
# `http` one (the block holds exactly one of them).
SAME_SLOT = {"script": "command", "args": "command"}
SAME_SLOT_IN_BLOCK = {"health": {"tcp": "http", "command": "http"}}
# A block's short form (v0): `health = "/path"` is `health { http = "/path" }`, so a
# stage's `health { start = 30m }` over a template's `health = "/path"` keeps the path.
SHORT_FORM = {"health": "http"}

# What a template's body cannot be blamed for on its own: names that its users
# declare (any "unknown ..." code but attributes) and required attributes its
# users may set.
LATE_BOUND = frozenset(
    {code.id for code in codes.CODES.values()
     if code.title.startswith("unknown ") and code not in (codes.UNKNOWN_ATTRIBUTE, codes.UNKNOWN_TEMPLATE)}
    | {codes.MISSING_ATTRIBUTE.id}
)


def merge_rule(name: str) -> Merge:
    """How a stage's item called ``name`` (an attribute, a block or a statement's
    keyword) merges over a template's."""
    if name in schema.STATEMENTS:
        return Merge.ADD
    if name in schema.STAGE_BLOCKS:
        return Merge.KEYS
    spec = schema.STAGE.get(name)
    return MERGE_BY_TYPE.get(spec.type, Merge.REPLACE) if spec is not None else Merge.REPLACE


# --------------------------------------------------------------------------- merging


def merge_items(base: tuple, over: tuple) -> tuple:
    """A stage body's items over another's (a template's), by the rules above."""
    return _merge(base, over, _slot, _combine)


def _merge(base: tuple, over: tuple, slot_of: Callable, combine: Callable) -> tuple:
    """``{**base, **over}`` for items keyed by ``slot_of`` (None: no key, always
    kept): an item of ``over`` takes the place of the first of ``base`` in its
    slot (combined with it), the rest of ``over`` follows in order. Items repeated
    within one side stay, for the lowering to report."""
    if not base:
        return tuple(over)
    winners: dict = {}
    for item in over:
        slot = slot_of(item)
        if slot is not None:
            winners.setdefault(slot, item)
    out, placed = [], set()
    for item in base:
        slot = slot_of(item)
        if slot is None or slot not in winners:
            out.append(item)
        elif slot not in placed:
            placed.add(slot)
            out.append(combine(item, winners[slot]))
    for item in over:
        slot = slot_of(item)
        if slot is None or slot not in placed or winners[slot] is not item:
            out.append(item)
    return tuple(out)


def _slot(item):
    if isinstance(item, (m.Mount, m.Output, m.Input)):
        return ("path", _normal_path(item.path))
    return ("item", SAME_SLOT.get(item.name, item.name))


def _normal_path(path: m.Str) -> str:
    text = path.literal
    return "/" + posixpath.normpath(text).lstrip("/") if text.startswith("/") else text


def _combine(base, over):
    if _is_block(base) and _is_block(over) and base.name == over.name and not (_is_short(base) and _is_short(over)):
        alternatives = SAME_SLOT_IN_BLOCK.get(over.name, {})

        def inner_slot(item):
            if not isinstance(item, (m.Attribute, m.Block)):
                return None
            return ("item", alternatives.get(item.name, item.name))

        items = _merge(_block_items(base), _block_items(over), inner_slot, _replace)
        return m.construct(m.Block, span=over.span, item="block", name=over.name, name_span=over.name_span,
                           items=items)
    if (isinstance(base, m.Attribute) and isinstance(over, m.Attribute) and merge_rule(over.name) is Merge.KEYS
            and isinstance(base.value, m.MapValue) and isinstance(over.value, m.MapValue)):
        entries = _merge(base.value.entries, over.value.entries, _entry_key, _replace)
        value = m.construct(m.MapValue, span=over.value.span, kind="map", entries=entries)
        return m.construct(m.Attribute, span=over.span, item="attribute", name=over.name,
                           name_span=over.name_span, value=value)
    return over


def _entry_key(entry: m.Entry) -> str:
    return entry.key


def _replace(base, over):
    return over


def _is_block(item) -> bool:
    """A block, one written as a map (`resources = { cpu = 2 }`), or its short form."""
    return isinstance(item, m.Block) or (
        isinstance(item, m.Attribute) and item.name in schema.STAGE_BLOCKS and isinstance(item.value, m.MapValue)
    ) or _is_short(item)


def _is_short(item) -> bool:
    return isinstance(item, m.Attribute) and item.name in SHORT_FORM and not isinstance(item.value, m.MapValue)


def _block_items(item) -> tuple:
    if isinstance(item, m.Block):
        return item.items
    if _is_short(item):
        return (m.construct(m.Attribute, span=item.span, item="attribute", name=SHORT_FORM[item.name],
                            name_span=item.name_span, value=item.value),)
    return tuple(m.construct(m.Attribute, span=e.span, item="attribute", name=e.key, name_span=e.key_span,
                             value=e.value) for e in item.value.entries)


# ------------------------------------------------------------------------- resolving


@dataclass(frozen=True, eq=False)
class Layer:
    """A template a stage starts from, directly or through another: the name it is
    used by (``trainer``, ``gpu.h100_trainer``), its file and its declaration."""

    name: str
    module: Module
    declaration: m.TemplateDecl


@dataclass
class Expansion:
    """The program with every stage's templates merged in, and what the lowering and
    the editor need to know about it."""

    program: m.Program
    uses: dict[str, Use] = field(default_factory=dict)  # stage -> the templates it was checked with
    unresolved: frozenset[str] = frozenset()  # stages whose templates are not all known
    chains: dict[str, tuple[Layer, ...]] = field(default_factory=dict)  # stage -> its templates, nearest first
    imports: Imports | None = None

    @property
    def files(self) -> tuple:
        return self.imports.files if self.imports is not None else ()

    @property
    def templates(self) -> int:
        """How many templates the checked file declares."""
        return len(self.imports.root.templates) if self.imports is not None else 0


def expand(program: m.Program, sink: Diagnostics, read: Reader | None = None) -> Expansion:
    """Read the program's imports and expand its stages' templates, reporting every
    problem (imports, unknown templates, kinds, cycles, each template's own errors)."""
    if not any(isinstance(d, (m.TemplateDecl, m.ImportDecl)) or (isinstance(d, m.StageDecl) and d.base is not None)
               for d in program.declarations):
        return Expansion(program)
    imports = load_imports(program, program.path, read, sink)
    templates = _Templates(sink)
    for module in imports.modules:
        for template in module.templates.values():
            templates.check_alone(module, template)
    expansion = Expansion(program, imports=imports)
    unresolved = set()
    declarations = []
    for declaration in program.declarations:
        if isinstance(declaration, m.StageDecl) and declaration.base is not None:
            declaration = _expand_stage(declaration, imports.root, templates, expansion, unresolved)
        declarations.append(declaration)
    expansion.program = program.model_copy(update={"declarations": tuple(declarations)})
    expansion.unresolved = frozenset(unresolved)
    return expansion


def _expand_stage(declaration: m.StageDecl, root: Module, templates: "_Templates", expansion: Expansion,
                  unresolved: set) -> m.StageDecl:
    name = declaration.name.value
    found = templates.lookup(root, declaration.base)
    if found is None or not templates.same_kind(declaration, found):
        unresolved.add(name)
        return declaration
    chain, complete = templates.chain(found)
    if not complete:
        unresolved.add(name)
    expansion.chains.setdefault(name, chain)
    expansion.uses.setdefault(name, Use(tuple(layer.declaration.span for layer in chain),
                                        Label(declaration.base.span, "used here")))
    return declaration.model_copy(update={"items": merge_items(_merged(chain), declaration.items)})


def _merged(chain: tuple[Layer, ...]) -> tuple:
    """The items of a chain of templates (nearest first), merged from the farthest."""
    items: tuple = ()
    for layer in reversed(chain):
        items = merge_items(items, layer.declaration.items)
    return items


class _Templates:
    """Looks templates up and walks their chains, reporting each problem once."""

    def __init__(self, sink: Diagnostics) -> None:
        self.sink = sink
        self.chains: dict[int, tuple[tuple[Layer, ...], bool]] = {}  # id(declaration) -> (chain, complete)

    def lookup(self, module: Module, reference: m.Reference) -> Layer | None:
        """The template a `from` names in ``module``'s file, or None (reported)."""
        parts = [part.value for part in reference.parts]
        templates = module.templates
        if len(parts) == 1:
            name = parts[0]
            if name in templates:
                return Layer(name, module, templates[name])
            if ("template", name) in module.program.broken:
                self.sink.count_reported_error()
            elif name in module.import_declarations:
                library = module.imports.get(name)
                choices = sorted(library.templates) if library is not None else []
                self.sink.error(codes.UNKNOWN_TEMPLATE, reference.span, f"`{name}` is an import, not a template",
                                label="not a template",
                                help=f"name one of its templates: `{name}.{choices[0]}`" if choices
                                else "name a template of it: `from NAME.TEMPLATE`")
            else:
                self.sink.error(codes.UNKNOWN_TEMPLATE, reference.span, f"unknown template `{name}`",
                                label="not declared",
                                help=did_you_mean(name, templates) or f"declare it: `template {name}: KIND {{ ... }}`")
            return None
        alias, name = parts
        if alias not in module.import_declarations:
            self.sink.error(codes.UNKNOWN_TEMPLATE, reference.span, f"unknown template `{alias}.{name}`",
                            label=f"no import is named `{alias}`",
                            help=did_you_mean(alias, module.import_declarations)
                            or f'import its file: `import "PATH" as {alias}`')
            return None
        library = module.imports.get(alias)
        if library is None:  # the import failed, and said why
            self.sink.count_reported_error()
            return None
        if name in library.templates:
            return Layer(f"{alias}.{name}", library, library.templates[name])
        if ("template", name) in library.program.broken:
            self.sink.count_reported_error()
            return None
        path = module.import_declarations[alias].path.literal
        self.sink.error(codes.UNKNOWN_TEMPLATE, reference.parts[1].span, f"`{path}` has no template `{name}`",
                        label="not declared there",
                        help=did_you_mean(name, library.templates) or (
                            "it declares " + ", ".join(f"`{n}`" for n in sorted(library.templates))
                            if library.templates else "it declares no template"))
        return None

    def same_kind(self, declaration, found: Layer) -> bool:
        """Whether a stage or template is of its base's kind (reported when not)."""
        kind = found.declaration.kind
        if kind == declaration.kind:
            return True
        what = "stage" if isinstance(declaration, m.StageDecl) else "template"
        article = "an" if declaration.kind[0] in "aeiou" else "a"
        self.sink.error(codes.TEMPLATE_KIND_MISMATCH, declaration.base.span,
                        f"`{found.name}` is a template for `{kind}` stages, not for {article} `{declaration.kind}` {what}",
                        label=f"a `{kind}` template",
                        related=[Label(found.declaration.kind_span, f"`{found.name}` is for `{kind}` stages")],
                        help=f"start from {article} `{declaration.kind}` template, or make this a `{kind}` {what}")
        return False

    def chain(self, start: Layer) -> tuple[tuple[Layer, ...], bool]:
        """A template and its bases, nearest first, and whether every base was found."""
        path: list[Layer] = []
        on_path: dict[int, int] = {}
        layer = start
        tail: tuple[tuple[Layer, ...], bool] = ((), True)
        cycle_from = None
        while True:
            key = id(layer.declaration)
            if key in self.chains:
                tail = self.chains[key]
                break
            if key in on_path:
                cycle_from = on_path[key]
                self._report_cycle(path[cycle_from:])
                tail = ((), False)
                break
            on_path[key] = len(path)
            path.append(layer)
            base = layer.declaration.base
            if base is None:
                break
            found = self.lookup(layer.module, base)
            if found is None or not self.same_kind(layer.declaration, found):
                tail = ((), False)
                break
            layer = found
        end = len(path) if cycle_from is None else cycle_from
        for index, walked in enumerate(path):
            if index >= end:  # in the cycle: itself only
                self.chains[id(walked.declaration)] = ((walked,), False)
            else:
                self.chains[id(walked.declaration)] = (tuple(path[index:end]) + tail[0], tail[1])
        chain, complete = self.chains[id(start.declaration)]
        return (start, *chain[1:]), complete

    def _report_cycle(self, cycle: list[Layer]) -> None:
        names = [layer.declaration.name.value for layer in cycle] + [cycle[0].declaration.name.value]
        last = cycle[-1].declaration
        self.sink.error(codes.TEMPLATE_CYCLE, last.base.span, "template cycle: " + " -> ".join(names),
                        label=f"`{names[-2]}` starts from `{names[-1]}`",
                        related=[Label(layer.declaration.base.span,
                                       f"`{layer.declaration.name.value}` starts from `{names[i + 1]}`")
                                 for i, layer in enumerate(cycle[:-1])],
                        help="each template starts from the next one; remove one of these `from`s")

    def check_alone(self, module: Module, template: m.TemplateDecl) -> None:
        """Check a template's body (its bases merged in) as a stage of its kind with no
        pipeline around it; keep what is wrong whoever uses it, found in its own text."""
        chain, _ = self.chain(Layer(template.name.value, module, template))
        stage = m.construct(m.StageDecl, span=template.span, decl="stage", kind=template.kind,
                            kind_span=template.kind_span, name=template.name, base=None, from_span=None,
                            items=_merged(chain))
        scratch = Diagnostics(self.sink.file)
        lower_detached_stage(stage, scratch)
        file, region = locate(template.span)
        file = file or self.sink.file
        self.sink.extend(d for d in scratch if d.code not in LATE_BOUND and d.file == file and d.span is not None
                         and region.start <= d.span.start and d.span.end <= region.end)
