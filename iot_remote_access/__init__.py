"""iot-remote-access: secure remote access to IoT fleets as code.

Kept import-free on purpose: Lambda functions ship this package's ``core`` and
``lambdas`` subpackages without aws-cdk-lib, so importing the top-level package
must not pull in CDK.
"""

__version__ = "0.1.0"
