"""The live-reload reverse proxy: the browser talks to pyair, pyair talks to the app.

    from supervisor.proxy import Proxy

    proxy = Proxy(config, console)
    await proxy.listen()                 # optional: a busy port fails here, as a PyairError
    await tg.start(proxy.serve)          # listening; prints the URL (proxy_port 0: a free one)
    engine.observers.append(proxy.on_event)

HTTP/1.1 on both sides with h11 (imported only in this package), keep-alive on both sides,
bodies streamed with back-pressure; only ``text/html`` responses are buffered, to inject one
``<script>`` tag, and responses that may be a project file (up to 8 MiB), to hash them: a
reload never runs a stale asset. Those get a content ETag and pyair's own caching (304s from
pyair while the file is unchanged; a URL that names the file's version, as pages then do, is
cached for good), whatever freshness the app gave them. Everything under ``/__pyair/`` is
pyair's own: the client script and an SSE stream of events, one connection per tab. What the
engine reports becomes:

* ``Restarting`` → new requests are held (not refused) until the new app answers, then sent on;
  past ``app_start_timeout`` they get an error page that retries by itself.
* ``AppReady`` → ``ready``: tabs showing a page from an older app reload, once.
* ``TemplatesSwapped`` → ``update``: tabs fetch their URL again and morph the DOM in place.
* ``AssetsChanged`` → ``css`` (matching stylesheets swapped in place) or ``reload``.
* ``TemplateFailed`` / ``BuildFailed`` / ``AppExited`` → ``error``: an overlay on the page.

Every injected tag carries the proxy instance, the app generation and the template and CSS
revisions the page was served with, and each SSE connection starts with a ``hello`` that holds
the current ones: a tab that missed events (it was stalled, or pyair itself restarted) catches
up when it reconnects.

Modules, each with one job (imports point down this list):

- ``server``: ``Proxy``, the lifetime (listen, serve, url) and the engine's events.
- ``browser``: ``BrowserConnection``, one per browser connection: its request loop, pyair's own
  endpoints, forwarding to the app, relaying the answer, WebSocket tunnels, error answers.
- ``assets``: ``AssetTable``, the asset versions: which URLs serve which project files, their
  ETags, 304s, caching headers and the versions pages name.
- ``files``: the project's files by name (``FileIndex``) and their content hashes (``Digests``).
- ``upstream``: ``UpstreamPool``, the connections to the app: connected ahead, kept alive,
  held while the app restarts.
- ``hub``: ``Hub``, the tabs' Server-Sent Events and their fan-out.
- ``pages``: the error page and the payloads of the ``error`` and ``css`` events.
- ``inject``: the browser script (``../static/``), its tag and which responses get it.
- ``headers``: header rules (hop-by-hop, forwarded, navigations), pure.
- ``wire``: h11 over an anyio stream: the next event, several events in one write.
"""

from .inject import decode_body, inject_script, should_inject
from .pages import MAX_CSS_PREVIEW, stylesheet_texts
from .pages import stylesheet_texts as _stylesheet_texts  # its name before the package
from .server import Proxy

__all__ = [
    "MAX_CSS_PREVIEW",
    "Proxy",
    "_stylesheet_texts",
    "decode_body",
    "inject_script",
    "should_inject",
    "stylesheet_texts",
]
