"""RPC URLs: checked once at the boundary, and never shown with their secrets.

A hosted node's URL carries its credentials in one of three places: user info
(``https://user:password@host``), a path segment (``/v2/<key>``) or the query (``?apikey=<key>``).
:func:`redact_url` drops all three; :func:`redact_secrets` scrubs them from any text (an error
message, a log line, a traceback), also where a library printed only a part of the URL.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from analyzer.errors import ContagionError

SCHEMES = ("http", "https", "ws", "wss")


def _key_like(segment: str) -> bool:
    return len(segment) >= 16 or (len(segment) >= 8 and any(c.isdigit() for c in segment))


def redact_url(url: str | None) -> str:
    """An RPC URL safe to print or store: no user info, no query, no key-like path segment.

    >>> redact_url("https://user:pw@eth.example.com/v2/abcdef0123456789abcdef?key=1")
    'https://eth.example.com/v2/***'
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "***"
    host = parts.hostname or ""
    if port:
        host = f"{host}:{port}"
    segments = ["***" if _key_like(s) else s for s in parts.path.split("/")]
    return urlunsplit((parts.scheme, host, "/".join(segments), "", ""))


def secret_parts(url: str | None) -> list[str]:
    """The pieces of ``url`` that :func:`redact_url` hides (user, password, key-like path
    segments, the query and each of its values), raw and percent-decoded, longest first."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = {parts.username or "", parts.password or "", parts.query, parts.fragment, parts.netloc.rpartition("@")[0]}
    found.update(s for s in parts.path.split("/") if _key_like(s))
    found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def redact_secrets(text: str, *urls: str | None) -> str:
    """``text`` with every given URL, and every secret part of it, replaced."""
    for url in urls:
        if url:
            text = text.replace(url, redact_url(url))
            for part in secret_parts(url):
                text = text.replace(part, "***")
    return text


def check_rpc_url(url: str, option: str = "--rpc") -> str:
    """``url`` when it is an RPC URL this tool can use (http, https, ws or wss; a host; a valid
    port), else a ContagionError that names ``option`` and shows the URL redacted."""
    if not isinstance(url, str) or not url.strip():
        raise ContagionError(f"{option}: give the node's URL, e.g. http://127.0.0.1:8545")
    if any(c.isspace() for c in url) or any(ord(c) < 32 for c in url):
        raise ContagionError(f"{option} {redact_url(url)}: a URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "the port must be within 1..65535" if "port" in str(exc).lower() else "not a URL"
        raise ContagionError(f"{option} {redact_url(url)}: {reason}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ContagionError(f"{option} {redact_url(url)}: unsupported scheme ({shown}); give an http://, https://, "
                             "ws:// or wss:// URL")
    if not parts.hostname:
        raise ContagionError(f"{option} {redact_url(url)}: the URL has no host")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise ContagionError(f"{option} {redact_url(url)}: not a valid host name") from None
    if port == 0:
        raise ContagionError(f"{option} {redact_url(url)}: the port must be within 1..65535")
    return url
