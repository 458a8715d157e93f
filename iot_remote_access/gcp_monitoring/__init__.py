"""The Cloud Logging / Cloud Monitoring engine of ``gcp plan|deploy``: Teleport's audit
events as log-based metrics, the three tunnel alarms as alert policies, the SIEM sink."""
