"""The redaction's fast paths (issue 21: log CPU per event) redact exactly what the full
scan does: the ``"token" in text.lower()`` pre-check holds over all of Unicode, and the
per-key cache answers as the pattern does."""

from __future__ import annotations

import re
import sys

import pytest

from iot_remote_access.core.log_safety import _TOKEN_VALUE, REDACTED, TokenRedaction


def test_every_character_matching_a_letter_of_token_lowers_to_it() -> None:
    # The pre-check is sound only if this holds for every code point the
    # case-insensitive pattern accepts (the Kelvin sign K does match "k").
    missed = [
        (hex(code), letter)
        for code in range(sys.maxunicode + 1)
        for letter in "token"
        if re.fullmatch(letter, chr(code), re.IGNORECASE) and chr(code).lower() != letter
    ]
    assert missed == []


@pytest.mark.parametrize(
    "text",
    [
        "plain message with no secret",
        '{"destinationAccessToken": "abc.def"}',
        "AWSIOT_TUNNEL_ACCESS_TOKEN=abcdefgh ./localproxy",
        "ACCESS-\u212aEN: xyz",  # "access-ken": no token key, left alone
        "access_to\u212aen=secretvalue",  # Kelvin sign: matched by the pattern, and pre-check
        "'sourceAccessToken': 'AQGAAXi...'",
        "token alone is not a key",
    ],
)
def test_text_redacts_as_the_full_scan_does(text: str) -> None:
    expected = _TOKEN_VALUE.sub(rf"\1{REDACTED}", text)
    assert TokenRedaction().text(text) == expected


def test_keys_and_plain_values_are_treated_as_before() -> None:
    redaction = TokenRedaction()
    extras = {
        "clientAccessToken": "x",
        "ACCESS_TOKEN": "y",
        "thingName": "thing-1",
        "opensToday": 3,
        "renewalLoop": False,
        "gapSeconds": None,
        "ratio": 1.5,
        7: "non-str key",
    }
    for _ in range(2):  # the second pass answers keys from the cache
        assert redaction.value(extras) == {
            "clientAccessToken": REDACTED,
            "ACCESS_TOKEN": REDACTED,
            "thingName": "thing-1",
            "opensToday": 3,
            "renewalLoop": False,
            "gapSeconds": None,
            "ratio": 1.5,
            7: "non-str key",
        }
