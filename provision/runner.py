"""Runs a role on hosts: gather, plan, apply (unless --check), handlers, verify, recap.

Round trips are the cost of a run, so a host sees:
  1 exec channel  the host's lock (runs that may change it), facts and every step's
                  probe, as one sectioned script;
  0..n channels   one tar stream per Upload (only when files are missing);
  1 channel       every changed step's actions, then the notified handlers, as one
                  script with per-step markers.
A phase boundary (after OS packages, say) re-gathers facts only if that phase changed
something, so a no-op redeploy costs one channel plus the role's HTTP health check.

Hosts run in parallel threads; each runs to its end, then one recap covers all.
"""

from __future__ import annotations

import base64
import io
import re
import shlex
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .connection import Remote
from .errors import ConnectError, HostBusy, ProvisionError, StepError, UnsupportedHost
from .facts import (MARK, MISSING, Fact, host_fact_commands, parse_host_facts, section_script,
                    split_sections)
from .report import Counts, Report
from .steps import Command, Plan, Step, Upload, WriteFile
from .steps.base import Transfer

q = shlex.quote

PUT_FUNCTION = r"""
_put() {  # PATH OWNER GROUP MODE, content as base64 on stdin: temp file + rename
  _t=$(mktemp "$(dirname "$1")/.provision.XXXXXX") || return 1
  if base64 -d >"$_t" && chown "$2:$3" "$_t" && chmod "$4" "$_t" && mv -f "$_t" "$1"; then
    if command -v restorecon >/dev/null 2>&1; then restorecon "$1" 2>/dev/null || :; fi
    return 0
  fi
  rm -f "$_t"; return 1
}
"""


LOCK_DIR = "/run/provision"


def lock_wait() -> int:
    """Seconds a run waits for another run's lock on a host (PROVISION_LOCK_WAIT, default 120)."""
    import os

    try:
        return max(0, int(os.environ.get("PROVISION_LOCK_WAIT", "120")))
    except ValueError:
        return 120


def lock_section(holder: str, wait: int) -> str:
    """Shell that takes the host's lock for the rest of this SSH connection.

    flock on /run/provision/lock (tmpfs: a reboot frees it). A process left behind holds
    the lock until the sshd process of our connection exits, so the lock spans every
    channel of the run (facts, uploads, apply) and ends with the connection, however the
    run ends. Prints `locked`, or `busy` and the holder's line after `wait` seconds.
    """
    d = LOCK_DIR
    return (
        f"command -v flock >/dev/null || {{ echo noflock; exit 0; }}\n"
        f"mkdir -p -m 0700 {d} && exec 9>>{d}/lock || {{ echo nolock; exit 0; }}\n"
        f"if ! flock -w {int(wait)} 9; then echo busy; cat {d}/lock.info; exit 0; fi\n"
        "p=$$\n"
        "while [ \"$p\" -gt 1 ]; do\n"
        "  case \"$(cat /proc/$p/comm)\" in sshd*) break;; esac\n"
        "  p=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$p/status); [ -n \"$p\" ] || p=1\n"
        "done\n"
        f"printf 'pid=%s since=%s by=%s\\n' \"$p\" \"$(date -u +%FT%TZ)\" {q(holder)} >{d}/lock.info\n"
        # no sshd above us (not reached over SSH): the lock lasts as long as this script
        "if [ \"$p\" -gt 1 ]; then ( trap '' HUP; exec tail -s 0.1 --pid=\"$p\" -f /dev/null ) "
        "</dev/null >/dev/null 2>&1 & fi\n"
        "exec 9>&-\n"
        "echo locked"
    )


