"""Logging that neither drops a record nor leaks a tunnel token. Standard library only.

Two rules every Lambda of the library follows:

- **Escape, never drop.** Powertools writes JSON with ``ensure_ascii=False``; a lone
  surrogate from a request (``"\\ud800"`` is valid JSON) then fails to encode when
  the line is written, and the logging module swallows the whole record, audit
  record included; a U+2028 or U+0085 splits the record for any reader that splits
  lines the Unicode way. :func:`json_for_logs` writes such characters as ``\\uXXXX``
  escapes instead (still valid JSON, decoding to the same string).
- **Tokens never reach a log, whatever the level.** :class:`TokenRedaction`
  replaces the value after any ``...AccessToken`` / ``..._ACCESS_TOKEN`` key (the
  shapes Secure Tunneling's responses have in JSON, in botocore's ``repr`` of a
  response body and in a shell line) and every token value it was told about.
  :func:`install_token_redaction` applies it to every record the process creates
  (a record factory, so botocore's DEBUG lines are covered whichever handler
  writes them) and to a Powertools logger's structured extras.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"
#: Secure Tunneling's token fields, for documentation and tests; the pattern below
#: covers these and any other ``access token`` key (``AWSIOT_TUNNEL_ACCESS_TOKEN``...).
TOKEN_FIELDS = ("sourceAccessToken", "destinationAccessToken", "clientAccessToken")
# Anchored on the literal key (no leading ``\w*``: that would backtrack quadratically
# on a long word), then quotes, backslashes (JSON inside JSON) and ``:`` or ``=``.
_TOKEN_VALUE = re.compile(
    r"""(access[_-]?token\\*["']?\s*[:=]\s*\\*["']?)[^"'\\\s,;}\])]+""", re.IGNORECASE
)
#: How many token values a process remembers (tokens of the last few invocations).
_REMEMBERED = 64
#: How deep structured extras are walked; deeper values are replaced whole.
_MAX_DEPTH = 16


#: What ``json.dumps(ensure_ascii=False)`` leaves raw but a log line must not carry: C1
#: controls and DEL, line and paragraph separators (``str.splitlines`` and many viewers
#: split records there), bidi and zero-width format characters (they reorder or hide
#: text in a console), and lone surrogates (not encodable). One character class: linear.
_ESCAPED_IN_LOGS = re.compile(
    "[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)


def json_for_logs(value: Any, **options: Any) -> str:
    """JSON text for one log line: always valid UTF-8, always one line, nothing hidden.

    The characters above are written as ``\\uXXXX`` escapes, so the record still
    decodes to exactly the text received (escape, never drop).
    """
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"), **options)
    text = _ESCAPED_IN_LOGS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@lru_cache(maxsize=512)
def _is_token_key(key: str) -> bool:
    # Keys repeat (the same few extras on every record): asked once per key. Bounded.
    return _TOKEN_VALUE.search(f"{key}=x") is not None


class TokenRedaction(logging.Filter):
    """Removes tunnel access tokens from a record's message, arguments and extras."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: deque[str] = deque(maxlen=_REMEMBERED)
        self._lock = threading.Lock()

    def remember(self, *secrets: object) -> None:
        """Redact these exact values too (the tokens an OpenTunnel call just returned)."""
        with self._lock:
            self._secrets.extend(s for s in secrets if isinstance(s, str) and len(s) >= 8)

    def text(self, text: str) -> str:
        # Every match of the pattern holds "token" in some case, and each character
        # that matches a letter of it ignoring case lowers to that letter (checked over
        # all of Unicode in the tests): lower() and ``in`` rule most texts out, in C,
        # before the case-insensitive scan (a log line pays this per value).
        if "token" in text.lower():
            text = _TOKEN_VALUE.sub(rf"\1{REDACTED}", text)
        for secret in tuple(self._secrets):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, int | float):  # most extras; nothing to redact
            return value
        if depth >= _MAX_DEPTH:
            return REDACTED if isinstance(value, (dict, list, tuple, bytes)) else value
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "backslashreplace"))
        if isinstance(value, dict):
            return {
                key: REDACTED
                if isinstance(key, str) and _is_token_key(key)
                else self.value(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.value(item, depth + 1) for item in value]
        return value

    def message(self, record: logging.LogRecord) -> None:
        """Format ``msg % args`` now and keep the redacted text (the args are dropped)."""
        if isinstance(record.msg, (dict, list)) and not record.args:  # structured messages
            record.msg = self.value(record.msg)
            return
        if not isinstance(record.msg, str) or record.args:
            try:
                text = record.getMessage()
            except Exception:  # logging must never raise into the caller
                text = f"(a log message that could not be formatted, from {record.name})"
        else:
            text = record.msg
        record.msg, record.args = self.text(text), None

    def filter(self, record: logging.LogRecord) -> bool:
        self.message(record)
        for key, item in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES:
                setattr(record, key, self.value(item))
        return True  # redact, never drop


_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

#: The process's one redaction (a record factory is process-wide).
redaction = TokenRedaction()
_installed = threading.Lock()
_factory_installed = False


def install_token_redaction(*loggers: Any) -> TokenRedaction:
    """Redact every record this process creates, and the extras of ``loggers``.

    Idempotent. ``loggers`` are Powertools or standard loggers whose records carry
    structured extras (added after the record factory runs, so filtered there).
    """
    global _factory_installed
    with _installed:
        if not _factory_installed:
            logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
            _factory_installed = True
    for logger in loggers:
        logger.removeFilter(redaction)  # at most once per logger
        logger.addFilter(redaction)
    return redaction


def _redacting(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redaction.message(record)
        return record

    return factory
