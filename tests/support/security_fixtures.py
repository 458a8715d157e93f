"""Records of the shapes AWS documents, for the security-detection tests.

Each fixture names its source. Values are AWS's own examples unless a comment
says which field was changed for the test (and why).
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

# -- AWS IoT lifecycle events ----------------------------------------------------------
# Source: AWS IoT Core Developer Guide, "Lifecycle events"
# https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html

#: "A connect message has the following structure." (published on $aws/events/presence/connected/{clientId})
CONNECTED: dict[str, Any] = {
    "clientId": "186b5",
    "thingName": "exampleThing",
    "timestamp": 1573002230757,
    "eventType": "connected",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "12345678901234567890123456789012",
    "ipAddress": "192.0.2.0",
    "versionNumber": 0,
}

#: "A disconnect message has the following structure."
DISCONNECTED: dict[str, Any] = {
    "clientId": "186b5",
    "thingName": "exampleThing",
    "timestamp": 1573002340451,
    "eventType": "disconnected",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "12345678901234567890123456789012",
    "clientInitiatedDisconnect": True,
    "disconnectReason": "CLIENT_INITIATED_DISCONNECT",
    "versionNumber": 0,
}

#: "A connection failure message has the following structure." ($aws/events/presence/connect_failed/{clientId})
CONNECT_FAILED: dict[str, Any] = {
    "clientId": "186b5",
    "thingName": "exampleThing",
    "timestamp": 1460065214626,
    "eventType": "connect_failed",
    "connectFailureReason": "AUTHORIZATION_FAILED",
    "principalIdentifier": "12345678901234567890123456789012",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "ipAddress": "192.0.2.0",
}

#: Subscribe/Unsubscribe events: "The message published to this topic has the
#: following structure" ($aws/events/subscriptions/subscribed/{clientId}); the
#: docs write "subscribed" | "unsubscribed", this is the subscribed case.
SUBSCRIBED: dict[str, Any] = {
    "clientId": "186b5",
    "thingName": "exampleThing",
    "timestamp": 1460065214626,
    "eventType": "subscribed",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "12345678901234567890123456789012",
    "topics": ["foo/bar", "device/data", "dog/cat"],
}

# -- AWS IoT v2 log entries (log group AWSIotLogsV2) -----------------------------------------
# Source: AWS IoT Core Developer Guide, "CloudWatch Logs AWS IoT log entries"
# https://docs.aws.amazon.com/iot/latest/developerguide/cwl-format.html

#: "Publish-In log entry example".
PUBLISH_IN_SUCCESS: dict[str, Any] = {
    "timestamp": "2017-08-10 15:39:30.961",
    "logLevel": "INFO",
    "traceId": "672ec480-31ce-fd8b-b5fb-22e3ac420699",
    "accountId": "123456789012",
    "status": "Success",
    "eventType": "Publish-In",
    "protocol": "MQTT",
    "topicName": "$aws/things/MyThing/shadow/get",
    "clientId": "abf27092886e49a8a5c1922749736453",
    "principalId": "145179c40e2219e18a909d896a5340b74cf97a39641beec2fc3eeafc5a932167",
    "sourceIp": "205.251.233.181",
    "sourcePort": 13490,
}

#: "Subscribe log entry example".
SUBSCRIBE_SUCCESS: dict[str, Any] = {
    "timestamp": "2017-08-10 15:39:04.413",
    "logLevel": "INFO",
    "traceId": "7aa5c38d-1b49-3753-15dc-513ce4ab9fa6",
    "accountId": "123456789012",
    "status": "Success",
    "eventType": "Subscribe",
    "protocol": "MQTT",
    "topicName": "$aws/things/MyThing/shadow/#",
    "clientId": "abf27092886e49a8a5c1922749736453",
    "principalId": "145179c40e2219e18a909d896a5340b74cf97a39641beec2fc3eeafc5a932167",
    "sourceIp": "205.251.233.181",
    "sourcePort": 13490,
}

#: A refused request: the same page documents that failed entries are logged at
#: ERROR with ``status: Failure`` and a ``reason`` and ``details`` (its Disconnect
#: example shows both fields); AWS IoT writes ``reason: AUTHORIZATION_FAILURE``,
#: ``details: Authorization Failure`` when the policy refuses the action.
PUBLISH_IN_REFUSED: dict[str, Any] = {
    **PUBLISH_IN_SUCCESS,
    "logLevel": "ERROR",
    "status": "Failure",
    "topicName": "cmd/other-device/commands",  # changed: a topic of another device
    "clientId": "sensor-1",  # changed: a thing name (client id = thing name)
    "reason": "AUTHORIZATION_FAILURE",
    "details": "Authorization Failure",
}
SUBSCRIBE_REFUSED: dict[str, Any] = {
    **SUBSCRIBE_SUCCESS,
    "logLevel": "ERROR",
    "status": "Failure",
    "clientId": "sensor-1",  # changed: a thing name
    "reason": "AUTHORIZATION_FAILURE",
    "details": "Authorization Failure",
}


def cloudwatch_logs_subscription_event(
    messages: list[str], *, log_group: str = "AWSIotLogsV2", message_type: str = "DATA_MESSAGE"
) -> dict[str, Any]:
    """What a CloudWatch Logs subscription filter passes to Lambda.

    Source: Amazon CloudWatch Logs User Guide, "Log group-level subscription
    filters", example "Lambda": ``{"awslogs": {"data": base64(gzip(JSON))}}`` where
    the JSON has messageType, owner, logGroup, logStream, subscriptionFilters and
    logEvents[{id, timestamp, message}].
    """
    payload = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": "iot-log-stream",
        "subscriptionFilters": ["AuthorizationFailuresToDetector"],
        "logEvents": [
            {
                "id": f"3195310660696698337880902507980421114328961542429{i:07d}",
                "timestamp": 1502379570961,
                "message": message,
            }
            for i, message in enumerate(messages)
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}


# -- CloudWatch -----------------------------------------------------------------------------


def alarm_state_change(alarm_arn: str, state: str = "ALARM") -> dict[str, Any]:
    """EventBridge "CloudWatch Alarm State Change" event.

    Source: Amazon CloudWatch User Guide, "Alarm events and EventBridge", example
    "State change for a single-metric alarm" (alarm name/ARN changed to ours).
    """
    name = alarm_arn.rsplit(":", 1)[-1]
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2019-10-02T17:04:40Z",
        "region": "us-east-1",
        "resources": [alarm_arn],
        "detail": {
            "alarmName": name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints [63.0 (02/10/19 "
                "16:59:00)] was greater than the threshold (60.0).",
                "reasonData": "{}",
                "timestamp": "2019-10-02T17:04:40.985+0000",
            },
            "previousState": {
                "value": "OK",
                "reason": "Threshold Crossed",
                "timestamp": "2019-10-02T17:00:40.985+0000",
            },
            "configuration": {"description": "example", "metrics": []},
        },
    }


_REPORT_TIME = datetime(2019, 10, 2, 17, 0, tzinfo=UTC)

#: GetInsightRuleReport response. Source: Amazon CloudWatch API Reference,
#: "GetInsightRuleReport" (Response Elements: KeyLabels, AggregationStatistic,
#: AggregateValue, ApproximateUniqueCount, Contributors[Keys,
#: ApproximateAggregateValue, Datapoints], MetricDatapoints).
INSIGHT_RULE_REPORT: dict[str, Any] = {
    "KeyLabels": ["$.thingName"],
    "AggregationStatistic": "Sum",
    "AggregateValue": 1500.0,
    "ApproximateUniqueCount": 120,
    "Contributors": [
        {
            "Keys": ["sensor-7"],
            "ApproximateAggregateValue": 410.0,
            "Datapoints": [{"Timestamp": _REPORT_TIME, "ApproximateValue": 410.0}],
        },
        {
            "Keys": ["sensor-9"],
            "ApproximateAggregateValue": 900.0,
            "Datapoints": [{"Timestamp": _REPORT_TIME, "ApproximateValue": 900.0}],
        },
    ],
    "MetricDatapoints": [],
}
