#!/usr/bin/env python3
"""Check the built course site in a real browser, as a reader would meet it.

It serves ``build/site/`` (``make site`` builds it) on 127.0.0.1 and drives Debian's chromium through
Playwright over every page reachable from the home page:

- every page loads (HTTP 200) and has a title;
- every image has finished loading with a real size, and has alt text that describes it (not empty, and
  not a file name, which is what a renderer writes when a figure has none);
- every internal link leads to a page that exists, and a link's ``#anchor`` to an element on it;
- axe-core (``axe-playwright-python``) finds no serious or critical accessibility violation;
- it works offline, as in a classroom without internet: every request that leaves the site is refused (and
  counted), and no page logs a console error, fails a request or shows raw LaTeX (math MathJax did not
  typeset). The same holds for the home page, notebooks 01 and 07 and a deck of slides opened from
  ``file://``.

It saves screenshots of the home page, notebook 03, the instructor guide and notebook 01's first typeset
equation (every page is loaded offline) to ``docs/site/`` with the check's JSON (``docs/site/site_check.json``),
prints a table, and exits non-zero when a check fails.

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
               "instructor_guide": "instructor.html",
               "notebook_01_equations_offline": "notebooks/01_transformer_equations.html"}
SHOWN_FIRST = {"notebook_01_equations_offline": "mjx-container"}  # scrolled to before the screenshot
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


RAW_MATH = r"""() => [...document.querySelectorAll('.math, .jp-RenderedMarkdown')].filter(
    e => !e.querySelector('mjx-container') && /\\\(|\\\[|\$\$|\$[^$\s][^$]*\$/.test(e.textContent)).length"""
MATH_DONE = "() => !window.MathJax || !MathJax.startup || MathJax.startup.promise.then(() => true)"


class Offline:
    """A browser page that refuses every request leaving ``base`` and records its console errors and failed
    requests, as a classroom without internet would meet the site."""

    def __init__(self, browser, base: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.off_site, self.errors = [], []
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                        or route.request.url.startswith("data:") else self._refuse(route))
        self.page.on("console", lambda message: self.errors.append(message.text[:160])
                     if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)[:160]))
        self.page.on("requestfailed", lambda request: self.errors.append(f"failed: {request.url[:120]}")
                     if request.url.startswith(base) else None)

    def _refuse(self, route) -> None:
        self.off_site.append(route.request.url[:120])
        route.abort()

    def load(self, url: str) -> dict:
        """Load ``url``; what it asked for off the site, its console errors and its untypeset math."""
        self.off_site.clear()
        self.errors.clear()
        response = self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")
        self.page.evaluate(MATH_DONE)
        return {"status": response.status if response else None, "off_site_requests": sorted(set(self.off_site)),
                "console_errors": list(self.errors), "raw_math": self.page.evaluate(RAW_MATH)}


def check_page(offline: Offline, url: str, axe: Axe) -> dict:
    """Load one page; its images, its links, axe's severe violations, and how it does offline."""
    found = offline.load(url)
    page = offline.page
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.getAttribute('src').slice(0, 80), alt: e.getAttribute('alt'), "
               "loaded: e.complete && e.naturalWidth > 0}))")
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
    violations = axe.run(page).response["violations"]
    severe = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
              for v in violations if v["impact"] in SEVERE]
    return {"url": url, **found, "title": page.title(),
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
        offline = Offline(browser, base)
        page = offline.page
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            result = check_page(offline, url, axe)
            pages.append(result)
            for name, path in SCREENSHOTS.items():
                if url == urljoin(base, path):
                    if name in SHOWN_FIRST:
                        page.locator(SHOWN_FIRST[name]).first.scroll_into_view_if_needed()
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
            for link in result["links"]:
                target, _ = urldefrag(link)
                if target.startswith(base) and target.endswith(".html") and target not in seen:
                    queue.append(target)
        browser.close()
    return pages


FROM_FILES = ("index.html", "notebooks/01_transformer_equations.html", "notebooks/07_lab.html",
              "slides/01_transformer_equations.slides.html")


def from_files(site: Path) -> list[dict]:
    """``FROM_FILES`` opened from ``file://``, offline: a teacher who opens the built site from a folder."""
    base = site.resolve().as_uri() + "/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        offline = Offline(browser, base)
        found = [{"url": path, **offline.load(base + path)} for path in FROM_FILES]
        browser.close()
    return found


def offline_problems(page: dict) -> bool:
    return bool(page["off_site_requests"] or page["console_errors"] or page["raw_math"])


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
    files = from_files(args.site)
    failures = [p["url"] for p in pages if p["status"] != 200 or p["images_not_loaded"] or p["images_without_alt"]
                or p["severe_violations"] or offline_problems(p)] + [p["url"] for p in files if offline_problems(p)]
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
        "off_site_requests": sum(len(p["off_site_requests"]) for p in pages + files),
        "console_errors": sum(len(p["console_errors"]) for p in pages + files),
        "pages_with_raw_math": sum(bool(p["raw_math"]) for p in pages + files),
        "from_file": files,
        "passed": not failures and not broken,
        "per_page": [{key: (value.replace(base, "") if key == "url" else value) for key, value in page.items()
                      if key not in ("links", "ids")} for page in pages],
    }
    (args.out / "site_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'page':48} {'status':>6} {'images':>6} {'no alt':>6} {'severe a11y':>11} {'offline':>8}")
    for page in pages:
        print(f"{page['url'].replace(base, ''):48} {page['status']!s:>6} {page['images']:>6} "
              f"{len(page['images_without_alt']):>6} {len(page['severe_violations']):>11} "
              f"{'FAIL' if offline_problems(page) else 'ok':>8}")
    for page in files:
        print(f"{'file://…/' + page['url']:48} {'':>6} {'':>6} {'':>6} {'':>11} "
              f"{'FAIL' if offline_problems(page) else 'ok':>8}")
    for page in [*pages, *files]:
        if offline_problems(page):
            print(f"  {page['url']}: off the site {page['off_site_requests'][:3]}, console {page['console_errors'][:3]}"
                  f", raw math {page['raw_math']}")
    print(f"{len(pages)} pages, {report['images']} images ({report['images_without_alt']} without alt text), "
          f"{len(broken)} broken internal links, {report['severe_violations']} serious or critical violations; "
          f"offline over http and from {len(files)} files: {report['off_site_requests']} requests off the site, "
          f"{report['console_errors']} console errors, {report['pages_with_raw_math']} pages with raw LaTeX: "
          + ("passed" if report["passed"] else "FAILED"))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
