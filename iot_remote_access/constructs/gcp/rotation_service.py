"""The certificate rotation service on GKE: its Deployment, its two CronJobs, its identity.

- ``rotation-service`` (Deployment): ``python -m iot_remote_access.pubsub.rotation serve``
  consumes the CSRs and confirmations devices publish (through the bridge and Pub/Sub),
  issues from CA Service, answers, revokes; probes on ``/healthz`` and ``/readyz``.
- ``rotation-plan`` (CronJob, daily at minute 15 of ``certificates.dailyRunHour``, UTC):
  the day's plan, within the hourly budget, exactly as the AWS planner.
- ``rotation-dispatch`` (CronJob, hourly): tells this hour's devices to rotate.

All three run as one Kubernetes service account bound to a Google service account
(Workload Identity, no key file, no Kubernetes API token) and are hardened like the
bridge (``pod_security.py``: restricted). The namespace's default-deny ingress policy
covers them: nothing connects to them but the kubelet's probes.

Environment (every name a ``ROTATION_*`` variable the service reads; unknown ones stop
it): the project, the CA pool and its maximum lifetime (``gcp.certificateAuthority``),
the inventory (``gcp.rotationService``), the commands topic (``gcp.pubsub``), and the
``certificates`` section's rotation rules and stagger.
"""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import (
    COMPONENT_LABEL,
    PART_OF,
    WORKLOAD_IDENTITY_ANNOTATION,
)
from iot_remote_access.constructs.gcp.pod_security import (
    container_security,
    pod_security,
    tmp_volume,
)
from iot_remote_access.core.gcp_ca_rules import CREATE_CERTIFICATE_QPS, pool_name
from iot_remote_access.core.kubernetes_names import ManifestValueError, validate_dns_label
from iot_remote_access.settings.certificates import CertificateSettings
from iot_remote_access.settings.gcp import GcpSettings
from iot_remote_access.settings.ledger import LedgerSettings

ROTATION_COMMAND = ("python", "-m", "iot_remote_access.pubsub.rotation")
SERVICE_LABELS = {COMPONENT_LABEL: "rotation-service"}
PLANNER_LABELS = {COMPONENT_LABEL: "rotation-planner"}
_HTTP = "http"


