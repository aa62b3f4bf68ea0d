"""Name resolution: the declarations of a program by kind and name.

Names are unique per kind (params, volumes, secrets) and across stages. The
first declaration of a name wins; later ones are reported with a pointer to
the first. Declarations whose text did not parse are remembered as known names,
so that references to them do not add "unknown" errors to the syntax error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aipc import codes
from aipc.diagnostics import Diagnostics, Label
from aipc.dsl import model as m


@dataclass
class Symbols:
    header: m.PipelineDecl | None = None
    params: dict[str, m.ParamDecl] = field(default_factory=dict)
    volumes: dict[str, m.VolumeDecl] = field(default_factory=dict)
    secrets: dict[str, m.SecretDecl] = field(default_factory=dict)
    stages: dict[str, m.StageDecl] = field(default_factory=dict)
    broken: dict[str, set[str]] = field(default_factory=dict)  # kind -> names that did not parse
    incomplete: set[tuple[str, str, str]] = field(default_factory=set)  # attributes dropped by the recovery
    _known: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)  # filled once collected

    def written(self, kind: str, name: str, attribute: str) -> bool:
        """Whether the source set this attribute, though its value was lost to a syntax error."""
        return (kind, name, attribute) in self.incomplete

    def known(self, kind: str) -> frozenset[str]:
        """Names of this kind that exist, parsed or not (for "unknown name" checks)."""
        cached = self._known.get(kind)
        if cached is None:
            table = {"param": self.params, "volume": self.volumes, "secret": self.secrets,
                     "stage": self.stages}[kind]
            cached = self._known[kind] = frozenset(table) | self.broken.get(kind, set())
        return cached


_WHAT = {"param": "parameter", "volume": "volume", "secret": "secret", "stage": "stage"}


def collect_declarations(program: m.Program, sink: Diagnostics) -> Symbols:
    symbols = Symbols()
    for kind, name in program.broken:
        symbols.broken.setdefault(kind, set()).add(name)
    symbols.incomplete = set(program.incomplete)
    for declaration in program.declarations:
        if isinstance(declaration, m.PipelineDecl):
            if symbols.header is not None:
                sink.error(codes.DUPLICATE_HEADER, declaration.span,
                           "a file has at most one `pipeline` header",
                           label="second header",
                           related=[Label(symbols.header.name_span, "first header here")],
                           help="merge the two headers into one")
                continue
            symbols.header = declaration
            continue
        kind, table = {
            m.ParamDecl: ("param", symbols.params),
            m.VolumeDecl: ("volume", symbols.volumes),
            m.SecretDecl: ("secret", symbols.secrets),
            m.StageDecl: ("stage", symbols.stages),
        }[type(declaration)]
        name = declaration.name.value
        if name in table:
            first = table[name]
            what = _WHAT[kind]
            sink.error(codes.DUPLICATE_NAME, declaration.name.span,
                       f"the {what} `{name}` is declared twice",
                       label="declared again here",
                       related=[Label(first.name.span, "first declared here")],
                       help=f"rename one of them; {what} names are unique"
                       + (" across all stage kinds" if kind == "stage" else ""))
            continue
        table[name] = declaration
    return symbols
