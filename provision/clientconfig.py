"""A developer machine's pip and twine configuration for the private index.

Rendered from templates/client/ (pip.conf.j2, pypirc.j2), then either printed or merged into the
user's files: only the keys we own are set, every other section, setting and comment is
kept, multi-valued keys (trusted-host, extra-index-url, index-servers) gain our value
without losing theirs, a timestamped backup keeps what was replaced, and the new file is
written atomically (.pypirc mode 0600: it may hold a password).

Both files are read by configparser.RawConfigParser (pip's configuration.py, twine's
utils.get_config): no interpolation, so a '%' is written as it is, and values are
stripped, so a value is exact unless it starts or ends with whitespace.
"""

from __future__ import annotations

import locale
import os
import re
import shutil
import stat
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ClientConfigError  # noqa: F401 - raised here

MULTI = {"trusted-host", "extra-index-url", "index-servers"}
MAX_BYTES = 1 << 20
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_AUTHORITY = re.compile(r"(?:[^:/?#]*:)?(?://)?([^/?#]*)")
_COMMENT = ("#", ";")
DEPENDENCY_CONFUSION = (
    "warning: with extra-index-url pip takes the highest version from the private index OR "
    "PyPI, so anyone can shadow a private name by publishing it on PyPI (dependency "
    "confusion). The default, index-url with pypiserver's fallback, keeps private names private."
)


