"""Azure Resource Manager runtime for the Azure constructs: clients, diff, plan and deploy.

Azure has no CDK, so the Azure constructs (``iot_remote_access.constructs.azure``)
describe the desired state as SDK model objects and this package reads what is
live, diffs it field by field and applies the difference through the SDKs.
Needs the ``azure`` extra (``pip install 'iot-remote-access[azure]'``).
"""
