"""Azure tests (the `azure` extra): the real SDK against a local ARM stand-in.

Every test here talks to ``tests.support.azure_arm_standin.ArmStandIn`` on loopback,
never to Azure; the file names say "standin" where a deployment is exercised.
"""
