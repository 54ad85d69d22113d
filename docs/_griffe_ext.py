"""Griffe extension used by the documentation build (see `mkdocs.yml`).

gradtx's docstrings follow the Google style with an `Example:` section (singular). Griffe's
Google parser only recognizes `Examples:` as a section of runnable examples and would render
`Example:` as a plain admonition, where doctest lines are read as Markdown. This extension
renames the heading before the docstrings are parsed, so the examples render as code.

It also separates display formulas written on consecutive lines (`$$a$$` newline `$$b$$`), which
pymdownx.arithmatex would otherwise read as one formula running from the first `$$` to the last.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.MULTILINE)
_ADJACENT_DISPLAY = re.compile(r"\$\$[ \t]*\n([ \t]*)\$\$")


class ExampleSections(griffe.Extension):
    """Turn `Example:` section headings into `Examples:`; split adjacent `$$` formulas."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ADJACENT_DISPLAY.sub(r"$$\n\n\1$$", value)
