"""Credentials out of messages: the one function every message that shows a URL
or a configuration value goes through (a kubeconfig's server, ``DOCKER_HOST``,
an error from a client library that quotes either).

A URL may carry credentials in its user information (``https://user:password@host``,
``https://TOKEN@host``, RFC 3986 section 3.2.1, which deprecates the password
form for this reason) or in its query (``?token=...``, a presigned
``X-Amz-Signature=...``). Those parts are replaced by ``***``; the scheme, the
host and the path stay, so the message still says where.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ ; userinfo ends at the last `@` before the host (a password
# may hold `@` when a client did not percent-encode it)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
# ?name=value or &name=value where the name says it holds a credential
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]*?(?:token|password|passwd|pwd|secret|signature|sig|"
    r"api[_-]?key|apikey|access[_-]?key|credential|auth)[A-Za-z0-9_.-]*)=)(?P<value>[^&;#\s\"']+)",
    re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    ``https://alice:s3cret@k8s.example.com:6443`` becomes
    ``https://alice:***@k8s.example.com:6443``; a user name alone is kept for
    ``ssh://`` (where it is not a secret) and masked elsewhere (``https://TOKEN@``)."""
    if "@" not in text and "=" not in text:
        return text
    return _SECRET_QUERY.sub(_mask_value, _USERINFO.sub(_mask_userinfo, text))


def _mask_userinfo(match: re.Match) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    user, colon, _ = userinfo.partition(":")
    if colon and user:
        return f"{scheme}{user}:{MASK}@"
    if not colon and scheme.lower().startswith("ssh"):
        return match.group(0)
    return f"{scheme}{MASK}@"


def _mask_value(match: re.Match) -> str:
    return f"{match.group('name')}{MASK}"
