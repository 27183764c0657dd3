"""Roles: what a task wants on its hosts, as phases of steps.

The runner asks a role for its phases and handlers, lets it refuse a host after the facts
(check_host) or after a phase (after_phase), explain a failed step, and verify the result.
A role that needs none of that inherits these defaults.
"""

from __future__ import annotations


class Role:
    name = "role"
    # a run that may change its hosts holds each host's lock from its facts to its end
    changes_hosts = True

    def vars(self, target) -> dict:
        """The target's variables, checked by the one validation function every role uses."""
        from ..validate import role_vars

        return role_vars(target)

    def phases(self, target) -> list[list]:
        raise NotImplementedError

    def handlers(self, target) -> dict:
        return {}

    def check_host(self, facts) -> None:
        return None

    def after_phase(self, phase: int, facts, check: bool) -> None:
        return None

    def explain_failure(self, step, why: str, facts) -> str:
        return why

    def verify(self, target, facts, check: bool):
        """(status, label, note) of a check after the changes, or None for none."""
        return None

    def summary(self, target, facts) -> list[str]:
        return []
