"""griffe extension: Sphinx cross-reference roles in docstrings as Markdown code.

tenure's docstrings name other objects the Sphinx way (:class:`Leadership`,
:meth:`~tenure.client.Election.campaign`); mkdocstrings renders docstrings as Markdown,
where such a role would show up as the literal text ``:class:``. This rewrites each role
to inline code of its target (after ``~``, only the last dotted part, as Sphinx shows
it). It changes only what the docs site renders, never the source; it makes no links,
so a name that the reference does not render cannot break ``mkdocs build --strict``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj|const):`(~?)([^`]+)`")


def rewrite_roles(text: str) -> str:
    """``:role:`target``` -> ```target```; ``:role:`~a.b.c``` -> ```c```."""

    def code(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        if match.group(1):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(code, text)


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites the roles of every docstring once the package is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """griffe event: called for every object of the loaded package."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite_roles(obj.docstring.value)
