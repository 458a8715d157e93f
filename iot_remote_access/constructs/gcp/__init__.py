"""Google Cloud building blocks: a plain-Python Pub/Sub tree and cdk8s charts.

Google Cloud has no CDK. The Pub/Sub topology is, as for Azure, a plain-Python
construct tree (``iot_remote_access.core.tree``, no Node.js) holding the SDK
model objects (``google.pubsub_v1.types``) and IAM grants that
:class:`DesiredState` collects and :mod:`iot_remote_access.pubsub` plans and
deploys. The GKE side (HiveMQ, the bridge StatefulSet, network
policies) is cdk8s charts (jsii, so Node.js); import those from their own
modules, so that the Pub/Sub commands load neither cdk8s nor Node.js.
"""

from iot_remote_access.constructs.gcp.dead_lettered_topic import DeadLetteredTopic
from iot_remote_access.constructs.gcp.desired_state import DesiredState
from iot_remote_access.constructs.gcp.iam_grant import IamGrant
from iot_remote_access.constructs.gcp.pubsub_subscription import PubsubSubscription
from iot_remote_access.constructs.gcp.pubsub_topic import PubsubTopic

__all__ = ["DeadLetteredTopic", "DesiredState", "IamGrant", "PubsubSubscription", "PubsubTopic"]
