"""invoke's entry point: the tasks live in provision/tasks.py.

`adopt()` gives the running `invoke` our command line: `TASK -h` is help for every task,
and a mistyped task or option exits 2 with a suggestion.
"""
from provision.cli import adopt
from provision.tasks import ns  # noqa: F401

adopt()
