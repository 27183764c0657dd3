"""The backup's step: what the host has, against what the folder holds; one stream."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ... import backup
from ...errors import StepError
from ...facts import DirFiles, Fact, FileState, FileText
from ...report import plural
from ...steps.base import Plan, Step, Transfer, q

# a file modified this recently may still be being written (an upload in progress): taken
# by the next backup
SETTLE_SECONDS = 2.0
_SHA = re.compile(r"^\\?([0-9a-f]{64})  (.+)$")


@dataclass(frozen=True)
class HostClock(Fact):
    """The host's time (file ages are measured by its clock, not this machine's)."""

    def command(self):
        return "date +%s.%N"

    def parse(self, text, rc) -> float | None:
        try:
            return float(text.strip())
        except ValueError:
            return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


class BackupFiles(Step):
    """Copy what the host has into the backup folder.

    The listing (names, sizes, mtimes) comes with the facts. A file whose size and mtime
    match the folder's state is not sent again; a file younger than SETTLE_SECONDS is left
    for the next backup. The rest goes as one tar stream on one channel, read on the host at
    the lowest CPU and IO priority; the host then prints each sent file's sha256 and a file
    whose bytes received differ (it changed while read) is dropped, for the next backup.
    Every file appears by rename; the manifest is written last."""

    def __init__(self, folder: Path, packages_dir: str, htpasswd: str, record: str, yanked: str, sent=None,
                 host: str = ""):
        self.folder, self.packages_dir, self.host = folder, packages_dir, host
        self.htpasswd, self.record, self.yanked, self.sent = htpasswd, record, yanked, sent
        self.name = f"Back up the packages, accounts and settings into {folder}/."

    def probes(self):
        return {"now": HostClock(), "files": DirFiles(self.packages_dir),
                "htpasswd": FileState(self.htpasswd, content=True),
                "record": FileText(self.record), "yanked": FileText(self.yanked)}

    def plan(self, facts, probed):
        now = probed["now"] or time.time()
        saved = backup.load_state(self.folder)
        owner = saved.get("host")
        if owner and self.host and owner != self.host:
            raise StepError(f"{self.folder} holds the backup of {owner}: give {self.host} its own folder (--to)")
        state = saved.get("files", {})
        files = probed["files"]
        fresh = [(n, s, m) for n, s, m in files if now - m < SETTLE_SECONDS]
        settled = [(n, s, m) for n, s, m in files if now - m >= SETTLE_SECONDS]
        # unchanged on the host, and the local copy still there, whole in size (a truncated
        # one is sent again)
        have = {n for n, s, m in settled if state.get(n, [None, None])[:2] == [s, m]
                and _size(self.folder / "packages" / n) == s}
        wanted = [(n, s, m) for n, s, m in settled if n not in have]
        extras = {"htpasswd": probed["htpasswd"].content if probed["htpasswd"] else None,
                  "record.json": (probed["record"] or "").encode() or None,
                  "yanked.json": (probed["yanked"] or "").encode()}
        extras_changed = [k for k, data in extras.items() if data is not None and
                          self._local(k) != data]
        manifest_names = {f"packages/{n}" for n, _, _ in settled if n in have} | \
            {k for k, d in extras.items() if d is not None}
        current = self._manifest_names()
        if not wanted and not extras_changed and manifest_names == current:
            if self.sent:
                self.sent(0)
            note = f"nothing new ({plural(len(have), 'file')})"
            return Plan(note=note + (f"; {plural(len(fresh), 'file')} still being written" if fresh else ""))
        total = sum(s for _, s, _ in wanted)
        note = f"send {plural(len(wanted), 'file')} ({total / 1e6:.1f} MB); {len(have)} unchanged"
        if extras_changed:
            note += f"; {', '.join(extras_changed)} changed"
        if fresh:
            note += f"; {plural(len(fresh), 'file')} still being written: the next backup takes them"

        def run(remote, progress):
            return self._transfer(remote, progress, state, settled, wanted, extras)
        return Plan([Transfer(run, total, f"fetch {len(wanted)} files into {self.folder}/packages/")], note)

    # -- local side -------------------------------------------------------------------
    def _local(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def _manifest_names(self) -> set[str]:
        try:
            return set(backup.read_manifest(self.folder))
        except backup.BackupError:
            return set()

    def _transfer(self, remote, progress, state, settled, wanted, extras) -> str | None:
        backup.ensure_dir(self.folder, self.host)
        dropped: list[str] = []
        if wanted:
            got = self._fetch(remote, progress, wanted)
            if isinstance(got, str):
                return got
            for n, s, m in wanted:
                if n in got:
                    state[n] = [s, m, got[n]]
                else:
                    dropped.append(n)
                    state.pop(n, None)
        for name, data in extras.items():
            if data is not None and self._local(name) != data:
                backup.write_atomic(self.folder / name, data, backup.EXTRAS[name])
        backup.save_state(self.folder, self.host, state)
        entries = {f"packages/{n}": state[n][2] for n, s, m in settled
                   if n in state and state[n][:2] == [s, m]}
        entries |= {name: hashlib.sha256(data).hexdigest() for name, data in extras.items() if data is not None}
        backup.write_manifest(self.folder, entries)
        if self.sent:
            self.sent(len(wanted) - len(dropped))
        if dropped:
            # not a failure: the next backup takes them
            print(f"note: {plural(len(dropped), 'file')} changed while read, taken next time: "
                  f"{', '.join(dropped[:5])}")
        return None

    def _fetch(self, remote, progress, wanted) -> dict[str, str] | str:
        """{name: sha256} of the files received whole and verified; or why it failed."""
        dest = self.folder / "packages"
        r, w = os.pipe()
        try:        # a bigger pipe: fewer switches between the SSH reader and the tar reader
            import fcntl
            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass
        received: dict[str, str] = {}
        errors: list[str] = []
        count = [0]
        asked = {n for n, _, _ in wanted}

        def consume():
            pipe = os.fdopen(r, "rb")
            try:
                with tarfile.open(fileobj=pipe, mode="r|") as tar:
                    for member in tar:
                        name = member.name
                        # only the files asked for, each once, by their plain names: a host
                        # cannot write anything else here
                        if not member.isfile() or name not in asked or name in received:
                            continue
                        src = tar.extractfile(member)
                        h = hashlib.sha256()
                        with open(dest / f".incoming-{name}", "wb") as fh:
                            for chunk in iter(lambda: src.read(1 << 20), b""):
                                h.update(chunk)
                                fh.write(chunk)
                        received[name] = h.hexdigest()
            except (tarfile.TarError, OSError) as exc:
                errors.append(str(exc))
            finally:
                # read to the end (tar's padding, or after an error): the writer never meets a
                # closed pipe
                while pipe.read(1 << 20):
                    pass
                pipe.close()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        out = os.fdopen(w, "wb")

        def on_data(chunk):
            count[0] += len(chunk)
            out.write(chunk)
            if progress:
                progress(count[0])

        names = b"".join(n.encode() + b"\0" for n, _, _ in wanted)
        low = "nice -n 19 $(command -v ionice >/dev/null && echo ionice -c3)"
        # tar: a file deleted meanwhile is skipped (--ignore-failed-read), one that changed as
        # it was read is exit 1 (its hash then differs: dropped); sha256sum of a gone file fails
        # the hashes are computed while tar streams (the second core), printed after it
        cmd = (f"set -e; cd {q(self.packages_dir)}; f=$(mktemp); s=$(mktemp); trap 'rm -f \"$f\" \"$s\"' EXIT; "
               f"cat > \"$f\"; {{ {low} xargs -0 sha256sum -- < \"$f\" > \"$s\" || :; }} & "
               f"{low} tar -cf - --ignore-failed-read --null -T \"$f\" || [ $? = 1 ]; wait; cat \"$s\" >&2")
        good = {}
        try:
            try:
                res = remote.fetch(cmd, on_data, names)
            finally:
                out.close()
                reader.join()
            if progress:
                progress(None)
            if res.rc != 0 or errors:
                why = errors[0] if errors else (res.stderr.strip().splitlines() or ["?"])[-1]
                return f"the transfer failed: {why[:300]}"
            on_host = {m[2]: m[1] for m in map(_SHA.match, res.stderr.splitlines()) if m}
            mtimes = {n: m for n, _, m in wanted}
            # a copy about to be replaced leaves the manifest first: interrupted between
            # here and the new manifest, the folder still verifies (without that file)
            replaced = {f"packages/{n}" for n, sha in received.items() if on_host.get(n) == sha}
            try:
                current = backup.read_manifest(self.folder)
            except backup.BackupError:
                current = {}
            if replaced & set(current):
                backup.write_manifest(self.folder, {k: v for k, v in current.items() if k not in replaced})
            for name, sha in received.items():
                if on_host.get(name) == sha:
                    tmp = dest / f".incoming-{name}"
                    os.utime(tmp, (mtimes[name], mtimes[name]))     # the upload's time, kept
                    os.replace(tmp, dest / name)
                    good[name] = sha
            return good
        finally:
            for name in received:
                if name not in good:
                    (dest / f".incoming-{name}").unlink(missing_ok=True)
