"""`invoke logs`: the service's journal (its static index builder's and its pull-through
cache origin's too) and, where nginx
fronts it, the access log; streamed, each line prefixed with its host when there are several.

One exec channel per host, as root (the journal and nginx's logs are root's); hosts in
parallel. With --follow it runs until interrupted (Ctrl-C).
"""

from __future__ import annotations

import shlex
import sys
import threading

from .errors import ProvisionError

LINES = 100


def command(service: str, follow: bool, since: str | None) -> str:
    """The shell the host runs: journalctl for the units, tail for nginx's access log."""
    # (a unit that does not exist, a cache that is off, adds nothing)
    units = " ".join(f"-u {shlex.quote(u)}" for u in (service, f"{service}-index", f"{service}-cache"))
    window = f"--since {shlex.quote(since)}" if since else f"-n {LINES}"
    journal = f"journalctl {units} --no-pager -o short-iso {window}" + (" -f" if follow else "")
    access = shlex.quote(f"/var/log/nginx/{service}.access.log")
    tail = f"tail -n {LINES}" + (" -F" if follow else "")
    if follow:
        # both at once; the channel's end (Ctrl-C here) ends them
        return (f"{journal} & j=$!; if [ -f {access} ]; then {tail} {access} | sed -u 's/^/nginx: /' & fi; "
                f"trap 'kill 0' EXIT HUP INT TERM PIPE; wait")
    return f"{journal}; if [ -f {access} ]; then echo '-- nginx: {access}'; {tail} {access}; fi"


def stream(targets, service_of, follow: bool, since: str | None, sudo_password: str | None = None) -> int:
    """Print each host's logs as they come; the exit status (2 when a host failed)."""
    from .connection import Remote

    lock = threading.Lock()
    several = len(targets) > 1
    failed: list[str] = []
    remotes: list = []

    def one(target):
        prefix = f"{target.name} | " if several else ""

        def line(text):
            with lock:
                sys.stdout.write(prefix + text + "\n")
                sys.stdout.flush()
        remote = Remote(target, sudo_password)
        remotes.append(remote)
        try:
            remote.run_script(command(service_of(target), follow, since), on_line=line)
        except ProvisionError as exc:
            with lock:
                print(f"{target.name}: {str(exc).splitlines()[0]}", file=sys.stderr)
            failed.append(target.name)
        finally:
            remote.close()

    # daemon threads, joined with a timeout: Ctrl-C reaches this thread, which closes every
    # connection (the remote commands end with their channels)
    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        for r in list(remotes):
            r.close()
        raise
    return 2 if failed else 0
