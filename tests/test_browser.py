"""Live reload in a real headless Chromium: the demo app behind pyair's proxy, and the morph.

Needs Debian's ``chromium`` (``make browser`` installs it; ``make test`` runs that first) and
Playwright for Python, which drives it over CDP. Playwright's own browser download is never used.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import APPS, REPO, PyairRun, asset_project, free_port, run_pyair, stays

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not found: `make browser` installs it (apt-get install chromium)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
MORPH_JS = (REPO / "supervisor" / "static" / "morph.js").read_text()
WAIT_MS = 15_000
DEMO_CONFIG = """
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
LOADS = "Number(sessionStorage.loads)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    # counts real page loads: a morph or a CSS swap must not add one
    context.add_init_script("sessionStorage.loads = String(Number(sessionStorage.loads || 0) + 1)")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


@dataclass
class Demo:
    project: Path
    port: int
    run: PyairRun

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.project / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new))


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    project = tmp_path / "demo"
    shutil.copytree(
        REPO / "examples" / "demo", project, ignore=shutil.ignore_patterns("__pycache__", "tmp")
    )
    app_port, port = free_port(), free_port()
    with PyairRun(project, DEMO_CONFIG.format(app_port=app_port, port=port)) as run:
        run.wait_for_log(r"ready in")
        run.wait_for_log(r"watching")
        yield Demo(project, port, run)


# --------------------------------------------------------------------------- through pyair


def test_template_edit_updates_the_page_in_place(demo: Demo, page: Any) -> None:
    page.goto(demo.url)
    page.evaluate("window.marker = 42")
    page.fill("#note", "typed by hand")  # also focuses it
    demo.edit(
        "templates/page.html",
        '<p id="greeting">',
        '<p class="added">A new line</p>\n<p id="greeting">',
    )
    page.wait_for_selector("p.added")
    assert page.evaluate("window.marker") == 42  # no navigation: JS state is intact
    assert page.input_value("#note") == "typed by hand"
    assert page.evaluate("document.activeElement.id") == "note"
    demo.edit(
        "templates/base.html", "pyair demo{% endblock %}</title>", "Edited{% endblock %}</title>"
    )
    page.wait_for_function("document.title === 'Edited'")  # <head> changes apply too
    assert page.evaluate("window.marker") == 42
    assert page.evaluate(LOADS) == 1
    assert page.locator("link[rel=stylesheet]").count() == 1
    # a new <script> must run: that is a full reload, not a morph
    demo.edit(
        "templates/page.html", "{% endblock %}", "<script>window.ran = 1</script>\n{% endblock %}"
    )
    page.wait_for_function("window.ran === 1")
    assert page.evaluate("window.marker") is None
    assert page.evaluate(LOADS) == 2


def test_css_edit_restyles_the_page_without_navigation(demo: Demo, page: Any) -> None:
    page.goto(demo.url)
    page.evaluate("window.marker = 7")
    color = "getComputedStyle(document.querySelector('header h1')).color"
    assert page.evaluate(color) == "rgb(43, 108, 176)"
    demo.edit("static/style.css", "header h1 { color: #2b6cb0; }", "header h1 { color: #c80000; }")
    page.wait_for_function(f"{color} === 'rgb(200, 0, 0)'")
    assert page.evaluate("window.marker") == 7
    assert page.evaluate(LOADS) == 1
    page.wait_for_function("document.querySelectorAll('link[rel=stylesheet]').length === 1")
    # the re-fetched link names the saved file's version: the hash its ETag carries
    version = hashlib.sha256((demo.project / "static" / "style.css").read_bytes()).hexdigest()
    href = page.evaluate("document.querySelector('link[rel=stylesheet]').href")
    assert href.endswith(f"/static/style.css?__pyair={version}"), href


def test_template_error_shows_an_overlay_and_the_fix_clears_it(demo: Demo, page: Any) -> None:
    page.goto(demo.url)
    page.evaluate("window.marker = 1")
    demo.edit("templates/page.html", "{% block content %}\n", "{% block content %}\n{% if %}\n")
    where = page.locator("#__pyair_overlay .where")  # the overlay lives in a shadow root
    where.wait_for()
    assert where.inner_text() == "templates/page.html:3"
    text = page.locator("#__pyair_overlay .box").inner_text()
    assert "Template error" in text and "Expected an expression" in text
    assert re.search(r">\s+3 \| \{% if %\}", text), text  # the source line, marked
    demo.edit("templates/page.html", "{% if %}\n", '<p class="fixed">fixed</p>\n')
    page.wait_for_selector("#__pyair_overlay", state="detached")
    page.wait_for_selector("p.fixed")
    assert page.evaluate("window.marker") == 1
    assert page.evaluate(LOADS) == 1


