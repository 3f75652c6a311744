"""The report as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; line-height: 1.5;
       color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} th, td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; }}
th {{ background: #f5f5f5; }} img {{ max-width: 100%; }} blockquote {{ color: #555; border-left: 3px solid #ccc;
margin-left: 0; padding-left: 1em; }}
pre {{ background: #f6f8fa; padding: 0.8em; overflow-x: auto; }} code {{ font-size: 0.92em; }}
</style></head><body>
{body}
</body></html>
"""


def report_html(markdown: str, run_dir: Path, title: str) -> str:
    """The report as one self-contained HTML page: the plots inline as base64, nothing else to carry along."""
    from markdown_it import MarkdownIt  # rich's own markdown parser: no extra dependency

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)  # text from data stays text

    def inline(match: re.Match[str]) -> str:
        path = run_dir / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    return _HTML.format(title=html.escape(f"Study {title}"), body=body)
