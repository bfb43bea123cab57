"""The API key: checked once at start, and redacted in every form an answer may echo it in.

Where the key may appear, and which layer keeps it out:

- It travels only in the ``X-Key`` header of requests to ``base_url``; the client never
  follows a redirect (a 3xx fails the job), so it never reaches another host.
- An error body that echoes it is redacted by the client itself, in every form, before
  the body is shortened (``NP6Client`` via ``redact``): that is the primary guard, and
  every output (table, logs, report JSON, Markdown summary, history) is built from the
  error text it produced.
- The log handler's ``RedactFilter`` redacts the same forms again: a second guard, for
  records of other libraries (urllib3 at ``-vv``) and for anything the first one missed.

A list's values (the keys a PUT or a look-up carries) are personal data: the client
takes them out of an answer's body the same way (``without_values``, case-insensitive),
so neither a retry's warning nor an error's message shows one, whatever NP6 echoes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import quote, quote_plus

from sync.errors import EXIT_FAILED, KeyRefusedError, UsageError

REDACTED = "[redacted]"
VALUE = "(a value)"  # what a message shows for a list's value an answer echoed


def check_api_key(raw: str, variable: str) -> str:
    """The key without surrounding whitespace (a secret file's trailing newline is fine);
    UsageError, naming what is wrong but never the key, when it cannot travel in a header."""
    key = raw.strip()
    if not key:
        raise UsageError(f"the API key in {variable} is empty")
    for position, char in enumerate(key, start=1):
        # A header value is sent as Latin-1; control characters would end or corrupt it.
        if ord(char) > 0xFF:
            what = "a character outside Latin-1"
        elif unicodedata.category(char) == "Cc" and char != "\t":
            what = "a control character"
        else:
            continue
        raise UsageError(
            f"the API key in {variable} cannot be sent in an HTTP header: it holds {what} "
            f"(U+{ord(char):04X}) at position {position} of {len(key)}"
        )
    return key


def secret_forms(secret: str) -> list[str]:
    """Every form a server may echo ``secret`` in: raw, JSON-escaped, URL-encoded; longest
    first, so a form that contains another is replaced whole."""
    if not secret:
        return []  # an empty secret would match between every character
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    }
    # Percent-encoding may come back in lower-case hex.
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in set(forms)}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secret: str) -> str:
    """``text`` with every form of ``secret`` replaced; call it before any shortening."""
    for form in secret_forms(secret):
        text = text.replace(form, REDACTED)
    return text


# An answer's body is read this far for a message: the message keeps 200 characters.
_BODY_READ = 1 << 16


def without_values(text: str, values: Sequence[str]) -> str:
    """``text`` (an answer's body) with every form of each of ``values`` (a list's keys a
    request carried: personal data) replaced, as a whole word whatever its case, before
    any shortening.

    Only the head of a long body is kept: a value cut at its end is dropped with it."""
    cut = len(text) > _BODY_READ
    text = text[:_BODY_READ]
    forms = {f for value in values for f in secret_forms(value)}
    if forms:
        # Whole words only: a short value ("a", "7") must not cut other words apart.
        either = "|".join(map(re.escape, sorted(forms, key=len, reverse=True)))
        text = re.sub(rf"(?<!\w)(?:{either})(?!\w)", VALUE, text, flags=re.IGNORECASE)
    if cut:
        text = text[: -max(map(len, forms), default=0) or None]
    return text


def key_refused(
    key_name: str,
    request: tuple[str, str, str],
    status: int,
    request_id: str | None,
    body: str,
    *,
    sent_change: bool = False,
) -> KeyRefusedError:
    """401/403 in words: which key (``key_name``, its environment variable), what it lacks
    for ``request`` (method, path, and the call as messages name it), and whether anything
    was sent."""
    method, path, call = request
    if status == 401:
        what = (
            f"NP6 does not accept the API key in {key_name}: it is wrong, expired "
            f"or revoked; set {key_name} to the key of an NP6 API user"
        )
    else:
        what = (
            f"the API key in {key_name} lacks the right to {_right(method, path)}: "
            "a key has the rights of the NP6 user it belongs to; give that user this "
            f"right, or set {key_name} to another user's key"
        )
    after = "; sending had begun" if sent_change else "; nothing was sent"
    detail = "; ".join(part for part in (what + after, body) if part)
    error = KeyRefusedError(call, status, request_id, detail)
    if sent_change:
        error.exit_code = EXIT_FAILED
    return error


def _right(method: str, path: str) -> str:
    """What a call asks of the key's user, in NP6's terms, for a 403."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "targets" and len(parts) == 1:
        return "look up contacts by unicity value"
    segment = next((p for p in reversed(parts) if p.isdigit()), "")
    rights = {
        ("GET", 2): f"read segment {segment}",
        ("GET", 3): f"list the targets of segment {segment}",
        ("PUT", 3): f"add targets to segment {segment}",
        ("DELETE", 3): f"empty segment {segment}",
        ("DELETE", 4): f"remove targets from segment {segment}",
        ("POST", 3): f"normalize segment {segment}",
    }
    return rights.get((method, len(parts)), "make this call")
