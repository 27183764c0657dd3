"""Every failure a user can see, as one line.

    ProvisionError           anything we report as one clear line and a non-zero exit
    ├── InventoryError       a bad --host, inventory file or variable
    ├── ConnectError         the host was not reached or did not let us in
    │   ├── UnreachableError no SSH answer (refused, no route, timed out)
    │   ├── AuthError        SSH authentication failed
    │   ├── HostKeyError     the host's key is unknown (StrictHostKeyChecking yes) or changed
    │   └── ConnectionLost   the host stopped answering, or the session died, mid-run
    ├── HostBusy             another run holds the host's lock past our wait
    ├── SudoError            sudo refused: it needs a password, or the password is wrong
    ├── UnsupportedHost      an OS, init system or Python we do not deploy to
    ├── StepError            a step's commands failed on the host
    ├── AccountError         a user name or password we refuse to write (htpasswd)
    ├── ClientConfigError    a bad --url/--name/--username, or a pip.conf/.pypirc we cannot merge
    ├── MirrorError          requirements that cannot be resolved or downloaded here
    ├── WheelhouseError      the pinned wheels cannot be downloaded here (--offline)
    ├── TlsError             a certificate we cannot use: yours (tls_cert/tls_key) or our CA
    └── UnsupportedPython    a Python with no verified pin set (also a ValueError)

Low-level errors (paramiko, socket, YAML) are mapped to these at one boundary each
(connection.py, inventory.py), with ``raise ... from exc``; the tasks turn a
ProvisionError into ``invoke.Exit`` so nobody sees a traceback.
"""


class ProvisionError(Exception):
    """Raised for any failure we report to the user as one line."""


class InventoryError(ProvisionError):
    """Raised when --host, the inventory file or a variable in it is invalid."""


class ConnectError(ProvisionError):
    """Raised when a host cannot be reached or authenticated."""


class UnreachableError(ConnectError):
    """Raised when the SSH port does not answer in time or refuses."""


class AuthError(ConnectError):
    """Raised when the server rejects every key/agent identity we offered."""


class HostKeyError(ConnectError):
    """Raised when the host key differs from known_hosts, or is unknown and may not be added."""


class ConnectionLost(ConnectError):
    """Raised when an open connection stops answering (keepalives unanswered) or drops."""


class HostBusy(ProvisionError):
    """Raised when another run still holds the host's lock after our bounded wait."""


class SudoError(ProvisionError):
    """Raised when sudo needs a password we do not have, or rejects the one given."""


class UnsupportedHost(ProvisionError):
    """Raised when the host's OS, init system or Python is not one we deploy to."""


class StepError(ProvisionError):
    """Raised when a step's commands fail on the host."""


class AccountError(ProvisionError):
    """Raised for a user name or password we refuse to write."""


class ClientConfigError(ProvisionError):
    """Raised for a bad --name/--url/--username/password or a config file we cannot read or write."""


class MirrorError(ProvisionError):
    """Raised when the requirements cannot be resolved or downloaded (names the requirement)."""


class WheelhouseError(ProvisionError):
    """Downloading the pinned wheels failed; the message names the pin and pip's error."""


class UnsupportedPython(ProvisionError, ValueError):
    """The host's Python has no verified pin set (see ``wheels.supported_pythons()``)."""


class TlsError(ProvisionError):
    """A certificate or key we cannot use (checked before any host is touched)."""


class BackupError(ProvisionError):
    """A backup folder that is missing, unreadable or does not verify."""
