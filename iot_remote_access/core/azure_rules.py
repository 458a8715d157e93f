"""Azure rules and renderings that need no SDK: names, regions, routing, the stream alert query.

Kept here (standard library only) so that the settings model, the Azure
constructs and the tests apply exactly the same rules.
"""

from __future__ import annotations

import ipaddress
import re
import uuid

from iot_remote_access.core.topics import THING_PLACEHOLDER, Access, DeviceAccess

#: Device Streams is a public preview, available only in these regions (ARM names).
#: Source: Azure IoT Hub Device Streams documentation, "Regional availability".
DEVICE_STREAMS_REGIONS: dict[str, str] = {
    "centralus": "Central US",
    "centraluseuap": "Central US EUAP",
    "northeurope": "North Europe",
    "southeastasia": "Southeast Asia",
}

#: The only IoT Hub API version whose models carry Device Streams in the
#: installed azure-mgmt-iothub (2019-07-01-preview has them too, but lacks
#: disableDeviceSAS/disableModuleSAS, which the secure defaults need).
IOT_HUB_STREAMS_API_VERSION = "2023-06-30-preview"
IOT_HUB_API_VERSION = "2023-06-30"

#: Built-in Azure role a Device Provisioning Service identity needs on a hub it
#: links with a managed identity ("IoT Hub Data Contributor").
IOT_HUB_DATA_CONTRIBUTOR_ROLE = "4fc6c259-987e-4a07-842e-c321cc9d413f"

#: IoT Hub resource-log categories (diagnostic settings). DeviceStreams exists
#: only where Device Streams does.
IOT_HUB_LOG_CATEGORIES = (
    "Connections",
    "DeviceTelemetry",
    "C2DCommands",
    "DeviceIdentityOperations",
    "FileUploadOperations",
    "Routes",
    "D2CTwinOperations",
    "C2DTwinOperations",
    "TwinQueries",
    "JobsOperations",
    "DirectMethods",
    "DistributedTracing",
    "Configurations",
    "DeviceStreams",
)
DEFAULT_IOT_HUB_LOG_CATEGORIES = (
    "Connections",
    "DeviceTelemetry",
    "C2DCommands",
    "DeviceIdentityOperations",
    "Routes",
    "DirectMethods",
)
DPS_LOG_CATEGORIES = ("DeviceOperations", "ServiceOperations")

#: The application property a device sets on every message (in the MQTT topic's
#: property bag, e.g. ``devices/sensor-1/messages/events/topic=dt%2Fsensor-1%2Ftelemetry``).
TOPIC_PROPERTY = "topic"

_HUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{1,48}[A-Za-z0-9])")
_DPS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{1,62}[A-Za-z0-9])")
_CERT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ROUTE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]", re.ASCII)
_REGION = re.compile(r"[a-z0-9]{2,40}")
_ARM_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w.()]{1,90}"
    r"/providers/(?P<namespace>[A-Za-z.]+)/(?P<type>[A-Za-z]+)/[^/]+",
    re.ASCII,
)


def normalize_location(value: str) -> str:
    """ARM's region name: ``North Europe`` and ``northeurope`` are the same region."""
    return value.replace(" ", "").lower()


def check_location(value: str) -> str:
    """The normalized region, or ValueError naming the value."""
    region = normalize_location(value)
    if not _REGION.fullmatch(region):
        raise ValueError(
            f"{value!r} is not an Azure region name; allowed: a region such as "
            "'northeurope' or 'North Europe'"
        )
    return region


def check_device_streams_region(location: str) -> str:
    """``location`` if Device Streams (preview) is offered there, else ValueError naming regions."""
    region = normalize_location(location)
    if region not in DEVICE_STREAMS_REGIONS:
        regions = ", ".join(f"{name} ({arm})" for arm, name in DEVICE_STREAMS_REGIONS.items())
        raise ValueError(
            f"Device Streams (preview) is not available in {location!r}; allowed regions: {regions}"
        )
    return region


def check_hub_name(value: str) -> str:
    if not _HUB_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an IoT hub name; allowed: 3 to 50 letters, digits and '-', "
            "not starting or ending with '-' (the name becomes {name}.azure-devices.net)"
        )
    return value


def check_dps_name(value: str) -> str:
    if not _DPS_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Device Provisioning Service name; allowed: 3 to 64 letters, "
            "digits and '-', not starting or ending with '-'"
        )
    return value


