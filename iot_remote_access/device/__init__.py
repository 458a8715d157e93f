"""The device side: reference modules a Linux gateway runs (optional extra ``device``)."""
