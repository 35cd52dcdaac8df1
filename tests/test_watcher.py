"""The watcher: air's filter rules (pure) and the real watcher on real files in tmp_path.

The real-watcher tests run on both backends (the ``backend`` fixture): inotify, the
event-driven one, and watchfiles polling (``[build] poll = true``, also the fallback). Every
wait is on a condition with a deadline; a bounded wait for an *absence* (no second batch)
uses move_on_after. Sleeps that pace a writer are marked ``# poll``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from support import APPS, inotify_watches

from supervisor.classify import Change, FileChange
from supervisor.config import BuildConfig, Config, RuleConfig
from supervisor.watcher import Watcher, app_filter, build_filter, is_editor_junk, merge_changes

REPO = Path(__file__).resolve().parent.parent
A, M, D = Change.added, Change.modified, Change.deleted
POLL_MS = 500  # air's floor for poll_interval


@pytest.fixture(params=["inotify", "poll"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: inotify (Linux's default) or watchfiles polling."""
    return str(request.param)


def make_config(root: Path, backend: str = "inotify", **build: Any) -> Config:
    if backend == "poll":
        build = {"poll": True, "poll_interval": POLL_MS, **build}
    return Config(root=root.resolve(), build=replace(BuildConfig(), **build))


def quiet_period(config: Config) -> float:
    """How long 'nothing more came' must last: 3 x delay + 200 ms, plus two poll intervals
    when polling (a late report would come with the next poll)."""
    polling = 2 * config.build.poll_interval / 1000 if config.build.poll else 0.0
    return 3 * config.build.delay / 1000 + 0.2 + polling


def latency_bound(config: Config) -> float:
    """A generous bound on save → batch: detection, the quiet window, a busy machine."""
    return 1.0 + (3 * config.build.poll_interval / 1000 if config.build.poll else 0.0)


class Run:
    def __init__(
        self,
        watcher: Watcher,
        receive: MemoryObjectReceiveStream[list[FileChange]],
        notices: list[str],
        baseline: int,
    ) -> None:
        self.watcher = watcher
        self.receive = receive
        self.notices = notices
        self.baseline = baseline  # inotify watches held before this watcher started

    def watches(self) -> int:
        """inotify watches held by this watcher."""
        return inotify_watches() - self.baseline

    async def batch(self, timeout: float = 5.0) -> list[FileChange]:
        with anyio.fail_after(timeout):
            return await self.receive.receive()

    async def assert_quiet(self, seconds: float | None = None) -> None:
        """Bounded wait for an absence: no further batch within ``seconds``."""
        with anyio.move_on_after(seconds or quiet_period(self.watcher.config)):
            extra = await self.receive.receive()
            pytest.fail(f"unexpected extra batch: {extra}")

    def expected_watches(self) -> int:
        """inotify watches this watcher should hold: one per watched directory (none when
        polling)."""
        return 0 if self.watcher.polling else len(self.watcher.watched_dirs)


@asynccontextmanager
async def watching(
    config: Config, eager: Any = None, debug: list[str] | None = None, backend: Any = None
) -> AsyncIterator[Run]:
    notices: list[str] = []
    send, receive = anyio.create_memory_object_stream[list[FileChange]](100)
    say = debug.append if debug is not None else None
    watcher = Watcher(config, notice=notices.append, eager=eager, debug=say, backend=backend)
    baseline = inotify_watches()
    async with receive, anyio.create_task_group() as tg:
        await tg.start(watcher.run, send)
        yield Run(watcher, receive, notices, baseline)
        tg.cancel_scope.cancel()
    await inotify_watches_back_to(baseline)


async def inotify_watches_back_to(baseline: int) -> None:
    """notify closes an inotify fd from its own thread, shortly after the watcher stopped."""
    with anyio.fail_after(5):
        while inotify_watches() > baseline:
            await anyio.sleep(0.01)  # poll


def project(tmp_path: Path) -> Path:
    root = tmp_path.resolve() / "proj"
    (root / "src").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "app.py").write_text("version = 1\n")
    (root / "templates" / "x.html").write_text("<p>1</p>\n")
    return root


