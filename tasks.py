"""invoke's entry point in this checkout: the tool's tasks (provision/tasks.py) plus the
checkout's test-host tasks (testing/tasks.py), whose inventory is read when there is no
inventory.yml.

`adopt()` gives the running `invoke` our command line: `TASK -h` is help for every task,
and a mistyped task or option exits 2 with a suggestion.
"""
from provision import inventory
from provision.cli import adopt
from provision.tasks import ns
from testing.tasks import INVENTORY, testhost_down, testhost_up

inventory.FALLBACKS.append((INVENTORY, "boot a local test host with `invoke testhost-up`"))
ns.add_task(testhost_up)
ns.add_task(testhost_down)
adopt()
