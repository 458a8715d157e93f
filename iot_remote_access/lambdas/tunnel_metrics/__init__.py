"""Lambda: Secure Tunneling CloudTrail events -> TunnelOpenCount and related metrics."""
