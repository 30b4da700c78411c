"""The report as one static HTML page: escaped text, tables, and PNG images embedded as base64."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta, .note { color: #555; font-size: 0.9rem; }
code { font-size: 0.8rem; }
figure { margin: 1rem 0; } img { max-width: 100%; }
ol.chain li { margin: 0.2rem 0; }
"""


def text(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = (), table_id: str | None = None) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{text(cell)}</td>' if i in numeric else f"<td>{text(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    identifier = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{identifier}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG embedded as a data URI, in a figure with an optional caption."""
    encoded = base64.b64encode(png).decode("ascii")
    figcaption = f"<figcaption>{text(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">{figcaption}</figure>'


def paragraph(content: str, css: str = "note") -> str:
    return f'<p class="{css}">{text(content)}</p>'


def page(title: str, sections: Sequence[tuple[str, str, str]], meta: str) -> str:
    """The whole document: ``sections`` are (id, heading, inner HTML)."""
    nav = " · ".join(f'<a href="#{html.escape(sid)}">{text(heading)}</a>' for sid, heading, _ in sections)
    body = "".join(f'<section id="{html.escape(sid)}"><h2>{text(heading)}</h2>{inner}</section>' for sid, heading, inner in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{text(title)}</title><style>{STYLE}</style></head>'
        f'<body><h1>{text(title)}</h1><p class="meta">{text(meta)}</p><nav>{nav}</nav>{body}</body></html>\n'
    )
