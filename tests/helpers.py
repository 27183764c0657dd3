"""Small helpers shared by the integration tests: run our CLI, build a wheel, fetch a URL."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECAP_RE = r"^{host} ok=(\d+) changed=(\d+) failed=(\d+) skipped=(\d+)$"


def invoke(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `invoke ARGS` from the repository root, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, input=input,
                          capture_output=True, text=True, timeout=timeout, env=env)


def invoke_here(*args: str) -> subprocess.CompletedProcess:
    """`invoke ARGS` run in this process (the same Program and tasks as the binary, without
    its ~0.25 s start-up): for the many refusals that never reach a host."""
    import contextlib
    import io

    import tasks as root_tasks  # the repository's tasks.py: the tasks `invoke` loads here
    from provision.cli import Program

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    code = 0
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            Program(namespace=root_tasks.ns, name="invoke", binary="invoke").run(["invoke", *args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["invoke", *args], code, out.getvalue(), err.getvalue())


def recap(output: str, host: str) -> tuple[int, int, int]:
    m = re.search(RECAP_RE.format(host=re.escape(host)), output, re.M)
    assert m, f"no recap line for {host} in:\n{output}"
    return int(m[1]), int(m[2]), int(m[3])


def make_wheel(folder: Path, name: str, version: str, payload: int = 0, metadata: str = "") -> Path:
    """A minimal valid pure-Python wheel (what twine and pip accept); ``payload``: that many
    random bytes in it besides (a big upload); ``metadata``: more METADATA header lines."""
    dist = f"{name.replace('-', '_')}-{version}"
    files: dict[str, str | bytes] = {
        f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                      f"Summary: test package\n{metadata}",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    if payload:
        files[f"{name.replace('-', '_')}/blob.bin"] = os.urandom(payload)
    record = []
    for path, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    out = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


def ca_file() -> str:
    """The private CA of this test session (tests/conftest.py): what verifies the hosts."""
    return os.path.join(os.environ["PROVISION_CA_DIR"], "ca.crt")


def index(host, port: int = 8000) -> str:
    """The https base URL a deployed test host serves (tls: true, the default)."""
    return f"https://{host.address}:{port}/"


def http_get(host: str, port: int, path: str, timeout: float = 5, tls: bool = True,
             headers: dict | None = None, raw: bool = False) -> tuple[int, dict, str | bytes]:
    """GET over https verified with the session's CA (tls=False: plain http); raw: the body
    as bytes."""
    if tls:
        import ssl

        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl.create_default_context(cafile=ca_file()))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), body if raw else body.decode(errors="replace")
    finally:
        conn.close()


def clean_env() -> dict:
    """Environment for pip/twine that ignores this machine's pip.conf and indexes."""
    # and of its CA bundle variables: requests prefers REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE to
    # twine's --cert, and PIP_CERT beats pip.conf's cert (this machine sets all of them)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_"))
           and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def sh(host, cmd: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Root shell inside a test host (no SSH), with text output."""
    res = host.exec(cmd, input=input, check=check)
    return subprocess.CompletedProcess(res.args, res.returncode,
                                       res.stdout.decode(errors="replace"),
                                       res.stderr.decode(errors="replace"))


def invoke_on_tty(args: list[str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run `invoke ARGS` on a real pseudo-terminal, typing ANSWERS at each password prompt."""
    import fcntl
    import os
    import select
    import termios
    import time

    master, slave = os.openpty()

    def become_tty_owner():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=REPO, stdin=slave,
                            stdout=slave, stderr=slave, preexec_fn=become_tty_owner, close_fds=True)
    os.close(slave)
    out, pending, deadline = b"", list(answers), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                prompts = out.count(b"password: ") + out.count(b"Repeat it: ")
                # answer each prompt once, after it shows: getpass flushes earlier input
                if pending and prompts > len(answers) - len(pending):
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1, deadline - time.monotonic())), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def pypi_reachable() -> bool:
    """Can pip download from PyPI itself (not from this machine's local wheel folders)?"""
    global _PYPI
    if _PYPI is None:
        import tempfile

        env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
        env["PIP_CONFIG_FILE"] = os.devnull
        with tempfile.TemporaryDirectory() as dest:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                     "--disable-pip-version-check", "--no-input", "--timeout", "10", "--dest", dest,
                     "defusedxml==0.7.1"], capture_output=True, text=True, timeout=60, env=env)
                _PYPI = proc.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _PYPI = False
    return _PYPI


_PYPI: bool | None = None


def assert_python36_stdlib(path: Path, also: set[str] = frozenset()) -> None:
    """A program shipped to hosts (provision/hostside) parses with Python 3.6's grammar and
    imports the standard library only (and `also`, modules shipped beside it)."""
    import ast

    tree = ast.parse(Path(path).read_text(), feature_version=(3, 6))
    imported = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | set(also), imported - set(sys.stdlib_module_names)
    assert "__future__" not in imported       # `annotations` needs 3.7
