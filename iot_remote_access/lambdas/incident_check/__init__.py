"""Raises an alarm for every overdue NIS2 clock of an open incident (scheduled)."""
