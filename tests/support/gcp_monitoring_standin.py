"""A STAND-IN for Cloud Logging's and Cloud Monitoring's gRPC APIs (no emulator exists for either).

It serves the methods ``gcp plan|deploy`` calls (log-based metrics, alert policies, sinks)
over real gRPC on a loopback port, so the real SDK clients build, serialize and send
their requests, and the stand-in decodes them with the SDK's own message types.
What it does like the service: it names what it creates (metric descriptor type,
alert policy and condition names, a sink's writer identity), answers NOT_FOUND for an
unknown metric or sink, and applies an update mask. What it does not: IAM, quotas,
filter or PromQL syntax checks. Every request is kept in ``requests`` for the tests.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.cloud.logging_v2.types import (
    CreateLogMetricRequest,
    CreateSinkRequest,
    GetLogMetricRequest,
    GetSinkRequest,
    LogMetric,
    LogSink,
    UpdateLogMetricRequest,
    UpdateSinkRequest,
)
from google.cloud.monitoring_v3 import AlertPolicy
from google.cloud.monitoring_v3.types import (
    CreateAlertPolicyRequest,
    ListAlertPoliciesRequest,
    ListAlertPoliciesResponse,
    UpdateAlertPolicyRequest,
)
from google.iam.v1 import iam_policy_pb2, policy_pb2


class MonitoringStandIn:
    """Started with :meth:`start`; ``host`` is ``127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.metrics: dict[str, LogMetric] = {}
        self.policies: dict[str, AlertPolicy] = {}
        self.sinks: dict[str, LogSink] = {}
        #: Google service accounts that exist (IAM answers NOT_FOUND for any other).
        self.service_accounts: set[str] = set()
        self.iam_policies: dict[str, policy_pb2.Policy] = {}
        self.requests: list[tuple[str, Any]] = []
        #: Set to a method name to answer it with PERMISSION_DENIED (a failing deploy).
        self.deny: str | None = None
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.host = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers([self._handlers()])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(method: Callable[..., Any], request_type: Any, response_type: Any) -> Any:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                name = method.__name__
                with self._lock:
                    self.requests.append((name, request))
                    if self.deny == name:
                        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"stand-in denies {name}")
                    return method(request, context)

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=request_type.deserialize,
                response_serializer=response_type.serialize,
            )

        def raw(method: Callable[..., Any], request_type: Any, response_type: Any) -> Any:
            return unary(method, _Raw(request_type), _Raw(response_type))

        logging, monitoring = "google.logging.v2", "google.monitoring.v3"
        table = {
            f"/{logging}.MetricsServiceV2/GetLogMetric": unary(
                self.get_log_metric, GetLogMetricRequest, LogMetric
            ),
            f"/{logging}.MetricsServiceV2/CreateLogMetric": unary(
                self.create_log_metric, CreateLogMetricRequest, LogMetric
            ),
            f"/{logging}.MetricsServiceV2/UpdateLogMetric": unary(
                self.update_log_metric, UpdateLogMetricRequest, LogMetric
            ),
            f"/{logging}.ConfigServiceV2/GetSink": unary(self.get_sink, GetSinkRequest, LogSink),
            f"/{logging}.ConfigServiceV2/CreateSink": unary(
                self.create_sink, CreateSinkRequest, LogSink
            ),
            f"/{logging}.ConfigServiceV2/UpdateSink": unary(
                self.update_sink, UpdateSinkRequest, LogSink
            ),
            f"/{monitoring}.AlertPolicyService/ListAlertPolicies": unary(
                self.list_alert_policies, ListAlertPoliciesRequest, ListAlertPoliciesResponse
            ),
            f"/{monitoring}.AlertPolicyService/CreateAlertPolicy": unary(
                self.create_alert_policy, CreateAlertPolicyRequest, AlertPolicy
            ),
            f"/{monitoring}.AlertPolicyService/UpdateAlertPolicy": unary(
                self.update_alert_policy, UpdateAlertPolicyRequest, AlertPolicy
            ),
            "/google.iam.admin.v1.IAM/GetIamPolicy": raw(
                self.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy
            ),
            "/google.iam.admin.v1.IAM/SetIamPolicy": raw(
                self.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy
            ),
        }
        return _Routes(table)

    # -- log-based metrics -----------------------------------------------------------

    def get_log_metric(self, request: GetLogMetricRequest, context: Any) -> LogMetric:
        found = self.metrics.get(request.metric_name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"metric {request.metric_name} not found")
        return found

    def create_log_metric(self, request: CreateLogMetricRequest, context: Any) -> LogMetric:
        name = f"{request.parent}/metrics/{request.metric.name}"
        if name in self.metrics:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"metric {name} exists")
        self.metrics[name] = self._served_metric(request.metric)
        return self.metrics[name]

    def update_log_metric(self, request: UpdateLogMetricRequest, context: Any) -> LogMetric:
        self.metrics[request.metric_name] = self._served_metric(request.metric)
        return self.metrics[request.metric_name]

    @staticmethod
    def _served_metric(metric: LogMetric) -> LogMetric:
        served = LogMetric(metric)
        # The service names the descriptor after the metric.
        served.metric_descriptor.type = f"logging.googleapis.com/user/{metric.name}"
        served.metric_descriptor.name = (
            f"projects/p/metricDescriptors/{served.metric_descriptor.type}"
        )
        return served

    # -- sinks -------------------------------------------------------------------------

    def get_sink(self, request: GetSinkRequest, context: Any) -> LogSink:
        found = self.sinks.get(request.sink_name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"sink {request.sink_name} not found")
        return found

    def create_sink(self, request: CreateSinkRequest, context: Any) -> LogSink:
        sink = LogSink(request.sink)
        sink.writer_identity = f"serviceAccount:sink-{next(self._ids)}@gcp-sa-logging.iam"
        self.sinks[f"{request.parent}/sinks/{sink.name}"] = sink
        return sink

    def update_sink(self, request: UpdateSinkRequest, context: Any) -> LogSink:
        sink = LogSink(self.sinks[request.sink_name])
        for path in request.update_mask.paths:
            setattr(sink, path, getattr(request.sink, path))
        self.sinks[request.sink_name] = sink
        return sink

    # -- alert policies ------------------------------------------------------------------

    def list_alert_policies(
        self, request: ListAlertPoliciesRequest, context: Any
    ) -> ListAlertPoliciesResponse:
        mine = [p for name, p in self.policies.items() if name.startswith(request.name + "/")]
        return ListAlertPoliciesResponse(alert_policies=mine, total_size=len(mine))

    def create_alert_policy(self, request: CreateAlertPolicyRequest, context: Any) -> AlertPolicy:
        policy = AlertPolicy(request.alert_policy)
        policy.name = f"{request.name}/alertPolicies/{next(self._ids)}"
        self._name_conditions(policy)
        self.policies[policy.name] = policy
        return policy

    def update_alert_policy(self, request: UpdateAlertPolicyRequest, context: Any) -> AlertPolicy:
        name = request.alert_policy.name
        if name not in self.policies:
            context.abort(grpc.StatusCode.NOT_FOUND, f"policy {name} not found")
        policy = AlertPolicy(self.policies[name])
        for path in request.update_mask.paths:
            setattr(policy, path, getattr(request.alert_policy, path))
        self._name_conditions(policy)
        self.policies[name] = policy
        return policy

    def _name_conditions(self, policy: AlertPolicy) -> None:
        for condition in policy.conditions:
            if not condition.name:
                condition.name = f"{policy.name}/conditions/{next(self._ids)}"

    # -- IAM on service accounts ------------------------------------------------------------

    def _known(self, resource: str, context: Any) -> None:
        email = resource.rsplit("/", 1)[-1]
        if (
            not resource.startswith("projects/-/serviceAccounts/")
            or email not in self.service_accounts
        ):
            context.abort(grpc.StatusCode.NOT_FOUND, f"service account {email} not found")

    def get_iam_policy(self, request: Any, context: Any) -> policy_pb2.Policy:
        self._known(request.resource, context)
        return self.iam_policies.get(request.resource, policy_pb2.Policy(etag=b"\x00"))

    def set_iam_policy(self, request: Any, context: Any) -> policy_pb2.Policy:
        self._known(request.resource, context)
        current = self.iam_policies.get(request.resource, policy_pb2.Policy(etag=b"\x00"))
        if request.policy.etag != current.etag:
            context.abort(grpc.StatusCode.ABORTED, "etag mismatch: the policy changed meanwhile")
        stored = policy_pb2.Policy()
        stored.CopyFrom(request.policy)
        stored.etag = bytes([current.etag[0] + 1])
        self.iam_policies[request.resource] = stored
        return stored

    def methods_called(self) -> list[str]:
        return [name for name, _ in self.requests]


class _Raw:
    """A plain protobuf message class with proto-plus's serialize/deserialize names."""

    def __init__(self, message_type: Any) -> None:
        self.deserialize = message_type.FromString
        self.serialize = message_type.SerializeToString


class _Routes(grpc.GenericRpcHandler):
    def __init__(self, table: dict[str, grpc.RpcMethodHandler]) -> None:
        self._table = table

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._table.get(handler_call_details.method)


def clients(host: str) -> tuple[Any, Any, Any, Any]:
    """The real SDK clients (metrics, alert policies, config, IAM) over a channel to ``host``."""
    from iot_remote_access.gcp_monitoring.clients import make_clients

    return make_clients(host)
