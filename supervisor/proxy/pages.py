"""What pyair itself shows in the browser: the error page and the payloads of its events.

    error_page("the app exited with code 1", tag)     # the 502 page that retries by itself
    failed_page(500, b"Internal Server Error", tag)   # the app's own error, with the script
    template_error(event, root)                       # the ``error`` overlay for a bad template
    build_error(event, root)                          # ... for a failed build, with its source
    css_refresh(rev, files, root, versions)           # a ``css`` event: paths, texts, versions

Paths are shown relative to the project root. Source excerpts and stylesheet texts come only
from files inside the project root (symlinks resolved; ``.env`` files never): a build's output
or a template engine may name any file on the machine, and these events reach the browser.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..events import BuildFailed, TemplateFailed

__all__ = [
    "MAX_CSS_PREVIEW",
    "app_error",
    "build_error",
    "css_refresh",
    "display",
    "error_page",
    "excerpt",
    "failed_page",
    "in_project",
    "stylesheet_texts",
    "template_error",
]

MAX_CSS_PREVIEW = 256 * 1024
BUILD_OUTPUT_LINES = 40  # the end of a build's output: where it says what failed
# "File "x.py", line 3" (tracebacks) or "x.py:3:" (compilers, linters)
_LOCATION = re.compile(r'File "([^"]+)", line (\d+)|^([^\s:][^:\n]*\.\w+):(\d+):', re.MULTILINE)


def display(path: str, root: Path) -> str:
    """``path`` relative to the project ``root`` when it is inside, else as it is."""
    with contextlib.suppress(ValueError):
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    return path


def in_project(file: str, root: Path) -> bool:
    """Is ``file`` a regular file of the project: inside ``root`` once symlinks are resolved,
    and not a dotenv file (its secrets are no page's business)?"""
    try:
        real = Path(file).resolve()
        real.relative_to(root.resolve())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return real.is_file() and not real.name.startswith(".env")


def excerpt(file: str, line: int, context: int = 3) -> list[str]:
    """The lines around ``line`` of ``file``, numbered, that line marked with ``>``."""
    try:
        lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    first, last = max(1, line - context), min(len(lines), line + context)
    return [f"{'>' if n == line else ' '} {n:>4} | {lines[n - 1]}" for n in range(first, last + 1)]


def stylesheet_texts(files: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    """The saved stylesheets' text, for the page to apply before its re-fetch returns.

    The app serves the same file a few milliseconds later and that copy replaces this one, so
    an app that transforms CSS on the way out is only previewed from disk for that long.
    """
    texts: dict[str, str] = {}
    for file, name in zip(files, names, strict=False):
        try:
            with open(file, "rb") as source:
                data = source.read(MAX_CSS_PREVIEW + 1)
        except OSError:
            continue
        if len(data) <= MAX_CSS_PREVIEW:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def css_refresh(
    rev: int, files: Iterable[str], root: Path, versions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``css`` event: which stylesheets changed (as the page links them), their text, and
    the version token of each (``versions``: file → the hash its ETag carries), which the page
    puts in the re-fetched ``<link>``'s URL."""
    files = list(files)
    paths = [display(p, root) for p in files]
    shown = [(f, p) for f, p in zip(files, paths, strict=True) if in_project(f, root)]
    tokens = {display(f, root): v for f, v in (versions or {}).items()}
    return {
        "rev": rev,
        "paths": paths,
        "texts": stylesheet_texts([f for f, _ in shown], [p for _, p in shown]),
        "versions": tokens,
    }


def app_error(title: str, message: str) -> dict[str, Any]:
    """The ``error`` overlay for an app that exited or never answered."""
    return {"kind": "app", "title": title, "message": message}


def template_error(event: TemplateFailed, root: Path) -> dict[str, Any]:
    """The ``error`` overlay for a template that failed to swap in (source lines only from
    a project file)."""
    source: list[str] = []
    if event.file and in_project(event.file, root):
        source = list(event.source) or (excerpt(event.file, event.line) if event.line else [])
    return {
        "kind": "template",
        "title": "Template error",
        "file": display(event.file, root) if event.file else None,
        "line": event.line,
        "message": event.message,
        "source": source,
    }


def build_error(event: BuildFailed, root: Path) -> dict[str, Any]:
    """The ``error`` overlay for a failed build: the end of its output, where it points."""
    file: str | None = None
    line: int | None = None
    found = list(_LOCATION.finditer(event.output))
    if found:  # the last location of a traceback is where it failed
        match = found[-1]
        file = match.group(1) or match.group(3)
        line = int(match.group(2) or match.group(4))
        if not Path(file).is_absolute():
            file = str(root / file)
    output = event.output.strip().splitlines()[-BUILD_OUTPUT_LINES:]
    return {
        "kind": "build",
        "title": f"Build failed (exit {event.returncode}): {event.command}",
        "file": display(file, root) if file else None,
        "line": line,
        "message": "\n".join(output),
        "source": excerpt(file, line) if file and line and in_project(file, root) else [],
    }


def error_page(why: str, tag: bytes) -> bytes:
    """The page a browser gets while the app cannot answer; it reloads by itself."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pyair: the app is not answering</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:3rem auto;max-width:42rem;color:#222}}
code{{background:#f3f3f3;padding:0 .25em}}h1{{color:#b7312c;font-size:1.4rem}}</style></head>
<body><h1>The app is not answering</h1><p>{html.escape(why)}.</p>
<p>This page reloads by itself as soon as the app is up. pyair's terminal shows why it is not.</p>
<script>setTimeout(function () {{ location.reload(); }}, 3000);</script>
{tag.decode()}</body></html>
""".encode()


MAX_FAILED_BODY = 64 * 1024  # of an app's error answer shown on the page that wraps it


def failed_page(status: int, body: bytes, tag: bytes) -> bytes:
    """An app's non-HTML error answer (a plain-text 500) as a page that loads the script.

    Served to a navigation while pyair knows of a template or build error: the overlay says
    what broke, and the page recovers by itself once the fix is in.
    """
    text = body[:MAX_FAILED_BODY].decode("utf-8", errors="replace")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status}: the app failed</title></head>
<body><pre>{html.escape(text)}</pre>
{tag.decode()}</body></html>
""".encode()
