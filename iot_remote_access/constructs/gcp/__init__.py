"""Google Cloud building blocks: ``constructs.Construct`` trees.

Google Cloud has no CDK. The Pub/Sub topology is, as for Azure, a tree of
constructs holding the SDK model objects (``google.pubsub_v1.types``) and IAM
grants that :class:`DesiredState` collects and :mod:`iot_remote_access.pubsub`
plans and deploys. The GKE side (HiveMQ, the bridge Deployment, network
policies) is cdk8s charts; import those from their own modules, so that the
Pub/Sub commands do not load cdk8s.
"""

from iot_remote_access.constructs.gcp.dead_lettered_topic import DeadLetteredTopic
from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.constructs.gcp.iam_grant import IamGrant
from iot_remote_access.constructs.gcp.pubsub_subscription import PubsubSubscription
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic

__all__ = ["DeadLetteredTopic", "DesiredState", "IamGrant", "PubsubSubscription", "PubsubTopic"]
