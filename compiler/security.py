"""The `security` block, in a stage or in the pipeline header: how a container
may depart from the hardened default (:data:`aipc.compiler.ir.HARDENED`).

The header's block is the default of every stage; a stage's own keys replace
the header's key by key (:func:`merge_security`). Each key is checked where it is
written: ``user`` is a uid, ``"uid:gid"`` or ``root`` (Kubernetes runs
containers by number, so names are refused); ``capabilities`` are names from
capabilities(7) without ``CAP_``; ``privileged = true`` is always warned about.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from aipc import codes
from aipc.compiler import ir, units
from aipc.compiler.schema import SECURITY
from aipc.compiler.values import INVALID, Evaluator, describe, did_you_mean, source_text
from aipc.diagnostics import Diagnostics, Span
from aipc.dsl import model as m

# Linux capabilities (capabilities(7)) as Kubernetes and Docker write them: without `CAP_`.
CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
    "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
)
_KNOWN = frozenset(CAPABILITIES)
_USER = re.compile(r"(\d+)(?::(\d+))?")
MAX_ID = units.INT32_MAX  # runAsUser and runAsGroup; Docker and Linux take larger ones, Kubernetes' validation not

# The keys of a `security` block as read: {key: (value, span of the attribute)}.
SecurityKeys = dict[str, tuple[Any, Span]]


def read_security(attributes: Mapping[str, m.Attribute], evaluator: Evaluator, sink: Diagnostics,
                  stage: str | None, declared: str | None = None) -> SecurityKeys:
    """Each key of one `security` block, checked; a key whose value is wrong is left out.
    ``stage`` is the stage (or matrix instance) evaluated, ``declared`` its name as written."""
    out: SecurityKeys = {}
    for name, attribute in attributes.items():
        spec = SECURITY[name]
        if name == "user":
            value = _user(attribute.value, evaluator, sink, stage)
        elif name == "capabilities":
            value = _capabilities(attribute.value, evaluator, sink, stage)
        else:  # read_only, privileged
            value = evaluator.boolean(spec, attribute.value, stage)
        if value is INVALID:
            continue
        if name == "privileged" and value:
            where = f"`{declared or stage}`" if stage is not None else "every stage (the `pipeline` header's default)"
            sink.warning(codes.PRIVILEGED, attribute.span,
                         f"{where} runs privileged: every capability, the host's devices, privilege escalation",
                         label="can take over the machine it runs on",
                         help='list the capabilities the image needs instead: `capabilities = ["SYS_PTRACE"]`')
        out[name] = (value, attribute.span)
    return out


def merge_security(header: SecurityKeys, stage: SecurityKeys) -> ir.Security:
    """The header's keys under the stage's own, key by key."""
    keys = {**header, **stage}
    if not keys:
        return ir.HARDENED
    uid, gid = keys["user"][0] if "user" in keys else (ir.NON_ROOT_ID, ir.NON_ROOT_ID)
    return ir.Security(
        uid=uid, gid=gid,
        read_only=keys["read_only"][0] if "read_only" in keys else True,
        capabilities=keys["capabilities"][0] if "capabilities" in keys else (),
        privileged=keys["privileged"][0] if "privileged" in keys else False,
        spans=tuple((name, keys[name][1]) for name in SECURITY if name in keys),
    )


def _user(value, evaluator: Evaluator, sink: Diagnostics, stage: str | None) -> tuple[int, int] | Any:
    """``(uid, gid)`` from ``1000``, ``"1000:100"``, ``root`` (or ``"${param}"`` holding one)."""
    spec = SECURITY["user"]
    if isinstance(value, m.Number):
        text = value.text
    elif isinstance(value, m.Word) and value.value not in ("true", "false"):
        text = value.value
    elif isinstance(value, m.Str):
        interpolated = evaluator.interpolate(value, stage)
        if interpolated is INVALID:
            return INVALID
        text = interpolated.value
    else:
        sink.error(codes.WRONG_TYPE, value.span, f"`user` expects {spec.type.value}, found {describe(value)}",
                   help=f"for example `{spec.example}`")
        return INVALID
    text = text.strip()
    if text == "root":
        return 0, 0
    match = _USER.fullmatch(text)
    if match is None:
        shown = units.abbreviate(source_text(value) if not isinstance(value, m.Str) else text)
        sink.error(codes.INVALID_USER, value.span, f"`{shown}` is not a uid, \"uid:gid\" or `root`",
                   label="Kubernetes runs containers by number",
                   help="write the number: `id -u NAME` in the image prints it (e.g. `user = 999`), "
                   'or "uid:gid" such as "1000:100"')
        return INVALID
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else uid
    if uid > MAX_ID or gid > MAX_ID:
        sink.error(codes.INVALID_USER, value.span, f"`{units.abbreviate(text)}`: user and group ids are at most "
                   f"{MAX_ID}", help="the largest id Kubernetes accepts for runAsUser and runAsGroup")
        return INVALID
    return uid, gid


def _capabilities(value, evaluator: Evaluator, sink: Diagnostics, stage: str | None) -> tuple[str, ...] | Any:
    items = evaluator.string_list(SECURITY["capabilities"], value, stage, words=True)
    if items is INVALID:
        return INVALID
    out: list[str] = []
    ok = True
    for text, span in items:
        name = text.value.strip()
        problem = _capability_problem(name)
        if problem is not None:
            message, help = problem
            sink.error(codes.UNKNOWN_CAPABILITY, span, message, label="not a capability", help=help)
            ok = False
        elif name not in out:
            out.append(name)
    return tuple(out) if ok else INVALID


def _capability_problem(name: str) -> tuple[str, str] | None:
    """(message, help) when ``name`` is not a capability as written here, else None."""
    if name in _KNOWN:
        return None
    bare = name.upper().removeprefix("CAP_")
    if bare in _KNOWN:
        if name.upper().startswith("CAP_"):
            return f"write `{bare}` without `CAP_`", f'capabilities are written as Kubernetes writes them: "{bare}"'
        return f"`{name}` is written in capitals", f'write "{bare}"'
    if bare == "ALL":
        return ("`ALL` is not a capability to add back",
                "list the capabilities the image needs, or use `privileged = true` (warned about)")
    return (f"`{name}` is not a Linux capability",
            did_you_mean(bare, CAPABILITIES) or "see capabilities(7); write the names without `CAP_`")
