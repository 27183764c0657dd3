"""Fixtures the host-booting modules share."""

import pytest


@pytest.fixture(scope="module")
def host(testhost_factory):
    """One test host of the module's own, destroyed when the module is done."""
    (h,) = testhost_factory(1)
    yield h
    h.destroy()
