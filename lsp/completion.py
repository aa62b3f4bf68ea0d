"""Completion: what may be written at the cursor, found from the tokens before it.

The line being typed rarely parses, so the context comes from a tolerant scan
of the declaration around the cursor (unterminated strings and stray
characters are fine) and a small state machine over its brackets: inside
`after = [` only stage names fit, after `mount` only volumes, after `input`
only stages, after `from` templates and imports, at the start of a stage's
item the attributes and statements of that stage kind, inside `${` the
parameters.
Declared names come from the last parse of the document.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from aipc.compiler import schema
from aipc.compiler.matrix import axis_names
from aipc.compiler.resolve import NAME_LISTS
from aipc.compiler.values import MATRIX_PREFIX
from aipc.diagnostics import Span
from aipc.dsl import model as m
from aipc.dsl import scanner
from aipc.dsl import vocabulary as v
from aipc.lsp.analysis import BLOCK_DOCS, KEYWORD_DOCS, Index

BUILTIN_INTERPOLATIONS = {"pipeline.name": "the pipeline's name", "stage.name": "this stage's name"}
ADDRESS_DOCS = {  # `${STAGE.x}` of a serve stage, as ir.ADDRESS_FIELDS lists them
    "host": "the service's host name, as other stages reach it on the target",
    "port": "the port other stages connect to on the target",
    "url": "http://HOST:PORT of the service on the target",
}
MOUNT, AT, READONLY = (v.TEXT_OF[name] for name in ("MOUNT", "AT", "READONLY"))  # `mount V at "/p" readonly`
IMPORT, AS, TEMPLATE, FROM = (v.TEXT_OF[name] for name in ("IMPORT", "AS", "TEMPLATE", "FROM"))
# What the subject of each statement (`mount V`, `input STAGE.OUTPUT`) names: completion offers those.
_SUBJECTS = {MOUNT: "volume", v.TEXT_OF["INPUT"]: "stage"}

# What the scanner's token types are to the completion's state machine.
_KINDS = {
    **{name: "word" for name in v.KEYWORD_TOKENS | set(v.RETYPED)},
    **{name: "punct" for name in v.TEXT_OF if name not in v.KEYWORD_TOKENS},
    "STRING": "string", scanner.UNCLOSED_STRING: "string", "LONG_STRING": "long", scanner.UNCLOSED_LONG_STRING: "long",
    "NUMBER": "number", scanner.COMMENT: "comment",
}  # anything else (an unreadable character) is "other"


@dataclass(frozen=True)
class Token:
    kind: str  # long, string, comment, number, word, punct, other
    text: str
    start: int
    end: int
    closed: bool = True  # a string's closing quotes are there


def tokens(text: str, start: int = 0, end: int | None = None) -> list[Token]:
    """Every token of ``text[start:end]``, comments included; never fails."""
    return [Token(_KINDS.get(t.type, "other"), str(t), t.start_pos, t.end_pos, t.type not in scanner.PROBLEMS)
            for t in scanner.scan(text, start, end, comments=True)]


@dataclass(frozen=True)
class Candidate:
    label: str
    kind: str  # keyword, attribute, block, stage, volume, secret, param, value, type
    detail: str = ""
    documentation: str = ""
    insert: str | None = None


@dataclass
class Completions:
    items: list[Candidate]
    replace: Span  # the partial word the choice replaces


@dataclass
class _Frame:
    """One open bracket: a declaration's or block's body, a list, or a map."""

    kind: str  # body, list, map
    table: str = ""  # body: stage, pipeline, volume, secret, resources, unknown
    stage_kind: str | None = None
    stage_name: str | None = None
    owner: str | None = None  # list/map: the attribute it is the value of
    state: str = "item"
    name: str | None = None  # the attribute being written
    statement: str = ""  # the statement being written: mount, output, input
    seen: list[str] = field(default_factory=list)  # attributes set, or items listed
    last: str = ""  # the previous token's text
    subject: str = ""  # a statement's subject so far: `model` in `input model.`


def complete(text: str, offset: int, chunk_start: int, index: Index) -> Completions:
    """Candidates at ``offset``; ``chunk_start`` is where its declaration's text starts."""
    scanned = tokens(text, chunk_start, offset)
    prefix_start = offset
    if scanned and scanned[-1].end == offset:
        last = scanned[-1]
        if last.kind == "comment":
            return Completions([], Span(offset, offset))
        if last.kind in ("string", "long") and not last.closed:
            return _in_string(last, offset, text, index, scanned[:-1])
        if last.kind == "word":
            prefix_start = last.start
            scanned = scanned[:-1]
    frames, top = _run(scanned)
    previous_end = scanned[-1].end if scanned else chunk_start
    if frames and frames[-1].kind == "body" and "\n" in text[previous_end:prefix_start] \
            and frames[-1].state in ("name", "subject", "at", "path"):
        frames[-1].state = "item"  # a new line below an unfinished item starts another
    items = _candidates(frames, top, index)
    line_end = text.find("\n", offset)
    rest = text[offset:line_end if line_end != -1 else len(text)].lstrip(" \t")
    if rest[:1] in ("=", "{"):  # the name is being edited: insert only the name
        items = [Candidate(c.label, c.kind, c.detail, c.documentation) for c in items]
    return Completions(items, Span(prefix_start, offset))


