"""Azure rules, settings, constructs and diff without any server: names, regions, messages."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iot_remote_access.arm.diff import (
    ABSENT,
    KNOWN_AFTER_DEPLOY,
    FieldChange,
    diff,
    matches,
    overlay,
)
from iot_remote_access.arm.errors import ArmInputError
from iot_remote_access.arm.proof_of_possession import load_ca_certificate, load_ca_key
from iot_remote_access.constructs.azure import DeviceStreams, IotHub, StreamAlert
from iot_remote_access.core import azure_rules
from iot_remote_access.core.topics import DeviceAccess, TopicModel
from iot_remote_access.core.tree import Root
from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.stacks.azure_stack import AzureStack
from tests.support.azure_helpers import (
    ACTION_GROUP,
    WORKSPACE,
    azure_section,
    make_ca,
    resource_group,
)

REGIONS = (
    r"allowed regions: Central US \(centralus\), Central US EUAP \(centraluseuap\), "
    r"North Europe \(northeurope\), Southeast Asia \(southeastasia\)"
)


# -- core rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "condition"),
    [
        ("dt/{thing}/telemetry", "topic = CONCAT('dt/', $connectionDeviceId, '/telemetry')"),
        ("{thing}/up", "topic = CONCAT($connectionDeviceId, '/up')"),
        ("{thing}", "topic = $connectionDeviceId"),
        (
            "a/{thing}/b/{thing}",
            "topic = CONCAT('a/', $connectionDeviceId, '/b/', $connectionDeviceId)",
        ),
    ],
)
def test_routing_condition_binds_topic_to_the_connected_device(
    template: str, condition: str
) -> None:
    assert azure_rules.routing_condition(template) == condition


def test_routing_condition_refuses_quotes() -> None:
    with pytest.raises(ValueError, match=r"telemetry: \"dt/\{thing\}/it's\" contains \"'\""):
        azure_rules.routing_condition("dt/{thing}/it's", field_name="telemetry")


def test_routes_cover_every_published_topic_of_the_model() -> None:
    access = DeviceAccess(
        topics=TopicModel(telemetry="fleet/{thing}/up"), rotation=True, tunneling=True
    )
    assert azure_rules.device_to_cloud_routes(access) == [
        ("telemetry", "topic = CONCAT('fleet/', $connectionDeviceId, '/up')"),
        ("certificate-rotation-csr", "topic = CONCAT('rot/', $connectionDeviceId, '/csr')"),
        ("certificate-rotation-confirm", "topic = CONCAT('rot/', $connectionDeviceId, '/confirm')"),
    ]


def test_device_streams_regions() -> None:
    assert azure_rules.check_device_streams_region("North Europe") == "northeurope"
    assert azure_rules.check_device_streams_region("southeastasia") == "southeastasia"
    with pytest.raises(
        ValueError,
        match=rf"^Device Streams \(preview\) is not available in 'westeurope'; {REGIONS}$",
    ):
        azure_rules.check_device_streams_region("westeurope")


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (azure_rules.check_hub_name, "ab", r"'ab' is not an IoT hub name; allowed: 3 to 50"),
        (azure_rules.check_hub_name, "hub-", r"'hub-' is not an IoT hub name"),
        (azure_rules.check_dps_name, "dps_1", r"'dps_1' is not a Device Provisioning Service name"),
        (azure_rules.check_certificate_name, "a b", r"'a b' is not a certificate name"),
        (azure_rules.check_resource_group, "rg.", r"'rg.' is not a resource group name"),
        (
            azure_rules.check_subscription_id,
            "1234",
            r"'1234' is not a subscription id; allowed: a GUID",
        ),
        (azure_rules.check_location, "north-europe", r"'north-europe' is not an Azure region name"),
        (
            azure_rules.check_ipv4_mask,
            "10.0.0.1/8",
            r"'10.0.0.1/8' is not an IPv4 address or CIDR range",
        ),
        (azure_rules.check_ipv4_mask, "2001:db8::/32", r"'2001:db8::/32' is not an IPv4 address"),
    ],
)
def test_name_rules_name_the_value(check: object, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check(value)  # type: ignore[operator]


def test_resource_id_rule_names_the_expected_type() -> None:
    with pytest.raises(
        ValueError, match=r"is not a Microsoft.Insights/actionGroups resource id; allowed: "
    ):
        azure_rules.check_resource_id(
            WORKSPACE, namespace="Microsoft.Insights", resource_type="actionGroups"
        )
    assert (
        azure_rules.check_resource_id(
            ACTION_GROUP, namespace="Microsoft.Insights", resource_type="actionGroups"
        )
        == ACTION_GROUP
    )


def test_role_assignment_name_is_stable_per_scope_role_and_principal() -> None:
    name = azure_rules.role_assignment_name("/s/Hub", "role", "p1")
    assert name == azure_rules.role_assignment_name("/s/hub", "role", "p1")
    assert name != azure_rules.role_assignment_name("/s/hub", "role", "p2")


def test_stream_query_counts_per_device_on_this_hub() -> None:
    query = azure_rules.stream_count_query("/subscriptions/x/hub")
    assert 'Category == "DeviceStreams"' in query
    assert '_ResourceId =~ "/subscriptions/x/hub"' in query
    assert query.endswith("| summarize streamsOpened = count() by deviceId")


# -- settings ------------------------------------------------------------------------------


def parse(section: dict[str, object]) -> FleetSettings:
    return FleetSettings.parse({"azure": section}, source="s.yaml")


def test_settings_defaults_and_location_normalized() -> None:
    settings = parse({"location": "North Europe", "iotHub": {"name": "fleet-hub"}})
    azure = settings.azure
    assert azure is not None
    assert azure.location == "northeurope"
    assert (azure.iot_hub.sku, azure.iot_hub.units, azure.iot_hub.partitions) == ("S1", 1, 4)
    free = parse({"location": "northeurope", "iotHub": {"name": "fleet-hub", "sku": "F1"}}).azure
    assert free is not None and free.iot_hub.partitions == 2
    assert azure.max_streams_per_device_per_day == 3
    assert azure.device_streams is False
    assert azure.hub_log_categories() == azure_rules.DEFAULT_IOT_HUB_LOG_CATEGORIES


def test_streams_add_their_log_category() -> None:
    azure = parse(azure_section()).azure
    assert azure is not None and azure.hub_log_categories()[-1] == "DeviceStreams"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"location": "northeurope", "iotHub": {"name": "fleet-hub"}, "colour": "red"},
            r"s.yaml.azure.colour: unknown setting; "
            r"allowed: location, iotHub, caCertificate, provisioning, ",
        ),
        (
            {"location": "northeurope", "iotHub": {"name": "fleet-hub", "skew": 1}},
            r"s.yaml.azure.iotHub.skew: unknown setting; "
            r"allowed: name, sku, units, partitionCount, ",
        ),
        (
            {
                "location": "westeurope",
                "iotHub": {"name": "fleet-hub"},
                "deviceStreams": True,
                "logAnalyticsWorkspaceId": WORKSPACE,
                "alertActionGroupId": ACTION_GROUP,
            },
            r"s.yaml.azure.deviceStreams: Device Streams \(preview\) is not available in "
            rf"'westeurope'; {REGIONS}",
        ),
        (
            {"location": "northeurope", "iotHub": {"name": "fleet-hub"}, "deviceStreams": True},
            r"s.yaml.azure.deviceStreams: true needs "
            r"logAnalyticsWorkspaceId and alertActionGroupId",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub", "sku": "F1", "partitionCount": 4},
            },
            r"s.yaml.azure.iotHub.partitionCount: 4 partitions; allowed for sku F1: 2",
        ),
        (
            {"location": "northeurope", "iotHub": {"name": "fleet-hub", "sku": "S3", "units": 11}},
            r"s.yaml.azure.iotHub.units: 11 units; allowed for sku S3: 1 to 10",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub"},
                "diagnosticCategories": ["Bogus"],
            },
            r"s.yaml.azure.diagnosticCategories: 'Bogus' is not an IoT Hub log category; "
            r"allowed: Connections",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub"},
                "diagnosticCategories": ["Routes", "Routes"],
            },
            r"lists a category twice",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub"},
                "logAnalyticsWorkspaceId": ACTION_GROUP,
            },
            r"s.yaml.azure.logAnalyticsWorkspaceId: '.*' is not a "
            r"Microsoft.OperationalInsights/workspaces",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub"},
                "maxStreamsPerDevicePerDay": 0,
            },
            r"s.yaml.azure.maxStreamsPerDevicePerDay: 0: "
            r"Input should be greater than or equal to 1",
        ),
        (
            {"location": "northeurope", "iotHub": {"name": "fleet-hub"}, "tags": {"a/b": "x"}},
            r"s.yaml.azure.tags: tag name 'a/b'; allowed: 1 to 512 characters",
        ),
        (
            {
                "location": "northeurope",
                "iotHub": {"name": "fleet-hub"},
                "provisioning": {"name": "d", "allocationPolicy": "Random"},
            },
            r"s.yaml.azure.provisioning.name: 'd' is not a Device Provisioning Service name.*\n"
            r"s.yaml.azure.provisioning.allocationPolicy: 'Random': "
            r"Input should be 'Hashed', 'GeoLatency' or",
        ),
    ],
)
def test_settings_messages_name_field_value_and_allowed(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        parse(section)


def test_azure_settings_module_imports_on_its_own() -> None:
    """settings.py imports settings_azure at its end; importing the section first must work too."""
    code = (
        "import iot_remote_access.settings.azure as a, iot_remote_access.settings as s; "
        "raw = {'azure': {'location': 'centralus', 'iotHub': {'name': 'h-1'}}}; "
        "print(s.FleetSettings.parse(raw).azure.location)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "centralus", result.stderr


# -- constructs ----------------------------------------------------------------------------


def test_device_streams_construct_refuses_an_unsupported_region() -> None:
    hub = IotHub(
        Root("azure"),
        "Hub",
        resource_group=resource_group(),
        name="fleet-hub",
        location="West Europe",
    )
    with pytest.raises(ValueError, match=rf"not available in 'westeurope'; {REGIONS}"):
        DeviceStreams(hub, "DeviceStreams", hub=hub)
    assert hub.api_version == "2023-06-30"


def test_hub_routes_follow_the_settings_topic_model() -> None:
    settings = FleetSettings.parse(
        {
            "telemetryTopic": "fleet/{thing}/up",
            "azure": {"location": "northeurope", "iotHub": {"name": "fleet-hub"}},
        }
    )
    stack = AzureStack(Root("azure"), "Fleet", settings=settings, resource_group=resource_group())
    routes = stack.hub.desired_state()["properties"]["routing"]["routes"]
    assert routes == [
        {
            "name": "telemetry",
            "source": "DeviceMessages",
            "endpointNames": ["events"],
            "isEnabled": True,
            "condition": "topic = CONCAT('fleet/', $connectionDeviceId, '/up')",
        }
    ]
    assert [type(r).__name__ for r in stack.node.find_all()][1:] == ["IotHub"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sku": "P1"}, r"sku 'P1'; allowed: F1, B1, B2, B3, S1, S2, S3"),
        ({"partition_count": 1}, r"partition_count 1; allowed: 2 to 128"),
        (
            {"public_network_access": "Open"},
            r"public_network_access 'Open'; allowed: Enabled, Disabled",
        ),
        (
            {"device_access": DeviceAccess(topics=TopicModel(telemetry="dt/{thing}/o'clock"))},
            r"telemetry: \"dt/\{thing\}/o'clock\" contains \"'\"",
        ),
    ],
)
def test_hub_construct_validation_names_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IotHub(
            Root("azure"),
            "Hub",
            resource_group=resource_group(),
            name="fleet-hub",
            location="northeurope",
            **kwargs,
        )  # type: ignore[arg-type]


def test_stream_alert_threshold_is_validated() -> None:
    root = Root("azure")
    hub = IotHub(
        root, "Hub", resource_group=resource_group(), name="fleet-hub", location="northeurope"
    )
    with pytest.raises(ValueError, match=r"max_streams_per_device_per_day 0; allowed: 1 to 10000"):
        StreamAlert(
            root,
            "Alert",
            resource_group=resource_group(),
            hub=hub,
            workspace_id=WORKSPACE,
            action_group_id=ACTION_GROUP,
            max_streams_per_device_per_day=0,
        )


def test_stack_without_azure_section_is_refused() -> None:
    with pytest.raises(ValueError, match=r"settings.azure is missing; allowed: an azure section"):
        AzureStack(
            Root("azure"),
            "Fleet",
            settings=FleetSettings(),
            resource_group=resource_group(),
        )


# -- diff ------------------------------------------------------------------------------------


def test_diff_compares_only_our_fields_ids_and_locations_without_case() -> None:
    desired = {
        "location": "northeurope",
        "properties": {"workspaceId": WORKSPACE, "logs": [{"a": 1}, {"b": 2}]},
    }
    live = {
        "location": "North Europe",
        "etag": "x",
        "properties": {
            "workspaceId": WORKSPACE.lower(),
            "logs": [{"b": 2, "extra": 0}, {"a": 1}],
            "more": 1,
        },
    }
    assert diff(desired, live) == []
    assert not matches("Enabled", "enabled")  # other strings keep their case
    assert not matches(True, 1) and matches(3, 3.0)


def test_empty_desired_collections_match_what_arm_leaves_out() -> None:
    assert diff({"properties": {"ipFilterRules": [], "tags": {}}}, {"properties": {}}) == []
    assert (
        diff(
            {"properties": {"authorizationPolicies": []}},
            {"properties": {"authorizationPolicies": None}},
        )
        == []
    )
    assert matches({"routes": [{"endpointNames": []}]}, {"routes": [{}]})
    assert (
        diff({"properties": {"ipFilterRules": []}}, {"properties": {"ipFilterRules": [{"x": 1}]}})
        != []
    )


def test_diff_reports_paths_and_values() -> None:
    changes = diff({"sku": {"capacity": 2}, "properties": {"x": [1]}}, {"sku": {"capacity": 1}})
    assert changes == [FieldChange("sku.capacity", 1, 2), FieldChange("properties.x", ABSENT, [1])]
    assert [str(c) for c in changes] == ["~ sku.capacity: 1 -> 2", "+ properties.x: [1]"]
    assert str(FieldChange("p", ABSENT, KNOWN_AFTER_DEPLOY)) == "+ p: (known after deploy)"
    assert diff({"p": KNOWN_AFTER_DEPLOY}, {"p": "anything"}) != []


def test_overlay_keeps_live_fields_and_replaces_our_lists() -> None:
    live = {"properties": {"routes": [1, 2], "storage": {"a": 1}, "min": "1.0"}, "etag": "e"}
    desired = {"properties": {"routes": [3], "min": "1.2"}}
    assert overlay(live, desired) == {
        "properties": {"routes": [3], "storage": {"a": 1}, "min": "1.2"},
        "etag": "e",
    }


# -- CA files --------------------------------------------------------------------------------


def test_ca_certificate_must_be_a_ca(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "leaf.pem"
    path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(
        ArmInputError, match=r"^f: '.*leaf.pem' is not a CA certificate \(basicConstraints CA:TRUE"
    ):
        load_ca_certificate(path, field="f")
    path.write_text("not a certificate")
    with pytest.raises(
        ArmInputError, match=r"is not a PEM certificate; allowed: the CA certificate"
    ):
        load_ca_certificate(path, field="f")


def test_encrypted_ca_key_needs_its_password_and_is_never_shown(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    with pytest.raises(ArmInputError, match=r"is encrypted; set IOT_REMOTE_ACCESS_CA_KEY_PASSWORD"):
        load_ca_key(encrypted, certificate=ca.certificate)
    with pytest.raises(
        ArmInputError, match=r"is not a PEM private key \(or the password is wrong\)"
    ):
        load_ca_key(encrypted, certificate=ca.certificate, password=b"wrong")
    loaded = load_ca_key(encrypted, certificate=ca.certificate, password=b"correct horse")
    assert repr(loaded) == f"CaKey(source={str(encrypted)!r})" == str(loaded)
