"""The HTTPS front on a real host: an HTTP deploy of the previous release's layout moves to
https keeping its packages and accounts; upload limits; the certificate follows the names;
your own certificate, and one that does not fit refused before the host is touched; the
password in no log."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import sys

import pytest
import yaml

from provision import tls
from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, recap, sh

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Upload-4711"


@pytest.fixture(scope="module")
def inv(host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("https")
    return write_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))


def set_vars(inv, **values) -> None:
    """Change the inventory's variables for every host (None removes one)."""
    data = yaml.safe_load(open(inv))
    group = data["all"].setdefault("vars", {})
    for k, v in values.items():
        if v is None:
            group.pop(k, None)
        else:
            group[k] = v
    with open(inv, "w") as fh:
        yaml.safe_dump(data, fh)


def upload(url, wheel, cert=None, password=PASSWORD):
    env = {**clean_env(), "TWINE_USERNAME": "olduser", "TWINE_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                           "--disable-progress-bar", "--repository-url", url,
                           *(["--cert", cert] if cert else []), str(wheel)],
                          capture_output=True, text=True, env=env, timeout=600)


def served_certificate(host, port=8000) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host.address, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host.address) as conn:
            return conn.getpeercert(binary_form=True)


def test_an_http_deploy_moves_to_https_keeping_packages_and_accounts(host, inv, tmp_path):
    set_vars(inv, tls=False)
    first = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "warning: tls: false: plain http" in first.stdout
    assert invoke("add-user", "olduser", "--password-stdin", "--inventory", inv, "-H", host.name,
                  input=PASSWORD + "\n").returncode == 0
    old = make_wheel(tmp_path, "old-pkg", "1.0")
    up = upload(f"http://{host.address}:8000/", old)
    assert up.returncode == 0, up.stdout + up.stderr
    # the record as the previous release wrote it: no TLS settings at all
    path = "/var/lib/provision/pypiserver.json"
    record = json.loads(sh(host, f"cat {path}").stdout)
    for key in ("tls", "pypiserver_backend_port", "tls_names", "tls_cert", "tls_key",
                "upload_max_size", "https_redirect_port"):
        record["settings"].pop(key)
    sh(host, f"cat > {path}", input=json.dumps(record).encode())
    # nginx installed but stopped, as the Red Hat family's package leaves it (Debian's starts
    # it): the move must restart pypiserver off the public port before nginx starts on it
    sh(host, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
             "--no-install-recommends nginx >/dev/null && systemctl disable --now nginx")
    set_vars(inv, tls=None)
    moved = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "this server moved to https on the same port: clients must now use" in moved.stdout
    assert "Ensure pypiserver leaves port 8000 to nginx.  [restart it on its new address" in moved.stdout
    # the package and the account came along
    status, _, body = http_get(host.address, 8000, "/simple/old-pkg/")
    assert status == 200 and old.name in body
    new = make_wheel(tmp_path, "old-pkg", "1.1")
    up = upload(index(host), new, ca_file())
    assert up.returncode == 0, up.stdout + up.stderr
    wrong = upload(index(host), make_wheel(tmp_path, "old-pkg", "1.2"), ca_file(), password="nope")
    assert wrong.returncode != 0 and "403" in wrong.stdout + wrong.stderr
    # an old client's http URL finds its way (redirect to https on the same port)
    status, headers, _ = http_get(host.address, 8000, "/simple/old-pkg/", tls=False)
    assert status == 301 and headers["Location"] == f"{index(host)}simple/old-pkg/"
    again = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert recap(again.stdout, host.name)[1:3] == (0, 0), again.stdout
    # the password in no log of nginx or pypiserver
    logs = sh(host, "cat /var/log/nginx/*.log; journalctl -u pypiserver -u nginx --no-pager -o cat",
              check=False).stdout
    assert "olduser" in logs and PASSWORD not in logs
    # and back to plain http: our site goes, nginx lets go of the port, pypiserver takes it
    set_vars(inv, tls=False)
    back = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "Ensure the nginx site /etc/nginx/conf.d/pypiserver.conf is absent" in back.stdout
    status, headers, body = http_get(host.address, 8000, "/simple/old-pkg/", tls=False)
    assert status == 200 and "waitress" in headers.get("Server", "").lower() and new.name in body
    assert sh(host, "systemctl is-active pypiserver-index.path", check=False).stdout.strip() == "inactive"
    set_vars(inv, tls=True)      # explicitly: the record now says false
    forth = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert forth.returncode == 0, forth.stdout + forth.stderr
    status, _, body = http_get(host.address, 8000, "/simple/old-pkg/")
    assert status == 200 and new.name in body