# --------------------------------------------------------------------------- filter (pure)


ROOT = Path("/proj")


def accepts(rel: str, **build: Any) -> bool:
    config = Config(root=ROOT, build=replace(BuildConfig(), **build))
    return build_filter(config)(Change.modified, str(ROOT / rel))


def test_filter_include_ext() -> None:
    assert accepts("app.py")
    assert accepts("templates/page.html")
    assert not accepts("README.md")
    assert not accepts("Makefile")
    assert accepts("README.md", include_ext=("md",))
    assert accepts("README.md", include_ext=(".md",))
    assert not accepts("app.py", include_ext=("md",))
    assert accepts("Makefile", include_ext=("*",))
    assert accepts(".env", include_ext=("env",))  # Go's filepath.Ext: ".env" -> "env"


def test_filter_include_file_passes_whatever_the_extension_or_directory() -> None:
    assert accepts("Procfile", include_file=("Procfile",))
    assert accepts("vendor/patched.cfg", include_file=("./vendor/patched.cfg",))
    assert not accepts("vendor/other.py", include_file=("vendor/patched.cfg",))
    assert not accepts("conf/Procfile", include_file=("Procfile",))  # root-relative, exact


def test_filter_exclude_file_globs_the_root_relative_path() -> None:
    assert not accepts("settings_local.py", exclude_file=("settings_*.py",))
    assert not accepts("pkg/models_gen.py", exclude_file=("pkg/*_gen.py",))
    assert accepts("other/models_gen.py", exclude_file=("pkg/*_gen.py",))
    assert not accepts("Procfile", include_file=("Procfile",), exclude_file=("Proc*",))


def test_filter_exclude_regex_searches_the_absolute_path() -> None:
    assert not accepts("tests/app_test.py")  # the default: _test\.py$
    assert accepts("tests/test_app.py")
    assert not accepts("gen/x.py", exclude_regex=(r"^/proj/gen/",))
    assert accepts("src/gen/x.py", exclude_regex=(r"^/proj/gen/",))


def test_filter_exclude_dir_is_an_exact_root_relative_path() -> None:
    assert not accepts("assets/app.js")  # default exclude_dir: assets, tmp, vendor, testdata
    assert not accepts("assets/deep/app.js")
    assert accepts("src/assets/app.js")  # not a basename match
    assert not accepts("src/gen/x.py", exclude_dir=("src/gen/",))
    assert accepts("gen/x.py", exclude_dir=("src/gen",))


def test_filter_include_dir_limits_the_watch() -> None:
    assert accepts("src/app.py", include_dir=("src",))
    assert accepts("src/deep/app.py", include_dir=("src",))
    assert not accepts("app.py", include_dir=("src",))
    assert not accepts("srcfoo/app.py", include_dir=("src",))  # a path prefix, not a string one
    assert not accepts("src/.cache/app.py", include_dir=("src",))
    # a directory outside root is an extra watch root (air #820); others outside are not
    assert accepts("../shared/lib.py", include_dir=("src", "../shared"))
    assert not accepts("../other/lib.py", include_dir=("../shared",))
    assert not accepts("../other/lib.py")
    assert accepts("app.py", include_dir=(".", "../shared"))
    assert accepts("src/app.py", include_dir=("./", "../shared"))


def test_filter_skips_hidden_tmp_testdata_and_always_excluded_dirs() -> None:
    assert not accepts(".idea/x.py")
    assert not accepts("src/.hidden/x.py")
    assert not accepts("web/node_modules/pkg/x.js", include_ext=("js",))
    assert not accepts("src/__pycache__/x.py")
    assert not accepts("lib/site-packages/x.py")
    assert not accepts(".venv/lib/x.py")
    build = replace(BuildConfig(), exclude_dir=())
    custom = Config(root=ROOT, tmp_dir="out", testdata_dir="fixtures", build=build)
    check = build_filter(custom)
    assert not check(Change.added, "/proj/out/x.py")
    assert not check(Change.added, "/proj/fixtures/x.py")
    assert check(Change.added, "/proj/tmp/x.py")  # tmp is only excluded by default
    assert check(Change.added, "/proj/.env.py")  # hidden *files* are not hidden dirs


