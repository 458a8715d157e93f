"""The security contexts of this project's own GKE workloads (the bridge, the rotation service).

Pod Security Standards "restricted": non-root with a fixed user, no privilege escalation,
no capabilities, a read-only root filesystem, the runtime's default seccomp profile.
"""

from __future__ import annotations

from cdk8s_plus_33 import k8s


def container_security(run_as_user: int) -> k8s.SecurityContext:
    return k8s.SecurityContext(
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=run_as_user,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        capabilities=k8s.Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
    )


def pod_security(run_as_user: int) -> k8s.PodSecurityContext:
    return k8s.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=run_as_user,
        fs_group=run_as_user,
        seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
    )


def tmp_volume() -> tuple[k8s.Volume, k8s.VolumeMount]:
    """A small writable /tmp (the root filesystem is read-only)."""
    volume = k8s.Volume(
        name="tmp", empty_dir=k8s.EmptyDirVolumeSource(size_limit=k8s.Quantity.from_string("64Mi"))
    )
    return volume, k8s.VolumeMount(name="tmp", mount_path="/tmp")  # noqa: S108 - an emptyDir
