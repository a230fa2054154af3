"""The browser scripts the course site and the teacher's slides run on, served from the site itself.

A classroom may have no internet. The site's pages typeset their equations with MathJax, notebook 07's
page shows its widgets through require.js and the Jupyter widgets' HTML manager, and the slides run on
reveal.js, require.js and jQuery. Each is fetched once from the npm registry (``npm pack``) into one folder
of the built site, keeping only the files a page loads, so that the site works over http and from
``file://`` with no network. Where npm cannot fetch them, the pages and slides load them from a CDN.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

FONTS = ("woff2", "woff", "ttf", "eot", "svg")  # the widgets' icon fonts, which their style sheet loads
# folder in the site -> (npm package, the files a page loads, as glob patterns; None keeps the whole package)
PACKAGES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "reveal.js": ("reveal.js@4.0.2", None),
    "requirejs": ("requirejs@2.3.6", ("require.js",)),
    "jquery": ("jquery@2.2.4", ("dist/jquery.min.js",)),
    "mathjax": ("mathjax@3.2.2", ("es5/tex-svg-full.js",)),  # SVG output: no web fonts to load
    "html-manager": ("@jupyter-widgets/html-manager@1.0.6", ("dist/embed-amd.js", *(f"dist/*.{kind}" for kind in
                                                                                   FONTS))),
}
MATHJAX = "mathjax/es5/tex-svg-full.js"
REQUIRE = "requirejs/require.js"
WIDGETS = "html-manager/dist/embed-amd.js"
WIDGET_ASSETS = "widget-assets.js"
# Loaded after require.js and before the widgets: their style sheets find their fonts beside their modules,
# which require.js would otherwise place under the page's own folder
WIDGET_ASSETS_SCRIPT = """(function () {
  var dist = new URL('html-manager/dist/', document.currentScript.src).href.replace(/\\/$/, '');
  window.__jupyter_widgets_assets_path__ = dist + '/';
  window.require.config({paths: {'@jupyter-widgets/html-manager/dist': dist, '@jupyter-widgets': dist}});
})();
"""
REVEAL = "reveal.js"
JQUERY = "jquery/dist/jquery.min.js"


def _kept(package: Path, files: tuple[str, ...] | None) -> None:
    """Remove from ``package`` every file that matches none of ``files`` (a page does not load it)."""
    if files is None:
        return
    for path in sorted(package.rglob("*"), reverse=True):
        if path.is_file() and not any(fnmatch.fnmatch(path.relative_to(package).as_posix(), f) for f in files):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def fetch(folder: Path) -> bool:
    """Put every package of ``PACKAGES`` in ``folder/<name>`` (once). False, with the reason printed, when npm
    cannot fetch them: the site and slides then load them from a CDN and need a network."""
    if all((folder / name / ".fetched").is_file() for name in PACKAGES):
        (folder / WIDGET_ASSETS).write_text(WIDGET_ASSETS_SCRIPT)
        return True
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            subprocess.run(["npm", "pack", "--silent", *(spec for spec, _ in PACKAGES.values())], cwd=scratch,
                           check=True, capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"offline scripts: npm could not fetch them ({error}); the site and slides will load MathJax, "
                  "reveal.js and the widget scripts from a CDN and need a network")
            return False
        for name, (spec, files) in PACKAGES.items():
            archive_name = spec.rsplit("@", 1)[0].lstrip("@").replace("/", "-")
            archive = next(Path(scratch).glob(f"{archive_name}-*.tgz"))
            with tarfile.open(archive) as packed:
                packed.extractall(scratch, filter="data")
            _kept(Path(scratch) / "package", files)
            shutil.rmtree(folder / name, ignore_errors=True)
            shutil.move(Path(scratch) / "package", folder / name)
            (folder / name / ".fetched").write_text(spec + "\n")
    (folder / WIDGET_ASSETS).write_text(WIDGET_ASSETS_SCRIPT)
    return True