def check_certificate_name(value: str) -> str:
    if not _CERT_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a certificate name; allowed: 1 to 64 letters, digits, '.', '_', '-'"
        )
    return value


def check_resource_group(value: str) -> str:
    if not _RESOURCE_GROUP.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a resource group name; allowed: 1 to 90 letters, digits, "
            "'_', '-', '.', '(', ')', not ending with '.'"
        )
    return value


def check_subscription_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) != 36:
        raise ValueError(
            f"{value!r} is not a subscription id; allowed: a GUID such as "
            "'00000000-0000-0000-0000-000000000000'"
        )
    return value.lower()


def check_resource_id(value: str, *, namespace: str, resource_type: str) -> str:
    """A full ARM id of ``namespace/resource_type``, or ValueError naming the value."""
    match = _ARM_ID.fullmatch(value)
    if (
        match is None
        or match["namespace"].lower() != namespace.lower()
        or match["type"].lower() != resource_type.lower()
    ):
        raise ValueError(
            f"{value!r} is not a {namespace}/{resource_type} resource id; allowed: "
            f"/subscriptions/<guid>/resourceGroups/<group>/providers/{namespace}/{resource_type}/<name>"
        )
    return value


def check_ipv4_mask(value: str) -> str:
    """An IPv4 address or CIDR range (what IoT Hub IP filter rules accept)."""
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(
            f"{value!r} is not an IPv4 address or CIDR range ({error}); "
            "allowed: e.g. '203.0.113.7' or '203.0.113.0/24'"
        ) from None
    return str(network) if "/" in value else value


def route_name(purpose: str) -> str:
    """An IoT Hub route name for a topic grant's purpose ('certificate rotation: CSR' -> ...)."""
    name = re.sub(r"[^a-z0-9]+", "-", purpose.lower()).strip("-")
    if not _ROUTE_NAME.fullmatch(name):
        raise ValueError(f"{purpose!r} gives no valid route name; allowed: [A-Za-z0-9._-]{{1,64}}")
    return name


def routing_condition(template: str, *, field_name: str = "topic") -> str:
    """IoT Hub routing query true only for the sending device's own rendered topic.

    ``dt/{thing}/telemetry`` becomes
    ``topic = CONCAT('dt/', $connectionDeviceId, '/telemetry')``: the device id
    comes from the authenticated connection, so a device that claims another
    device's topic is not routed.
    """
    for forbidden in ("'", "\\"):
        if forbidden in template:
            raise ValueError(
                f"{field_name}: {template!r} contains {forbidden!r}, which an IoT Hub routing "
                "query cannot quote; allowed: topics without quotes or backslashes on Azure"
            )
    parts = [
        "$connectionDeviceId" if part == THING_PLACEHOLDER else f"'{part}'"
        for part in re.split(r"(\{thing\})", template)
        if part
    ]
    value = parts[0] if len(parts) == 1 else f"CONCAT({', '.join(parts)})"
    return f"{TOPIC_PROPERTY} = {value}"


def device_to_cloud_routes(access: DeviceAccess) -> list[tuple[str, str]]:
    """(route name, condition) for every topic a device publishes; AWS-reserved topics excluded."""
    return [
        (route_name(grant.purpose), routing_condition(grant.template, field_name=grant.purpose))
        for grant in access.grants(include_aws_reserved=False)
        if grant.access is Access.PUBLISH
    ]


def stream_count_query(hub_resource_id: str) -> str:
    """Log Analytics query: Device Streams requests per device over the rule's window.

    IoT Hub resource logs land in ``AzureDiagnostics`` with the log's properties
    as a JSON string in ``properties_s``. ``column_ifexists`` keeps the query
    valid in a workspace that has not received a DeviceStreams record yet.
    """
    if '"' in hub_resource_id:
        raise ValueError(f"{hub_resource_id!r} contains '\"'; allowed: an ARM resource id")
    return (
        "AzureDiagnostics\n"
        '| where ResourceProvider == "MICROSOFT.DEVICES" and Category == "DeviceStreams"\n'
        f'| where _ResourceId =~ "{hub_resource_id}"\n'
        '| extend deviceId = tostring(parse_json(column_ifexists("properties_s", "{}")).deviceId)\n'
        "| summarize streamsOpened = count() by deviceId"
    )


def role_assignment_name(scope: str, role_definition: str, principal_id: str) -> str:
    """A stable role-assignment name (ARM wants a GUID), so a re-run finds the same assignment."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{role_definition}|{principal_id}"))
