"""A full reload of an asset-heavy page after one asset changed: through the proxy vs direct.

    python -m benchmarks.assets --rounds 30 --assets 50

One project, one app, one Chromium (Debian's ``chromium``, driven by Playwright). The app serves
a page with ``--assets`` scripts, each setting ``window.v<i>`` to its version, and sends them
with ``Cache-Control: public, max-age=3600`` (as Flask's SEND_FILE_MAX_AGE_DEFAULT, WhiteNoise
or an nginx config would). pyair runs it with the proxy in front. Each round rewrites script 0
with a new version, then:

1. through the proxy: on pyair's reload event the tab fetches the changed script's new URL,
   then reloads; the page names every script's version, so all 50 come from the cache (the
   fetch before the reload, a few ms, is outside the timed window: the window is the reload);
2. straight to the app, the same page in another browser context, reloaded by hand;
3. straight to a copy of the app that revalidates by itself (``no-cache``, its own
   ETag, 304s: what a dev server such as Vite does), for scale.

Each row: navigation start → load event end of the reloaded page (the page's own Navigation
Timing), and how many scripts ran an old version ("stale"). Target: the proxy within 1.2× of
straight to the app, and no stale script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import Series, Supervised, free_port, poll_until, pyair_argv
from .proxy import CHROMIUM_FLAGS, browser_driver

TARGET_RATIO = 1.2
CONFIG = """
[build]
full_bin = "{python} app.py"
[env]
PORT = "{app_port}"
[proxy]
enabled = true
app_port = {app_port}
proxy_port = {port}
"""
APP = """\
import hashlib, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATIC = Path("static")
REVALIDATE = sys.argv[1:] == ["revalidate"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            names = sorted(p.name for p in STATIC.iterdir())
            tags = "".join(f'<script src="/static/{n}"></script>' for n in names)
            self.send(b"<!doctype html><html><head><title>assets</title></head><body>"
                      + tags.encode() + b"</body></html>", "text/html", "no-store")
            return
        file = STATIC / path[len("/static/"):]
        if not path.startswith("/static/") or not file.is_file():
            self.send(b"not found", "text/plain", "no-store", 404)
            return
        data = file.read_bytes()
        if not REVALIDATE:
            self.send(data, "text/javascript", "public, max-age=3600")
            return
        tag = '"%s"' % hashlib.sha256(data).hexdigest()[:16]
        if self.headers.get("If-None-Match") == tag:
            self.send(b"", "text/javascript", "no-cache", 304, tag)
        else:
            self.send(data, "text/javascript", "no-cache", 200, tag)

    def send(self, body, kind, cache, status=200, tag=None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", cache)
        if tag:
            self.send_header("ETag", tag)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
LOADED = "document.readyState === 'complete' && performance.getEntriesByType('navigation')[0]"
LOAD_MS = "performance.getEntriesByType('navigation')[0].loadEventEnd"


def script(index: int, version: int) -> str:
    # some bulk, as real modules have: a reload moves bytes only for what changed
    filler = f"/* module {index}: {'x' * 2000} */\n"
    return f"{filler}window.v{index} = {version};\n"


def write_project(project: Path, assets: int) -> None:
    static = project / "static"
    static.mkdir()
    (project / "app.py").write_text(APP)
    old = time.time() - 3600  # files as they sit in a project: not just written
    for index in range(assets):
        path = static / f"m{index:03}.js"
        path.write_text(script(index, 0))
        os.utime(path, (old, old))


def reload(page: Any) -> None:
    """``location.reload()``, as pyair's client does, and wait until the new page loaded."""
    page.evaluate("window.__before = true; location.reload()")
    page.wait_for_function(f"!window.__before && ({LOADED})")


def stale(page: Any, assets: int, version: int) -> int:
    """How many scripts on the page ran another version than the current one."""
    wanted = [version] + [0] * (assets - 1)
    ran = page.evaluate(f"Array.from({{length: {assets}}}, (_, i) => window['v' + i])")
    return sum(1 for got, want in zip(ran, wanted, strict=True) if got != want)


def run(rounds: int, assets: int) -> None:
    driver = browser_driver("asset reload")
    if driver is None:
        return
    executable, sync_playwright = driver
    base = Path(tempfile.mkdtemp(prefix="pyair-assets-bench-"))
    proxy_port = free_port()

    def pyair(project: Path, port: int) -> list[str]:
        text = CONFIG.format(python=sys.executable, app_port=port, port=proxy_port)
        (project / ".air.toml").write_text(text)
        return pyair_argv("-c", str(project / ".air.toml"))

    def revalidating(project: Path, port: int) -> list[str]:
        return [sys.executable, "app.py", "revalidate"]

    def write(project: Path) -> None:
        write_project(project, assets)

    tools = {
        "pyair": Supervised("pyair", base, pyair, write, ready="<script"),
        "peer": Supervised("peer", base, revalidating, write, ready="<script"),
    }
    rows = {
        "proxy": Series("through pyair's proxy"),
        "direct": Series("straight to the app (max-age)"),
        "peer": Series("an app that revalidates itself"),
    }
    where = {"proxy": proxy_port, "direct": tools["pyair"].port, "peer": tools["peer"].port}
    stale_counts = {name: 0 for name in rows}
    try:
        poll_until(proxy_port, "<script", timeout=30)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            pages = {}
            for name, port in where.items():
                pages[name] = browser.new_context().new_page()
                pages[name].goto(f"http://127.0.0.1:{port}/")
                pages[name].wait_for_function(LOADED)
                reload(pages[name])  # loaded once already, as a page one works on
            pages["proxy"].wait_for_function(
                "window.__pyair.state.source.readyState === EventSource.OPEN"
            )
            for version in range(1, rounds + 1):
                for tool in tools.values():
                    (tool.dir / "static" / "m000.js").write_text(script(0, version))
                # the proxy's tab reloads by itself, on pyair's event
                pages["proxy"].wait_for_function(f"window.v0 === {version} && ({LOADED})")
                for name in ("direct", "peer"):
                    reload(pages[name])
                for name, page in pages.items():
                    rows[name].samples.append(float(page.evaluate(LOAD_MS)))
                    stale_counts[name] += stale(page, assets, version)
            browser.close()
    finally:
        for tool in tools.values():
            tool.close()
        shutil.rmtree(base, ignore_errors=True)
    report(rows, stale_counts, rounds, assets)


def report(rows: dict[str, Series], stale_counts: dict[str, int], rounds: int, assets: int) -> None:
    print(f"full reload after one of {assets} scripts changed, in Chromium, {rounds} rounds")
    print(f"{'path':<34} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'vs direct':>10} {'stale':>6}")
    direct = rows["direct"].median
    for name, series in rows.items():
        ratio = series.median / direct if direct else float("nan")
        print(
            f"{series.name:<34} {len(series.samples):>4} {series.median:>10.1f} "
            f"{series.pct(90):>8.1f} {ratio:>9.2f}x {stale_counts[name]:>6}"
        )
    ratio = rows["proxy"].median / direct if direct else float("nan")
    # each round's two reloads side by side: what the machine's load did to both at once
    paired = Series(
        "per round",
        [p / d for p, d in zip(rows["proxy"].samples, rows["direct"].samples, strict=True) if d],
    )
    ok = ratio <= TARGET_RATIO and stale_counts["proxy"] == 0
    print(
        f"proxy: {ratio:.2f}× direct (per round: median {paired.median:.2f}×, p10 "
        f"{paired.pct(10):.2f}×, p90 {paired.pct(90):.2f}×), {stale_counts['proxy']} stale "
        f"scripts (target ≤ {TARGET_RATIO}× and none stale: {'ok' if ok else 'MISSED'})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--assets", type=int, default=50)
    args = parser.parse_args(argv)
    run(args.rounds, args.assets)


if __name__ == "__main__":
    main()