def lock_holder() -> str:
    """Who we are, for the lock's line: the command, the control user and machine, the pid."""
    import getpass
    import os
    import socket
    import sys

    cmd = " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else "provision"
    text = f"`{cmd[:200]}` from {getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def busy_message(name: str, text: str, wait: int) -> str:
    fields = dict(re.findall(r"(pid|since|by)=(.*?)(?= (?:since|by)=|$)", text.strip()))
    if not fields:
        return f"{name} is busy: another run holds its lock (waited {wait} s)"
    return (f"{name} is busy: another run holds its lock (waited {wait} s): started {fields.get('since', '?')} "
            f"by {fields.get('by', '?')}; its SSH session on the host is pid {fields.get('pid', '?')}")


@dataclass
class Options:
    check: bool = False
    diff: bool = False
    sudo_password: str | None = None


def render_actions(actions: list) -> str:
    """Shell for a step's Command/WriteFile actions (Uploads run on their own channel)."""
    out = []
    for a in actions:
        if isinstance(a, Command):
            # set -e does not stop at a failure inside `a && b` (only at the list's last
            # command): each command is one group whose failure ends the step
            out.append(f"{{ {a.sh}\n}} || exit $?")
        elif isinstance(a, WriteFile):
            if a.expect_sha256:
                out.append(f"[ \"$(sha256sum < {q(a.path)} | cut -d' ' -f1)\" = {q(a.expect_sha256)} ] "
                           f"|| {{ echo {q(a.path + ' changed while this run read it: run again')} >&2; "
                           f"exit 75; }}")
            body = base64.encodebytes(a.content).decode()
            out.append(f"_put {q(a.path)} {q(a.owner)} {q(a.group)} {a.mode:04o} <<'__PROVISION_EOF__'\n"
                       f"{body}__PROVISION_EOF__")
    return "\n".join(out)


def apply_script(changed: list[tuple[int, Plan]]) -> str:
    parts = ["export LC_ALL=C DEBIAN_FRONTEND=noninteractive", "umask 022", PUT_FUNCTION]
    for idx, plan in changed:
        body = render_actions(plan.actions)
        if not body:
            parts.append(f"printf '\\n{MARK}done {idx} 0\\n'")
            continue
        parts.append(f"(\nset -e\n{body}\n) </dev/null 2>&1\n_rc=$?\n"
                     f"printf '\\n{MARK}done {idx} %s\\n' \"$_rc\"\n"
                     f"[ \"$_rc\" = 0 ] || exit \"$_rc\"")
    return "\n".join(parts) + "\n"


def upload_command(u: Upload) -> str:
    d = q(u.dest)
    return (f"set -e; install -d -m 0755 {d}; t=$(mktemp -d {d}/.incoming.XXXXXX); "
            f"trap 'rm -rf \"$t\"' EXIT; tar -x -o -C \"$t\" -f -; cd \"$t\"; "
            f"for f in *; do [ -f \"./$f\" ] && [ ! -L \"./$f\" ] || continue; "
            f"chown -- {q(u.owner)}:{q(u.group)} \"./$f\"; chmod -- {u.mode:04o} \"./$f\"; "
            f"mv -f -- \"./$f\" {d}/; done")