class RotationService(Construct):
    """The service Deployment, the plan and dispatch CronJobs, the ServiceAccount, a PDB.

    :param namespace: where everything lives (the bridge's namespace).
    :param gcp: the ``gcp`` settings; ``rotationService`` and ``certificateAuthority``
        are required.
    :param certificates: the rotation rules. Default: the ``certificates`` defaults.
    :param ledger: the access ledger; with ``ledger.gcp`` the service records every
        certificate decision in its anchor bucket, and the CronJobs anchor the chain.

    Attributes: ``service_account``, ``deployment``, ``plan_job``, ``dispatch_job``,
    ``disruption_budget``, ``environment`` (name -> value).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        namespace: str,
        gcp: GcpSettings,
        certificates: CertificateSettings | None = None,
        ledger: LedgerSettings | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        validate_dns_label(namespace, field_name="hivemq.namespace")
        if gcp.rotation_service is None:
            raise ManifestValueError("gcp.rotationService", "missing")
        if gcp.certificate_authority is None:
            raise ManifestValueError(
                "gcp.certificateAuthority",
                "missing; allowed: the CA Service pool the rotation service issues from",
            )
        self.settings = gcp.rotation_service
        self.namespace = namespace
        self.certificates = certificates or CertificateSettings()
        self.environment = self._environment(gcp) | _ledger_environment(ledger)
        self.service_account = k8s.KubeServiceAccount(
            self,
            "ServiceAccount",
            metadata=self._meta(
                "rotation-service",
                SERVICE_LABELS,
                {WORKLOAD_IDENTITY_ANNOTATION: self.settings.service_account},
            ),
            automount_service_account_token=False,  # Workload Identity needs no API token
        )
        self.deployment = self._deployment()
        self.disruption_budget = k8s.KubePodDisruptionBudget(
            self,
            "DisruptionBudget",
            metadata=self._meta("rotation-service", SERVICE_LABELS),
            spec=k8s.PodDisruptionBudgetSpec(
                max_unavailable=k8s.IntOrString.from_number(1),
                selector=k8s.LabelSelector(match_labels=SERVICE_LABELS),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
        )
        hour = self.certificates.daily_run_hour
        self.plan_job = self._cron_job("rotation-plan", f"15 {hour} * * *", "plan", 3 * 3600)
        minute = self.settings.dispatch_minute
        self.dispatch_job = self._cron_job(
            "rotation-dispatch", f"{minute} * * * *", "dispatch", 3000
        )

    def _meta(
        self, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
    ) -> k8s.ObjectMeta:
        return k8s.ObjectMeta(
            name=name,
            namespace=self.namespace,
            labels={**labels, **PART_OF},
            annotations=annotations,
        )

    def _environment(self, gcp: GcpSettings) -> dict[str, str]:
        authority, s, c = gcp.certificate_authority, self.settings, self.certificates
        assert authority is not None and gcp.project_id is not None
        policy = c.stagger_policy()
        longest = authority.certificate_lifetime_days(policy.base_days + policy.window_days - 1)
        return {
            "ROTATION_PROJECT": gcp.project_id,
            "ROTATION_CA_POOL": pool_name(gcp.project_id, authority.location, authority.pool),
            "ROTATION_CA_MAXIMUM_LIFETIME_DAYS": str(longest),
            "ROTATION_CA_CREATE_QPS": str(CREATE_CERTIFICATE_QPS[authority.tier]),
            "ROTATION_FIRESTORE_DATABASE": s.firestore_database,
            "ROTATION_INVENTORY_COLLECTION": s.inventory_collection,
            "ROTATION_COMMANDS_TOPIC": gcp.pubsub.commands_topic,
            "ROTATION_CSR_SUBSCRIPTION": s.csr_subscription,
            "ROTATION_CONFIRM_SUBSCRIPTION": s.confirm_subscription,
            "ROTATION_CERTIFICATE_TOPIC": s.certificate_topic,
            "ROTATION_BASE_VALIDITY_DAYS": str(c.base_validity_days),
            "ROTATION_STAGGER_WINDOW_DAYS": str(c.stagger_window_days),
            "ROTATION_LEAD_DAYS": str(c.lead_time_days),
            "ROTATION_HOURLY_BUDGET": str(c.hourly_rotation_budget),
            "ROTATION_MAX_ATTEMPTS": str(c.max_attempts),
            "ROTATION_BACKOFF_HOURS": str(c.retry_backoff_hours),
            "ROTATION_MAX_BACKOFF_HOURS": str(c.max_retry_backoff_hours),
            "ROTATION_ATTEMPT_TIMEOUT_HOURS": str(c.attempt_timeout_hours),
            "ROTATION_GRACE_DAYS": str(c.grace_period_days),
            "ROTATION_HTTP_PORT": str(s.http_port),
        }

    def _container(self, mode: str, *, probes: bool) -> k8s.Container:
        s = self.settings
        _, tmp_mount = tmp_volume()
        port = k8s.IntOrString.from_string(_HTTP)
        live = k8s.HttpGetAction(path="/healthz", port=port)
        ready = k8s.HttpGetAction(path="/readyz", port=port)
        return k8s.Container(
            name=f"rotation-{mode}",
            image=s.image,
            image_pull_policy="IfNotPresent",
            command=[*ROTATION_COMMAND, mode],
            env=[k8s.EnvVar(name=k, value=v) for k, v in self.environment.items()],
            ports=[k8s.ContainerPort(name=_HTTP, container_port=s.http_port)] if probes else None,
            resources=k8s.ResourceRequirements(
                requests={
                    "cpu": k8s.Quantity.from_string(s.cpu_request),
                    "memory": k8s.Quantity.from_string(s.memory_request),
                },
                limits={
                    "cpu": k8s.Quantity.from_string(s.cpu_limit),
                    "memory": k8s.Quantity.from_string(s.memory_limit),
                },
            ),
            security_context=container_security(s.run_as_user),
            volume_mounts=[tmp_mount],
            # Up to 60 s to start (settings, clients, the first streaming pulls).
            startup_probe=k8s.Probe(http_get=live, period_seconds=2, failure_threshold=30)
            if probes
            else None,
            liveness_probe=k8s.Probe(http_get=live, period_seconds=10, failure_threshold=3)
            if probes
            else None,
            readiness_probe=k8s.Probe(http_get=ready, period_seconds=5, failure_threshold=2)
            if probes
            else None,
        )

    def _pod_spec(self, mode: str, *, probes: bool, restart: str) -> k8s.PodSpec:
        volume, _ = tmp_volume()
        return k8s.PodSpec(
            service_account_name=self.service_account.name,
            automount_service_account_token=False,
            security_context=pod_security(self.settings.run_as_user),
            containers=[self._container(mode, probes=probes)],
            volumes=[volume],
            restart_policy=restart,
        )

    def _deployment(self) -> k8s.KubeDeployment:
        return k8s.KubeDeployment(
            self,
            "Deployment",
            metadata=self._meta("rotation-service", SERVICE_LABELS),
            spec=k8s.DeploymentSpec(
                replicas=self.settings.replicas,
                selector=k8s.LabelSelector(match_labels=SERVICE_LABELS),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels={**SERVICE_LABELS, **PART_OF}),
                    spec=self._pod_spec("serve", probes=True, restart="Always"),
                ),
            ),
        )

    def _cron_job(self, name: str, schedule: str, mode: str, deadline: int) -> k8s.KubeCronJob:
        return k8s.KubeCronJob(
            self,
            name,
            metadata=self._meta(name, PLANNER_LABELS),
            spec=k8s.CronJobSpec(
                schedule=schedule,
                time_zone="Etc/UTC",
                # Never two runs at once; a run missed by more than 10 minutes is skipped
                # (the next one plans from the inventory again: nothing is lost).
                concurrency_policy="Forbid",
                starting_deadline_seconds=600,
                successful_jobs_history_limit=3,
                failed_jobs_history_limit=3,
                job_template=k8s.JobTemplateSpec(
                    spec=k8s.JobSpec(
                        backoff_limit=2,
                        active_deadline_seconds=deadline,
                        ttl_seconds_after_finished=86400,
                        template=k8s.PodTemplateSpec(
                            metadata=k8s.ObjectMeta(labels={**PLANNER_LABELS, **PART_OF}),
                            spec=self._pod_spec(mode, probes=False, restart="Never"),
                        ),
                    )
                ),
            ),
        )


def _ledger_environment(ledger: LedgerSettings | None) -> dict[str, str]:
    """The access ledger's bucket and id, when the settings keep the ledger on Google Cloud."""
    if ledger is None or not ledger.enabled or ledger.gcp is None:
        return {}
    return {
        "ROTATION_ACCESS_LEDGER_BUCKET": ledger.gcp.bucket,
        "ROTATION_ACCESS_LEDGER_ID": ledger.ledger_id,
    }