def test_upload_limits(host, inv, tmp_path):
    set_vars(inv, upload_max_size="1m")
    assert invoke("deploy", "--inventory", inv, "-H", host.name).returncode == 0
    big = make_wheel(tmp_path, "big-pkg", "1.0", payload=2 * 1024 * 1024)
    refused = upload(index(host), big, ca_file())
    assert refused.returncode != 0 and "413" in refused.stdout + refused.stderr
    # back to the default: said explicitly (the host's record would keep 1m otherwise)
    set_vars(inv, upload_max_size="512m")
    assert invoke("deploy", "--inventory", inv, "-H", host.name).returncode == 0
    huge = make_wheel(tmp_path, "huge-pkg", "1.0", payload=200 * 1024 * 1024)
    done = upload(index(host), huge, ca_file())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    digest = sh(host, f"sha256sum /srv/pypi/packages/{huge.name}").stdout.split()[0]
    assert digest == hashlib.sha256(huge.read_bytes()).hexdigest()
    # served by nginx from disk, with the cache headers of an immutable file
    status, headers, _ = http_get(host.address, 8000, f"/packages/{make_wheel(tmp_path, 'old-pkg', '1.0').name}")
    assert status == 200 and "immutable" in headers["Cache-Control"] and headers.get("ETag")


def test_the_certificate_follows_the_names_and_yours_replaces_it(host, inv, tmp_path, monkeypatch):
    from cryptography import x509

    set_vars(inv, tls_names=["pypi.test.internal"])
    res = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "issue (does not cover pypi.test.internal)" in res.stdout
    cert = x509.load_der_x509_certificate(served_certificate(host))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "pypi.test.internal" in san.get_values_for_type(x509.DNSName)
    assert recap(invoke("deploy", "--inventory", inv, "-H", host.name).stdout, host.name)[1] == 0
    # your own pair (here from another CA), checked here, then served as it is
    monkeypatch.setenv("PROVISION_CA_DIR", str(tmp_path / "theirs"))
    theirs = tls.ensure_ca()
    pair = tls.issue(theirs, [host.address])
    (tmp_path / "mine.pem").write_bytes(pair.cert_pem + theirs.cert_pem)
    (tmp_path / "mine.key").write_bytes(pair.key_pem)
    monkeypatch.undo()
    before = sh(host, "sha256sum /etc/pypiserver/tls/server.crt").stdout
    set_vars(inv, tls_names=["elsewhere.test.internal"], tls_cert=str(tmp_path / "mine.pem"),
             tls_key=str(tmp_path / "mine.key"))
    refused = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert refused.returncode == 2 and "does not cover elsewhere.test.internal" in refused.stdout
    assert sh(host, "sha256sum /etc/pypiserver/tls/server.crt").stdout == before   # untouched
    set_vars(inv, tls_names=[])      # explicitly: the record keeps what a deploy was given
    used = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert used.returncode == 0, used.stdout + used.stderr
    assert "install your certificate" in used.stdout
    assert hashlib.sha256(served_certificate(host)).hexdigest() == tls.fingerprint(pair.cert_pem)
    assert sh(host, "stat -c '%U %a' /etc/pypiserver/tls/server.key").stdout.strip() == "root 600"
    set_vars(inv, tls_cert="", tls_key="")
    back = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert back.returncode == 0 and "issue (not signed by this machine's CA)" in back.stdout, back.stdout


def test_nginx_greets_no_one_on_port_80(host, inv):
    """Debian's package enables a welcome page on port 80: the deploys above disabled it (it
    was the package's own); a site someone changed would stay."""
    assert sh(host, "test -e /etc/nginx/sites-enabled/default && echo on || echo off").stdout.strip() == "off"
    assert sh(host, "test -f /etc/nginx/sites-available/default && echo kept").stdout.strip() == "kept"
    assert ":80 " not in sh(host, "ss -ltnH").stdout
    sh(host, "echo '# mine' >> /etc/nginx/sites-available/default && "
             "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default")
    again = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert "enabled and changed by someone: left alone" in again.stdout, again.stdout
    assert sh(host, "test -e /etc/nginx/sites-enabled/default && echo on").stdout.strip() == "on"


def test_redirect_port_80(host, inv):
    set_vars(inv, https_redirect_port=80)
    res = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    status, headers, _ = http_get(host.address, 80, "/simple/", tls=False)
    assert status == 301 and headers["Location"] == f"{index(host)}simple/"
    ports = sh(host, "firewall-cmd --list-ports").stdout.split()
    assert sorted(ports) == ["80/tcp", "8000/tcp"]
    set_vars(inv, https_redirect_port=0)
    back = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert back.returncode == 0, back.stdout + back.stderr
    assert sh(host, "firewall-cmd --list-ports").stdout.split() == ["8000/tcp"]   # closed again
