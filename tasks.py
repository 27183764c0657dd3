"""invoke's entry point: the tasks live in provision/tasks.py."""
from provision.tasks import ns  # noqa: F401
