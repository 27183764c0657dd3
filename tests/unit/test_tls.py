"""The private CA and the certificates it signs; a user's own pair checked before use."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest

from provision import tls
from provision.errors import TlsError


def test_the_private_ca_is_made_once_with_a_private_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVISION_CA_DIR", str(tmp_path / "ca"))
    ca = tls.ensure_ca()
    assert stat.S_IMODE(os.stat(tmp_path / "ca").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "ca" / "ca.key").st_mode) == 0o600
    assert tls.ensure_ca() == ca                      # made once, then read
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_server_certificate_covers_every_name_and_renews_as_documented(monkeypatch):
    ca = tls.ensure_ca()
    names = ["pypi.example.org", "10.0.0.5", "fd00::5"]
    pair = tls.issue(ca, names)
    assert tls.renewal_reason(pair.cert_pem, ca, names) is None
    assert tls.renewal_reason(pair.cert_pem, ca, ["pypi.example.org"]) is None   # a subset
    assert tls.renewal_reason(pair.cert_pem, ca, names + ["other.example.org"]) == \
        "does not cover other.example.org"
    assert tls.renewal_reason(None, ca, names) == "no certificate yet"
    assert tls.renewal_reason(b"garbage", ca, names) == "the certificate on the host is unreadable"
    later = tls._now() + dt.timedelta(days=tls.CERT_DAYS - tls.RENEW_DAYS + 1)
    monkeypatch.setattr(tls, "_now", lambda: later)
    assert tls.renewal_reason(pair.cert_pem, ca, names).startswith("expires in ")


def test_another_cas_certificate_is_reissued(tmp_path, monkeypatch):
    ours = tls.ensure_ca()
    monkeypatch.setenv("PROVISION_CA_DIR", str(tmp_path / "other"))
    theirs = tls.ensure_ca()
    pair = tls.issue(theirs, ["h"])
    assert tls.renewal_reason(pair.cert_pem, ours, ["h"]) == "not signed by this machine's CA"


def _user_pair(tmp_path, names, days=90, other_key=False):
    ca = tls.ensure_ca()
    pair = tls.issue(ca, names)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pair.cert_pem + ca.cert_pem)          # leaf + chain, as CAs ship them
    key.write_bytes(tls.issue(ca, names).key_pem if other_key else pair.key_pem)
    return str(cert), str(key)


def test_a_users_pair_is_checked_before_use(tmp_path, monkeypatch):
    cert, key = _user_pair(tmp_path, ["pypi.example.org", "*.corp.example.org"])
    pair = tls.load_user_pair(cert, key, ["pypi.example.org", "idx.corp.example.org"])
    assert pair.cert_pem.count(b"BEGIN CERTIFICATE") == 2      # the chain goes to nginx too
    with pytest.raises(TlsError, match="does not cover 10.0.0.5"):
        tls.load_user_pair(cert, key, ["pypi.example.org", "10.0.0.5"])
    with pytest.raises(TlsError, match="does not cover a.b.corp.example.org"):  # one label deep
        tls.load_user_pair(cert, key, ["a.b.corp.example.org"])
    (tmp_path / "x").mkdir()
    bad_cert, bad_key = _user_pair(tmp_path / "x", ["h"], other_key=True)
    with pytest.raises(TlsError, match="does not match the certificate"):
        tls.load_user_pair(bad_cert, bad_key, ["h"])
    with pytest.raises(TlsError, match="cannot read"):
        tls.load_user_pair(str(tmp_path / "nope.pem"), key, ["h"])
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(TlsError, match="holds no PEM certificate"):
        tls.load_user_pair(str(tmp_path / "junk.pem"), key, ["h"])
    later = tls._now() + dt.timedelta(days=tls.CERT_DAYS + 1)
    monkeypatch.setattr(tls, "_now", lambda: later)
    with pytest.raises(TlsError, match="expired on"):
        tls.load_user_pair(cert, key, ["pypi.example.org"])


def test_a_refused_pair_fails_the_deploy_before_any_change(tmp_path):
    """tls_cert that does not cover the host: the guard step in the first phase refuses it."""
    from provision.errors import StepError
    from provision.inventory import Target
    from provision.roles.pypiserver import PypiserverRole
    from provision.roles.pypiserver.front import TlsInputs

    from .conftest import distro_facts

    cert, key = _user_pair(tmp_path, ["elsewhere.example.org"])
    target = Target(name="h", ssh_host="192.0.2.10", vars={"tls_cert": cert, "tls_key": key})
    first = PypiserverRole().phases(target)[0]
    guard = next(s for s in first if isinstance(s, TlsInputs))
    with pytest.raises(StepError, match="does not cover 192.0.2.10"):
        guard.prepare(distro_facts("debian-12"))


def test_a_key_and_certificate_from_different_runs_are_reissued(tmp_path):
    """A run that died between writing the key and the certificate left a pair that does not
    match: the next run sees it (the certificate file names its key's sha256) and reissues."""
    import hashlib

    from provision.facts import FileInfo, PathInfo
    from provision.roles.pypiserver.front import ServerCertificate, TlsMaterial

    from .conftest import distro_facts

    material = TlsMaterial("", "", lambda: ["h.example.org"])
    step = ServerCertificate(material, "/etc/pypiserver/tls/server.crt", "/etc/pypiserver/tls/server.key")
    step.prepare(distro_facts("debian-12"))
    fresh = step.plan(distro_facts("debian-12"), {"cert": None, "key": None})
    key, cert = [a for a in fresh.actions if hasattr(a, "content")]
    root600, root644 = PathInfo("root", "root", 0o600), PathInfo("root", "root", 0o644)

    def host(key_bytes):
        return {"cert": FileInfo(root644, hashlib.sha256(cert.content).hexdigest(), cert.content),
                "key": FileInfo(root600, hashlib.sha256(key_bytes).hexdigest())}

    assert not step.plan(distro_facts("debian-12"), host(key.content)).changed
    other = step.plan(distro_facts("debian-12"), host(b"another run's key"))
    assert other.changed and "the key on the host is not the certificate's" in other.note