def _control(text: str) -> bool:
    """Has TEXT a control character or a line break of any kind (\\x85, U+2028...)?"""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def index_urls(base: str) -> tuple[str, str]:
    """(the pip index URL, the twine repository URL) of a server base URL."""
    if "@" in _AUTHORITY.match(base)[1]:
        # not echoed: it holds a password
        raise ClientConfigError("bad index URL: no user:password@ in it (pip.conf is world-readable, "
                                "0644): credentials belong in .pypirc (--password-stdin) or your keyring")
    if _control(base) or any(ch.isspace() for ch in base):
        raise ClientConfigError(f"bad index URL {base!r}: it has whitespace or a control character")
    if "?" in base or "#" in base:
        raise ClientConfigError(f"bad index URL {base!r}: no query (?) or fragment (#) allowed")
    try:
        parts = urlsplit(base)
        port = parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port that is no number or > 65535
        raise ClientConfigError(f"bad index URL {base!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientConfigError(f"bad index URL {base!r}: expected http(s)://HOST[:PORT]/")
    if port == 0:
        raise ClientConfigError(f"bad index URL {base!r}: the port must be 1 to 65535")
    root = base.rstrip("/") + "/"
    if root.endswith("/simple/"):
        root = root[: -len("simple/")]
    return root + "simple/", root


def check_username(username: str) -> str:
    from .htpasswd import AccountError, check_name

    try:
        check_name(username)  # empty, ':', whitespace, ASCII controls, leading '#', > 255
    except AccountError as exc:
        raise ClientConfigError(f"bad --username: {exc}") from None
    if _control(username):  # the C1 controls check_name lets through
        raise ClientConfigError(f"bad --username {username!r}: it has a control character")
    return username


def check_password(password: str) -> str:
    if not password:
        raise ClientConfigError("the password is empty")
    if _control(password):
        raise ClientConfigError("the password has a control character or a line break")
    if password != password.strip():
        raise ClientConfigError("the password starts or ends with whitespace, which .pypirc cannot keep "
                                "(its parser strips values): give it to twine with TWINE_PASSWORD or "
                                "keyring instead")
    return password


def render(base_url: str, name: str, username: str | None, password: str | None,
           extra: bool, cert: str | None = None) -> tuple[str, str]:
    """(pip.conf, .pypirc) text; ``cert``: the CA bundle file pip and twine verify the
    server with (a private CA's), or None (a publicly trusted certificate, or http)."""
    from .render import render as render_template

    if not _NAME.fullmatch(name):
        raise ClientConfigError(f"bad repository name {name!r}: letters, digits and ._- only")
    simple, repository = index_urls(base_url)
    if username is not None:
        check_username(username)
    if password is not None:
        check_password(password)
    parts = urlsplit(simple)
    # pip refuses plain http otherwise. An IPv6 host goes bare (fd00::1), as pip's own
    # warning suggests: every pip matches that form, pip < 19.3 not the bracketed one.
    trusted = parts.hostname if parts.scheme == "http" else ""
    if cert is not None and (_control(cert) or cert != cert.strip()):
        raise ClientConfigError(f"bad CA bundle path {cert!r}")
    pip_conf = render_template("client/pip.conf.j2", url=simple, extra=extra, trusted_host=trusted,
                               cert=cert or "")
    pypirc = render_template("client/pypirc.j2", name=name, repository=repository,
                             username=username or "", password=password or "", cert=cert or "")
    return pip_conf, pypirc


def _lines(text: str) -> list[str]:
    # "\n" only, as configparser reads files: str.splitlines() would also break a value
    # at \x0c, \x85 or U+2028.
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of an INI text, continuation lines folded into the value."""
    out: list[tuple[str, str, str]] = []
    section = None
    for line in _lines(text):
        m = _SECTION.match(line)
        if m:
            section = m[1]
        elif section and line[:1] in (" ", "\t") and line.strip() and out:
            s, k, v = out[-1]
            out[-1] = (s, k, f"{v}\n{line.strip()}".strip())
        elif section and "=" in line and not line.lstrip().startswith(_COMMENT):
            k, v = line.split("=", 1)
            out.append((section, k.strip(), v.strip()))
    return out


def _key_re(key: str):
    return re.compile(rf"^\s*{'[-_]'.join(map(re.escape, re.split(r'[-_]', key)))}\s*[=:]", re.I)


def merge(existing: str, wanted: str) -> str:
    """EXISTING with every setting of WANTED applied, everything else kept."""
    lines = _lines(existing)
    for section, key, value in settings(wanted):
        lines = _apply(lines, section, key, value)
    text = "\n".join(lines)
    return text + "\n" if text else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _value_end(lines: list[str], i: int, end: int) -> int:
    """Index after the last line that configparser folds into the value begun on line I:
    lines indented deeper, with blank and comment lines between them."""
    last = i
    for k in range(i + 1, end):
        text = lines[k].strip()
        if text and not text.startswith(_COMMENT):
            if _indent(lines[k]) <= _indent(lines[i]):
                break
            last = k
    return last + 1


def _apply(lines: list[str], section: str, key: str, value: str) -> list[str]:
    start = next((i for i, ln in enumerate(lines) if (m := _SECTION.match(ln)) and m[1] == section), None)
    if start is None:
        tail = [""] if lines and lines[-1].strip() else []
        return lines + tail + [f"[{section}]"] + _format(key, value)
    end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
    key_re = _key_re(key)
    for i in range(start + 1, end):
        if m := key_re.match(lines[i]):
            j = _value_end(lines, i, end)
            rest = [ln.strip() for ln in lines[i + 1:j] if not ln.strip().startswith(_COMMENT)]
            old = "\n".join([lines[i][m.end():].strip()] + rest).rstrip()
            new = value
            if key in MULTI:
                have = old.split()
                new = " ".join(have + [v for v in value.split() if v not in have])
                if new == " ".join(have):
                    return lines
            elif new == old:
                return lines
            return lines[:i] + _format(key, new) + lines[j:]
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    return lines[: last + 1] + _format(key, value) + lines[last + 1:]


def _format(key: str, value: str) -> list[str]:
    if key not in MULTI:
        return [f"{key} = {value}"]
    values = value.split()
    if len(values) > 1 or key == "index-servers":
        return [f"{key} ="] + [f"    {v}" for v in values]
    return [f"{key} = {' '.join(values)}"]


def default_paths() -> tuple[Path, Path]:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "pip" / "pip.conf", Path.home() / ".pypirc"


def read_config(path: Path) -> str | None:
    """PATH's text (None if it does not exist): a regular file of at most MAX_BYTES only."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang us before fstat can refuse it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    too_big = ClientConfigError(f"{path} is larger than 1 MiB: not a config file to merge into")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ClientConfigError(f"{path} is not a regular file: refusing to merge into it")
        if st.st_size > MAX_BYTES:
            raise too_big
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_BYTES + 1)  # it may have grown since fstat
        if len(data) > MAX_BYTES:
            raise too_big
        text = data.decode(locale.getpreferredencoding(False))  # what pip and twine read with
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        os.close(fd)
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Update:
    """A merge computed (every file read and checked) but not written yet."""

    path: Path
    target: Path  # PATH with symlinks resolved: the file written, so a link stays a link
    existing: str | None
    new: str
    mode: int | None

    def apply(self) -> str:
        """Write the merge; returns what happened, for the report."""
        if self.new == self.existing:
            return f"ok       {self.path} (already set)"
        target, mode, note = self.target, self.mode, ""
        if os.path.islink(self.path):
            note = f" (through the link to {target})"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.existing is not None:
                backup = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
                shutil.copy2(target, backup)
                note += f" (previous version kept as {backup})"
                if mode is None:
                    mode = target.stat().st_mode & 0o777
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                os.fchmod(fd, 0o644 if mode is None else mode)
                with os.fdopen(fd, "w", encoding=locale.getpreferredencoding(False)) as fh:
                    fh.write(self.new)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise ClientConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
        except UnicodeEncodeError as exc:
            raise ClientConfigError(f"cannot write {target}: {exc}") from None
        return f"changed  {self.path}{note}"