def test_py_edit_reloads_the_page_once_after_the_new_app_is_up(demo: Demo, page: Any) -> None:
    page.goto(demo.url)
    footer = page.inner_text("footer")
    page.evaluate("window.marker = 1")
    demo.edit("app.py", 'GREETING = "Hello from', 'GREETING = "Restarted: hello from')
    page.wait_for_function("document.getElementById('greeting')?.textContent.includes('Restarted')")
    assert page.evaluate("window.marker") is None  # a real reload
    assert page.inner_text("footer") != footer  # served by the new pid
    # one load, straight onto the new app: no error page, no second reload
    assert stays(lambda: page.evaluate(LOADS) == 2, seconds=1.0)
    assert demo.run.count(r"proxy: ") == 0, demo.run.log()


def test_a_tab_reloads_once_when_pyair_itself_restarts(demo: Demo, page: Any) -> None:
    page.goto(demo.url)
    page.evaluate("window.marker = 1")
    demo.run.stop()
    again = PyairRun(demo.project, demo.run.config_path.read_text())
    with again:
        page.wait_for_function("window.marker === undefined", polling=50)
        assert stays(lambda: page.evaluate(LOADS) == 2, seconds=1.0)
        assert page.evaluate("window.marker") is None


# --------------------------------------------------------------------------- asset versions

ASSETS_CONFIG = DEMO_CONFIG.replace('include_ext = ["py", "html", "css"]\n', "")  # js too
UNCHANGED = {
    **{f"lib/mod{n:02}.js": f"window.mod{n} = {n};\n" for n in range(8)},
    **{f"lib/mod{n:02}.mjs": f"window.mod{n} = {n};\n" for n in (8, 9)},  # ES modules
    **{f"css/part{n}.css": f".p{n} {{ margin: {n}px; }}\n" for n in range(5)},
    **{
        f"img/dot{n}.svg": f'<svg xmlns="http://www.w3.org/2000/svg" width="{n + 1}" height="1"/>'
        for n in range(5)
    },
}


