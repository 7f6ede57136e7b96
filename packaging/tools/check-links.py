#!/usr/bin/env python3
"""Checks the `#fragment` of every link between pages of the built docs
site (mdbook-linkcheck checks that the pages exist, not the headings):
each must name an id in its target page.

Usage: check-anchors.py HTML_DIR
"""

import html.parser
import sys
import urllib.parse
from pathlib import Path


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if attrs.get("name") and tag == "a":
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def main(root):
    root = Path(root)
    pages = {}
    for path in root.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    errors = 0
    for path, page in sorted(pages.items()):
        # The printable copy repeats every page with rewritten links.
        if path.name in ("print.html", "404.html", "toc.html"):
            continue
        for href in page.links:
            url = urllib.parse.urlparse(href)
            if url.scheme or url.netloc or not url.fragment:
                continue
            target = (path.parent / url.path).resolve() if url.path else path
            if target not in pages:
                continue  # a missing page is mdbook-linkcheck's finding
            if urllib.parse.unquote(url.fragment) not in pages[target].ids:
                print(f"{path.relative_to(root.resolve())}: dead anchor {href}", file=sys.stderr)
                errors += 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