def test_filter_ignores_editor_junk() -> None:
    junk = [
        "4913",
        "5036",
        "app.py~",
        ".app.py.swp",
        ".app.py.swx",
        ".#app.py",
        "#app.py#",
        "x.html.tmp",
        "app.py.___jb_tmp___",
        "app.py.___jb_old___",
        ".DS_Store",
        "app.cpython-311.pyc",
    ]
    for name in junk:
        assert is_editor_junk(name), name
        assert not accepts(f"src/{name}", include_ext=("*",)), name
    for name in ("4914", "2024", "app.py", "swap.py", "x.html"):
        assert not is_editor_junk(name), name


def test_merge_rules() -> None:
    exists = {"/p/new.py", "/p/saved.py", "/p/kept.html"}.__contains__
    known = {"/p/saved.py", "/p/gone.py", "/p/kept.html"}
    events = [
        (A, "/p/4913"),  # vim's probe: added then deleted
        (D, "/p/4913"),
        (D, "/p/saved.py"),  # deleted then added: an atomic save
        (A, "/p/saved.py"),
        (A, "/p/new.py"),  # new, then written again: still new
        (M, "/p/new.py"),
        (M, "/p/gone.py"),  # modified then deleted: deleted
        (D, "/p/gone.py"),
        (A, "/p/kept.html"),  # renamed onto a known file: modified
    ]
    assert merge_changes(events, known=known, exists=exists) == [
        (D, "/p/gone.py"),
        (M, "/p/kept.html"),
        (A, "/p/new.py"),
        (M, "/p/saved.py"),
    ]
    # order inside a raw batch is unknown (watchfiles yields sets): same answer reversed
    assert merge_changes(reversed(events), known=known, exists=exists) == merge_changes(
        events, known=known, exists=exists
    )


# --------------------------------------------------------------------------- the real watcher


