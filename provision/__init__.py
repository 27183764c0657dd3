"""Ansible-style provisioning of a private PyPI server (pypiserver)."""
__version__ = "0.1.0"
