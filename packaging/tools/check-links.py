#!/usr/bin/env python3
"""The docs site's link check: every link between pages of the built site
must name a file that exists, and its `#fragment`, if any, an id in that
page. Links to the web are not followed (CI reaches no web site); a link
that leaves the site's directory is an error too, since the published
site would not carry its target.

Usage: check-links.py HTML_DIR
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
        for attr in ("href", "src"):
            if tag in ("a", "img", "link", "script") and attrs.get(attr):
                self.links.append(attrs[attr])


def main(root):
    root = Path(root).resolve()
    pages = {}
    for path in root.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    if not pages:
        print(f"{root}: no pages: is this the built site?", file=sys.stderr)
        return 1
    errors = 0

    def dead(path, href, why):
        nonlocal errors
        print(f"{path.relative_to(root)}: {why}: {href}", file=sys.stderr)
        errors += 1

    for path, page in sorted(pages.items()):
        # The printable copy repeats every page with rewritten links.
        if path.name in ("print.html", "404.html", "toc.html"):
            continue
        for href in page.links:
            url = urllib.parse.urlparse(href)
            if url.scheme or url.netloc or href.startswith("//"):
                continue
            if url.path:
                target = (path.parent / urllib.parse.unquote(url.path)).resolve()
                if root not in target.parents and target != root:
                    dead(path, href, "link leaves the site")
                    continue
                if target.is_dir():
                    target = target / "index.html"
                if not target.exists():
                    dead(path, href, "dead link")
                    continue
            else:
                target = path
            if url.fragment and target in pages:
                if urllib.parse.unquote(url.fragment) not in pages[target].ids:
                    dead(path, href, "dead anchor")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
