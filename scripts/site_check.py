#!/usr/bin/env python3
"""Check the built course site in a real browser, as a reader would meet it.

It serves ``build/site/`` (``make site`` builds it) on 127.0.0.1 and drives Debian's chromium through
Playwright over every page reachable from the home page:

- every page loads (HTTP 200) and has a title;
- every image has finished loading with a real size, and has alt text that describes it (not empty, and
  not a file name, which is what a renderer writes when a figure has none);
- every internal link leads to a page that exists, and a link's ``#anchor`` to an element on it;
- axe-core (``axe-playwright-python``) finds no serious or critical accessibility violation.

It saves screenshots of the home page, notebook 03 and the instructor guide to ``docs/site/`` with the
check's JSON (``docs/site/site_check.json``), prints a table, and exits non-zero when a check fails.

One-time setup::

    apt-get update && apt-get install -y chromium
    python3 -m pip install playwright axe-playwright-python    # never `playwright install`

Run::

    make site && python3 scripts/site_check.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = {"home": "index.html", "notebook_03": "notebooks/03_glue_runs.html",
               "instructor_guide": "instructor.html"}
SEVERE = {"serious", "critical"}


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A quiet static server for ``folder`` on a free port of 127.0.0.1."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def describes(alt: str | None) -> bool:
    """Alt text that says something: not empty, and not a file name standing in for a description."""
    alt = (alt or "").strip()
    return bool(alt) and not alt.lower().endswith((".png", ".jpg", ".jpeg", ".svg", ".gif"))


def check_page(page, url: str, axe: Axe) -> dict:
    """Load one page; its images, its links and axe's severe violations."""
    response = page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.getAttribute('src').slice(0, 80), alt: e.getAttribute('alt'), "
               "loaded: e.complete && e.naturalWidth > 0}))")
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
    violations = axe.run(page).response["violations"]
    severe = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
              for v in violations if v["impact"] in SEVERE]
    return {"url": url, "status": response.status if response else None, "title": page.title(),
            "images": len(images), "images_not_loaded": [i["src"] for i in images if not i["loaded"]],
            "images_without_alt": [i["src"] for i in images if not describes(i["alt"])],
            "links": links, "ids": ids, "severe_violations": severe,
            "other_violations": sorted({v["id"] for v in violations if v["impact"] not in SEVERE})}


def crawl(base: str, shots: Path) -> list[dict]:
    """Every internal page reachable from the home page, checked; screenshots of ``SCREENSHOTS``."""
    axe = Axe()
    pages, queue, seen = [], [urljoin(base, "index.html")], set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            result = check_page(page, url, axe)
            pages.append(result)
            for name, path in SCREENSHOTS.items():
                if url == urljoin(base, path):
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
            for link in result["links"]:
                target, _ = urldefrag(link)
                if target.startswith(base) and target.endswith(".html") and target not in seen:
                    queue.append(target)
        browser.close()
    return pages


def broken_links(pages: list[dict], base: str) -> list[dict]:
    """Internal links to a page that did not load, or to an anchor missing on its page."""
    by_url = {page["url"]: page for page in pages}
    broken = []
    for page in pages:
        for link in page["links"]:
            target, anchor = urldefrag(link)
            if not target.startswith(base):
                continue
            if urlparse(target).path.endswith(".html"):
                found = by_url.get(target)
                if found is None or found["status"] != 200:
                    broken.append({"page": page["url"], "link": link, "why": "page missing"})
                elif anchor and anchor not in found["ids"]:
                    broken.append({"page": page["url"], "link": link, "why": "anchor missing"})
    return broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "site", help="the built site (make site)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "site", help="screenshots and JSON go here")
    args = parser.parse_args()
    if not (args.site / "index.html").is_file():
        sys.exit(f"No site in {args.site}: run `make site` first.")
    if not CHROMIUM.is_file():
        sys.exit("No browser at /usr/bin/chromium: apt-get update && apt-get install -y chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    server, base = serve(args.site)
    try:
        pages = crawl(base, args.out)
    finally:
        server.shutdown()
    broken = broken_links(pages, base)
    failures = [p["url"] for p in pages if p["status"] != 200 or p["images_not_loaded"] or p["images_without_alt"]
                or p["severe_violations"]]
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip(),
        "chromium": subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout.strip(),
        "pages": len(pages), "images": sum(p["images"] for p in pages),
        "images_without_alt": sum(len(p["images_without_alt"]) for p in pages),
        "images_not_loaded": sum(len(p["images_not_loaded"]) for p in pages),
        "internal_links_broken": broken,
        "severe_violations": sum(len(p["severe_violations"]) for p in pages),
        "passed": not failures and not broken,
        "per_page": [{key: (value.replace(base, "") if key == "url" else value) for key, value in page.items()
                      if key not in ("links", "ids")} for page in pages],
    }
    (args.out / "site_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'page':48} {'status':>6} {'images':>6} {'no alt':>6} {'severe a11y':>11}")
    for page in pages:
        print(f"{page['url'].replace(base, ''):48} {page['status']!s:>6} {page['images']:>6} "
              f"{len(page['images_without_alt']):>6} {len(page['severe_violations']):>11}")
    print(f"{len(pages)} pages, {report['images']} images ({report['images_without_alt']} without alt text), "
          f"{len(broken)} broken internal links, {report['severe_violations']} serious or critical violations: "
          + ("passed" if report["passed"] else "FAILED"))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