def prepare(path: Path, wanted: str, mode: int | None = None) -> Update:
    """Read PATH and merge WANTED into it, writing nothing yet."""
    target = Path(os.path.realpath(path))
    existing = read_config(target)
    new = merge(existing, wanted) if existing and existing.strip() else wanted
    return Update(path, target, existing, new, mode)


def write_merged(path: Path, wanted: str, mode: int | None = None) -> str:
    """Merge WANTED into PATH; returns what happened, for the report."""
    return prepare(path, wanted, mode).apply()


# -- where the server is, and whether it answers ------------------------------------------
VERIFY_TIMEOUT = 5.0


def deployed_url(target) -> tuple[str, list[str], bytes | None]:
    """(base URL, notes, CA certificate): the index a deployed host serves, from its record of
    its last deploy, and the private CA its certificate chains to (None: http, or a
    certificate of the user's own, which their clients trust already).

    One exec channel, as the SSH user (record and CA certificate are world-readable: no sudo,
    no password). Precedence as for a deploy: inventory variables over the record over the
    defaults.
    """
    from .connection import Remote
    from .facts import FileText, section_script, split_sections
    from .roles import index_url, parse_record, record_path
    from .validate import role_vars

    v = role_vars(target)
    path = record_path(v["pypiserver_service"])
    record = FileText(path)
    remote = Remote(target)
    try:
        # the CA's usual place; the record may name another config dir: read again then
        ca_path = f"{v['pypiserver_config_dir']}/tls/ca.crt"
        out = split_sections(remote.run_as_user(section_script(
            {"record": record.command(), "ca": FileText(ca_path).command()})).stdout)
        recorded = parse_record(record.parse(*out["record"]) or "", f"{target.name}:{path}") \
            if "record" in out else None
        if recorded is None:
            raise ClientConfigError(f"{target.name} has no record of a deploy ({path}): deploy first "
                                    f"(invoke deploy -H {target.name}), or give the index's --url")
        target.recorded = recorded
        v = role_vars(target)
        ca = None
        if v["tls"] and not v["tls_cert"]:
            if f"{v['pypiserver_config_dir']}/tls/ca.crt" != ca_path:
                ca_path = f"{v['pypiserver_config_dir']}/tls/ca.crt"
                out = split_sections(remote.run_as_user(section_script(
                    {"ca": FileText(ca_path).command()})).stdout)
            text = FileText(ca_path).parse(*out["ca"]) if "ca" in out else None
            if not text or "BEGIN CERTIFICATE" not in text:
                raise ClientConfigError(f"{target.name}:{ca_path} holds no CA certificate: deploy "
                                        f"again (invoke deploy -H {target.name})")
            ca = (text.strip() + "\n").encode()
    finally:
        remote.close()
    # the address deploy printed: ~/.ssh/config's HostName for an alias
    return index_url(v, remote.hostname or target.ssh_host), remote.notes, ca


