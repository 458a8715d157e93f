"""Compare the desired CA pool and CA with what is live: what ``gcp deploy`` would do.

Only the fields this library sets are compared (never ``name``, ``state`` details,
certificates or times the service fills in), so a second deploy changes nothing. The
pool's issuance policy, publishing options and labels can change in place; its tier
cannot, nor a CA's key, lifetime, type or subject: those make the plan *blocked*, and
the way out is a new CA id (a CA is never replaced by deploy: its devices' chains
end in it). A CA that is not ENABLED (root CAs are created STAGED) is enabled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.security.privateca_v1 import types as ca
from google.iam.v1 import policy_pb2
from google.protobuf import json_format

from iot_remote_access.core.gcp_ca_rules import ISSUER_ROLE
from iot_remote_access.gcp_ca.desired import CaServiceState
from iot_remote_access.pubsub.iam_requests import missing_members

POOL_FIELDS = ("issuance_policy", "publishing_options", "labels")
IMMUTABLE_POOL_FIELDS = ("tier",)
IMMUTABLE_CA_FIELDS = ("type_", "key_spec", "lifetime", "config")
_SHOWN = 120
#: Each call waits at most this long (the SDK sets no deadline of its own): a service
#: that stops answering fails the plan in bounded time.
CALL_TIMEOUT_SECONDS = 60.0


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"


class Kind(StrEnum):
    POOL = "ca pool"
    AUTHORITY = "certificate authority"
    IAM = "iam policy"


@dataclass(frozen=True)
class Difference:
    """One managed field that differs: what is live and what deploy would set."""

    field: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        live, desired = (
            json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
            for v in (self.live, self.desired)
        )
        # A policy is one long value: show both from just before where they part.
        first = next(
            (i for i, (a, b) in enumerate(zip(live, desired, strict=False)) if a != b),
            min(len(live), len(desired)),
        )
        start = max(0, first - 40)

        def cut(text: str) -> str:
            part = text[start : start + _SHOWN]
            return ("..." if start else "") + part + ("..." if len(text) > start + _SHOWN else "")

        return f"{self.field}: {cut(live)} -> {cut(desired)}"


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    action: Action
    differences: tuple[Difference, ...] = ()
    note: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(d.field for d in self.differences)


@dataclass(frozen=True)
class CaPlan:
    state: CaServiceState
    changes: tuple[Change, ...]

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in (Action.CREATE, Action.UPDATE))

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action == Action.BLOCKED)


def _as_dict(message: Any, field: str) -> Any:
    raw = json_format.MessageToDict(type(message).pb(message), preserving_proto_field_name=True)
    return raw.get(field.rstrip("_"))  # proto-plus's ``type_`` is the proto's ``type``


def _differences(live: Any, desired: Any, fields: tuple[str, ...]) -> tuple[Difference, ...]:
    pairs = ((name, _as_dict(live, name), _as_dict(desired, name)) for name in fields)
    return tuple(Difference(name.rstrip("_"), a, b) for name, a, b in pairs if a != b)


def _get(method: Any, name: str) -> Any:
    try:
        return method(name=name, timeout=CALL_TIMEOUT_SECONDS)
    except gexc.NotFound:
        return None


def plan(state: CaServiceState, client: Any) -> CaPlan:
    """``client``: a ``CertificateAuthorityServiceClient`` (or anything with its methods)."""
    pool = _pool_change(state, client)
    changes = [pool, _authority_change(state, client)]
    if state.issuer_members:
        changes.append(_iam_change(state, client, pool.action == Action.CREATE))
    return CaPlan(state, tuple(changes))


def _iam_change(state: CaServiceState, client: Any, pool_is_new: bool) -> Change:
    """The issuer's role on the pool; deploy reads the policy again (its etag) to write it."""
    name = f"{state.pool_name} {ISSUER_ROLE}"
    wanted = {ISSUER_ROLE: set(state.issuer_members)}
    live = policy_pb2.Policy()
    if not pool_is_new:
        live = client.get_iam_policy(
            request={"resource": state.pool_name}, timeout=CALL_TIMEOUT_SECONDS
        )
    missing = missing_members(live, wanted).get(ISSUER_ROLE, set())
    if not missing:
        return Change(Kind.IAM, name, Action.UNCHANGED)
    have = sorted(set(state.issuer_members) - missing)
    difference = Difference("members", have, sorted(state.issuer_members))
    return Change(Kind.IAM, name, Action.UPDATE, (difference,))


def _pool_change(state: CaServiceState, client: Any) -> Change:
    live = _get(client.get_ca_pool, state.pool_name)
    if live is None:
        return Change(Kind.POOL, state.pool_name, Action.CREATE)
    fixed = _differences(live, state.pool, IMMUTABLE_POOL_FIELDS)
    if fixed:
        note = "a pool's tier cannot change; deploy into a new pool id"
        return Change(Kind.POOL, state.pool_name, Action.BLOCKED, fixed, note)
    differing = _differences(live, state.pool, POOL_FIELDS)
    action = Action.UPDATE if differing else Action.UNCHANGED
    return Change(Kind.POOL, state.pool_name, action, differing)


def _authority_change(state: CaServiceState, client: Any) -> Change:
    name = state.authority_name
    live = _get(client.get_certificate_authority, name)
    if live is None:
        return Change(Kind.AUTHORITY, name, Action.CREATE, note="created STAGED, then enabled")
    fixed = _differences(live, state.authority, IMMUTABLE_CA_FIELDS)
    if fixed:
        note = "a CA's key, lifetime and subject cannot change; set a new caId"
        return Change(Kind.AUTHORITY, name, Action.BLOCKED, fixed, note)
    if live.state != ca.CertificateAuthority.State.ENABLED:
        state_name = ca.CertificateAuthority.State(live.state).name
        difference = Difference("state", state_name, "ENABLED")
        return Change(Kind.AUTHORITY, name, Action.UPDATE, (difference,), "enable")
    return Change(Kind.AUTHORITY, name, Action.UNCHANGED)
