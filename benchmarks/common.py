"""What the benchmark scripts share: start-up checks and tearing down what they booted."""

import contextlib
import shutil
import signal
import sys
import time

from testing import testhost


def preflight(script: str) -> bool:
    """True if test hosts can boot here; else say why on stderr."""
    reason = testhost.preflight()
    if reason:
        print(f"{script}: {reason}", file=sys.stderr)
    return reason is None


def sigterm_interrupts() -> None:
    """Treat SIGTERM like Ctrl-C, so a killed benchmark still cleans up."""
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)


def destroy_own_hosts(hosts, before: set, prefix: str, log) -> None:
    """Destroy the hosts this run booted, also those of an interrupted boot_hosts()."""
    mine = {h.name: h for h in hosts}
    for h in testhost.list_hosts():
        if h.name not in before and h.name.startswith(prefix) and h.name not in mine:
            mine[h.name] = h
    for name, h in mine.items():
        try:
            h.destroy()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            log(f"could not destroy {name}: {exc} (python -m testing.testhost down {name})")
    if mine:
        log(f"destroyed {', '.join(mine)}")


def clean_up(hosts, before: set, prefix: str, work, log, t_start: float, first=None) -> None:
    """The end of every run: `first()` (e.g. close SSH masters), hosts, temp dir, timing.
    Ctrl-C is ignored meanwhile, so a second one cannot leave hosts behind."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if first is not None:
            first()
        destroy_own_hosts(hosts, before, prefix, log)
        shutil.rmtree(work, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, old)
    log(f"total {time.monotonic() - t_start:.0f}s")


@contextlib.contextmanager
def run_guarded(log, cleanup, errors=(testhost.TestHostError,)):
    """The body of a benchmark's main(): Ctrl-C (or SIGTERM) exits 130, one of ``errors``
    exits 2 with its message, and ``cleanup()`` runs in every case."""
    try:
        yield
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        raise SystemExit(130) from None
    except errors as exc:
        log(f"error: {exc}")
        raise SystemExit(2) from None
    finally:
        cleanup()