def _run(scanned: list[Token]) -> tuple[list[_Frame], list[str]]:
    """Feed the tokens through the bracket machine; return the open frames and the
    top-level tokens of the declaration being written (empty between declarations)."""
    frames: list[_Frame] = []
    top: list[str] = []
    for token in scanned:
        if token.kind in ("comment", "other"):
            continue
        text = token.text if token.kind in ("word", "punct") else token.kind
        if not frames:
            if text == "{":
                frames.append(_open_declaration(top))
                top = []
            elif text in v.DECLARATION_KEYWORDS and _finished(top):
                top = [text]
            else:
                top.append(text)
            continue
        frame = frames[-1]
        frame.last = text
        if text in ("}", "]"):
            frames.pop()
            continue
        if frame.kind == "body":
            _step_body(frame, token, frames)
        elif frame.kind == "map":
            _step_map(frame, token, frames)
        elif text in ("[", "{"):
            frames.append(_Frame("list" if text == "[" else "map", owner=frame.owner))
        elif token.kind == "word":
            frame.seen.append(text)
    return frames, top


def _finished(top: list[str]) -> bool:
    """Whether ``top`` holds a finished declaration without a body: `param NAME[: TYPE] = VALUE`
    or `import "PATH" [as NAME]`."""
    if top[:1] == [IMPORT]:
        return top[1:2] in (["string"], ["long"]) and len(top) in (2, 4)
    return len(top) >= 4 and top[0] == "param" and "=" in top and top[-1] != "="


def _open_declaration(words: list[str]) -> _Frame:
    if FROM in words[-4:-1]:  # `KIND NAME from BASE {`, `template NAME: KIND from BASE {`
        words = words[:len(words) - 1 - words[::-1].index(FROM)]
    if len(words) >= 4 and words[-4] == TEMPLATE and words[-2] == ":" and words[-1] in v.STAGE_KINDS:
        return _Frame("body", "stage", stage_kind=words[-1])
    if len(words) >= 2 and words[-2] in v.STAGE_KINDS:
        return _Frame("body", "stage", stage_kind=words[-2], stage_name=words[-1])
    if len(words) >= 2 and words[-2] in ("volume", "secret", "pipeline"):
        return _Frame("body", words[-2])
    if words and words[-1] == "pipeline":
        return _Frame("body", "pipeline")
    return _Frame("body", "unknown")


def _step_body(frame: _Frame, token: Token, frames: list[_Frame]) -> None:
    text, state = token.text, frame.state
    if state in ("item", "after_value", "end"):
        if text in v.ITEM_KEYWORDS:
            frame.state, frame.statement = "subject", text
        elif state == "end" and text == READONLY:
            frame.state = "item"
        elif token.kind == "word":
            frame.state, frame.name = "name", text
            frame.seen.append(text)
        elif text == ".." and state == "after_value":
            frame.state = "value"
        else:
            frame.state = "item"
    elif state == "name":
        if text == "=":
            frame.state = "value"
        elif text == "{":
            table = frame.name if frame.name in schema.blocks_for(frame.table) else "unknown"
            frame.state = "item"
            frames.append(_Frame("body", table))
        else:
            frame.state = "item"
    elif state == "value":
        if text in ("[", "{"):
            frames.append(_Frame("list" if text == "[" else "map", owner=frame.name))
        frame.state = "after_value"
    elif state == "subject":  # a name, or two joined by `.`
        frame.state = "at" if token.kind == "word" else "item"
        if token.kind == "word":
            frame.subject = text
    elif state == "at":
        frame.state = "path" if text == AT else "subject" if text == "." else "item"
    elif state == "path":
        frame.state = "end" if token.kind in ("string", "long") else "item"


def _step_map(frame: _Frame, token: Token, frames: list[_Frame]) -> None:
    text = token.text
    if frame.state == "item":
        if token.kind in ("word", "string"):
            frame.state, frame.name = "key", text
            frame.seen.append(text)
    elif frame.state == "key":
        frame.state = "value" if text == "=" else "item"
    elif frame.state == "value":
        if text in ("[", "{"):
            frames.append(_Frame("list" if text == "[" else "map", owner=frame.name))
        frame.state = "after_value"
    elif frame.state == "after_value":
        if text == "..":
            frame.state = "value"
        elif text == ",":
            frame.state = "item"
        elif token.kind in ("word", "string"):
            frame.state, frame.name = "key", text
            frame.seen.append(text)