class Network:
    """What the page's loads went through, from the DevTools protocol's network events.

    Keyed by URL path: pages name their assets' versions in a query parameter.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.paths: dict[str, str] = {}  # request id -> path
        self.status: dict[str, int] = {}  # path -> status of its latest response
        self.cached: set[str] = set()  # paths served from the browser's cache
        self.urls: dict[str, str] = {}  # path -> the URL last asked for it
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._received)
        cdp.on("Network.requestServedFromCache", self._from_cache)
        cdp.send("Network.enable")

    def _sent(self, event: dict[str, Any]) -> None:
        url = event["request"]["url"]
        path = urlsplit(url).path
        self.paths[event["requestId"]] = path
        self.urls[path] = url

    def _received(self, event: dict[str, Any]) -> None:
        response = event["response"]
        path = urlsplit(response["url"]).path
        self.status[path] = response["status"]
        if response.get("fromDiskCache") or response.get("fromMemoryCache"):
            self.cached.add(path)

    def _from_cache(self, event: dict[str, Any]) -> None:
        self.cached.add(self.paths.get(event["requestId"], ""))

    def clear(self) -> None:
        self.status.clear()
        self.cached.clear()

    def settled(self, paths: list[str]) -> bool:
        """Has every one of ``paths`` been answered (by the network or the cache)?"""
        self.page.evaluate("1")  # lets the protocol's events in
        return all(path in self.status or path in self.cached for path in paths)


def test_a_js_edit_reload_runs_the_new_code_and_revalidates_the_rest(
    tmp_path: Path, page: Any, browser: Any
) -> None:
    files = {"app.js": "window.appVersion = 1;\n", **UNCHANGED}
    project = asset_project(tmp_path / "site", files)
    app_port, port = free_port(), free_port()
    with PyairRun(project, ASSETS_CONFIG.format(app_port=app_port, port=port)) as run:
        run.wait_for_log(r"ready in")
        run.wait_for_log(r"watching")
        direct = browser.new_page()  # the app's own max-age, for contrast
        direct.goto(f"http://127.0.0.1:{app_port}/")
        direct.wait_for_function("window.appVersion === 1")
        network = Network(page)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("window.appVersion === 1 && window.mod9 === 9")
        page.reload()  # as a page one works on: its assets seen once, now named by version
        page.wait_for_function("window.appVersion === 1 && window.mod9 === 9")
        assert "?__pyair=" in network.urls["/static/lib/mod00.js"]
        page.wait_for_function("window.__pyair.state.source.readyState === EventSource.OPEN")
        network.clear()
        hits_before = (project / "hits.log").read_text().splitlines()

        (project / "static" / "app.js").write_text("window.appVersion = 2;\n")
        page.wait_for_function("window.appVersion === 2")  # reloaded, running the new code
        assert page.evaluate(LOADS) == 3
        unchanged = [f"/static/{name}" for name in UNCHANGED]
        deadline = time.monotonic() + WAIT_MS / 1000
        while not network.settled(["/static/app.js", *unchanged]):
            assert time.monotonic() < deadline, (network.status, network.cached)
            time.sleep(0.01)  # poll
        assert network.status["/static/app.js"] == 200
        new_version = hashlib.sha256(b"window.appVersion = 2;\n").hexdigest()
        assert network.urls["/static/app.js"].endswith(f"?__pyair={new_version}")
        # fetched by the old page on pyair's event: the reloaded page found it in the cache
        assert "/static/app.js" in network.cached, (network.status, network.cached)
        kept = [p for p in unchanged if network.status.get(p) == 304 or p in network.cached]
        assert len(kept) == 20, (network.status, network.cached)
        # modules keep their URLs (a second URL would be a second instance): pyair's 304s
        assert [p for p in unchanged if network.status.get(p) == 304] == [
            "/static/lib/mod08.mjs",
            "/static/lib/mod09.mjs",
        ]
        # from the cache or pyair's 304s: the app saw the page and the changed file, nothing else
        hits = (project / "hits.log").read_text().splitlines()[len(hits_before) :]
        assert sorted(set(hits)) == ["GET /", "GET /static/app.js"], hits

        direct.reload()
        direct.wait_for_function("window.mod9 === 9")
        assert direct.evaluate("window.appVersion") == 1  # straight to the app: the stale copy
        direct.close()


# --------------------------------------------------------------------------- the morph itself


def morph(page: Any, before: str, after: str, setup: str = "") -> Any:
    """Load ``before``, run ``setup`` JS, morph into ``after``; returns what setup saved."""
    page.set_content(before)
    page.evaluate(MORPH_JS)
    page.evaluate(f"() => {{ window.saved = {{}}; {setup} }}")
    page.evaluate(
        """(html) => window.__pyairMorph.morphDocument(
            document, new DOMParser().parseFromString(html, 'text/html'))""",
        after,
    )
    return page


def test_morph_keeps_nodes_focus_and_typed_values(page: Any) -> None:
    before = """<main><ul><li>a</li><li>b</li></ul>
      <form><input id="i"><textarea name="t">x</textarea><input name="n"></form></main>"""
    after = """<main><h2>new</h2><ul><li>zero</li><li>a</li><li>b!</li></ul>
      <form class="f"><input id="i" placeholder="p"><textarea name="t">y</textarea>
      <input name="n"></form></main>"""
    setup = """
      saved.form = document.querySelector('form');
      saved.li = document.querySelectorAll('li')[0];
      document.querySelector('#i').value = 'typed';
      document.querySelector('[name=n]').value = 'also typed';
      document.querySelector('textarea').value = 'edited';
      document.querySelector('textarea').focus();"""
    morph(page, before, after, setup)
    assert page.evaluate("document.querySelector('form') === saved.form")
    assert page.evaluate("document.querySelector('form').className") == "f"
    assert page.evaluate("document.querySelector('#i').value") == "typed"
    assert page.evaluate("document.querySelector('#i').placeholder") == "p"
    assert page.evaluate("document.querySelector('[name=n]').value") == "also typed"
    assert page.evaluate("document.querySelector('textarea').value") == "edited"
    assert page.evaluate("document.activeElement.tagName") == "TEXTAREA"
    items = page.evaluate("[...document.querySelectorAll('li')].map(li => li.textContent)")
    assert items == ["zero", "a", "b!"]
    assert page.evaluate(
        "document.querySelectorAll('li')[1] === saved.li"
    )  # an insert, not a shift
    assert page.evaluate("document.querySelector('h2').textContent") == "new"


def test_morph_pairs_by_id_and_survives_removals(page: Any) -> None:
    before = '<div><p id="a">A</p><p id="b">B</p></div><p>1</p><p>2</p><p>3</p>'
    after = '<div><p id="b">B</p><p id="a">A2</p></div><p>1</p><p>3</p>'
    setup = """
      saved.a = document.getElementById('a');
      saved.three = document.querySelectorAll('body > p')[2];"""
    morph(page, before, after, setup)
    assert page.evaluate("document.getElementById('a') === saved.a")
    assert page.evaluate("saved.a.textContent") == "A2"
    assert page.evaluate("[...document.querySelectorAll('div p')].map(p => p.id)") == ["b", "a"]
    assert page.evaluate("document.querySelectorAll('body > p')[1] === saved.three")
    assert page.evaluate("document.body.innerText.replace(/\\s+/g, ' ').trim()") == "B A2 1 3"


def test_morph_applies_head_changes_and_keeps_stylesheets(page: Any) -> None:
    sheet = '<link rel="stylesheet" href="data:text/css,p%7Bcolor:red%7D">'
    before = f"<head><title>Old</title>{sheet}<style>b{{color:blue}}</style></head><p>x</p>"
    after = f'<head><title>New</title><meta name="x" content="1">{sheet}</head><p>x</p>'
    setup = "saved.link = document.querySelector('link');"
    morph(page, before, after, setup)
    assert page.evaluate("document.title") == "New"
    assert page.evaluate("document.querySelector('meta[name=x]').content") == "1"
    assert page.evaluate("document.querySelector('link') === saved.link")  # not re-fetched
    assert page.evaluate("document.querySelectorAll('style').length") == 0


def test_morph_leaves_pyair_and_script_made_nodes_alone(page: Any) -> None:
    before = '<p id="a">a</p><p id="gone">gone</p><div data-pyair id="overlay">o</div>'
    after = '<p id="a">a2</p>'
    setup = """
      window.__pyairMorph.snapshot(document);  // what the server sent, as client.js does
      const toast = document.createElement('div'); toast.id = 'toast'; document.body.append(toast);
      document.documentElement.classList.add('js');"""
    morph(page, before, after, setup)
    assert page.evaluate("!!document.getElementById('overlay')")
    assert page.evaluate("!!document.getElementById('toast')")
    assert page.evaluate("document.documentElement.className") == "js"
    assert page.evaluate("document.getElementById('gone')") is None
    assert page.evaluate("document.getElementById('a').textContent") == "a2"


# --------------------------------------------------------------------------- a tutorial's app


@pytest.fixture
def fastapi_tutorial(tmp_path: Path) -> Iterator[Demo]:
    """FastAPI's templates tutorial app (Jinja2Templates: auto_reload on), set up by init."""
    project = tmp_path / "tutorial"
    shutil.copytree(APPS / "tutorial_fastapi", project)
    port, app_port = free_port(), free_port()
    init = run_pyair("init", "--port", str(port), "--app-port", str(app_port), cwd=project)
    assert init.returncode == 0, init.stderr
    with PyairRun(project, (project / ".air.toml").read_text()) as run:
        run.wait_for_log(r"ready in")
        yield Demo(project, port, run)


def test_a_tab_reloaded_while_a_template_is_broken_keeps_the_old_page_and_recovers(
    fastapi_tutorial: Demo, page: Any
) -> None:
    app = fastapi_tutorial
    page.goto(app.url + "items/7")
    app.edit("templates/item.html", "item v1", "item v2 {% if %}")
    page.locator("#__pyair_overlay .where").wait_for()
    page.reload()  # what a developer does: the old page, and the overlay, not a bare 500
    assert "item v1" in page.locator("p").inner_text()
    where = page.locator("#__pyair_overlay .where")
    where.wait_for()
    assert where.inner_text() == "templates/item.html:5"

    other = page.context.new_page()  # a page whose view fails, while the template is broken
    failed = other.goto(app.url + "boom")
    assert failed.headers["cache-control"] == "no-store"  # it carries the script: per request
    other.locator("#__pyair_overlay .where").wait_for()
    assert "Internal Server Error" in other.locator("body > pre").inner_text()

    app.edit("templates/item.html", "item v2 {% if %}", "item v3")
    page.wait_for_selector("#__pyair_overlay", state="detached")
    page.wait_for_function("document.body.innerText.includes('item v3')")
    other.wait_for_selector("#__pyair_overlay", state="detached")  # by itself, too
