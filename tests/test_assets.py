"""Asset versions through the proxy: content ETags, no-cache, and 304s pyair answers itself.

End to end: real pyair in front of tests/apps/asset_app.py, an app that serves its static files
with ``max-age=3600`` (as Flask with SEND_FILE_MAX_AGE_DEFAULT, WhiteNoise or nginx configs do),
real files edited on disk. The pure parts (tag parsing, the file index, bounded inflating, the
racy-timestamp rule) are tested on their own, on real files in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import time
import zlib
from pathlib import Path

import pytest
from support import PyairRun, asset_project, free_port

from supervisor.proxy.assets import (
    IMMUTABLE,
    NO_CACHE,
    AssetTable,
    _inflate,
    entity_tags,
    no_store,
    split_version,
    with_caching,
)
from supervisor.proxy.files import MAX_VERSIONED, Digests, FileIndex, url_segments

HOUR_AGO = time.time() - 3600
CONFIG = """
[build]
full_bin = "python app.py"
include_ext = ["py", "html", "css", "js"]
kill_delay = "2s"
[env]
PORT = "{app_port}"
{env}
[proxy]
enabled = true
app_port = {app_port}
proxy_port = {port}
"""
APP_JS = "window.appVersion = 1;\n"


def tag_of(data: bytes) -> str:
    return f'W/"sha256-{hashlib.sha256(data).hexdigest()}"'


class Site(PyairRun):
    """pyair's proxy in front of asset_app.py on a project of static files."""

    def __init__(self, tmp_path: Path, files: dict[str, str | bytes], env: str = "") -> None:
        self.app_port, self.port = free_port(), free_port()
        text = CONFIG.format(app_port=self.app_port, port=self.port, env=env)
        super().__init__(asset_project(tmp_path / "site", files), text)

    def __enter__(self) -> Site:
        super().__enter__()
        self.wait_for_log(r"ready in")
        self.wait_for_log(r"watching")
        return self

    def hits(self, path: str) -> int:
        """How many requests for ``path`` reached the app."""
        lines = (self.project / "hits.log").read_text().splitlines()
        return sum(1 for line in lines if line.split(" ", 1)[1].split("?", 1)[0] == path)

    def edit(self, name: str, content: str) -> None:
        (self.project / "static" / name).write_text(content)


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()


