"""Apply a CA Service plan: exactly the requests the plan names, each waited for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2

from iot_remote_access.core.gcp_ca_rules import ISSUER_ROLE
from iot_remote_access.gcp_ca.plan import CALL_TIMEOUT_SECONDS as _CALL
from iot_remote_access.gcp_ca.plan import Action, CaPlan, Change, Kind
from iot_remote_access.pubsub.iam_requests import set_policy_request

#: Creating a CA makes its key and certificate: minutes on the real service.
OPERATION_TIMEOUT_SECONDS = 600


class CaDeployBlocked(RuntimeError):
    """The plan is blocked: nothing was sent."""


class CaDeployFailed(RuntimeError):
    """One request was refused: says what was being done to which resource, and why.

    What was applied before it stays; a rerun plans only what is still missing.
    """


def deploy(
    result: CaPlan, client: Any, *, progress: Callable[[Change], None] | None = None
) -> list[Change]:
    """Send the pending changes in plan order (pool before CA); return those applied."""
    if result.blocked:
        names = ", ".join(f"{c.kind} {c.name} ({c.note})" for c in result.blocked)
        raise CaDeployBlocked(names)
    applied: list[Change] = []
    for change in result.pending:
        if progress is not None:
            progress(change)
        try:
            _apply(result, change, client)
        except TimeoutError:
            raise CaDeployFailed(
                f"{change.action} {change.kind} {change.name}: still running after "
                f"{OPERATION_TIMEOUT_SECONDS} s (it goes on; rerun deploy to continue)"
            ) from None
        except (gexc.GoogleAPICallError, gexc.RetryError) as error:
            status = getattr(getattr(error, "grpc_status_code", None), "name", type(error).__name__)
            message = (getattr(error, "message", None) or str(error)).strip().splitlines()[:1]
            raise CaDeployFailed(
                f"{change.action} {change.kind} {change.name}: {status} {' '.join(message)}".strip()
            ) from None
        applied.append(change)
    return applied


def _apply(result: CaPlan, change: Change, client: Any) -> None:
    state = result.state
    if change.kind == Kind.IAM:
        # Read again for the etag: a concurrent change then fails the write, never lost.
        live = client.get_iam_policy(request={"resource": state.pool_name}, timeout=_CALL)
        wanted = {ISSUER_ROLE: set(state.issuer_members)}
        request = set_policy_request(state.pool_name, live, wanted)
        if request is not None:
            client.set_iam_policy(request=request, timeout=_CALL)
        return
    if change.kind == Kind.POOL and change.action == Action.CREATE:
        operation = client.create_ca_pool(
            parent=state.parent, ca_pool_id=state.pool_id, ca_pool=state.pool, timeout=_CALL
        )
    elif change.kind == Kind.POOL:
        pool = type(state.pool)(state.pool)
        pool.name = state.pool_name
        mask = field_mask_pb2.FieldMask(paths=list(change.fields))
        operation = client.update_ca_pool(ca_pool=pool, update_mask=mask, timeout=_CALL)
    elif change.action == Action.CREATE:
        client.create_certificate_authority(
            parent=state.pool_name,
            certificate_authority_id=state.authority_id,
            certificate_authority=state.authority,
            timeout=_CALL,
        ).result(timeout=OPERATION_TIMEOUT_SECONDS)
        # Root CAs are created STAGED; a pool issues only from an ENABLED CA.
        operation = client.enable_certificate_authority(name=state.authority_name, timeout=_CALL)
    else:
        operation = client.enable_certificate_authority(name=state.authority_name, timeout=_CALL)
    operation.result(timeout=OPERATION_TIMEOUT_SECONDS)
