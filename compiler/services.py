"""Serve stages as other stages reach them.

``${STAGE.host}``, ``${STAGE.port}`` and ``${STAGE.url}`` in a stage's strings
become :class:`aipc.compiler.ir.ServiceRef` parts, which each target renders its
own way (the host is the same name everywhere; the port is the container's on a
Docker network and the Service's in a cluster). The built-ins ``pipeline``,
``stage`` and ``matrix`` win over a stage of that name.

A string that spells a generated service name by hand (``http://my_demo-api:8080``
or ``${pipeline.name}-api``) gets warning W120 suggesting the reference: the
derived name is easy to get wrong, and the port differs per target.

The evaluator (:mod:`aipc.compiler.values`) calls :meth:`Services.reference` and
:meth:`Services.check_spelled`; lowering builds the :class:`Services` of a
program before its stages, since a stage may refer to one declared after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from aipc import codes
from aipc.compiler import ir
from aipc.compiler.values import INVALID, did_you_mean
from aipc.diagnostics import Diagnostics, Label, Span
from aipc.dsl import model as m

_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9_-]*")
_NAME_CHARACTER = re.compile(r"[A-Za-z0-9_.-]")


@dataclass
class Services:
    """What ``${STAGE.FIELD}`` may refer to in one program."""

    pipeline: str  # the pipeline's name, as `${pipeline.name}` gives it
    kinds: Mapping[str, str]  # every declared stage: its kind
    ports: Mapping[str, tuple[int, int]]  # serve stages with a valid port: (port, expose)
    spans: Mapping[str, Span] = field(default_factory=dict)  # declarations' names
    others: Mapping[str, str] = field(default_factory=dict)  # other declared names: what they are
    swept: frozenset[str] = frozenset()  # matrix stages: each instance is a service of its own

    def __post_init__(self) -> None:
        # how a program may write the pipeline's part of a service name: as written, as in object names
        self.spellings = tuple(dict.fromkeys((self.pipeline.lower(), ir.dns_label(self.pipeline))))
        self.serving = [name for name, kind in self.kinds.items() if kind == "serve"]

    # ${STAGE.FIELD} ----------------------------------------------------------------

    def reference(self, part: m.Interpolation, sink: Diagnostics, allowed: bool) -> ir.ServiceRef | Any:
        """The address ``part`` names, or INVALID after saying why not."""
        stage, _, rest = part.name.partition(".")
        stage_span = Span(part.name_span.start, part.name_span.start + len(stage))
        kind = self.kinds.get(stage)
        if kind == "broken":  # its declaration did not parse, which is reported
            sink.count_reported_error()
            return INVALID
        if kind is None:
            what = self.others.get(stage)
            if what is not None:
                sink.error(codes.NOT_A_SERVICE, stage_span, f"`{stage}` is a {what}, not a serve stage: "
                           f"`${{{part.name}}}` names no address",
                           label=f"a {what}", help=self._suggestion(stage))
                return INVALID
            sink.error(codes.UNKNOWN_STAGE, stage_span, f"unknown stage `{stage}` in `${{{part.name}}}`",
                       label="not declared", help=self._suggestion(stage))
            return INVALID
        if kind != "serve":
            sink.error(codes.NOT_A_SERVICE, stage_span,
                       f"`{stage}` is a `{kind}` stage: it runs to completion and has no address",
                       label="not a serve stage", related=[Label(self.spans[stage], f"`{stage}` is declared here")]
                       if stage in self.spans else (),
                       help="only serve stages have `${STAGE.host}`, `${STAGE.port}` and `${STAGE.url}`; "
                       "to wait for a batch stage, list it in `after`")
            return INVALID
        if stage in self.swept:
            sink.error(codes.NOT_A_SERVICE, stage_span,
                       f"`{stage}` is a matrix stage: each of its instances is a service with an address of "
                       f"its own, and `${{{part.name}}}` cannot say which",
                       label="a matrix of services",
                       related=[Label(self.spans[stage], f"`{stage}` is declared here")] if stage in self.spans else (),
                       help=f"give the instances' addresses to this stage another way (a parameter), or serve "
                       f"one `{stage}` without a matrix")
            return INVALID
        if rest not in ir.ADDRESS_FIELDS:
            field_span = Span(stage_span.end + 1, part.name_span.end)
            sink.error(codes.UNKNOWN_ADDRESS_FIELD, field_span, f"`{rest}` is not part of a service address",
                       label="expected `host`, `port` or `url`",
                       help=did_you_mean(rest, ir.ADDRESS_FIELDS, cutoff=0.4)
                       or f"write `${{{stage}.host}}`, `${{{stage}.port}}` or `${{{stage}.url}}`")
            return INVALID
        if not allowed:
            sink.error(codes.ADDRESS_NOT_ALLOWED, part.span,
                       f"`${{{part.name}}}` cannot be used here: a service address differs per target",
                       label="fixed when compiling",
                       help="service addresses go into what a stage hands its container: command, args, "
                       "script, env, workdir, health")
            return INVALID
        ports = self.ports.get(stage)
        if ports is None:
            return INVALID  # its `port` is missing or invalid, which is reported there
        return ir.ServiceRef(stage, rest, ir.object_name(self.pipeline, stage), *ports)

    def _suggestion(self, stage: str) -> str:
        close = did_you_mean(stage, self.serving)
        if close is not None:
            return close
        return "`${STAGE.host}`, `${STAGE.port}` and `${STAGE.url}` name a serve stage of this file"

    # names spelled by hand ---------------------------------------------------------

    def check_spelled(self, text: str, span: Span, sink: Diagnostics) -> None:
        """W120 for each generated service name ``text`` spells by hand."""
        lowered = text.lower()
        for spelling in self.spellings:
            start = lowered.find(spelling + "-")
            while start != -1:
                self._check_at(text, lowered, start, spelling, span, sink)
                start = lowered.find(spelling + "-", start + 1)

    def _check_at(self, text: str, lowered: str, start: int, spelling: str, span: Span, sink: Diagnostics) -> None:
        if start > 0 and _NAME_CHARACTER.match(lowered, start - 1):
            return  # inside a longer name: `--my-demo-x`, `a.my-demo-x`
        rest_start = start + len(spelling) + 1
        rest = _HOST_CHARACTERS.match(lowered, rest_start).group().rstrip("-_")
        written = text[start:rest_start + len(rest)]
        after = lowered[rest_start + len(rest):rest_start + len(rest) + 2]
        stage = self._stage_in(rest)
        if stage is not None:
            host = ir.object_name(self.pipeline, stage)
            message = (f"`{written}` spells the service name of `{stage}` by hand" if written == host else
                       f"`{written}` is not the service name of `{stage}`, which is `{host}`")
            sink.warning(codes.SPELLED_SERVICE_NAME, span, message,
                         label="a generated name, written by hand",
                         help=f"write `${{{stage}.host}}` (or `${{{stage}.url}}` for http://HOST:PORT): "
                         "the right name and port on every target")
            return
        looks_like_host = (after[:1] == ":" and after[1:2].isdigit()) or lowered[max(0, start - 3):start] == "://"
        if not rest or not looks_like_host:
            return
        close = did_you_mean(rest.replace("-", "_"), self.serving)  # "did you mean `api`?"
        sink.warning(codes.SPELLED_SERVICE_NAME, span,
                     f"`{written}` looks like a service name of this pipeline, but no serve stage has it",
                     label="resolves to nothing",
                     help=f"did you mean `${{{close.split('`')[1]}.url}}`?" if close
                     else "a serve stage's address is `${STAGE.host}` or `${STAGE.url}`")

    def _stage_in(self, rest: str) -> str | None:
        """The serve stage whose name ``rest`` starts with (as a dns label), longest first."""
        words = rest.split("-")
        for end in range(len(words), 0, -1):
            candidate = "_".join(words[:end])
            if self.kinds.get(candidate) == "serve":
                return candidate
        return None