def request(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        conn.close()


# --------------------------------------------------------------------------- through pyair


def test_js_with_max_age_gets_a_content_etag_and_a_304_until_it_changes(tmp_path: Path) -> None:
    with Site(tmp_path, {"app.js": APP_JS}) as site:
        direct = request(site.app_port, "/static/app.js")
        assert direct.headers["cache-control"] == "public, max-age=3600"  # the app's own
        assert "etag" not in direct.headers

        first = request(site.port, "/static/app.js")
        assert first.status == 200 and first.body == APP_JS.encode()
        assert first.headers["cache-control"] == "no-cache"
        assert first.headers["etag"] == tag_of(APP_JS.encode())
        assert "last-modified" not in first.headers and "expires" not in first.headers
        asked = site.hits("/static/app.js")

        again = request(site.port, "/static/app.js", {"If-None-Match": first.headers["etag"]})
        assert again.status == 304 and again.body == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["cache-control"] == "no-cache"
        assert site.hits("/static/app.js") == asked  # answered without the app

        site.edit("app.js", "window.appVersion = 2;\n")
        edited = request(site.port, "/static/app.js", {"If-None-Match": first.headers["etag"]})
        assert edited.status == 200 and edited.body == b"window.appVersion = 2;\n"
        assert edited.headers["etag"] == tag_of(edited.body) != first.headers["etag"]
        assert site.hits("/static/app.js") == asked + 1


def test_an_unchanged_file_after_a_restart_is_a_304_once_the_new_app_served_it(
    tmp_path: Path,
) -> None:
    with Site(tmp_path, {"app.js": APP_JS}) as site:
        tag = request(site.port, "/static/app.js").headers["etag"]
        app = site.project / "app.py"
        app.write_text(app.read_text() + "\n# edited\n")
        site.wait_for_log(r"ready in", count=2)
        asked = site.hits("/static/app.js")
        # the new app may map URLs differently: it is asked, and the unchanged bytes are a 304
        after = request(site.port, "/static/app.js", {"If-None-Match": tag})
        assert after.status == 304 and after.headers["etag"] == tag
        assert site.hits("/static/app.js") == asked + 1
        assert request(site.port, "/static/app.js", {"If-None-Match": tag}).status == 304
        assert site.hits("/static/app.js") == asked + 1  # learned again: from the table


def test_a_save_within_the_same_second_is_never_served_stale(tmp_path: Path) -> None:
    with Site(tmp_path, {"app.js": APP_JS}) as site:
        versions = [request(site.port, "/static/app.js").headers["etag"]]
        for n in range(2, 7):  # saves in quick succession, each one read back at once
            site.edit("app.js", f"window.appVersion = {n};\n")
            reply = request(site.port, "/static/app.js", {"If-None-Match": versions[-1]})
            assert reply.status == 200 and reply.body == f"window.appVersion = {n};\n".encode()
            versions.append(reply.headers["etag"])
        assert len(set(versions)) == 6


def test_html_is_no_store_whatever_the_app_says(tmp_path: Path) -> None:
    with Site(tmp_path, {"app.js": APP_JS}) as site:
        direct = request(site.app_port, "/")
        assert direct.headers["cache-control"] == "public, max-age=3600"
        page = request(site.port, "/", {"Accept": "text/html"})
        assert page.status == 200 and b"/__pyair/client.js" in page.body
        assert page.headers["cache-control"] == "no-store"
        assert "etag" not in page.headers


def test_gzip_bodies_carry_the_files_content_tag_and_keep_their_encoding(tmp_path: Path) -> None:
    css = "body { color: #333; }\n" * 50
    with Site(tmp_path, {"site.css": css}, env='GZIP = "1"') as site:
        zipped = request(site.port, "/static/site.css", {"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert gzip.decompress(zipped.body) == css.encode()
        assert zipped.headers["etag"] == tag_of(css.encode())  # the content, not the encoding
        assert zipped.headers["vary"] == "Accept-Encoding"
        plain = request(site.port, "/static/site.css")
        assert "content-encoding" not in plain.headers and plain.body == css.encode()
        assert plain.headers["etag"] == zipped.headers["etag"]
        conditional = {"If-None-Match": plain.headers["etag"], "Accept-Encoding": "gzip"}
        not_modified = request(site.port, "/static/site.css", conditional)
        assert not_modified.status == 304 and not_modified.headers["vary"] == "Accept-Encoding"


def test_what_is_not_a_file_as_it_is_on_disk_is_relayed_untouched(tmp_path: Path) -> None:
    with Site(tmp_path, {"app.js": APP_JS}) as site:
        rendered = request(site.port, "/render/app.js")  # the file's name, other bytes
        assert rendered.body.endswith(b"/* rendered */\n")
        assert rendered.headers["cache-control"] == "public, max-age=3600"
        assert "etag" not in rendered.headers
        api = request(site.port, "/api/now")
        assert api.headers["cache-control"] == "max-age=60" and "etag" not in api.headers


def test_an_apps_own_strong_etag_is_replaced_by_the_content_tag(tmp_path: Path) -> None:
    with Site(tmp_path, {"app.js": APP_JS}, env='APP_ETAG = "1"') as site:
        assert request(site.app_port, "/static/app.js").headers["etag"].startswith('"')
        through = request(site.port, "/static/app.js")
        assert through.headers["etag"] == tag_of(APP_JS.encode())
        # a tag pyair made is pyair's to check: the app is asked without it, and answers 200
        site.edit("app.js", "window.appVersion = 3;\n")
        edited = request(site.port, "/static/app.js", {"If-None-Match": through.headers["etag"]})
        assert edited.status == 200 and edited.body == b"window.appVersion = 3;\n"


def test_ranges_and_heads(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    with Site(tmp_path, {"clip.bin": data}) as site:
        ranged = request(site.port, "/static/clip.bin", {"Range": "bytes=10-19"})
        assert ranged.status == 206 and ranged.body == data[10:20]
        assert ranged.headers["cache-control"] == "no-cache"  # its freshness goes...
        assert "last-modified" in ranged.headers  # ...the app's own validators stay
        assert "etag" not in ranged.headers
        tag = request(site.port, "/static/clip.bin").headers["etag"]
        head = request(site.port, "/static/clip.bin", method="HEAD")
        assert head.status == 200 and head.headers["etag"] == tag and head.body == b""
        assert int(head.headers["content-length"]) == len(data)
        asked = site.hits("/static/clip.bin")
        conditional = request(site.port, "/static/clip.bin", {"If-None-Match": tag}, "HEAD")
        assert conditional.status == 304 and site.hits("/static/clip.bin") == asked
        # a range is never answered from the table, even with a current tag
        both = request(site.port, "/static/clip.bin", {"If-None-Match": tag, "Range": "bytes=0-3"})
        assert both.body == data[:4] and site.hits("/static/clip.bin") == asked + 1


def test_a_file_too_big_to_hash_streams_with_the_apps_validators(tmp_path: Path) -> None:
    big = os.urandom(MAX_VERSIONED + 1)
    with Site(tmp_path, {"movie.bin": big}) as site:
        reply = request(site.port, "/static/movie.bin")
        assert reply.status == 200 and reply.body == big
        assert reply.headers["cache-control"] == "no-cache"
        assert "etag" not in reply.headers and "last-modified" in reply.headers


def test_a_css_edit_event_carries_the_version_its_etag_has(tmp_path: Path) -> None:
    with Site(tmp_path, {"site.css": "h1 { color: red; }\n"}) as site:
        stream = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
        stream.request("GET", "/__pyair/events", headers={"Accept": "text/event-stream"})
        events = stream.getresponse()
        assert _next_event(events)[0] == "hello"
        site.edit("site.css", "h1 { color: blue; }\n")
        name, data = _next_event(events)
        stream.close()
        assert name == "css" and data["paths"] == ["static/site.css"]
        token = data["versions"]["static/site.css"]
        assert token == hashlib.sha256(b"h1 { color: blue; }\n").hexdigest()
        # what the page then fetches carries the same version as its ETag
        refreshed = request(site.port, f"/static/site.css?__pyair={token}")
        assert refreshed.headers["etag"] == f'W/"sha256-{token}"'


def _next_event(events: http.client.HTTPResponse) -> tuple[str, dict[str, object]]:
    """The next named Server-Sent Event on the stream: (name, data)."""
    name, data = "", ""
    while True:
        line = events.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif not line and name:
            return name, json.loads(data)


def test_pages_name_each_files_version_and_a_url_with_it_is_cached_for_good(
    tmp_path: Path,
) -> None:
    with Site(tmp_path, {"app.js": APP_JS, "site.css": "h1 {}\n"}) as site:
        first = request(site.port, "/", {"Accept": "text/html"}).body.decode()
        assert "__pyair=" not in first.split("/__pyair/client.js")[0]  # nothing served yet
        for path in ("/static/app.js", "/static/site.css"):
            request(site.port, path)
        page = request(site.port, "/", {"Accept": "text/html"}).body.decode()
        js = hashlib.sha256(APP_JS.encode()).hexdigest()
        css = hashlib.sha256(b"h1 {}\n").hexdigest()
        assert f'<script src="/static/app.js?__pyair={js}"></script>' in page
        assert f'<link rel="stylesheet" href="/static/site.css?__pyair={css}">' in page
        versioned = request(site.port, f"/static/app.js?__pyair={js}")
        assert versioned.body == APP_JS.encode()
        assert versioned.headers["cache-control"] == "max-age=31536000, immutable"
        assert versioned.headers["etag"] == tag_of(APP_JS.encode())
        # the app is asked for the URL as the page would be without pyair
        hits = (site.project / "hits.log").read_text().splitlines()
        assert "GET /static/app.js" in hits and not any("__pyair" in h for h in hits)
        site.edit("app.js", "window.appVersion = 2;\n")
        # an old page's URL now gets the new bytes: revalidated, never cached for good
        old_url = request(site.port, f"/static/app.js?__pyair={js}")
        assert old_url.body == b"window.appVersion = 2;\n"
        assert old_url.headers["cache-control"] == "no-cache"
        new = hashlib.sha256(b"window.appVersion = 2;\n").hexdigest()
        page = request(site.port, "/", {"Accept": "text/html"}).body.decode()
        assert f"/static/app.js?__pyair={new}" in page and f"site.css?__pyair={css}" in page


def test_a_file_with_a_copy_keeps_its_tag_but_the_app_is_asked_every_time(tmp_path: Path) -> None:
    site = Site(tmp_path, {"lib/x.js": "window.x = 1;\n"})
    copy = site.project / "collected" / "lib" / "x.js"  # as collectstatic leaves them
    copy.parent.mkdir(parents=True)
    copy.write_text("window.x = 1;\n")
    with site:
        first = request(site.port, "/static/lib/x.js")
        assert first.headers["etag"] == tag_of(b"window.x = 1;\n")
        assert first.headers["cache-control"] == "no-cache"
        asked = site.hits("/static/lib/x.js")
        again = request(site.port, "/static/lib/x.js", {"If-None-Match": first.headers["etag"]})
        assert again.status == 304 and site.hits("/static/lib/x.js") == asked + 1
        page = request(site.port, "/", {"Accept": "text/html"}).body.decode()
        assert '<script src="/static/lib/x.js">' in page  # no version: it cannot know which


# --------------------------------------------------------------------------- pure parts


def test_entity_tags_are_compared_weakly() -> None:
    assert entity_tags(b'W/"sha256-ab", "x"') == [b'"sha256-ab"', b'"x"']
    assert entity_tags(b"*") == [b"*"]
    assert entity_tags(None) == []
    assert entity_tags(b"garbage") == []


def test_pyairs_caching_replaces_the_apps_freshness_and_validators() -> None:
    app = [
        (b"content-type", b"text/javascript"),
        (b"cache-control", b"public, max-age=3600"),
        (b"expires", b"Thu, 01 Jan 2099 00:00:00 GMT"),
        (b"etag", b'"app-made"'),
        (b"last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
        (b"vary", b"Accept-Encoding"),
    ]
    out = dict(with_caching(app, NO_CACHE, b'W/"sha256-1"'))
    assert out == {
        b"content-type": b"text/javascript",
        b"vary": b"Accept-Encoding",
        b"cache-control": b"no-cache",
        b"etag": b'W/"sha256-1"',
    }
    kept = dict(with_caching(app, IMMUTABLE))
    assert kept[b"etag"] == b'"app-made"' and kept[b"cache-control"] == IMMUTABLE
    assert b"expires" not in kept
    assert dict(no_store(app))[b"cache-control"] == b"no-store"


def test_url_segments_refuse_what_no_file_can_answer() -> None:
    assert url_segments("/static/js/app%20x.js") == ["static", "js", "app x.js"]
    assert url_segments("/static/") is None
    assert url_segments("/static/../../etc/passwd") is None
    assert url_segments("/static/%2e%2e/%2e%2e/etc/passwd") is None
    assert url_segments("/a%00.js") is None


def test_the_version_parameter_is_taken_off_and_the_rest_kept() -> None:
    assert split_version("/a.js?__pyair=ab") == ("/a.js", "ab")
    assert split_version("/a.js?v=1&__pyair=ab&x=2") == ("/a.js?v=1&x=2", "ab")
    assert split_version("/a.js?v=1") == ("/a.js?v=1", None)
    assert split_version("/a.js?my__pyair=1") == ("/a.js?my__pyair=1", None)


def test_the_index_ranks_files_by_trailing_segments_in_common(tmp_path: Path) -> None:
    for rel in ("pkg/static/js/app.js", "tests/app.js", "node_modules/x/app.js", ".git/app.js"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    index = FileIndex(tmp_path)
    index.walk()
    found = index.candidates(["static", "js", "app.js"])
    assert found == [str(tmp_path / "pkg/static/js/app.js"), str(tmp_path / "tests/app.js")]
    new = tmp_path / "static" / "new.css"  # since the walk: found by its URL path under root
    new.parent.mkdir()
    new.write_text("x")
    assert index.candidates(["static", "new.css"]) == [str(new)]


def test_inflating_is_bounded() -> None:
    data = b"a" * 10_000
    assert _inflate(gzip.compress(data), b"gzip", 10_000) == data
    assert _inflate(gzip.compress(data), b"gzip", 9_999) is None  # a bomb stops at the limit
    assert _inflate(zlib.compress(data), b"deflate", 10_000) == data
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert _inflate(raw.compress(data) + raw.flush(), b"deflate", 10_000) == data
    assert _inflate(gzip.compress(data)[:-8], b"gzip", 10_000) is None  # truncated
    assert _inflate(data, b"br", 10_000) is None
    assert _inflate(data, b"", 10) == data  # identity: nothing to inflate


def test_a_freshly_written_files_hash_is_not_remembered(tmp_path: Path) -> None:
    file = tmp_path / "app.js"
    file.write_text("one")
    digests = Digests()
    assert digests.now(str(file)) is not None
    assert digests.cached(str(file)) is None  # racy: its signature may not tell the next write
    os.utime(file, (HOUR_AGO, HOUR_AGO))
    known = digests.now(str(file))
    assert known is not None and known[1] == hashlib.sha256(b"one").hexdigest()
    assert digests.cached(str(file)) == known
    file.write_text("two")
    assert digests.cached(str(file)) is None  # a new signature: the old hash is no use


@pytest.mark.anyio
async def test_a_page_names_versions_of_what_the_app_served_and_nothing_else(
    tmp_path: Path,
) -> None:
    files = {"app.js": "1", "mod.mjs": "2", "site.css": "3", "logo.svg": "4", "docs/page.js": "5"}
    table = AssetTable(tmp_path)
    for name, text in files.items():
        path = tmp_path / "static" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (HOUR_AGO, HOUR_AGO))
        table.routes[f"/static/{name}"] = str(path)  # as if the app had served each one
    table.routes["/static/app.js?x=1&y=2"] = str(tmp_path / "static" / "app.js")
    (tmp_path / "static" / "unseen.js").write_text("6")  # a file the app never served yet

    def v(text: str) -> str:
        return "__pyair=" + hashlib.sha256(text.encode()).hexdigest()

    page = b"""<head><link rel="stylesheet" href="/static/site.css">
<link rel=canonical href="/static/site.css"><link rel="icon" href='/static/logo.svg'>
<script src="/static/app.js?x=1&amp;y=2" defer></script>
<script type="module" src="/static/mod.mjs"></script>
<script src="https://cdn.example.test/static/app.js"></script>
<script src="//cdn.example.test/static/app.js"></script>
<script src="/__pyair/client.js?v=1"></script></head>
<body><img alt="x" src=/static/logo.svg><img src="data:image/png;base64,AA==">
<script src="page.js"></script><script src="/static/unseen.js"></script></body>"""
    first = await table.version_page(page, b"/static/docs/index.html?q=1")
    out = first.body.decode()
    assert f'<link rel="stylesheet" href="/static/site.css?{v("3")}">' in out
    assert '<link rel=canonical href="/static/site.css">' in out  # not a resource it loads
    assert f"<link rel=\"icon\" href='/static/logo.svg?{v('4')}'>" in out
    assert f'src="/static/app.js?x=1&amp;y=2&amp;{v("1")}" defer' in out
    assert '<script type="module" src="/static/mod.mjs">' in out  # one URL per module
    assert out.count('cdn.example.test/static/app.js"') == 2  # other origins as they are
    assert 'src="/__pyair/client.js?v=1"' in out
    assert f'<img alt="x" src=/static/logo.svg?{v("4")}>' in out
    assert 'src="data:image/png;base64,AA=="' in out
    assert f'<script src="page.js?{v("5")}">' in out  # relative to the page
    assert '<script src="/static/unseen.js">' in out  # never a guess from its name
    (tmp_path / "static" / "app.js").write_text("1 edited")
    assert first.preload == []  # nothing named before: nothing known to be stale
    edited = await table.version_page(page, b"/")
    assert f"app.js?x=1&amp;y=2&amp;{v('1 edited')}" in edited.body.decode()  # a new version
    # the changed file, fetched as soon as the headers arrive (as written, unescaped)
    assert edited.preload == [
        f"</static/app.js?x=1&y=2&{v('1 edited')}>; rel=preload; as=script".encode()
    ]
    assert (await table.version_page(page, b"/")).preload == []  # named once: not again
    (tmp_path / "static" / "site.css").write_text("3 edited")
    (tmp_path / "static" / "logo.svg").write_text("4 edited")
    preload = (await table.version_page(page, b"/")).preload
    assert preload == [  # the stylesheet and the image; the icon is no preload's to fetch
        f"</static/site.css?{v('3 edited')}>; rel=preload; as=style".encode(),
        f"</static/logo.svg?{v('4 edited')}>; rel=preload; as=image".encode(),
    ]
    # what a tab fetches before it reloads: the changed files, as the pages will name them
    assert table.fresh_urls([str(tmp_path / "static" / "app.js")]) == [
        f"/static/app.js?{v('1 edited')}",
        f"/static/app.js?x=1&y=2&{v('1 edited')}",
    ]
    assert table.fresh_urls([str(tmp_path / "static" / "unseen.js")]) == []  # never served
    table.restarted()  # the new app may serve other files there
    assert table.fresh_urls([str(tmp_path / "static" / "app.js")]) == []
    assert (await table.version_page(page, b"/")).body == page
    assert (await table.version_page(b"<p>no assets</p>", b"/")).body == b"<p>no assets</p>"