# ------------------------------------------------------------------------ candidates


def _candidates(frames: list[_Frame], top: list[str], index: Index) -> list[Candidate]:
    if not frames:
        return _top_level(top, index)
    frame = frames[-1]
    if frame.kind == "list":
        if frame.last not in ("[", ",", ""):
            return []
        body = next((f for f in reversed(frames) if f.kind == "body"), None)
        spec = _table(body).get(frame.owner or "") if body is not None else None
        kind = NAME_LISTS.get(spec.type) if spec is not None else None  # a list of names: `after = [`
        if kind is None:
            return []
        itself = body.stage_name if kind == "stage" else None
        return [_named(name, detail, kind) for name, detail in index.known_names(kind)
                if name != itself and name not in frame.seen]
    if frame.kind == "map":
        if frame.state == "item" and frame.owner in schema.STAGE_BLOCKS:
            return [_attribute(spec) for name, spec in schema.STAGE_BLOCKS[frame.owner].items()
                    if name not in frame.seen]
        return []
    if frame.state in ("item", "after_value", "end"):
        out = _attributes(frame)
        if frame.state == "end" and frame.statement == MOUNT:
            out.insert(0, Candidate(READONLY, "keyword", "mount it read-only"))
        return out
    if frame.state == "subject":
        kind = _SUBJECTS.get(frame.statement)
        if kind == "stage" and frame.last == ".":  # `input model.`: the outputs of `model`
            return [Candidate(name, "output", f"output of {frame.subject} at {path}")
                    for name, path in _outputs_of(index, frame.subject)]
        if kind is None or frame.last == ".":
            return []
        return [_named(name, detail, kind) for name, detail in index.known_names(kind)
                if not (kind == "stage" and name == frame.stage_name)]
    if frame.state == "at":
        return [Candidate(AT, "keyword", schema.STATEMENTS[frame.statement].form)]
    if frame.state == "value":
        spec = _table(frame).get(frame.name or "")
        if spec is not None and spec.choices:
            return [Candidate(choice, "value", f"{frame.name}") for choice in spec.choices]
        if spec is not None and spec.suggestions:  # `gpu_model = `: the portable names, quoted
            return [_suggestion(spec, value, f'"{value}"') for value in spec.suggestions]
        kind = NAME_LISTS.get(spec.type) if spec is not None else None  # one name: `matrix = `
        if kind is not None:
            itself = frame.stage_name if kind == "stage" else None
            return [_named(name, detail, kind) for name, detail in index.known_names(kind) if name != itself]
    return []


def _outputs_of(index: Index, stage: str) -> list[tuple[str, str]]:
    """``(name, path)`` of each output a stage declares itself (in the order written)."""
    for declaration in index.document.program.declarations:
        if isinstance(declaration, m.StageDecl) and declaration.name.value == stage:
            return [(item.name.value, item.path.literal or "") for item in declaration.items
                    if isinstance(item, m.Output)]
    return []


def _table(frame: _Frame) -> dict:
    return {"stage": schema.STAGE, "pipeline": schema.HEADER, "volume": schema.VOLUME,
            "secret": schema.SECRET, **schema.STAGE_BLOCKS, **schema.HEADER_BLOCKS}.get(frame.table, {})


def _attributes(frame: _Frame) -> list[Candidate]:
    seen = set(frame.seen)
    table = _table(frame)
    out = [_attribute(spec) for name, spec in table.items()
           if name not in seen and (frame.stage_kind is None or frame.stage_kind in spec.kinds)]
    if frame.table == "stage":
        for keyword, spec in schema.STATEMENTS.items():
            if frame.stage_kind is None or frame.stage_kind in spec.kinds:
                out.append(Candidate(keyword, "keyword", spec.form, KEYWORD_DOCS[keyword], keyword + " "))
    for name in schema.blocks_for(frame.table, frame.stage_kind):
        if name not in seen:
            out.append(Candidate(name, "block", "block", BLOCK_DOCS[name], name + " { "))
    return out


def _attribute(spec: schema.AttributeSpec) -> Candidate:
    detail = "one of " + ", ".join(spec.choices) if spec.choices else spec.type.value
    return Candidate(spec.name, "attribute", detail, spec.doc + (f"\n\n    {spec.example}" if spec.example else ""),
                     spec.name + " = ")


def _named(name: str, detail: str, kind: str) -> Candidate:
    return Candidate(name, kind, detail)


