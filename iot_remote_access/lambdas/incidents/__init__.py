"""Incident clocks' runtime side, shared by the opener, the checker and the CLI.

The state of each incident is one item in the ledger's own table, in a partition
next to the chain (``<ledger id>#incidents``; a ledger id cannot contain ``#``, so
the two never meet), sorted by the sequence number of the ``incident.open`` record:
the same KMS key, retention (TTL), point-in-time recovery and deletion protection as
the chain, and no second table to deploy. The item is a cache: every fact in it is
also a ledger record, so the pack recomputes the clocks from the verified chain.
"""
