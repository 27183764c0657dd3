"""`provision deploy ...`: the same tasks as `invoke`, usable outside this checkout."""

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="provision", binary="provision")


def main():
    program.run()
