"""The HiveMQ Enterprise Security Extension configuration: who a client is, and what it may do.

One listener pipeline per MQTT listener:

- **devices** (the public mTLS listener): the TLS handshake already proved the
  client holds a key certified by the fleet CA (client authentication
  REQUIRED). The X.509 preprocessor takes the certificate's subject CN as the
  client's identity (``authentication-key``, shown in the access log). With
  ``by_user=True`` (``deviceBinding: certificate``, the default) the subject CN
  is also the ``authorization-key``, which selects a user of the ``devices``
  realm: one user per thing, its topics written literally
  (``hivemq_permissions.per_device_realm``). Otherwise (``deviceBinding:
  clientId``) the issuer's CN is the role key and the realm holds one role per
  fleet CA name on ``${mqtt-clientid}``, which the client chooses, so a fleet
  certificate can act as any device by naming its client id (docs/topics-v2.md).
- **bridge** (a cluster-internal mTLS listener): the subject CN is the
  authorization key; the ``bridge`` realm has a single user, the bridge's
  certificate name, so only that certificate gets the bridge's permissions.

Authentication needs no password store: TLS with a REQUIRED client
certificate has authenticated the client before ESE runs, so the pipelines
use ESE's allow-all *authentication* manager and do all the work in
authorization. (This is ESE's authentication step, not HiveMQ's
``hivemq-allow-all-extension``, which is disabled.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: Where the operator mounts the extension's ConfigMap.
ESE_CONF_DIR = "/opt/hivemq/extensions/hivemq-enterprise-security-extension/conf"
ESE_CONFIG_FILE = "config.xml"
DEVICES_REALM = "devices"
BRIDGE_REALM = "bridge"


@dataclass(frozen=True)
class EsePipeline:
    """A listener pipeline: which listener, which realm file, and how the certificate maps to it.

    ``by_user``: the subject CN selects a user of the realm (the bridge);
    otherwise the issuer CN selects a role (devices).
    """

    listener: str
    realm: str
    realm_file: str
    by_user: bool


def render_ese_config(pipelines: tuple[EsePipeline, ...]) -> str:
    """The ESE ``config.xml`` for ``pipelines`` (access log on, one file realm per pipeline)."""
    root = ET.Element(
        "enterprise-security-extension",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": "config.xsd",
            "version": "1",
        },
    )
    access_log = ET.SubElement(root, "access-log")
    ET.SubElement(access_log, "enabled").text = "true"
    ET.SubElement(access_log, "file-name").text = "access"
    ET.SubElement(access_log, "sub-folder").text = "access"
    realms = ET.SubElement(root, "realms")
    for pipeline in pipelines:
        realm = ET.SubElement(realms, "file-realm")
        ET.SubElement(realm, "name").text = pipeline.realm
        ET.SubElement(realm, "enabled").text = "true"
        configuration = ET.SubElement(realm, "configuration")
        ET.SubElement(configuration, "file-path").text = f"{ESE_CONF_DIR}/{pipeline.realm_file}"
    pipelines_el = ET.SubElement(root, "pipelines")
    for pipeline in pipelines:
        pipelines_el.append(_listener_pipeline(pipeline))
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _listener_pipeline(pipeline: EsePipeline) -> ET.Element:
    element = ET.Element("listener-pipeline", {"listener": pipeline.listener})
    preprocessors = ET.SubElement(element, "authentication-preprocessors")
    x509 = ET.SubElement(preprocessors, "x509-preprocessor")
    extractions = ET.SubElement(x509, "x509-extractions")
    _extract(extractions, "subject-common-name", "authentication-key")
    if pipeline.by_user:
        _extract(extractions, "subject-common-name", "authorization-key")
    else:
        _extract(extractions, "issuer-common-name", "authorization-role-key")
    ET.SubElement(element, "allow-all-authentication-manager")
    authorization = ET.SubElement(element, "file-authorization-manager")
    ET.SubElement(authorization, "realm").text = pipeline.realm
    ET.SubElement(authorization, "use-authorization-key").text = str(pipeline.by_user).lower()
    ET.SubElement(authorization, "use-authorization-role-key").text = str(
        not pipeline.by_user
    ).lower()
    return element


def _extract(parent: ET.Element, field: str, variable: str) -> None:
    extraction = ET.SubElement(parent, "x509-extraction")
    ET.SubElement(extraction, "x509-field").text = field
    ET.SubElement(extraction, "ese-variable").text = variable
