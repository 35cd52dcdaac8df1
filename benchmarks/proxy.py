"""The live-reload proxy: its overhead per request, and save→page-updated in Chromium.

    python -m benchmarks.proxy --rounds 30 --requests 400

1. Overhead. pyair runs the demo (examples/demo) behind its proxy. Interleaved batches of N
   sequential ``GET /`` (a new connection each, as the demo's HTTP/1.0 server closes them
   anyway), straight to the app and through the proxy; per-request latency p50/p90/p99 and
   requests/s, plus requests/s with 4 clients at once. Target: under 1 ms added at p50.
2. Save→page-updated, in headless Chromium (Debian's ``chromium``, driven by Playwright) on
   the demo page through the proxy. A MutationObserver in the page stamps
   ``performance.timeOrigin + performance.now()`` when the DOM shows the edit (the new
   greeting in the morphed DOM; the new colour once the swapped stylesheet is in), against
   ``time.time()`` just before the file is written: one wall clock for both. Rounds
   alternate a template edit and a CSS edit. For scale, "F5" is a full reload of the same
   page: navigation start → DOMContentLoaded. Targets: template ≤ 50 ms, CSS ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import REPO, Series, bench_env, free_port, pyair_argv, stop

TARGET_ADDED_P50_MS = 1.0
TARGET_TEMPLATE_MS = 50.0
TARGET_CSS_MS = 20.0
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
CONFIG = """
[build]
full_bin = "python app.py"
include_ext = ["py", "html", "css"]
[env]
PORT = "{app_port}"
[proxy]
enabled = true
app_port = {app_port}
proxy_port = {port}
"""
GREETING = '<p id="greeting">{{ greeting }}'
COLOR_RULE = "header h1 { color: #2b6cb0; }"

# stamps the first mutation after which the page shows what window.__want asks for
OBSERVER = """
window.__want = null; window.__stamp = null;
new MutationObserver(() => {
  const want = window.__want;
  if (!want || window.__stamp !== null) return;
  const done = want.kind === 'text'
    ? (document.getElementById('greeting') || {}).textContent === want.value
    : getComputedStyle(document.querySelector('header h1')).color === want.value;
  if (done) window.__stamp = performance.timeOrigin + performance.now();
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


@dataclass
class Demo:
    """pyair on a copy of the demo, proxy in front."""

    project: Path
    port: int
    app_port: int
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, base: Path) -> Demo:
        project = base / "demo"
        shutil.copytree(
            REPO / "examples" / "demo", project, ignore=shutil.ignore_patterns("__pycache__")
        )
        app_port, port = free_port(), free_port()
        (project / ".air.toml").write_text(CONFIG.format(app_port=app_port, port=port))
        log = open(base / "pyair.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            pyair_argv("-c", str(project / ".air.toml")),
            cwd=project,
            env=bench_env(app_port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        demo = cls(project, port, app_port, proc)
        deadline = time.monotonic() + 30
        while request_ms(port) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the demo never answered through the proxy")
            time.sleep(0.05)
        time.sleep(1.0)  # let the watcher settle before the first edit
        return demo

    def close(self) -> None:
        stop(self.proc)


def request_ms(port: int) -> float | None:
    """One GET / on a new connection, in ms; None if it failed."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Accept": "text/html"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


def concurrent_rps(port: int, clients: int, per_client: int) -> float:
    def work() -> None:
        for _ in range(per_client):
            request_ms(port)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * per_client / (time.perf_counter() - started)


def overhead(demo: Demo, rounds: int, requests: int) -> None:
    batch = max(1, requests // rounds)
    lat = {"direct": Series("direct to the app"), "proxy": Series("through pyair's proxy")}
    rps: dict[str, list[float]] = {"direct": [], "proxy": []}
    ports = {"direct": demo.app_port, "proxy": demo.port}
    for name in ports:  # warm both paths
        for _ in range(20):
            request_ms(ports[name])
    for round_no in range(rounds):
        order = ("direct", "proxy") if round_no % 2 == 0 else ("proxy", "direct")
        for name in order:
            started = time.perf_counter()
            for _ in range(batch):
                ms = request_ms(ports[name])
                if ms is not None:
                    lat[name].samples.append(ms)
            rps[name].append(batch / (time.perf_counter() - started))
    together = {name: concurrent_rps(port, 4, max(20, batch)) for name, port in ports.items()}
    print(f"proxy overhead: GET / of the demo page, {len(lat['proxy'].samples)} requests each")
    print(f"{'path':<24} {'req/s':>7} {'4 clients':>10} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")
    for name, series in lat.items():
        median_rps = sorted(rps[name])[len(rps[name]) // 2]
        print(
            f"{series.name:<24} {median_rps:>7.0f} {together[name]:>10.0f} "
            f"{series.pct(50):>7.2f} {series.pct(90):>7.2f} {series.pct(99):>7.2f}"
        )
    added_p50 = lat["proxy"].pct(50) - lat["direct"].pct(50)
    added_p99 = lat["proxy"].pct(99) - lat["direct"].pct(99)
    verdict = "ok" if added_p50 < TARGET_ADDED_P50_MS else "MISSED"
    print(
        f"added by the proxy: p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms "
        f"(target p50 < {TARGET_ADDED_P50_MS:.0f} ms: {verdict})"
    )


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_driver(what: str) -> tuple[str, Any] | None:
    """(chromium's path, playwright's ``sync_playwright``), or None after saying ``what`` is
    skipped."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        print(f"{what}: skipped (needs chromium and playwright: make browser)")
        return None
    return executable, sync_playwright


def page_updates(demo: Demo, rounds: int) -> None:
    driver = browser_driver("save→page-updated")
    if driver is None:
        return
    executable, sync_playwright = driver
    template = demo.project / "templates" / "page.html"
    css = demo.project / "static" / "style.css"
    original_template, original_css = template.read_text(), css.read_text()
    rows = {
        "template": Series("template edit → DOM morphed"),
        "css": Series("CSS edit → new style applied"),
        "f5": Series("F5: navigation → DOMContentLoaded"),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.add_init_script(OBSERVER)
        page.goto(f"http://127.0.0.1:{demo.port}/")
        reloader = browser.new_page()
        reloader.goto(f"http://127.0.0.1:{demo.port}/")
        for n in range(1, rounds + 1):
            text = f"Hello from pyair's demo v{n}"
            rows["template"].samples.append(
                _timed_edit(
                    page,
                    {"kind": "text", "value": text},
                    template,
                    original_template.replace(GREETING, GREETING + f" v{n}"),
                )
            )
            time.sleep(0.15)  # the swap's echo (no-op batches, the agent's ack) settles
            color = f"rgb({n % 250 + 1}, 0, 0)"
            rows["css"].samples.append(
                _timed_edit(
                    page,
                    {"kind": "color", "value": color},
                    css,
                    original_css.replace(COLOR_RULE, f"header h1 {{ color: {color}; }}"),
                )
            )
            time.sleep(0.15)
            reloader.reload(wait_until="domcontentloaded")
            rows["f5"].samples.append(
                reloader.evaluate(
                    "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                )
            )
        browser.close()
    template.write_text(original_template)
    css.write_text(original_css)
    print(f"save → page updated in Chromium through the proxy, {rounds} rounds each")
    print(f"{'what':<36} {'n':>4} {'median ms':>10} {'p90 ms':>8}")
    for series in rows.values():
        n, median, p90 = len(series.samples), series.median, series.pct(90)
        print(f"{series.name:<36} {n:>4} {median:>10.1f} {p90:>8.1f}")
    for key, target in (("template", TARGET_TEMPLATE_MS), ("css", TARGET_CSS_MS)):
        series = rows[key]
        verdict = "ok" if series.median <= target else "MISSED"
        print(f"{key}: median {series.median:.1f} ms (target ≤ {target:.0f} ms: {verdict})")


def _timed_edit(page: Any, want: dict[str, str], path: Path, text: str) -> float:
    page.evaluate("(want) => { window.__stamp = null; window.__want = want; }", want)
    saved = time.time() * 1000
    with open(path, "w") as out:  # truncate + write, as editors do
        out.write(text)
    page.wait_for_function("window.__stamp !== null", timeout=10_000, polling=5)
    stamp = float(page.evaluate("window.__stamp"))
    page.evaluate("window.__want = null")
    return stamp - saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="pyair-proxy-bench-"))
    demo = Demo.start(base)
    try:
        overhead(demo, args.rounds, args.requests)
        print()
        page_updates(demo, args.rounds)
    finally:
        demo.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
