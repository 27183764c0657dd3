"""Jinja2 templates: ``templates/<role or feature>/NAME.j2`` (StrictUndefined, a "Managed
by" first line). In a checkout they are read from the top-level ``templates/``; the wheel
carries them as ``provision/templates/``."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def templates_dir() -> Path:
    packaged = PACKAGE / "templates"             # in the wheel (force-included)
    return packaged if packaged.is_dir() else PACKAGE.parent / "templates"


def render(template: str, **context) -> str:
    """``render("pypiserver/pypiserver.service.j2", user=...)``: an unknown name is an error."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(template).render(**context)
