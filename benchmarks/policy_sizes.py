"""Size of the rendered AWS IoT device policy, per topic-model configuration.

    python benchmarks/policy_sizes.py

Prints a Markdown table: characters without whitespace (what AWS IoT counts
against its 2,048-character limit) in eu-west-1 and in the worst case (the
longest partition and region, ``core.aws_policy.worst_case_policy_size``).
"""

from __future__ import annotations

from iot_remote_access.core.aws_policy import (
    MAX_POLICY_CHARS,
    device_policy_document,
    plain_arn,
    policy_size,
    worst_case_policy_size,
)
from iot_remote_access.core.topics import (
    Access,
    CustomTopic,
    DeviceAccess,
    ShadowOperation,
    Shadows,
)

HEALTH = CustomTopic("health", "dt/{thing}/health", Access.PUBLISH)
GET_UPDATE = (ShadowOperation.GET, ShadowOperation.UPDATE)
EVERY_SWITCH = DeviceAccess(
    tunneling=True, rotation=True, command_responses=True, jobs=True, any_job_id=True
)
CONFIGURATIONS = {
    "default (telemetry, commands)": DeviceAccess(),
    "+ tunneling": DeviceAccess(tunneling=True),
    "jobs": DeviceAccess(jobs=True),
    "jobs, any job id": DeviceAccess(jobs=True, any_job_id=True),
    "every switch: tunneling, rotation, responses, jobs any id": EVERY_SWITCH,
    "classic shadow, all operations": DeviceAccess(shadows=Shadows(classic=True)),
    "classic shadow + tunneling": DeviceAccess(tunneling=True, shadows=Shadows(classic=True)),
    "one named shadow, all operations": DeviceAccess(shadows=Shadows(named=("config",))),
    "two named shadows": DeviceAccess(shadows=Shadows(named=("a", "b"))),
    "classic get+update, jobs any id, 1 custom topic": DeviceAccess(
        jobs=True,
        any_job_id=True,
        shadows=Shadows(classic=True, operations=GET_UPDATE),
        custom=(HEALTH,),
    ),
    "classic + one named shadow": DeviceAccess(shadows=Shadows(classic=True, named=("config",))),
    "one custom topic": DeviceAccess(custom=(HEALTH,)),
}


def main() -> None:
    print("| configuration | eu-west-1 | worst case |")
    print("|---|---|---|")
    for name, access in CONFIGURATIONS.items():
        size = policy_size(device_policy_document(access, plain_arn()))
        worst = worst_case_policy_size(access)
        verdict = "" if worst <= MAX_POLICY_CHARS else " (refused)"
        print(f"| {name} | {size} | {worst}{verdict} |")


if __name__ == "__main__":
    main()