@pytest.mark.anyio
async def test_one_save_is_one_batch(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    config = make_config(root, backend)
    async with watching(config) as run:
        start = time.perf_counter()
        (root / "app.py").write_text("version = 2\n")
        batch = await run.batch()
        elapsed = time.perf_counter() - start
        assert batch == [(M, str(root / "app.py"))]
        assert elapsed < latency_bound(config), f"{elapsed * 1000:.0f} ms from write to batch"
        await run.assert_quiet()
        assert run.notices == []


@pytest.mark.anyio
async def test_eager_changes_skip_the_quiet_window_and_others_do_not(
    tmp_path: Path, backend: str
) -> None:
    root = project(tmp_path)
    config = make_config(
        root, backend, delay=2000
    )  # a quiet window far longer than the bounds below
    async with watching(config, eager=lambda path: path.endswith(".html")) as run:
        start = time.perf_counter()
        (root / "templates" / "x.html").write_text("<p>2</p>\n")
        assert await run.batch(timeout=1.5) == [(M, str(root / "templates" / "x.html"))]
        assert time.perf_counter() - start < 1.5
        (root / "app.py").write_text("version = 2\n")
        await run.assert_quiet(1.0)  # a source change still waits for 2 s of quiet
        assert await run.batch(timeout=5.0) == [(M, str(root / "app.py"))]


@pytest.mark.anyio
async def test_burst_of_500_files_is_one_batch(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    config = make_config(root, backend)
    async with watching(config) as run:
        paths = [root / "src" / f"mod{i:03}.py" for i in range(500)]
        for path in paths:  # as fast as possible, like a git checkout
            path.write_text("x = 1\n")
        batch = await run.batch()
        assert batch == [(A, str(p)) for p in paths]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_formatter_rewriting_50_files_is_one_batch(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    paths = [root / "src" / f"mod{i:02}.py" for i in range(50)]
    for path in paths:
        path.write_text("x=1\n")
    config = make_config(root, backend)
    async with watching(config) as run:
        for path in paths:
            path.write_text("x = 1\n")
            # pacing: a formatter writes a file about every 5 ms
            await anyio.sleep(0.005)  # poll
        batch = await run.batch()
        assert batch == [(M, str(p)) for p in paths]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_editor_atomic_save_reports_only_the_target(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    target = root / "templates" / "x.html"
    config = make_config(root, backend)
    async with watching(config) as run:
        folder = target.parent
        (folder / ".x.html.swp").write_bytes(b"swap")
        probe = folder / "4913"  # vim checks it may create files here
        probe.write_bytes(b"")
        probe.unlink()
        (folder / "x.html~").write_bytes(target.read_bytes())  # backup
        temp = folder / "x.html.tmp"
        temp.write_text("<p>2</p>\n")
        os.replace(temp, target)
        batch = await run.batch()
        assert batch == [(M, str(target))]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_temp_file_created_and_deleted_is_dropped(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    config = make_config(root, backend)
    async with watching(config) as run:
        scratch = root / "src" / "scratch.py"
        scratch.write_text("tmp\n")
        scratch.unlink()
        (root / "app.py").write_text("version = 2\n")
        batch = await run.batch()
        assert batch == [(M, str(root / "app.py"))]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_same_file_rewritten_every_30_ms_is_one_batch(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    # a trailing window has to be longer than the gap it should bridge: 100 ms > 30 ms
    # (watchfiles alone yields about every 100 ms here: 3 batches in 300 ms)
    config = make_config(root, backend, delay=100)
    async with watching(config) as run:
        for i in range(10):
            (root / "app.py").write_text(f"version = {i}\n")
            # pacing: one write every 30 ms for 300 ms
            await anyio.sleep(0.03)  # poll
        batch = await run.batch()
        assert batch == [(M, str(root / "app.py"))]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_continuous_writes_are_cut_at_the_cap(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    config = make_config(root, backend, delay=100)  # cap: max(1000, 10 x 100) ms
    async with watching(config) as run, anyio.create_task_group() as tg:
        done = anyio.Event()

        async def writer() -> None:
            for i in range(120):  # about 2.4 s of writes 20 ms apart
                (root / "app.py").write_text(f"version = {i}\n")
                await anyio.sleep(0.02)  # poll
            done.set()

        start = anyio.current_time()
        tg.start_soon(writer)
        first = await run.batch()
        at = anyio.current_time() - start
        assert first == [(M, str(root / "app.py"))]
        assert not done.is_set(), "the cap did not cut the burst"
        # the cap counts from the first change seen: a poll interval late at most when polling
        late = config.build.poll_interval / 1000 if config.build.poll else 0.0
        assert 0.9 <= at <= 1.6 + late, at
        await done.wait()
        assert await run.batch() == [(M, str(root / "app.py"))]


@pytest.mark.anyio
async def test_new_directories_are_watched_and_removed_ones_dropped(
    tmp_path: Path, backend: str
) -> None:
    root = project(tmp_path)
    config = make_config(root, backend)
    async with watching(config) as run:
        deep = root / "pkg" / "sub"
        deep.mkdir(parents=True)  # like a git checkout: directories with files at once
        (root / "pkg" / "__init__.py").write_text("")
        (deep / "a.py").write_text("a = 1\n")
        batch = await run.batch()
        assert batch == [(A, str(root / "pkg" / "__init__.py")), (A, str(deep / "a.py"))]
        assert {root / "pkg", deep} <= set(run.watcher.watched_dirs)

        (deep / "a.py").write_text("a = 2\n")
        (deep / "b.py").write_text("b = 1\n")
        assert await run.batch() == [(M, str(deep / "a.py")), (A, str(deep / "b.py"))]

        shutil.rmtree(root / "pkg")
        batch = await run.batch()
        assert sorted(batch) == sorted(
            [
                (D, str(root / "pkg" / "__init__.py")),
                (D, str(deep / "a.py")),
                (D, str(deep / "b.py")),
            ]
        )
        with anyio.fail_after(5):
            while root / "pkg" in run.watcher.watched_dirs:
                await anyio.sleep(0.01)  # poll
        assert run.watcher.watched_dirs == [root, root / "src", root / "templates"]
        # and the same name again is a new directory again
        (root / "pkg").mkdir()
        (root / "pkg" / "c.py").write_text("c = 1\n")
        assert await run.batch() == [(A, str(root / "pkg" / "c.py"))]
        await run.assert_quiet()
        # watches of removed directories are gone: one per watched directory again
        with anyio.fail_after(5):
            while run.watches() != run.expected_watches():
                await anyio.sleep(0.01)  # poll


@pytest.mark.anyio
async def test_include_file_in_an_excluded_dir_is_watched(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    vendor = root / "vendor"  # excluded by default
    vendor.mkdir()
    config = make_config(root, backend, include_file=("vendor/patched.cfg",))
    async with watching(config) as run:
        assert run.watcher.watched_dirs == [root, root / "src", root / "templates", vendor]
        (vendor / "other.py").write_text("x = 1\n")
        (vendor / "patched.cfg").write_text("[x]\n")
        assert await run.batch() == [(A, str(vendor / "patched.cfg"))]
        await run.assert_quiet()


def _rule(**keys: Any) -> RuleConfig:
    return RuleConfig.finish(0, {"cmd": "make", **keys})


def test_filter_a_rules_files_are_watched_but_never_count_for_the_app() -> None:
    rule = _rule(include_dir=("assets/scss",), include_ext=("scss",))
    config = Config(root=ROOT, build=replace(BuildConfig(), rules=(rule,)))  # assets: excluded
    watched, app = build_filter(config), app_filter(config)
    scss = str(ROOT / "assets/scss/site.scss")
    assert watched(Change.modified, scss) and not app(Change.modified, scss)
    assert watched(Change.modified, str(ROOT / "assets/scss/deep/_vars.scss"))
    assert not watched(Change.modified, str(ROOT / "assets/scss/site.css"))  # not its ext
    assert not watched(Change.modified, str(ROOT / "assets/app.js"))  # excluded, no rule's
    assert not watched(Change.modified, str(ROOT / "assets/scss/node_modules/x.scss"))
    assert not watched(Change.modified, str(ROOT / "assets/scss/.#site.scss"))  # editor junk
    ts = _rule(include_ext=("ts",))  # no include_dir: wherever the app's dirs are watched
    config = Config(root=ROOT, build=replace(BuildConfig(), rules=(ts,)))
    assert build_filter(config)(Change.modified, str(ROOT / "src/x.ts"))
    assert not app_filter(config)(Change.modified, str(ROOT / "src/x.ts"))
    assert not build_filter(config)(Change.modified, str(ROOT / "vendor/x.ts"))


@pytest.mark.anyio
async def test_a_rules_include_dir_listed_in_exclude_dir_is_watched(
    tmp_path: Path, backend: str
) -> None:
    root = project(tmp_path)
    scss = root / "assets" / "scss"  # assets is excluded by default
    scss.mkdir(parents=True)
    (root / "assets" / "app.js").write_text("1\n")
    rule = _rule(include_dir=("assets/scss",), include_ext=("scss",))
    config = make_config(root, backend, rules=(rule,))
    async with watching(config) as run:
        assert scss in run.watcher.watched_dirs and root / "assets" not in run.watcher.watched_dirs
        (root / "assets" / "app.js").write_text("2\n")
        (scss / "site.scss").write_text("a { color: red }\n")
        assert await run.batch() == [(A, str(scss / "site.scss"))]
        (scss / "parts").mkdir()  # a new directory under it is watched too
        await run.assert_quiet()
        (scss / "parts" / "_x.scss").write_text("$x: 1;\n")
        assert await run.batch() == [(A, str(scss / "parts" / "_x.scss"))]


@pytest.mark.anyio
async def test_exclude_unchanged_drops_a_same_content_rewrite(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    config = make_config(root, backend, exclude_unchanged=True)
    async with watching(config) as run:
        (root / "app.py").write_text("version = 1\n")  # same bytes
        await run.assert_quiet()
        (root / "app.py").write_text("version = 2\n")
        assert await run.batch() == [(M, str(root / "app.py"))]
        (root / "app.py").write_text("version = 2\n")  # the new bytes are remembered
        await run.assert_quiet()


@pytest.mark.anyio
async def test_excluded_trees_cost_no_inotify_watches(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    (root / "src" / "pkg").mkdir()
    (root / "web" / "node_modules" / "react").mkdir(parents=True)
    (root / "vendor" / "lib").mkdir(parents=True)  # exclude_dir default
    (root / "tmp").mkdir()  # tmp_dir
    (root / ".git" / "objects").mkdir(parents=True)  # hidden
    (root / "src" / "__pycache__").mkdir()
    modules = root / "node_modules"
    modules.mkdir()
    # 50,000 files in 500 directories; hard links to a few seed files are ~20x faster to
    # create than new inodes on a busy ext4 (an inode takes at most 65,000 links)
    seeds = [modules / f"seed{i}.js" for i in range(5)]
    for seed in seeds:
        seed.write_text("module.exports = {}\n")
    for d in range(500):
        folder = modules / f"pkg{d}"
        folder.mkdir()
        seed = str(seeds[d % len(seeds)])
        for f in range(100):
            os.link(seed, folder / f"f{f}.js")
    config = make_config(root, backend, include_ext=("py", "html", "js"))
    async with watching(config) as run:
        kept = [root, root / "src", root / "src" / "pkg", root / "templates", root / "web"]
        assert run.watcher.watched_dirs == kept
        assert run.watches() == run.expected_watches()  # len(kept), or none when polling
        (modules / "pkg0" / "new.js").write_text("")  # not watched at all
        (root / "app.py").write_text("version = 2\n")
        assert await run.batch() == [(M, str(root / "app.py"))]


@pytest.mark.anyio
async def test_recreated_directory_is_watched_again(tmp_path: Path, backend: str) -> None:
    """``rm -r pkg && mkdir pkg && echo x=1 > pkg/mod.py``, then an edit: both are seen, and
    again, five times over (the directory is a new one each time, with a new inode)."""
    root = project(tmp_path)
    pkg = root / "pkg"
    pkg.mkdir()
    module = pkg / "mod.py"
    module.write_text("x = 0\n")
    config = make_config(root, backend)
    async with watching(config) as run:
        for round_ in range(5 if backend == "inotify" else 2):  # polling: a second a round
            subprocess.run(
                ["sh", "-c", "rm -r pkg && mkdir pkg && echo x=1 > pkg/mod.py"],
                cwd=root,
                check=True,
            )
            assert await run.batch() == [(M, str(module))], round_
            module.write_text(f"x = {round_ + 2}\n")
            assert await run.batch() == [(M, str(module))], round_
        assert pkg in run.watcher.watched_dirs
        with anyio.fail_after(5):
            while run.watches() != run.expected_watches():
                await anyio.sleep(0.01)  # poll


@pytest.mark.anyio
async def test_root_renamed_away_and_back_is_said_and_watched_again(
    tmp_path: Path, backend: str
) -> None:
    root = project(tmp_path)
    away = root.with_name("proj-away")
    config = make_config(root, backend)
    async with watching(config) as run:
        os.rename(root, away)
        with anyio.fail_after(latency_bound(config)):
            while not any("moved away" in n for n in run.notices):
                await anyio.sleep(0.01)  # poll
        (notice,) = run.notices  # inotify knows it moved; a poll, that it is gone
        assert notice.startswith(f"the project root {root} was moved away"), notice
        assert notice.endswith("not seen until it is back at that path; waiting for it")
        (away / "app.py").write_text("version = 22\n")  # not the project's path any more
        await run.assert_quiet()
        os.rename(away, root)
        # what changed while it was away is reported once it is back
        assert await run.batch(timeout=latency_bound(config) + 5) == [(M, str(root / "app.py"))]
        assert any(n == f"the project root {root} is back: watching it again" for n in run.notices)
        (root / "templates" / "x.html").write_text("<p>3</p>\n")
        assert await run.batch() == [(M, str(root / "templates" / "x.html"))]
        await run.assert_quiet()
        assert run.watcher.watched_dirs == [root, root / "src", root / "templates"]
        assert run.watches() == run.expected_watches()


@pytest.mark.anyio
async def test_root_deleted_and_created_again(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    app = root / "app.py"
    config = make_config(root, backend)
    async with watching(config) as run:
        template = root / "templates" / "x.html"
        shutil.rmtree(root)
        if backend == "inotify":  # the kernel reports each deletion before the root's own
            assert sorted(await run.batch()) == [(D, str(app)), (D, str(template))]
            back = [(A, str(app))]
        else:  # a poll cannot tell it from a move: the rescan once it is back tells
            back = [(M, str(app)), (D, str(template))]
        with anyio.fail_after(latency_bound(config)):
            while not any("deleted" in n for n in run.notices):
                await anyio.sleep(0.01)  # poll
        assert run.watcher.watched_dirs == []
        (root / "templates").mkdir(parents=True)
        app.write_text("version = 3\n")
        assert await run.batch(timeout=latency_bound(config) + 5) == back
        app.write_text("version = 4\n")
        assert await run.batch() == [(M, str(app))]
        assert run.watcher.watched_dirs == [root, root / "templates"]


@pytest.mark.anyio
async def test_inotify_queue_overflow_triggers_a_rescan(tmp_path: Path) -> None:
    """More events than the kernel queues (max_queued_events) while the watcher cannot read:
    the changes made meanwhile are still reported, from a rescan."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 200_000:
        pytest.skip(f"max_queued_events is {limit}: too many events to queue in a test")
    root = project(tmp_path)
    flood = [root / "flood-a.txt", root / "flood-b.txt"]  # not watched files: events still queue
    for path in flood:
        path.write_text("")
    debug: list[str] = []
    config = make_config(root)
    async with watching(config, debug=debug, backend="inotify") as run:
        # no await from here on: the watcher's task cannot read while the queue fills
        for i in range(limit + 1000):
            os.utime(flood[i % 2])  # alternating: the kernel coalesces only repeats
        (root / "app.py").write_text("version = 2\n")
        (root / "pkg").mkdir()
        (root / "pkg" / "a.py").write_text("a = 1\n")
        (root / "src" / "new.py").write_text("n = 1\n")
        batch = await run.batch()
        assert batch == [
            (M, str(root / "app.py")),
            (A, str(root / "pkg" / "a.py")),
            (A, str(root / "src" / "new.py")),
        ]
        assert any("overflowed" in line for line in debug), debug
        assert root / "pkg" in run.watcher.watched_dirs
        (root / "pkg" / "a.py").write_text("a = 2\n")  # the rescan watched the new directory
        assert await run.batch() == [(M, str(root / "pkg" / "a.py"))]


@pytest.mark.anyio
async def test_eager_save_is_one_batch_once_the_writer_closes(tmp_path: Path) -> None:
    """inotify says when a write is complete: a template still open for writing is not
    acted on (its truncate and its write stay one swap), its close is acted on at once."""
    root = project(tmp_path)
    template = root / "templates" / "x.html"
    config = make_config(root)
    async with watching(config, eager=lambda p: p.endswith(".html"), backend="inotify") as run:
        with template.open("w") as out:  # truncated: a first change, not complete
            out.write("<p>2")
            out.flush()
            await run.assert_quiet(0.3)  # far longer than the 10 ms quiet window
            out.write("</p>\n")
        assert await run.batch(timeout=1.0) == [(M, str(template))]
        await run.assert_quiet()


@pytest.mark.anyio
async def test_a_directory_name_that_is_not_utf8_is_watched(tmp_path: Path) -> None:
    """inotify takes the bytes of a name: a project under ``caf\\xe9`` is watched."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(raw)
    root = project(Path(os.fsdecode(raw)))
    async with watching(make_config(root), backend="inotify") as run:
        (root / "app.py").write_text("version = 2\n")
        assert await run.batch() == [(M, str(root / "app.py"))]


@pytest.mark.anyio
async def test_watchfiles_native_backend(tmp_path: Path) -> None:
    """What other platforms run (watchfiles' native watcher), here through its inotify."""
    root = project(tmp_path)
    config = make_config(root)
    async with watching(config, backend="watchfiles") as run:
        assert not run.watcher.polling
        (root / "app.py").write_text("version = 2\n")
        assert await run.batch() == [(M, str(root / "app.py"))]
        (root / "pkg").mkdir()
        (root / "pkg" / "a.py").write_text("a = 1\n")
        assert await run.batch() == [(A, str(root / "pkg" / "a.py"))]
        await run.assert_quiet()


def test_an_idle_watcher_sleeps(tmp_path: Path) -> None:
    """No timer while nothing changes: over 2 idle seconds the watcher's process wakes up
    about once (the counting sleep itself), where a 3 ms polling step woke it ~660 times."""
    root = project(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(APPS / "idle_watcher.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    wakeups = json.loads(proc.stdout.strip().splitlines()[-1])["wakeups"]
    assert wakeups <= 10, wakeups


@pytest.mark.anyio
async def test_poll_mode_sees_two_saves_within_one_second(tmp_path: Path) -> None:
    root = project(tmp_path)
    config = make_config(root, "poll")
    async with watching(config) as run:
        assert run.watcher.polling
        assert run.watches() == 0
        # notify's poller keeps whole-second mtimes (watchfiles #319): two saves in the same
        # second must both be seen, each once
        app = root / "app.py"
        for version in (2, 3):
            app.write_text(f"version = {version}\n")
            assert await run.batch(timeout=5) == [(M, str(app))]
        await run.assert_quiet()  # more than a poll interval: no late duplicate


FALLBACK_SCRIPT = textwrap.dedent(
    """
    import ctypes, errno, json, os, sys
    from pathlib import Path

    import anyio

    from supervisor.config import Config
    from supervisor.watcher import Watcher

    root, uid = Path(sys.argv[1]), int(sys.argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    # keep root's capabilities (to read the project) while the effective uid is a throwaway
    # user, so that only that user's inotify instances are used up
    if libc.prctl(28, 1 << 2, 0, 0, 0) != 0:  # PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP
        print(json.dumps({"skip": "prctl(PR_SET_SECUREBITS) not permitted"}))
        sys.exit(0)
    os.setresuid(0, uid, 0)
    held = []
    while (fd := libc.inotify_init1(os.O_CLOEXEC)) >= 0:
        held.append(fd)
    if ctypes.get_errno() != errno.EMFILE:
        print(json.dumps({"skip": f"inotify_init1 failed with errno {ctypes.get_errno()}"}))
        sys.exit(0)

    async def main():
        notices = []
        send, receive = anyio.create_memory_object_stream(10)
        watcher = Watcher(Config(root=root), notice=notices.append)
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run, send)
            (root / "new.py").write_text("x = 1\\n")
            with anyio.fail_after(10):
                batch = await receive.receive()
            tg.cancel_scope.cancel()
        result = {"notices": notices, "polling": watcher.polling, "held": len(held)}
        result["batch"] = [[int(change), path] for change, path in batch]
        print(json.dumps(result))

    anyio.run(main)
    """
)


def test_falls_back_to_polling_when_inotify_is_exhausted(tmp_path: Path) -> None:
    """A real limit: a throwaway uid whose inotify instances (max_user_instances) are used up."""
    if os.geteuid() != 0:
        pytest.skip("needs root to use up a throwaway user's inotify instances")
    root = tmp_path.resolve() / "proj"
    root.mkdir()
    (root / "app.py").write_text("version = 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("WATCHFILES_FORCE_POLLING", None)
    uid = 2_000_000_000 + os.getpid() % 1000
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(root), str(uid)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["held"] > 0
    assert result["polling"] is True
    assert len(result["notices"]) == 1, result["notices"]
    assert "falling back to polling" in result["notices"][0]
    assert "Too many open files" in result["notices"][0]
    assert result["batch"] == [[int(A), str(root / "new.py")]]


@pytest.mark.anyio
async def test_shutdown_is_prompt_and_closes_the_stream(tmp_path: Path, backend: str) -> None:
    root = project(tmp_path)
    send, receive = anyio.create_memory_object_stream[list[FileChange]](10)
    watcher = Watcher(make_config(root, backend))
    baseline = inotify_watches()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run, send)
            assert inotify_watches() - baseline == (0 if watcher.polling else 3)
            tg.cancel_scope.cancel()
    await inotify_watches_back_to(baseline)
    with pytest.raises(anyio.EndOfStream):
        receive.receive_nowait()
    receive.close()
