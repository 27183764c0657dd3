"""Steps (and their facts) only the pypiserver role uses: CentOS 7's vault, a Python from
the Red Hat repos."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import StepError
from ...facts import Fact, FileText, version_key
from ...steps.base import Command, Plan, Step, q


# repo lines that use CentOS 7's dead mirrors
DEAD_MIRRORS = r"^(mirrorlist=https?://mirrorlist\.centos\.org|baseurl=https?://mirror\.centos\.org)"
# awk: for each file with enabled repos lacking an active baseurl=, mirrorlist= or
# metalink= line, prints "FILE [repo] [repo]". As yum reads them: keys start the line
# (an indented line continues the previous value), any case; enabled defaults to on.
NO_URL_AWK = r"""
function end_repo() { if (repo != "" && on && !url) bad = bad " [" repo "]"; repo = "" }
function end_file() { end_repo(); if (bad != "") print file bad; bad = "" }
FNR == 1 { end_file(); file = FILENAME }
/^\[/ { end_repo(); repo = $0; sub(/^\[/, "", repo); sub(/\].*/, "", repo); on = 1; url = 0; next }
{ line = tolower($0) }
line ~ /^enabled[ \t]*=/ { on = line !~ /=[ \t]*(0|no|false|off)[ \t\r]*$/ }
line ~ /^(baseurl|mirrorlist|metalink)[ \t]*=[ \t]*[^ \t\r]/ { url = 1 }
END { end_file() }
"""


@dataclass(frozen=True)
class DeadMirrorRepos(Fact):
    """The yum repo files with a line that uses CentOS 7's dead mirrors (DEAD_MIRRORS)."""

    pattern: str = field(default=DEAD_MIRRORS, repr=False)

    def command(self):
        return f"grep -lE {q(self.pattern)} /etc/yum.repos.d/*.repo"

    def parse(self, text, rc) -> list[str]:
        return text.split()


@dataclass(frozen=True)
class ReposWithoutUrl(Fact):
    """``FILE [repo] [repo]`` per repo file whose enabled repos have no URL (an awk program
    run over /etc/yum.repos.d: NO_URL_AWK)."""

    program: str = field(default=NO_URL_AWK, repr=False)

    def command(self):
        return f"awk {q(self.program)} /etc/yum.repos.d/*.repo"

    def parse(self, text, rc) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]


class PythonFromRepos(Step):
    """Red Hat family: a Python that gets a current pypiserver, the newest the repos offer.

    Installed Pythons come from the facts. When none is current, the candidates are tried
    newest first; if the repos offer none of them, the release's python3 is installed and a
    marker records that, so the next run does not ask the repos again (delete the marker to).
    """

    MARKER = "/var/lib/provision/python-from-repos"
    report_output = True  # "installed python3.12": which one the repos offered

    def __init__(self, candidates: dict[str, list[str]], current: str, supported: list[str],
                 install: str):
        self.candidates, self.current = candidates, current
        self.supported, self.install = supported, install
        self.name = "Ensure a Python for pypiserver is installed (the newest the repos offer)."

    def probes(self):
        return {"marker": FileText(self.MARKER)}

    def plan(self, facts, probed):
        if facts.family != "RedHat":
            return Plan(note="not the Red Hat family")
        have = sorted((v for v in facts.pythons if v in self.supported), key=version_key)
        if have and version_key(have[-1]) >= version_key(self.current):
            return Plan(note=f"python {have[-1]} installed")
        if have and probed["marker"] is not None:
            return Plan(note=f"python {have[-1]}: the repos offered nothing newer")
        cands = self.candidates.get(facts.os_major, [])
        tries = "".join(
            f"if {self.install.replace('{packages}', q(p))} >/dev/null 2>&1; then "
            f"echo 'installed {p}'; exit 0; fi\n" for p in cands)
        cmd = (f"{tries}{self.install.replace('{packages}', 'python3')}\n"
               f"mkdir -p {q(str(Path(self.MARKER).parent))} && echo python3 > {q(self.MARKER)}")
        offer = ", ".join(cands + ["python3"])
        return Plan([Command(cmd)], f"install the first the repos offer of {offer}")


class VaultRepos(Step):
    """CentOS 7 after end of life: repo files using the dead mirrors point at the vault.

    Only files that use mirrorlist.centos.org or mirror.centos.org are edited (sed -i
    writes a new file and renames it; the original is kept as FILE.provision-orig), so
    a repo file pointing at your own mirror is left alone, and a second run finds nothing.
    x86_64's paths (/centos/7/) go to the vault's main tree; the other architectures'
    (/altarch/7/) to its altarch tree.

    yum refuses to work while an enabled repo has no URL, so "every enabled repo keeps a
    URL" is checked rather than hoped for: after the edit (a file that fails it is put back
    from its .provision-orig copy and the step fails, naming it), and by the probe (a file
    already left so, by hand or by an older version of this step, fails the step instead of
    being reported ok).
    """

    DEAD, NO_URL = DEAD_MIRRORS, NO_URL_AWK

    def __init__(self, vault_url: str, vault_altarch_url: str, enabled: bool = True):
        self.vault_url, self.enabled = vault_url.rstrip("/"), enabled
        self.vault_altarch_url = vault_altarch_url.rstrip("/")
        self.name = "Ensure CentOS 7 repos point at the vault (its mirrors are gone)."

    def probes(self):
        return {"files": DeadMirrorRepos(), "no_url": ReposWithoutUrl()}

    def plan(self, facts, probed):
        if facts.os_id != "centos" or facts.os_major != "7":
            return Plan(note="not CentOS 7")
        broken = probed["no_url"]
        if broken:  # yum fails on these whatever we do (kept repos included): say why, now
            raise StepError(f"{'; '.join(broken)}: enabled repos with no baseurl, mirrorlist or "
                            f"metalink, yum cannot work: give them one (or put back the file's "
                            f".provision-orig copy if an earlier run left it so) and run again")
        files = probed["files"]
        if not files:
            return Plan(note="no repo file uses the dead mirrors")
        if not self.enabled:
            return Plan(note=f"{len(files)} repo files use the dead mirrors: kept (centos7_vault: false)")
        v, a = self.vault_url, self.vault_altarch_url
        sed = ("sed -i.provision-orig"
               r" -e 's|^\(mirrorlist=https\{0,1\}://mirrorlist\.centos\.org\)|#\1|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror.centos.org/centos/\$releasever/|baseurl={v}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror.centos.org/centos/7/|baseurl={v}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror\.centos\.org/altarch/\$releasever/|baseurl={a}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror\.centos\.org/altarch/7/|baseurl={a}/|'")
        cmds = [Command(f"{sed} {q(f)}\n"
                        f"bad=$(awk {q(self.NO_URL)} {q(f)})\n"
                        f"if [ -n \"$bad\" ]; then mv -f {q(f + '.provision-orig')} {q(f)}; "
                        f"echo \"$bad: enabled repos left with no baseurl, mirrorlist or metalink "
                        f"by the vault rewrite: original put back, give them a baseurl by hand\"; "
                        f"exit 1; fi") for f in files]
        url = v if facts.arch == "x86_64" else a
        return Plan(cmds + [Command("yum clean all -q")],
                    f"{len(files)} repo files -> {url} (mirrorlist.centos.org is gone)")
