"""What makes a program unsafe or unrunnable although every value has its type:
host paths that hand the host to a container, mounts over what the runtime owns,
credentials written in plain text, and image references no registry accepts.

Pure functions over strings; :mod:`aipc.compiler.lower` reports what they find
with a code, a span and a hint.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from typing import NamedTuple

# ------------------------------------------------------------------ host paths

# Where a container engine listens: whoever can write to the socket can start a
# privileged container with the host's root mounted, so it undoes every other
# protection (Docker's own warning: docs.docker.com, "Protect the Docker daemon
# socket"; the same holds for containerd, CRI-O and Podman).
ENGINE_SOCKETS = frozenset({"docker.sock", "containerd.sock", "crio.sock", "podman.sock", "cri-dockerd.sock"})
ENGINE_SOCKET_PATHS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
                       "/var/run/containerd/containerd.sock", "/run/crio/crio.sock", "/run/podman/podman.sock")
SOCKET_RISK = ("the container engine's socket, which gives whoever holds it control of the host "
               "and undoes every other protection")

# A path, and everything under it unless `exact`.
_HOST_RISKS: tuple[tuple[str, bool, str], ...] = (
    ("/", True, "the host's whole filesystem (its configuration, its credentials, the container engine's socket)"),
    ("/etc", True, "the host's configuration (users and password hashes, SSH and cluster credentials)"),
    ("/etc/kubernetes", False, "the node's Kubernetes credentials"),
    ("/proc", False, "the host's kernel interfaces (other processes, kernel settings)"),
    ("/sys", False, "the host's kernel interfaces (devices, kernel settings)"),
    ("/dev", True, "the host's devices (its raw disks)"),
    ("/boot", False, "the host's kernel and boot loader"),
    ("/root", False, "the home directory of the host's root user (SSH keys and credentials)"),
    ("/home", True, "every home directory of the host (SSH keys and credentials)"),
    ("/var/lib/docker", False, "the container engine's data: every container's files"),
    ("/var/lib/containerd", False, "the container engine's data: every container's files"),
    ("/var/lib/kubelet", False, "the kubelet's data: the secrets of every pod on the node"),
)
# Directories under a home directory that hold credentials.
_CREDENTIAL_DIRS = (".ssh", ".aws", ".azure", ".kube", ".docker", ".gnupg", ".config/gcloud")
_HOME_VARIABLE = re.compile(r"^\$(?:HOME\b|\{HOME\})")


def host_path_risk(path: str) -> str | None:
    """What a container that bind-mounts ``path`` of the host gets hold of, when
    that is the host itself; None for an ordinary path (or a relative one, which
    names a directory next to the .aip file)."""
    home = _home_relative(path)
    if home is not None:
        return _home_risk(home, "the home directory")
    if not path.startswith("/"):
        return None
    path = "/" + posixpath.normpath(path).lstrip("/")
    if posixpath.basename(path) in ENGINE_SOCKETS:
        return SOCKET_RISK
    for socket in ENGINE_SOCKET_PATHS:
        if path != "/" and socket.startswith(path.rstrip("/") + "/"):
            return f"a directory that holds {SOCKET_RISK}"
    for root, exact, risk in _HOST_RISKS:
        if path == root or (not exact and path.startswith(root + "/")):
            return risk
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "home":
        return _home_risk("/".join(parts[2:]), f"the home directory `/home/{parts[1]}`")
    return None


def _home_relative(path: str) -> str | None:
    """The part of ``path`` below a home directory when it starts at one (``~``,
    ``~user``, ``$HOME``), else None."""
    if path.startswith("~"):
        _, _, rest = path.partition("/")
        return posixpath.normpath(rest).lstrip("/") if rest else ""
    match = _HOME_VARIABLE.match(path)
    if match:
        rest = path[match.end():].lstrip("/")
        return posixpath.normpath(rest) if rest else ""
    return None


def _home_risk(below: str, home: str) -> str | None:
    below = "" if below in ("", ".") else below
    if not below:
        return f"{home} (SSH keys, cloud and cluster credentials)"
    for directory in _CREDENTIAL_DIRS:
        if below == directory or below.startswith(directory + "/"):
            return f"credentials in {home} (`~/{directory}`)"
    return None


# ----------------------------------------------------------- container paths

def container_path_problem(path: str) -> str | None:
    """Why nothing can be mounted at ``path`` (normalised, absolute) inside a
    container, or None. The runtime mounts its own filesystems at /proc, /sys and
    /dev (OCI runtime spec, config-linux "Default Filesystems"), and `/` is the
    image itself."""
    if path == "/":
        return "`/` is the container's root filesystem, the image itself"
    for root in ("/proc", "/sys"):
        if path == root or path.startswith(root + "/"):
            return f"the runtime mounts the kernel's `{root}` there"
    if path == "/dev":
        return "the runtime mounts the container's devices at `/dev`"
    return None


# --------------------------------------------------------------- credentials

# Environment variable names that hold credentials, after the keyword lists of
# secret scanners (detect-secrets' KeywordDetector, gitleaks' generic rule):
# *_PASSWORD, *_TOKEN, *_SECRET, *_KEY, *PASSWD*, API_KEY...
_CREDENTIAL_NAME = re.compile(
    r"(?:^|_)(?:PASSWORD|PASSPHRASE|TOKEN|SECRET|API_?KEY|APIKEY|CREDENTIALS?)$"
    r"|(?<=[A-Z0-9])_KEY$|_PWD$|_PASS$|PASSWD")
_NOT_CREDENTIAL = re.compile(r"PUBLIC_KEY$")


def credential_name(name: str) -> bool:
    """Whether an environment variable of this name is meant to hold a credential."""
    upper = name.upper()
    return bool(_CREDENTIAL_NAME.search(upper)) and not _NOT_CREDENTIAL.search(upper)


def credential_value(value: str) -> bool:
    """Whether a literal value could be the credential itself (not empty, not a
    file path pointing at one)."""
    value = value.strip()
    return bool(value) and not value.startswith(("/", "./", "~/", "$"))


# ---------------------------------------------------------- image references
# The grammar of distribution/reference (reference.go and regexp.go, the package
# Docker, containerd and registries parse image names with), written with ASCII
# classes: Go's \w is ASCII, Python's is not.

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE_NAME = f"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
REFERENCE = re.compile(rf"((?:{_DOMAIN}/)?{_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
REGISTRY = re.compile(rf"{_DOMAIN}(?:/{_REMOTE_NAME})?")
DOMAIN = re.compile(_DOMAIN)
TAG = re.compile(_TAG)
NAME_TOTAL_LENGTH_MAX = 255  # RepositoryNameTotalLengthMax, of the path after the domain
# opencontainers/go-digest algorithm.go: the algorithms registries compute, each
# with its exact hex length, lower case only.
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class Problem(NamedTuple):
    """Why a reference is refused: a message, and a hint (often the fixed reference)."""

    message: str
    help: str


def image_reference_problem(image: str) -> Problem | None:
    """Why no registry would accept ``image`` as an image reference, or None."""
    problem = _written_problem(image, "an image reference")
    if problem is not None:
        return problem
    name, at, digest = image.partition("@")
    if at:
        problem = _digest_problem(digest)
        if problem is not None:
            return problem
    domain, path, tag = _split_name(name)
    if tag is not None and not TAG.fullmatch(tag):
        if not tag:
            return Problem("the tag after `:` is empty", "write a tag such as `:1.0`, or leave out the `:`")
        return Problem(f"`{tag}` is not a valid tag",
                       "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`")
    if domain is not None and not DOMAIN.fullmatch(domain):
        return Problem(f"`{domain}` is not a registry host", "a registry is a host name or address, "
                       "with an optional port: `registry.example.com:5000`")
    if not path:
        return Problem("the reference names no repository", 'write one such as "python:3.11-slim"')
    if domain is None and "/" in path and path.split("/", 1)[0] != path.split("/", 1)[0].lower():
        first = path.split("/", 1)[0]
        return Problem(f"`{first}` would be read as a registry host (it has upper-case letters), "
                       "and repository names are lower case",
                       f'write "{_fixed_case(image, name, path)}"')
    if path != path.lower():
        return Problem("repository names are lower case", f'write "{_fixed_case(image, name, path)}"')
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        return Problem(f"the repository name has {len(path)} characters; registries accept at most "
                       f"{NAME_TOTAL_LENGTH_MAX}", "shorten the repository path")
    if REFERENCE.fullmatch(image) is None:
        return Problem("the repository path is not a valid image name",
                       "path components are lower-case letters and digits, separated by one `.`, one or "
                       "two `_`, or `-`; components are joined by `/`")
    return None


def registry_problem(registry: str) -> Problem | None:
    """Why ``registry`` (a host, and optionally a path under it) cannot prefix images."""
    problem = _written_problem(registry, "a registry")
    if problem is not None:
        return problem
    if REGISTRY.fullmatch(registry) is None:
        return Problem(f"`{registry}` is not a registry host and path",
                       'write a host, an optional port and an optional lower-case path: '
                       '"registry.example.com:5000/team"')
    return None


def _written_problem(text: str, what: str) -> Problem | None:
    """What no reference may hold: spaces, control or non-ASCII characters, a URL's scheme."""
    problem = _characters_problem(text, what)
    if problem is None and "://" in text:
        scheme, _, bare = text.partition("://")
        problem = Problem(f"{what} has no scheme (`{scheme}://`): it starts with the host", f'write "{bare}"')
    return problem


