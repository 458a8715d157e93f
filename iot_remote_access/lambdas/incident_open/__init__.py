"""Opens an incident (ledger record + clock item) for each high-severity security finding."""
