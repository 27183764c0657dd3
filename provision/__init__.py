"""Ansible-style provisioning of a private PyPI server (pypiserver)."""