def tar_producer(files, progress=None):
    def produce(raw_send):
        sent = 0

        def send(data: bytes):
            nonlocal sent
            raw_send(data)
            sent += len(data)
            if progress:
                progress(sent)

        class Sink(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                send(bytes(b))
                return len(b)

        with tarfile.open(fileobj=Sink(), mode="w|") as tar:
            for f in files:
                with open(f, "rb") as fh:
                    # from the opened file (fstat): always a regular file's member, never a link
                    info = tar.gettarinfo(arcname=f.name, fileobj=fh)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    tar.addfile(info, fh)
        if progress:
            progress(None)  # done
    return produce


class HostRun:
    """One host through one role."""

    def __init__(self, target, role, opts: Options, report: Report):
        self.target, self.role, self.opts, self.report = target, role, opts, report
        self.counts = Counts()
        self.remote = Remote(target, opts.sudo_password)
        self.locked = False

    def say(self, status: str, name: str, note: str = "", detail: list[str] = ()) -> None:
        if status in ("ok", "changed", "failed", "skipped"):
            setattr(self.counts, status, getattr(self.counts, status) + 1)
        self.report.step(self.target.name, status, name, note, detail)

    def gather(self, steps: list[Step]):
        """Facts, the role's probes and every step's, in one script on one channel.

        Each distinct fact is asked once (two steps that need the same file's state share
        its section) and parsed once; each step gets its values under its own keys."""
        sections = {}
        wait = lock_wait()
        take_lock = self.role.changes_hosts and not self.opts.check and not self.locked
        if take_lock:  # first, so the facts are read under it
            sections["lock"] = lock_section(lock_holder(), wait)
        sections.update(host_fact_commands())
        role_facts = self.role.probes(self.target)
        asked: dict[Fact, str] = {}   # each distinct fact -> its section's key
        for fact in [*role_facts.values(), *(f for step in steps for f in step.probes().values())]:
            if fact not in asked:
                asked[fact] = key = f"p{len(asked)}"
                sections[key] = fact.command()
        try:
            res = self.remote.run_script(section_script(sections), timeout=120 + wait)
        except ConnectError as exc:
            raise ConnectError(f"{exc} (while gathering facts)") from exc
        parsed = split_sections(res.stdout)
        if take_lock:
            state = parsed.get("lock", MISSING).text.splitlines() or [""]
            if state[0] == "busy":
                raise HostBusy(busy_message(self.target.name, "\n".join(state[1:]), wait))
            if state[0] == "noflock":
                raise UnsupportedHost("the host has no flock (util-linux): cannot lock it against "
                                      "concurrent runs")
            if state[0] != "locked":
                raise ProvisionError(f"{self.target.name}: cannot take the host's lock in {LOCK_DIR}")
            self.locked = True
        if parsed.get("os", MISSING).rc is None:
            raise ProvisionError(f"{self.target.name}: gathering facts failed: "
                                 f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        values = {fact: fact.parse(*parsed.get(key, MISSING)) for fact, key in asked.items()}
        self.role_probed = {key: values[fact] for key, fact in role_facts.items()}
        facts = self.facts = parse_host_facts(parsed)
        self.target.resolved_host = self.remote.hostname
        probed = {step: {key: values[fact] for key, fact in step.probes().items()} for step in steps}
        return facts, probed

    def run(self) -> Counts:
        start = time.monotonic()
        name = self.target.name
        try:
            self._run()
        except ProvisionError as exc:
            self.say("failed", str(exc).split("\n")[0])
        except Exception as exc:  # one host's surprise must not cost the others their recap
            self.say("failed", f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            for n in self.remote.notes:
                self.report.note(name, n)
            self.remote.close()
            self.counts.channels = self.remote.channels
            self.counts.seconds = time.monotonic() - start
        return self.counts

    def _steps(self):
        phases = self.role.phases(self.target)
        handlers = self.role.handlers(self.target)
        return phases, handlers, [s for phase in phases for s in phase] + list(handlers.values())

    def _run(self):
        phases, handlers, steps = self._steps()
        facts, probed = self.gather(steps)
        # the host's record of its last deploy fills what neither inventory nor flags set;
        # when that changes the plan (a port deployed with --port, say), probe again
        changed_vars, notes = self.role.settle(self.target, self.role_probed)
        if changed_vars:
            phases, handlers, steps = self._steps()
            facts, probed = self.gather(steps)
        self.say("ok", "Gather facts.", facts.summary())
        for note in notes:
            self.report.note(self.target.name, note)
        self.role.check_host(facts)
        notified: set[str] = set()

        def plan_handlers(facts, probed) -> dict:
            """Handlers are planned from the state before the last phase changed anything (a
            service an earlier phase installed and started is running by then: nginx)."""
            plans = {}
            for hname, hstep in handlers.items():
                hstep.prepare(facts)
                plans[hname] = (hstep, hstep.plan(facts, probed[hstep]))
                if hstep.pending(probed[hstep]):  # an earlier run changed inputs, then died
                    notified.add(hname)
            return plans

        handler_plans = plan_handlers(facts, probed)
        for p, phase in enumerate(phases):
            plans = []
            for step in phase:
                try:
                    step.prepare(facts)   # this machine's work (downloads, rendering) first
                    plan = step.plan(facts, probed[step])
                except StepError as exc:
                    self.say("failed", step.name, str(exc))
                    return
                if plan.changed:
                    # the restart is marked as owed on the host before the change it stands
                    # for: a run that dies anywhere after this leaves the next one to restart
                    plan.actions[:0] = [handlers[h].mark() for h in step.notify]
                plans.append((step, plan))
                if plan.changed:
                    notified.update(step.notify)
            if p == len(phases) - 1:  # handlers ride in the last phase's script
                plans += [(h, plan) for name, (h, plan) in handler_plans.items() if name in notified]
            changed = self.execute(plans)
            if changed is None:
                return
            if changed and not self.opts.check and p < len(phases) - 1:
                facts, probed = self.gather(steps)
                self.role.check_host(facts)
                handler_plans = plan_handlers(facts, probed)
            self.role.after_phase(p, facts, self.opts.check)
        ticker = self.report.ticker(self.target.name)
        ticker.start("waiting for the service to answer its health check")
        try:
            verdict = self.role.verify(self.target, facts, self.opts.check, run=self._read_only)
        finally:
            ticker.close()
        if verdict is not None:
            status, label, note = verdict
            first, *more = note.split("\n")
            self.say(status, label, first, more)
            if status != "ok":
                return
        for line in self.role.summary(self.target, facts):
            self.report.note(self.target.name, line)

    def execute(self, plans: list[tuple[Step, Plan]]) -> bool | None:
        """Run the changed steps; report every step in plan order, each changed one as it
        completes. True if anything changed, None on failure."""
        changed = [(i, step, plan) for i, (step, plan) in enumerate(plans) if plan.changed]
        if self.opts.check or not changed:
            for step, plan in plans:
                if not plan.changed:
                    self.say("ok", step.name, plan.note)
                else:
                    self.say("changed", step.name, plan.note + " (check mode: not done)")
                    self._diffs(plan)
            return bool(changed)
        cursor = 0

        def reach(idx: int) -> None:
            """Report the unchanged steps before plans[idx] that are not reported yet."""
            nonlocal cursor
            for step, plan in plans[cursor:idx]:
                if not plan.changed:
                    self.say("ok", step.name, plan.note)
            cursor = max(cursor, idx)

        for i, step, plan in changed:
            for tr in (a for a in plan.actions if isinstance(a, Transfer)):
                reach(i)
                progress = self.report.progress(self.target.name, step.name, tr.total, "fetching")
                try:
                    why = tr.run(self.remote, progress)
                except ConnectError as exc:
                    raise ConnectError(f"{exc} (during '{step.name}')") from exc
                if why:
                    self.say("failed", step.name, why)
                    return None
            for up in (a for a in plan.actions if isinstance(a, Upload)):
                reach(i)
                total = sum(f.stat().st_size for f in up.files)
                progress = self.report.progress(self.target.name, step.name, total)
                try:
                    res = self.remote.stream(upload_command(up), tar_producer(up.files, progress))
                except ConnectError as exc:
                    raise ConnectError(f"{exc} (during '{step.name}')") from exc
                if res.rc != 0:
                    why = _last(res.stderr or res.stdout)
                    if "No space left on device" in (res.stderr or "") + (res.stdout or ""):
                        why = f"no space left on {self.target.name}:{up.dest}"
                    elif res.rc == -1:
                        why = "connection lost during the transfer"
                    self.say("failed", step.name, why)
                    return None
        script = apply_script([(i, plan) for i, _, plan in changed])
        by_index = {i: (step, plan) for i, step, plan in changed}
        outputs: dict[int, list[str]] = {}
        current: list[str] = []
        done: dict[int, int] = {}
        ticker = self.report.ticker(self.target.name)

        def on_line(line: str):
            nonlocal current
            if line.startswith(MARK + "done "):
                _, idx, rc = line[len(MARK):].split()
                outputs[int(idx)] = current
                done[int(idx)] = int(rc)
                current = []
                if rc == "0":  # report as it happens: a fresh deploy takes seconds
                    step, plan = by_index[int(idx)]
                    said = _last("\n".join(outputs[int(idx)])) if step.report_output else ""
                    ticker.stop()
                    reach(int(idx))
                    self.say("changed", step.name, f"{plan.note}: {said}" if said else plan.note)
                    self._diffs(plan)
                    cursor_step = next((s.name for j, s, _ in changed if j not in done), None)
                    ticker.start(cursor_step)
            else:
                current.append(line)

        ticker.start(changed[0][1].name)
        try:
            res = self.remote.run_script(script, on_line=on_line)
        except ConnectError as exc:
            ticker.stop()
            idx, name = self._running(changed, done)
            reach(idx)
            self.say("failed", name, str(exc))
            return None
        finally:
            ticker.close()
        if res.rc == -1:  # the channel closed without an exit status: sshd or the link died
            idx, name = self._running(changed, done)
            reach(idx)
            self.say("failed", name, f"connection to {self.remote.hostname} lost during this step")
            return None
        for i, step, _ in changed:
            if done.get(i) != 0:
                why = _last("\n".join(outputs.get(i, current)) or res.stderr) or f"exit {res.rc}"
                reach(i)
                self.say("failed", step.name, self.role.explain_failure(step, why, self.facts))
                return None
        reach(len(plans))
        if res.rc != 0:
            self.say("failed", "Apply changes.", _last(res.stderr) or f"exit {res.rc}")
            return None
        return True

    def _read_only(self, shell: str) -> str:
        """stdout of a command that changes nothing (a diagnosis); '' if it cannot run."""
        try:
            return self.remote.run_script(shell, timeout=30).stdout
        except ProvisionError:
            return ""

    @staticmethod
    def _running(changed, done) -> tuple[int, str]:
        """(plan index, name) of the step the apply script was in: the first not reported done."""
        return next(((i, step.name) for i, step, _ in changed if i not in done),
                    (changed[-1][0] + 1, "Apply changes."))

    def _diffs(self, plan: Plan) -> None:
        if not self.opts.diff:
            return
        for a in plan.actions:
            if isinstance(a, WriteFile):
                self.report.diff(self.target.name, a.path, a.old, a.content, a.secret)
            elif isinstance(a, Upload):
                for f in a.files:
                    self.report.write(f"    + {a.dest}/{f.name} ({f.stat().st_size:,} bytes)")
            elif isinstance(a, Transfer) and a.label:
                self.report.write(f"    {a.label}")


def _last(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run(targets, role, opts: Options, report: Report | None = None, stream=None) -> dict[str, Counts]:
    """Every target through the role, in parallel; the recap. ``stream``: where the report
    goes (stdout by default; list-users keeps stdout for the names)."""
    report = report or Report(stream, width=max(len(t.name) for t in targets), live=len(targets) == 1)
    if opts.check:
        report.write("CHECK MODE: nothing will be changed on the hosts")
    results: dict[str, Counts] = {}
    if len(targets) == 1:
        results[targets[0].name] = HostRun(targets[0], role, opts, report).run()
    else:
        with ThreadPoolExecutor(max_workers=min(len(targets), 16)) as pool:
            futures = {t.name: pool.submit(HostRun(t, role, opts, report).run) for t in targets}
            results = {name: f.result() for name, f in futures.items()}
    report.recap(results)
    return results
