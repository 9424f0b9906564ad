"""A small document model rendered twice: Markdown (images linked) and a self-contained
HTML page (images embedded as base64), so the same tables and text go into both."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path


def fmt(v, digits: int = 3) -> str:
    """Numbers for tables: fixed point in a readable range, otherwise scientific."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.{digits}f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{v:,}"
        return f"{v:.{digits - 1}e}"
    return str(v)


def with_ci(value, ci, bounded: str | None = None) -> str:
    """value [lo, hi]; an end that is a parameter's bound, not a measurement, is marked
    "(bound)", e.g. A = 0.97 [0.93, 1 (bound)]: the data say only A >= 0.93."""
    lo, hi = ci
    lo_s = f"{fmt(lo)} (bound)" if bounded == "lower" else fmt(lo)
    hi_s = f"{fmt(hi)} (bound)" if bounded == "upper" else fmt(hi)
    return f"{fmt(value)} [{lo_s}, {hi_s}]"


def _inline_html(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


class Report:
    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple[str, object]] = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str):
        self.blocks.append(("text", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("bullets", items))

    def box(self, lines: list[str]):
        """A preformatted block: for the extrapolation check, which must stand out."""
        self.blocks.append(("box", lines))

    def table(self, headers: list[str], rows: list[list]):
        if rows:
            self.blocks.append(("table", (headers, [[fmt(c) for c in r] for r in rows])))

    def image(self, path: Path, caption: str):
        self.blocks.append(("image", (Path(path), caption)))

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, payload in self.blocks:
            if kind == "heading":
                out += [f"{'#' * payload[0]} {payload[1]}", ""]
            elif kind == "text":
                out += [payload, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in payload] + [""]
            elif kind == "box":
                out += ["```"] + payload + ["```", ""]
            elif kind == "table":
                headers, rows = payload
                out += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
            elif kind == "image":
                path, caption = payload
                out += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, payload in self.blocks:
            if kind == "heading":
                body.append(f"<h{payload[0]}>{html.escape(payload[1])}</h{payload[0]}>")
            elif kind == "text":
                body.append(f"<p>{_inline_html(payload)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in payload) + "</ul>")
            elif kind == "box":
                body.append(f"<pre class='box'>{html.escape(chr(10).join(payload))}</pre>")
            elif kind == "table":
                headers, rows = payload
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "image":
                path, caption = payload
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "line-height:1.45;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.92em}"
                 "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}figcaption{color:#555;font-style:italic}"
                 ".box{background:#fff7d6;border:2px solid #e0b000;padding:1em;font-size:1.05em;white-space:pre-wrap}"
                 "code{background:#f3f3f3;padding:0 3px}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
