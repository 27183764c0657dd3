"""Certificates for the HTTPS front, made and checked on this machine (`cryptography`).

By default a private CA is made once per user (``~/.config/provision/ca/``, or
``$PROVISION_CA_DIR``: ``ca.key`` 0600 in a 0700 folder, ``ca.crt``) and signs, per host, a
server certificate whose subjectAltNames are every name and address clients use. A deploy
reissues it when it is within `RENEW_DAYS` of expiry, no longer covers the names, or was not
signed by this CA; otherwise it is left alone. With ``tls_cert``/``tls_key`` the user brings
their own pair, checked here (the key matches, the names are covered, not expired) before
any host is touched.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import TlsError

_LOCK = threading.Lock()
RENEW_DAYS = 30
CERT_DAYS = 397          # the longest a public CA may issue today: a familiar figure
CA_DAYS = 3650


def ca_dir() -> Path:
    env = os.environ.get("PROVISION_CA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "provision" / "ca"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _san(names: list[str]):
    from cryptography import x509

    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n.strip("[]"))))
        except ValueError:
            out.append(x509.DNSName(n.lower().rstrip(".")))
    return x509.SubjectAlternativeName(out)


@dataclass(frozen=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class CA:
    cert_pem: bytes
    key_pem: bytes
    path: Path        # the CA certificate's file (what clients trust)


def ensure_ca() -> CA:
    """The user's private CA, made on first use (key 0600 in a 0700 folder)."""
    d = ca_dir()
    key_file, cert_file = d / "ca.key", d / "ca.crt"
    with _LOCK:   # hosts prepare in parallel threads (and runs in parallel processes): one CA
        if key_file.is_file() and cert_file.is_file():
            return _read_ca(d, key_file, cert_file)
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(d, 0o700)
            lock = os.open(d / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TlsError(f"cannot create the private CA folder {d}: {exc.strerror}") from None
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
            if key_file.is_file() and cert_file.is_file():   # another process made it meanwhile
                return _read_ca(d, key_file, cert_file)
            return _make_ca(key_file, cert_file)
        finally:
            os.close(lock)


def _read_ca(d: Path, key_file: Path, cert_file: Path) -> CA:
    try:
        return CA(cert_file.read_bytes(), key_file.read_bytes(), cert_file)
    except OSError as exc:
        raise TlsError(f"cannot read the private CA in {d}: {exc.strerror}") from None


def _make_ca(key_file: Path, cert_file: Path) -> CA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provision"),
                      x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"provision private CA ({socket.gethostname()[:40]})")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_new(key_file, key_pem, 0o600)
    _write_new(cert_file, cert_pem, 0o644)
    return CA(cert_pem, key_pem, cert_file)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def issue(ca: CA, names: list[str]) -> Pair:
    """A new key and a server certificate for NAMES, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    except (ValueError, TypeError):
        raise TlsError(f"the private CA in {ca.path.parent} is unreadable (ca.crt/ca.key): restore "
                       f"it, or move it away to have a new one made (hosts then get new "
                       f"certificates and clients must trust the new CA)") from None
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Pair(cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _covers(cert, names: list[str]) -> list[str]:
    """The names the certificate does not cover (wildcards one label deep, as TLS clients do)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(names)
    dns = [d.lower() for d in san.get_values_for_type(x509.DNSName)]
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    missing = []
    for n in names:
        bare = n.strip("[]")
        try:
            if str(ipaddress.ip_address(bare)) in ips:
                continue
            missing.append(n)
            continue
        except ValueError:
            pass
        h = n.lower().rstrip(".")
        if h in dns or any(d.startswith("*.") and "." in h and h.split(".", 1)[1] == d[2:] for d in dns):
            continue
        missing.append(n)
    return missing


def renewal_reason(cert_pem: bytes | None, ca: CA, names: list[str]) -> str | None:
    """Why the host's certificate must be reissued, or None if it is still good."""
    from cryptography import x509

    if not cert_pem:
        return "no certificate yet"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate on the host is unreadable"
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    except ValueError:
        raise TlsError(f"the private CA certificate {ca.path} is unreadable: restore it, or move "
                       f"the folder away to have a new CA made") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return "not signed by this machine's CA"
    left = cert.not_valid_after_utc - _now()
    if left < dt.timedelta(days=RENEW_DAYS):
        return f"expires in {max(0, left.days)} days"
    missing = _covers(cert, names)
    if missing:
        return f"does not cover {', '.join(missing)}"
    return None


def days_left(cert_pem: bytes) -> int:
    from cryptography import x509

    return (x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc - _now()).days


def load_user_pair(cert_path: str, key_path: str, names: list[str]) -> Pair:
    """The user's certificate (with its chain) and key, checked: the key matches, the
    certificate covers every name, and has not expired (nor will within RENEW_DAYS: warned
    by the caller)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert_pem, key_pem = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError(f"tls_cert {cert_path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        raise TlsError(f"tls_key {key_path} is not an unencrypted PEM private key") from None
    leaf = certs[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, pub) != \
            key.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise TlsError(f"tls_key {key_path} does not match the certificate in {cert_path}")
    if leaf.not_valid_after_utc <= _now():
        raise TlsError(f"tls_cert {cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    missing = _covers(leaf, names)
    if missing:
        raise TlsError(f"tls_cert {cert_path} does not cover {', '.join(missing)} (the names clients "
                       f"use): reissue it with them, or set pypiserver_url_host/tls_names")
    return Pair(cert_pem, key_pem)


def fingerprint(cert_pem: bytes) -> str:
    """sha256 of the (first) certificate's DER, as hex."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificates(cert_pem)[0].fingerprint(hashes.SHA256()).hex()
