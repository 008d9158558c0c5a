"""Untrusted markdown and TeX (students' written answers) to safe HTML.

Markdown is rendered by mistune with raw HTML escaped, harmful link schemes dropped (mistune's
default), links opened with ``rel="noopener noreferrer"`` and images shown as links, so that
opening a page fetches nothing. Math (``$...$``, ``$$...$$``) becomes MathML (latex2mathml),
sanitised with bleach, which browsers render natively: no script, no network, and it prints.
"""

from __future__ import annotations

#: MathML that may reach the page (latex2mathml's vocabulary); everything else is stripped by bleach.
MATHML_TAGS = frozenset({
    "math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup", "msub", "msubsup", "mfrac",
    "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle", "mpadded",
    "mphantom", "menclose", "merror",
})
MATHML_ATTRIBUTES = (
    "display", "mathvariant", "stretchy", "fence", "separator", "lspace", "rspace", "accent",
    "accentunder", "columnalign", "rowalign", "columnspacing", "rowspacing", "displaystyle",
    "scriptlevel", "width", "height", "depth", "linethickness", "notation", "minsize", "maxsize",
    "movablelimits", "symmetric", "largeop", "form", "columnlines", "rowlines", "frame",
)


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """Untrusted TeX -> MathML that browsers render natively (no script, works offline and in the
    PDF). latex2mathml converts; it does not escape ``\\text{...}`` nor drop ``\\href``, so bleach
    then keeps only :data:`MATHML_TAGS` with :data:`MATHML_ATTRIBUTES` (no links, no scripts).
    TeX that latex2mathml cannot read is shown as escaped TeX."""
    import html

    import bleach
    from latex2mathml.converter import convert

    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - any parse failure: show the TeX itself
        return f'<code class="tex">{html.escape(tex)}</code>'
    return bleach.clean(mathml, tags=MATHML_TAGS, attributes={"*": list(MATHML_ATTRIBUTES)},
                        protocols=[], strip=True)


def markdown_renderer():
    """A mistune renderer for untrusted markdown (see the module docstring): call it on text."""
    import mistune

    class _SafeRenderer(mistune.HTMLRenderer):
        """Raw HTML escaped (``escape=True``), harmful link schemes dropped (mistune's default),
        images rendered as links (opening the report fetches nothing), math as sanitised MathML."""

        def image(self, text, url, title=None):
            return f'[image: <a href="{self.safe_url(url)}" rel="noopener noreferrer">{text or "link"}</a>]'

        def link(self, text, url, title=None):
            return super().link(text, url, title).replace("<a ", '<a rel="noopener noreferrer" ', 1)

    md = mistune.create_markdown(renderer=_SafeRenderer(escape=True),
                                 plugins=["math", "table", "strikethrough"])
    md.renderer.register("inline_math", lambda _, text: tex_to_mathml(text))
    md.renderer.register("block_math", lambda _, text: f'<div class="math">{tex_to_mathml(text, True)}</div>\n')
    return md


def render_markdown(text: str) -> str:
    """Untrusted markdown -> safe HTML (see the module docstring), math as MathML."""
    return markdown_renderer()(text or "")
