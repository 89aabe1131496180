"""report.html: summary.md as one self-contained file to share: the figures embedded as base64 data URIs,
the style inline, no scripts and no reference to any other file or address.

Rendered from summary.md's own text, so the HTML says what summary.md says, sections included. The markdown
is the subset the report writes: ``#`` headings, paragraphs, ``|`` tables (header, ``|---|`` rule, rows;
``\\|`` inside a cell), ``- `` lists, ``![alt](plots/name.png)`` images on a line of their own, and inline
``**bold**`` and ```code```.
"""

from __future__ import annotations

import base64
import html
import re

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]*)\)$")
HEADING = re.compile(r"^(?P<level>#{1,6}) (?P<text>.*)$")
BOLD = re.compile(r"\*\*(.+?)\*\*")
CELL_SPLIT = re.compile(r"(?<!\\)\|")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border-top: 1px solid #bbb; border-bottom: 1px solid #bbb; padding: .25rem .6rem; text-align: left;
         vertical-align: top; }
thead th { border-top: 2px solid #222; border-bottom: 1.5px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; font-size: .9em; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #555; }
"""


def report_html(markdown: str, figures: dict[str, bytes]) -> str:
    """The HTML page of ``markdown``, each image whose source is a key of ``figures`` (``plots/<name>.png``)
    embedded from those bytes; an image without bytes shows its alt text."""
    title = next((m["text"] for line in markdown.splitlines() if (m := HEADING.match(line))), "Report")
    body = "\n".join(block_html(block, figures) for block in blocks(markdown))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(plain(title))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")


def blocks(markdown: str) -> list[list[str]]:
    """The markdown's blocks: runs of non-blank lines, a heading or image line always a block of its own, and
    a table or list never joined with the lines of another kind around it."""
    found: list[list[str]] = []
    for line in markdown.splitlines():
        if not line.strip():
            found.append([])
            continue
        kind = line_kind(line)
        if kind in ("heading", "image") or not found or not found[-1] or line_kind(found[-1][-1]) != kind:
            found.append([line])
        else:
            found[-1].append(line)
    return [block for block in found if block]


def line_kind(line: str) -> str:
    if HEADING.match(line):
        return "heading"
    if IMAGE.match(line.strip()):
        return "image"
    if line.startswith("|"):
        return "table"
    return "list" if line.startswith("- ") else "text"


def block_html(block: list[str], figures: dict[str, bytes]) -> str:
    kind = line_kind(block[0])
    if kind == "heading":
        match = HEADING.match(block[0])
        level = len(match["level"])
        return f"<h{level}>{inline(match['text'])}</h{level}>"
    if kind == "image":
        return image_html(IMAGE.match(block[0].strip()), figures)
    if kind == "table":
        return table_html(block)
    if kind == "list":
        return "<ul>\n" + "\n".join(f"<li>{inline(line[2:])}</li>" for line in block) + "\n</ul>"
    return f"<p>{inline(' '.join(line.strip() for line in block))}</p>"


def image_html(match: re.Match, figures: dict[str, bytes]) -> str:
    alt, src = match["alt"], match["src"]
    data = figures.get(src)
    if data is None:
        return f"<p>[figure {inline(alt)}: not embedded]</p>"
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
            f"<figcaption>{inline(alt)}</figcaption></figure>")


def table_html(lines: list[str]) -> str:
    rows = [cells(line) for line in lines]
    header, body = rows[0], [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
    head = "".join(f"<th>{inline(c)}</th>" for c in header)
    rows_html = "\n".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows_html}\n</tbody>\n</table>"


def cells(line: str) -> list[str]:
    """A table row's cells, ``\\|`` read as ``|``."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in CELL_SPLIT.split(inner)]


def inline(text: str) -> str:
    """``text`` escaped, with ```code``` and ``**bold**``."""
    parts = text.split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2 and i < len(parts) - 1:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            piece = part if i % 2 == 0 else "`" + part  # an unmatched backtick stays
            out.append(BOLD.sub(r"<strong>\1</strong>", html.escape(piece)))
    return "".join(out)


def plain(text: str) -> str:
    return BOLD.sub(r"\1", text).replace("`", "")
