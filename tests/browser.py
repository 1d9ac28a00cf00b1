"""Read a built page as a newcomer's browser shows it: headless Chromium (Debian's ``chromium``), a 1280 px window.

The site is served over HTTP on 127.0.0.1 (as a reader's local copy would be); every HTML page served gets one
extra script, which waits for MathJax to finish and then measures what the reader sees — equations typeset,
MathJax errors, raw TeX left in the text, code blocks wider than their column, options shown with an en-dash
— and writes the result into the page as JSON, which ``chromium --dump-dom`` hands back.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Runs in the page: measures once MathJax (if the page loads it) has typeset everything.
MEASURE = r"""
(function () {
  function visibleText(node, out) {
    if (node.nodeType === 3) { out.push(node.textContent); return; }
    if (node.nodeType !== 1) return;
    var tag = node.tagName.toLowerCase();
    if (tag === "script" || tag === "style" || tag === "pre" || tag === "code" || tag === "noscript") return;
    var cls = (node.className && node.className.baseVal === undefined) ? String(node.className) : "";
    if (/MathJax|MJX|mjx/.test(cls) || node.getAttribute("aria-hidden") === "true") return;
    for (var c = node.firstChild; c; c = c.nextSibling) visibleText(c, out);
  }
  function measure() {
    var text = []; visibleText(document.body, text); text = text.join(" ");
    var raw = text.match(/\\(begin|end|frac|partial|sigma|Gamma|odot|sum|left|right|mathrm|tanh|cdot)\b/g) || [];
    var clipped = [];
    document.querySelectorAll("pre").forEach(function (pre) {
      if (pre.scrollWidth > pre.clientWidth + 1) clipped.push(pre.textContent.split("\n")[0].slice(0, 80));
    });
    // an option typeset as a dash ("\u2013stale" for --stale), in prose or in code: copied, it does not run
    var all = document.body.innerText || "";
    var dashes = all.match(/(^|[\s(\[])[\u2013\u2014][a-z][a-z-]+/g) || [];
    // the "on this page" panel, where the theme shows it: never squeezed to a letter a line
    var toc = document.querySelector(".toc-drawer");
    var tocWidth = toc && toc.offsetParent !== null ? toc.getBoundingClientRect().width : null;
    // what the page asked for and did not get (a font, a script): HTTP status of every resource
    var missing = performance.getEntriesByType("resource")
      .filter(function (e) { return e.responseStatus >= 400 && !/favicon\.ico$/.test(e.name); })
      .map(function (e) { return e.name.replace(location.origin, ""); });
    var result = {
      toc_width: tocWidth, missing: missing,
      typeset: document.querySelectorAll(".MathJax, .MathJax_Display, .MathJax_CHTML, mjx-container").length,
      errors: document.querySelectorAll(".MathJax_Error, merror, .mjx-merror").length,
      raw_tex: raw.slice(0, 20), raw_count: raw.length, clipped: clipped, dashes: dashes,
      mathjax: !!window.MathJax
    };
    var out = document.createElement("pre");
    out.id = "__browser_measure"; out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  }
  window.addEventListener("load", function () {
    if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(measure); } else { setTimeout(measure, 200); }
  });
})();
"""


def chromium() -> str | None:
    """The Chromium command on this machine, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/__measure.js":
            self._send(MEASURE.encode(), "text/javascript")
            return
        path = Path(self.translate_path(self.path))
        if path.suffix == ".html" and path.is_file():  # the page, with the measuring script at its end
            html = path.read_text(encoding="utf-8")
            html = html.replace("</body>", '<script src="/__measure.js"></script></body>', 1)
            self._send(html.encode(), "text/html; charset=utf-8")
            return
        super().do_GET()


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` served on 127.0.0.1 (a free port) for the block; yields its base URL."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def read_page(url: str, width: int = 1280, budget_ms: int = 30000) -> dict:
    """What a reader sees on the page at ``url`` in a ``width`` px window (see :data:`MEASURE`)."""
    command = [
        chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--window-size={width},900", f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="__browser_measure">(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise AssertionError(f"no measurement came back from {url}: {done.stderr[-2000:]}")
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)
