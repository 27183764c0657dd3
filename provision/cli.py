"""The command line's shape, shared by `invoke` (tasks.py) and `provision`.

- `Task`: hosts are ``-H/--host`` (Fabric's convention), so ``-h`` stays help for every
  task; no other short flag is invented, and flags can declare their kind for help
  (``--port=INT``).
- `task`: every task body runs inside one boundary that refuses invoke's ``--dry`` (this
  tool runs no local shell commands, so invoke's dry run would still change the hosts),
  turns a ProvisionError into one line and exit 2, and Ctrl-C into exit 130.
- `Program`: ``TASK -h`` prints that task's help before any value is parsed (a positional
  NAME never swallows ``--help``); a mistyped task or option exits 2 with a suggestion.
  `adopt()` gives the `invoke` binary the same behaviour from tasks.py.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys

import invoke
from invoke import Exit
from invoke.exceptions import ParseError

from . import __version__
from .errors import ProvisionError

HELP_FLAGS = ("-h", "--help")
#: Short flags we choose; the others are invoke's (first free letter), never h or H.
SHORT = {"host": "H"}
#: Flags with no short form (so they do not take a letter away from the others).
LONG_ONLY = {"no_color", "json"}

DRY_REFUSED = ("error: --dry (echo commands instead of running them) does not apply: this tool "
               "runs nothing locally, it changes hosts over SSH; use --check to see what would "
               "change without changing anything")


class Task(invoke.Task):
    """An invoke Task whose flags are ours: ``-H`` for hosts, ``-h`` never a task's flag
    (it is help), typed values in help (``kinds={"port": int}`` shows ``--port=INT``)."""

    def __init__(self, body, kinds: dict | None = None, **kwargs):
        self.kinds = dict(kinds or {})
        super().__init__(body, **kwargs)

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, set(taken_names) | {"h", "H"})
        # invoke may pick a non-letter ('-' of pip-conf) when the letters are taken
        opts["names"] = [n for n in opts["names"] if len(n) > 1 or n.isalnum()]
        short = SHORT.get(name)
        if short and short not in taken_names:
            opts["names"] = [opts["names"][0], short]
        elif name in LONG_ONLY:
            opts["names"] = opts["names"][:1]
        if name in self.kinds and name not in self.iterable:
            opts["kind"] = self.kinds[name]
        return opts


def color_wanted(no_color: bool = False) -> None:
    """--no-color: the same as the NO_COLOR convention (https://no-color.org)."""
    if no_color:
        os.environ["NO_COLOR"] = "1"


def guarded(body):
    """The one boundary between a task and the user: no --dry, no traceback."""

    @functools.wraps(body)
    def run(c, *args, **kwargs):
        if _dry(c):
            raise Exit(DRY_REFUSED, code=2)
        color_wanted(bool(kwargs.get("no_color")))
        try:
            return body(c, *args, **kwargs)
        except ProvisionError as exc:
            raise Exit(f"error: {exc}", code=2) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except BrokenPipeError:  # `invoke list-users | head -1`
            _closed_pipe()

    return run


def _closed_pipe():
    """The reader of stdout went away: stop quietly, like any Unix filter."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise Exit(code=0)


def _dry(c) -> bool:
    try:
        return bool(c.config.run.dry)
    except AttributeError:
        return False


def task(*args, **kwargs):
    """``invoke.task`` with our Task class and boundary."""
    kwargs.setdefault("klass", Task)

    def decorate(body):
        return invoke.task(**kwargs)(guarded(body))

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


class Program(invoke.Program):
    """invoke's Program with help before parsing, and usage errors that exit 2 with a hint."""

    def parse_tasks(self):
        name = self._help_target(self.core.unparsed)
        if name is not None:
            self.parser = self._make_parser()
            try:
                self.print_task_help(name)
            except BrokenPipeError:
                _closed_pipe()
            raise Exit(code=0)
        self._refuse_empty_hosts(self.core.unparsed)
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(self._usage_error(exc), code=2) from None
        except ValueError as exc:  # a flag's value of the wrong kind (--port abc)
            raise Exit(self._bad_value(exc), code=2) from None

    def _bad_value(self, exc: ValueError) -> str:
        m = re.search(r"invalid literal for int\(\) with base 10: '(.*)'", str(exc))
        if not m:
            return f"error: {exc}"
        value, flag = m[1], None
        argv = list(self.core.unparsed)
        for i, word in enumerate(argv):
            if word.endswith("=" + value) and word.startswith("-"):
                flag = word.split("=", 1)[0]
            elif word == value and i and argv[i - 1].startswith("-"):
                flag = argv[i - 1]
        return f"error: {flag or 'an option'} takes a number, got {value!r}"

    def parse_cleanup(self):
        try:
            super().parse_cleanup()   # --help, --list, completion: printing only
        except ParseError as exc:
            raise Exit(self._usage_error(exc), code=2) from None
        except BrokenPipeError:
            _closed_pipe()

    def _task_names(self) -> list[str]:
        names = list(self.collection.task_names)
        for aliases in self.collection.task_names.values():
            names.extend(aliases)
        return names

    def _help_target(self, argv: list[str]) -> str | None:
        """The task whose help ``TASK ... -h`` asks for (None when no help flag follows a task)."""
        names = set(self._task_names())
        current = None
        for word in argv:
            if word in HELP_FLAGS and current is not None:
                return current
            if word in names:
                current = word
        return None

    def _refuse_empty_hosts(self, argv: list[str]) -> None:
        """``-H`` with no value would mean "every host of the inventory": refuse it.

        invoke accepts a list flag with nothing after it (``remove-user alice -H $UNSET``).
        """
        names = set(self._task_names())
        for i, word in enumerate(argv):
            if word in ("-H", "--host"):
                following = argv[i + 1] if i + 1 < len(argv) else None
                if following is None or following.startswith("-") or following in names:
                    raise Exit(f"error: {word} needs a host ([USER@]HOST[:SSHPORT], an inventory "
                               "host or group); leave it out to run on every inventory host",
                               code=2)

    def _usage_error(self, exc: ParseError) -> str:
        text = str(exc)
        m = re.search(r"No idea what '([^']*)' is", text)
        hint = ""
        if m:
            word = m[1]
            if word.startswith("-"):
                ctx = getattr(exc, "context", None)
                flags = list(ctx.flags) if ctx is not None else []
                close = difflib.get_close_matches(word, flags, n=1)
                where = f" for {ctx.name}" if ctx is not None and ctx.name else ""
                text = f"unknown option {word}{where}"
                hint = f" (did you mean {close[0]}?)" if close else ""
                if ctx is not None and ctx.name:
                    hint += f"; `{self.binary_name()} {ctx.name} --help` lists them"
            else:
                close = difflib.get_close_matches(word, self._task_names(), n=1)
                text = f"no task named {word!r}"
                hint = f" (did you mean {close[0]}?)" if close else ""
                hint += f"; `{self.binary_name()} --list` lists them"
        return f"error: {text}{hint}"

    def binary_name(self) -> str:
        return (self.binary or self.name or "invoke").replace("[", "").replace("]", "")


def adopt() -> None:
    """Give the running `invoke` program our parsing (called from tasks.py as it loads).

    invoke has parsed its own flags by then; what is left (the tasks and their flags)
    goes through `Program.parse_tasks` above. Only methods differ, so swapping the
    instance's class is safe.
    """
    import invoke.main

    program = getattr(invoke.main, "program", None)
    if program is not None and type(program) is invoke.Program:
        program.__class__ = Program


def main():
    from .tasks import ns

    Program(namespace=ns, version=__version__, name="provision", binary="provision").run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