def _characters_problem(text: str, what: str) -> Problem | None:
    for index, char in enumerate(text):
        if char.isspace() or unicodedata.category(char).startswith("C"):
            shown = {"\n": "a line break", "\t": "a tab", " ": "a space"}.get(char, f"U+{ord(char):04X}")
            stripped = text.strip()
            fixed = stripped and not any(c.isspace() or not c.isprintable() for c in stripped)
            return Problem(f"{what} has {shown} in it (at character {index + 1})",
                           f'write "{stripped}"' if fixed else f"{what} is one word, without spaces or line breaks")
        if not char.isascii():
            name = unicodedata.name(char, "an unnamed character")
            return Problem(f"`{char}` (U+{ord(char):04X} {name}) is not ASCII, and {what} is: "
                           "it may be a lookalike of a Latin letter",
                           "retype the reference in plain ASCII letters and digits")
    return None


def _digest_problem(digest: str) -> Problem | None:
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not algorithm:
        return Problem(f"`@{digest}` is not a digest", "a digest is `@sha256:` and 64 hexadecimal digits")
    if algorithm not in DIGEST_LENGTHS:
        return Problem(f"`{algorithm}` is not a digest algorithm registries accept",
                       "use " + ", ".join(f"`{name}`" for name in DIGEST_LENGTHS))
    length = DIGEST_LENGTHS[algorithm]
    if not re.fullmatch(f"[0-9a-f]{{{length}}}", encoded):
        found = (f"{len(encoded)} characters" if len(encoded) != length
                 else "upper-case or non-hexadecimal characters")
        return Problem(f"a {algorithm} digest is {length} lower-case hexadecimal digits, found {found}",
                       "copy the whole digest from the registry (`docker buildx imagetools inspect IMAGE` "
                       "prints it)")
    return None


def _split_name(name: str) -> tuple[str | None, str, str | None]:
    """(registry host or None, repository path, tag or None), split as Docker splits
    them: the first component is a host when it has a `.` or a `:`, is `localhost`,
    or has upper-case letters (distribution/reference normalize.go, splitDockerDomain)."""
    first, slash, rest = name.partition("/")
    domain = None
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, name = first, rest
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1:]
    return domain, name, tag


def _fixed_case(image: str, name: str, path: str) -> str:
    return image.replace(path, path.lower(), 1)
