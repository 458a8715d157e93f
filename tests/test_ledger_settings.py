"""The ``ledger`` settings section: safe defaults, legal minimum retention, one message per field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from iot_remote_access.settings.ledger import LedgerSettings


def test_defaults_keep_more_than_a_year_and_anchor_hourly() -> None:
    settings = LedgerSettings()
    assert (settings.enabled, settings.retention_days, settings.anchor_interval_minutes) == (
        True,
        400,
        60,
    )
    assert settings.ledger_id == "access"
    assert (
        LedgerSettings.model_validate(
            {"retentionDays": 3650, "anchorIntervalMinutes": 5, "ledgerId": "plant-7"}
        ).retention_days
        == 3650
    )


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (
            {"retentionDays": 365},
            "retentionDays",
            "365 is not allowed; allowed: a whole number of days from 366 (the legal minimum: one year of logs, DPDP Rules 2025 rule 6(1)(e)) to 3650",
        ),
        ({"retentionDays": "400"}, "retentionDays", "'400' is not allowed"),
        ({"retentionDays": 400.0}, "retentionDays", "400.0 is not allowed"),
        ({"retentionDays": True}, "retentionDays", "True is not allowed"),
        (
            {"anchorIntervalMinutes": 1441},
            "anchorIntervalMinutes",
            "1441 is not allowed; allowed: whole minutes from 5 to 1440",
        ),
        ({"ledgerId": "Access"}, "ledgerId", "'Access' is not allowed; allowed: 1-32 of a-z"),
        ({"retention": 400}, "retention", "Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(
    raw: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        LedgerSettings.model_validate(raw)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]
