"""This checkout's test-host tasks (`invoke testhost-up`, `invoke testhost-down`), added to
the product's tasks by the root tasks.py; not part of the installed package."""

from __future__ import annotations

from invoke import Exit

from provision.cli import task

#: The inventory `testhost-up` writes; the tasks read it when there is no inventory.yml.
INVENTORY = ".testhost/inventory.yml"


@task(help={"name": "the test host (default: this checkout's running one, else a new pypi-test)"})
def testhost_up(c, name=""):
    """Boot (or reuse) this checkout's throwaway Debian 12 host; write .testhost/inventory.yml."""
    from . import testhost

    _testhost_cli(testhost, ["up", name] if name else ["up"])


@task(help={"name": "the test host to remove (default: every one of this checkout)"})
def testhost_down(c, name=""):
    """Stop and delete this checkout's test hosts (never another checkout's)."""
    from . import testhost

    _testhost_cli(testhost, ["down", name] if name else ["down"])


def _testhost_cli(testhost, argv):
    try:
        code = testhost.main(argv)
    except testhost.TestHostError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    if code:  # testhost printed the reason; a refusal exits 2, like every task's
        raise Exit(code=2)
