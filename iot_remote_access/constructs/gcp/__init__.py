"""Google Cloud building blocks: ``constructs.Construct`` trees that produce a desired state.

Google Cloud has no CDK; as for Azure, a tree of constructs holds the SDK model
objects (``google.pubsub_v1.types``) and the IAM grants, :class:`DesiredState`
collects them, and :mod:`iot_remote_access.gcp` plans and deploys them.
"""

from iot_remote_access.constructs.gcp.dead_lettered_topic import DeadLetteredTopic
from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.constructs.gcp.iam_grant import IamGrant
from iot_remote_access.constructs.gcp.pubsub_subscription import PubsubSubscription
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic

__all__ = ["DeadLetteredTopic", "DesiredState", "IamGrant", "PubsubSubscription", "PubsubTopic"]