PRIVATE_MARK = "# private index CAs (kept across runs; the public roots above are re-read each run)"
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def public_roots() -> tuple[str | None, str]:
    """(path, text) of this machine's public root bundle; (None, "") when it has none. A
    bundle this tool wrote (SSL_CERT_FILE pointing at it, as uv's line says) is skipped."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            text = Path(candidate).read_text(errors="replace")
            if PRIVATE_MARK not in text:
                return candidate, text
    return None, ""


def ca_bundle(path: Path, ca_pem: bytes, public: str | None = None) -> str:
    """The CA bundle pip, twine and uv verify with: this machine's public roots (a name
    pypiserver does not hold is redirected to PyPI, which they must still trust), read
    afresh each run, plus the private CAs of the servers configured here, this one included,
    kept below a mark. Returns its text."""
    public = public_roots()[1] if public is None else public
    public_certs = set(_PEM.findall(public))
    existing = read_config(path) or ""
    if PRIVATE_MARK in existing:
        kept = _PEM.findall(existing.split(PRIVATE_MARK, 1)[1])
    else:   # written before the mark: every block the current roots lack (old roots too)
        kept = [b for b in _PEM.findall(existing) if b not in public_certs]
    private: list[str] = []
    for block in kept + _PEM.findall(ca_pem.decode()):
        if block not in private:
            private.append(block)
    head = "# Managed by provision (client-config): public roots + private index CAs\n"
    return head + (public.rstrip("\n") + "\n" if public.strip() else "") + PRIVATE_MARK + "\n" + \
        "".join(f"{b}\n" for b in private)


def uv_settings(simple: str, bundle: str | None) -> str:
    """uv reads no pip.conf: its index in uv.toml, the CA bundle from SSL_CERT_FILE."""
    lines = [f"export UV_DEFAULT_INDEX={simple}"]
    if bundle:
        lines.append(f"export SSL_CERT_FILE={bundle}")
    return "\n".join(lines) + "\n"


def uv_toml(simple: str, name: str) -> str:
    from .render import render as render_template

    return render_template("client/uv.toml.j2", url=simple, name=name)


def verify_index(base_url: str, timeout: float = VERIFY_TIMEOUT, ca_pem: bytes | None = None) -> str:
    """GET <base>simple/: 200 (open index) or 401 (password for reading too) is an index;
    over https, the certificate verifies (with the private CA, when given).

    Returns what answered; raises ClientConfigError (one line) otherwise.
    """
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    simple, _ = index_urls(base_url)
    context = ssl.create_default_context()
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem.decode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),  # the server itself
                                         urllib.request.HTTPSHandler(context=context))
    hint = "deploy first, check the address and the firewall, or pass --no-verify"
    try:
        with opener.open(urllib.request.Request(simple, headers={"Connection": "close"}),
                         timeout=timeout) as resp:
            return f"HTTP {resp.status} from {simple}"
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return f"HTTP 401 from {simple} (reading needs a password)"
        raise ClientConfigError(f"{simple} answers HTTP {exc.code}, not an index: {hint}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        why = getattr(exc, "reason", None) or exc
        if isinstance(why, ssl.SSLCertVerificationError):
            raise ClientConfigError(f"{simple}: the certificate does not verify ({why.verify_message}): "
                                    f"give the CA that signed it with --ca FILE") from None
        why = getattr(why, "strerror", None) or str(why) or type(why).__name__
        raise ClientConfigError(f"no index answers at {simple} ({why}): {hint}") from None
