"""Copilot answers as safe HTML: CommonMark with raw HTML turned off.

Answers quote names users chose (stacks, projects, messages) and error text from clouds; with
HTML disabled every `<` in them is escaped, and link targets the renderer considers unsafe
(`javascript:`, `data:` and the like) are refused, so an answer can never inject markup.
"""

from __future__ import annotations

import functools

from markdown_it import MarkdownIt
from markupsafe import Markup


@functools.cache
def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        "table"
    )


def markdown_html(text: str) -> Markup:
    """The answer's Markdown as HTML that is safe to place in a page as is."""
    return Markup(_renderer().render(text))
