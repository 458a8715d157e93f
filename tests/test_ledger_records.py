"""Record kinds and ``recordable``: any audit record becomes a record the ledger accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.ledger import canonical, next_record, parse_record
from iot_remote_access.core.ledger_records import (
    AZURE_STREAM_ALERT,
    GCP_PROXY_SESSION,
    KINDS,
    proxy_session_record,
    recordable,
    stream_alert_record,
)
from tests.support.ledger_chain import START

# Everything a refused request can carry into an audit record, hostile values included.
_hostile = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(), max_size=900)
    | st.sampled_from(["\ud800", "a\udfffb", "\u2028", "\x00"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _hostile, max_size=8))
def test_any_audit_record_becomes_a_record_that_chains_and_reads_back(data: dict[str, Any]) -> None:
    made = {"event": "tunnel.open", **recordable(data), "decision": "refused"}
    record = next_record(None, made, START)
    assert parse_record(record.line()) == record
    canonical(made)  # never refused


def test_values_the_ledger_refuses_are_kept_as_their_text() -> None:
    made = recordable(
        {"minutes": 1.5, "big": 2**60, "thing": "a\ud800b", "nested": {"deep": [[[[[[[[1]]]]]]]]}}
    )
    assert made["minutes"] == "1.5" and made["big"] == str(2**60)
    assert made["thing"] == "a?b"
    assert isinstance(made["nested"], dict)
    record = next_record(None, {"event": "tunnel.open", **made}, START)
    assert parse_record(record.line()) == record  # within the record's depth limit too


def test_an_azure_stream_alert_event_is_one_record() -> None:
    # Azure Monitor's common alert schema, as an action group's webhook delivers it.
    event = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a1",
                "alertRule": "fleet-hub-device-streams-per-device",
                "severity": "Sev2",
                "monitorCondition": "Fired",
                "alertTargetIDs": ["/subscriptions/s/resourcegroups/rg/providers/microsoft.devices/iothubs/fleet-hub"],
                "firedDateTime": "2026-12-02T05:00:00.000Z",
                "description": "a device opened more than 3 streams in a day",
            }
        },
    }  # fmt: skip
    made = stream_alert_record(event)
    assert made["event"] == AZURE_STREAM_ALERT and made["decision"] == "fired"
    assert made["hub"].endswith("/iothubs/fleet-hub") and made["severity"] == "Sev2"
    canonical(made)
    assert stream_alert_record({"data": "not an object"})["decision"] == "unknown"


def test_a_gcp_proxy_session_record_is_defined_before_the_proxy_exists() -> None:
    made = proxy_session_record(
        decision="opened",
        session_id="s-1",
        principal="user:ana@example.com",
        device="sensor-1",
        service="ssh",
        minutes=30,
    )
    assert made["event"] == GCP_PROXY_SESSION and "reason" not in made
    assert GCP_PROXY_SESSION in KINDS
    with pytest.raises(ValueError, match=r"^decision: 'allowed' is not allowed; allowed: opened"):
        proxy_session_record(
            decision="allowed", session_id="s", principal="p", device="d", service="ssh"
        )
