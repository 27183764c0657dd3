"""What a run prints: the recap format, colour rules, diffs of new files, plurals, and the
progress line of a long step drawn on a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import time

from provision.report import Counts, Report, Ticker, plural


class Tty(io.StringIO):
    """A text stream that says it is a terminal (what decides colour)."""

    def isatty(self):
        return True


def test_recap_lines_are_the_documented_interface():
    out = io.StringIO()
    Report(out).recap({"pypi1": Counts(ok=3, changed=1, failed=0, skipped=1)})
    assert out.getvalue() == "RECAP\npypi1 ok=3 changed=1 failed=0 skipped=1\n"


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    Report(tty).step("h", "changed", "Step.")
    assert "\x1b[33mchanged " in tty.getvalue()
    plain = io.StringIO()
    Report(plain).step("h", "changed", "Step.")
    assert "\x1b" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = Tty()
    Report(tty).step("h", "changed", "Step.")
    assert "\x1b" not in tty.getvalue()


def test_diff_of_a_new_file_shows_its_content():
    out = io.StringIO()
    Report(out).diff("h", "/etc/x.conf", b"", b"a = 1\nb = 2\n", secret=False)
    text = out.getvalue()
    assert "old content not read" not in text and "+a = 1" in text and "+b = 2" in text
    out = io.StringIO()
    Report(out).diff("h", "/etc/htpasswd", b"", b"alice:$2b$...\n", secret=True)
    assert "$2b$" not in out.getvalue() and "content not shown (secret)" in out.getvalue()


def test_plural():
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]


def test_a_long_silent_step_shows_progress_on_a_terminal_and_erases_it(monkeypatch):
    monkeypatch.setattr(Ticker, "DELAY", 0.1)   # the real ones (2 s, every 0.5 s), scaled down
    monkeypatch.setattr(Ticker, "TICK", 0.03)
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    report = Report(stream, width=2, live=True)
    ticker = report.ticker("h1")
    ticker.start("Ensure the pinned packages are installed.")
    time.sleep(0.3)
    ticker.close()
    report.step("h1", "changed", "Ensure the pinned packages are installed.")
    got = b""
    while select.select([master], [], [], 0.2)[0]:
        got += os.read(master, 4096)
    text = re.sub(r"\x1b\[\d+m", "", got.decode())
    assert re.search(r"h1  running  Ensure the pinned packages are installed\. \(\d s\)", text), text
    # erased (carriage return, clear to the end of the line) before the step's own line
    assert "\r\x1b[Kh1  changed  Ensure the pinned" in text, text
    # never wider than the terminal (a wrapped line could not be erased)
    for drawn in re.findall(r"h1  running  [^\r]*", text):
        assert len(drawn) < shutil.get_terminal_size((80, 24)).columns
    stream.close()
    os.close(master)


def test_no_progress_off_a_terminal(monkeypatch):
    monkeypatch.setattr(Ticker, "DELAY", 0.0)   # would draw at its first tick
    monkeypatch.setattr(Ticker, "TICK", 0.03)
    out = io.StringIO()
    ticker = Report(out, live=True).ticker("h1")
    ticker.start("Slow step.")
    time.sleep(0.15)
    ticker.close()
    assert out.getvalue() == ""
    tty = Tty()                                  # the control: a terminal gets the line
    ticker = Report(tty, live=True).ticker("h1")
    ticker.start("Slow step.")
    time.sleep(0.3)
    ticker.close()
    assert re.search(r"running  Slow step\. \(\d s\)", re.sub(r"\x1b\[\d+m", "", tty.getvalue()))


def test_detail_lines_are_one_write_without_control_characters():
    out = io.StringIO()
    Report(out, width=2).step("h1", "failed", "Check.", "why", ["journal \x1b]0;evil\x07 line", "two"])
    assert out.getvalue() == "h1  failed   Check.  [why]\n    journal ?]0;evil? line\n    two\n"
