"""The error shape every rule of a broker shares: a field, a problem and an HTTP status."""

from __future__ import annotations


class RuleError(ValueError):
    """A request, setting or message that breaks a rule.

    ``field`` names what was wrong, ``problem`` says the value received and what
    is allowed, ``status`` is the HTTP status a broker answers with.
    """

    def __init__(self, field_name: str, problem: str, *, status: int = 400) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem
        self.status = status