def _top_level(top: list[str], index: Index) -> list[Candidate]:
    if top[:1] == ["param"] and len(top) >= 2 and top[-1] == ":":
        return [Candidate(name, "type", "parameter type") for name in schema.PARAM_TYPES]
    is_stage = top[:1] != [] and top[0] in v.STAGE_KINDS
    if top[:1] == [TEMPLATE] and len(top) == 3 and top[-1] == ":":
        return [Candidate(kind, "keyword", "stage kind", KEYWORD_DOCS[kind]) for kind in v.STAGE_KINDS]
    after_import = top[-1:] == ["."] and top[-3:-2] == [FROM]
    if after_import and (is_stage and len(top) == 5 or top[0] == TEMPLATE and len(top) == 7):
        kind = top[0] if is_stage else top[3]  # `from gpu.`: the templates of that import, of the stage's kind
        return [_named(name, f"{kind} template", "template") for name, of in index.imported.get(top[-2], [])
                if of == kind]
    if top[-1:] == [FROM] and (is_stage and len(top) == 3 or top[0] == TEMPLATE and len(top) == 5):
        itself = top[1] if top[0] == TEMPLATE else None
        return [_named(name, detail, kind) for kind in ("template", "import")
                for name, detail in index.known_names(kind) if name != itself]
    if is_stage and len(top) == 2 or top[:1] == [TEMPLATE] and len(top) == 4:
        return [Candidate(FROM, "keyword", "start from a template", KEYWORD_DOCS[FROM], FROM + " ")]
    out = []
    if top[:1] == [IMPORT] and len(top) == 2:  # `as`, or the next declaration
        out.append(Candidate(AS, "keyword", "the name its templates are used by", KEYWORD_DOCS[AS], AS + " "))
    if top and not _finished(top):
        return []
    has_header = any(d.kind == "pipeline" for d in index.declared)
    for keyword in v.DECLARATION_KEYWORDS:
        if keyword == "pipeline" and has_header:
            continue
        detail = "stage" if keyword in v.STAGE_KINDS else "declaration"
        out.append(Candidate(keyword, "keyword", detail, KEYWORD_DOCS[keyword], keyword + " "))
    return out


# --------------------------------------------------------------------------- strings


_OPEN_INTERPOLATION = re.compile(r"(?<!\$)\$\{\s*([A-Za-z0-9_.]*)$")


def _in_string(token: Token, offset: int, text: str, index: Index, scanned: list[Token]) -> Completions:
    before = text[token.start:offset]
    match = _OPEN_INTERPOLATION.search(before)
    if match is None:
        return _suggested(token, offset, text, scanned)
    start = token.start + match.start(1)
    closing = "" if text[offset:offset + 1] == "}" else "}"
    items = [Candidate(name, "param", detail, insert=name + closing) for name, detail in index.known_names("param")]
    items += [Candidate(name, "param", doc, insert=name + closing) for name, doc in BUILTIN_INTERPOLATIONS.items()]
    items += [Candidate(f"{declared.name}.{part}", "stage", doc, insert=f"{declared.name}.{part}{closing}")
              for declared in index.names("stage") if getattr(declared.node, "kind", None) == "serve"
              for part, doc in ADDRESS_DOCS.items()]
    items += [Candidate(f"{MATRIX_PREFIX}{axis}", "param", "an axis of this stage's matrix",
                        insert=f"{MATRIX_PREFIX}{axis}{closing}") for axis in _axes_at(index, offset)]
    return Completions(items, Span(start, offset))


def _suggested(token: Token, offset: int, text: str, scanned: list[Token]) -> Completions:
    """In the string value of an attribute the schema suggests values for
    (`gpu_model = "H1`): those values, replacing what is typed."""
    frames, _ = _run(scanned)
    frame = frames[-1] if frames else None
    spec = _table(frame).get(frame.name or "") if frame is not None and frame.state == "value" else None
    start = token.start + 1  # after the opening quote
    if spec is None or not spec.suggestions or token.kind != "string" or "${" in text[start:offset]:
        return Completions([], Span(offset, offset))
    closing = "" if text[offset:offset + 1] == '"' else '"'
    return Completions([_suggestion(spec, value, value + closing) for value in spec.suggestions], Span(start, offset))


def _suggestion(spec: schema.AttributeSpec, value: str, insert: str) -> Candidate:
    return Candidate(value, "value", spec.name, spec.explain(value) or "" if spec.explain else "", insert)


def _axes_at(index: Index, offset: int) -> list[str]:
    """The matrix axes of the stage around ``offset``, as last parsed."""
    stages = {d.name: d.node for d in index.names("stage")}
    for declared in index.declared:
        if declared.kind == "stage" and declared.span.start <= offset <= declared.span.end:
            return axis_names(stages, declared.name)
    return []


def chunk_start_at(starts: list[int], offset: int) -> int:
    return starts[max(0, bisect.bisect_right(starts, offset) - 1)]
