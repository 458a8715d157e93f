"""Catalogue senders on GCP (Google principals) and Azure (Entra object ids); AWS unchanged."""

from __future__ import annotations

import pytest

from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    parse_send_request,
    sender_cloud,
    sender_matches,
    validate_senders,
)

SA = "serviceAccount:ops@fleet-proj.iam.gserviceaccount.com"
USER = "user:Alice@Example.com"
OID = "objectId:0b6f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b"
ROLE = "arn:aws:iam::123456789012:role/iot-operators"


def test_each_cloud_s_principal_is_a_sender() -> None:
    assert validate_senders([SA, USER, OID, ROLE]) == (SA, USER, OID, ROLE)
    assert [sender_cloud(s) for s in (SA, USER, OID, ROLE)] == ["gcp", "gcp", "azure", "aws"]


@pytest.mark.parametrize(
    "bad",
    [
        "group:ops@example.com",  # group membership cannot be checked by the service
        "serviceAccount:*@fleet-proj.iam.gserviceaccount.com",
        "user:alice",
        "allUsers",
        "principalSet://iam.googleapis.com/x",
        "objectId:not-a-guid",
        "objectId:*",
        "0b6f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b",  # a bare guid: say which kind it is
        "serviceAccount:ops@fleet-proj.iam.gserviceaccount.com\n",
    ],
)
def test_other_principals_are_refused_naming_every_allowed_form(bad: str) -> None:
    with pytest.raises(CommandRuleError) as caught:
        validate_senders([bad])
    assert caught.value.field == "senders"
    assert "serviceAccount:<email>" in caught.value.problem
    assert "objectId:<Entra object id>" in caught.value.problem


def test_an_arn_keeps_the_aws_message() -> None:
    with pytest.raises(CommandRuleError) as caught:
        validate_senders(["arn:aws:iam::*:role/x"])
    assert caught.value.problem.endswith("or :user/<name>, no wildcards")


def test_google_and_entra_principals_match_exactly_ignoring_case_of_the_name() -> None:
    assert sender_matches(SA, SA)
    assert sender_matches(USER, "user:alice@example.com")
    assert sender_matches(OID, OID.upper().replace("OBJECTID", "objectId"))
    assert not sender_matches(USER, "serviceAccount:alice@example.com")  # kind matters
    assert not sender_matches(SA, "serviceAccount:ops@other-proj.iam.gserviceaccount.com")
    assert not sender_matches(OID, "objectId:0b6f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3c")
    assert not sender_matches(SA, ROLE) and not sender_matches(ROLE, SA)
    assert not sender_matches(USER, "user:")


def test_aws_sessions_still_match_their_role() -> None:
    session = "arn:aws:sts::123456789012:assumed-role/iot-operators/alice"
    assert sender_matches(ROLE, session)
    assert not sender_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/iot-operators-x/a")


def test_the_request_check_uses_the_cloud_s_principal() -> None:
    catalogue = CommandCatalogue(
        (CommandSpec(name="reboot", purpose="maintenance", senders=(SA,)),)
    )
    body = {"thing": "temp-1", "name": "reboot", "reason": "INC-1", "purpose": "maintenance"}
    assert parse_send_request(body, catalogue, requester=SA).spec.name == "reboot"
    with pytest.raises(CommandRuleError) as caught:
        parse_send_request(body, catalogue, requester=OID)
    assert (caught.value.field, caught.value.status) == ("name", 403)
