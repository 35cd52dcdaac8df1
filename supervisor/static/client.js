// pyair's live-reload client, injected by the proxy into every page it serves.
//
// One EventSource per tab on /__pyair/events. The tag that loads this script says what the
// page was served with (proxy instance, app generation, template and CSS revisions, method);
// the stream's first event ("hello") says what is current, so a tab that missed events
// catches up when it reconnects. Events: ready (a new app is up), update (templates were
// swapped: morph in place), css (stylesheets changed), reload, error, clear.
(function () {
  "use strict";
  if (window.__pyair) return; // a second copy (a fragment, a re-injected script) does nothing
  const script = document.currentScript;
  if (!script || !script.dataset.instance) return;

  const page = {
    instance: script.dataset.instance,
    gen: script.dataset.gen, // "" on pyair's own "app not answering" page
    rev: Number(script.dataset.rev),
    css: Number(script.dataset.css),
    method: (script.dataset.method || "GET").toUpperCase(),
  };
  const state = { source: null, updating: null, wanted: null, scripts: scriptSet(document) };
  window.__pyair = { page, state, update, refreshCss, showError, hideError };
  if (window.__pyairMorph) window.__pyairMorph.snapshot(document);

  function scriptSet(doc) {
    const set = new Set();
    for (const el of Array.from(doc.querySelectorAll("script"))) {
      if (el.hasAttribute("data-pyair")) continue;
      const src = el.getAttribute("src");
      set.add((el.type || "") + " " + (src ? new URL(src, location.href).href : el.textContent));
    }
    return set;
  }

  // reload, but never twice for the same reason on the same URL (a page the browser keeps
  // serving from its cache must not loop)
  function reloadOnce(reason) {
    const key = "pyair:reloaded";
    const value = reason + " " + location.href;
    try {
      if (sessionStorage.getItem(key) === value) return;
      sessionStorage.setItem(key, value);
    } catch (e) {
      // storage disabled: reload anyway
    }
    location.reload();
  }

  function onHello(hello) {
    if (hello.instance !== page.instance) return reloadOnce("instance " + hello.instance);
    if (page.gen === "") {
      // pyair's own "not answering" page: back to the app as soon as it is up
      if (hello.up) return reloadOnce("up " + hello.gen);
      if (hello.error) showError(hello.error);
      return;
    }
    if (hello.gen !== page.gen) return reloadOnce("gen " + hello.gen);
    if (hello.error) showError(hello.error);
    else hideError();
    if (hello.rev !== page.rev) update(hello.rev);
    if (hello.css !== page.css) refreshCss([], hello.css);
  }

  // An asset changed: fetch its new version (the URL the reloaded page will name) into the
  // browser's cache first, for at most FETCH_FIRST_MS, so the reload does not wait for it.
  const FETCH_FIRST_MS = 200;
  function fetchThenReload(urls) {
    if (!urls.length || !window.fetch) return location.reload();
    let reloaded = false;
    const reload = () => {
      if (!reloaded) {
        reloaded = true;
        location.reload();
      }
    };
    setTimeout(reload, FETCH_FIRST_MS);
    const fetched = urls.map((url) =>
      fetch(url, { credentials: "include" })
        .then((r) => r.arrayBuffer())
        .catch(() => null),
    );
    Promise.all(fetched).then(reload);
  }

  function connect() {
    const source = new EventSource("/__pyair/events");
    state.source = source;
    const on = (name, fn) => source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
    on("hello", onHello);
    on("ready", (d) => {
      if (d.gen !== page.gen) reloadOnce("gen " + d.gen);
    });
    on("update", (d) => update(d.rev));
    on("css", (d) => refreshCss(d.paths, d.rev, d.texts || {}, d.versions || {}));
    on("reload", (d) => fetchThenReload(d.fetch || []));
    on("error", showError);
    on("clear", hideError);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
  }

  // -- templates: fetch this URL again and morph the page into it ------------------------------

  async function update(rev) {
    if (state.updating) {
      state.wanted = rev; // one more round once this one is done
      return state.updating;
    }
    state.updating = morphTo(rev);
    try {
      await state.updating;
    } finally {
      state.updating = null;
    }
    if (state.wanted !== null) {
      const next = state.wanted;
      state.wanted = null;
      if (next !== page.rev) await update(next);
    }
  }

  async function morphTo(rev) {
    if (page.method !== "GET" || !window.__pyairMorph) return location.reload();
    let next;
    try {
      const response = await fetch(location.href, {
        headers: { Accept: "text/html", "X-Pyair-Morph": "1" },
        cache: "no-store",
        credentials: "same-origin",
      });
      const type = response.headers.get("content-type") || "";
      if (!response.ok || response.redirected || !type.includes("text/html")) {
        return location.reload();
      }
      next = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (e) {
      return location.reload();
    }
    // a script that is new or changed has to run: only a reload does that properly
    const scripts = scriptSet(next);
    for (const s of scripts) if (!state.scripts.has(s)) return location.reload();
    hideError("template");
    window.__pyairMorph.morphDocument(document, next);
    state.scripts = scripts;
    page.rev = rev;
  }

  // -- stylesheets: re-request the matching <link>s, swap each once the new one loaded ---------
  // A link that names a changed file is re-requested with that file's version (the content hash
  // its ETag carries, so the two always agree); the others with a token that is merely new.

  let cssRound = 0;

  function refreshCss(paths, rev, texts = {}, versions = {}) {
    if (typeof rev === "number") page.css = rev;
    const links = Array.from(document.querySelectorAll('link[rel~="stylesheet"][href]')).filter(
      (l) => !l.hasAttribute("data-pyair-stale"),
    );
    let best = 0;
    let targets = [];
    for (const link of links) {
      const score = Math.max(0, ...paths.map((p) => matchScore(link, p)));
      if (score > best) [best, targets] = [score, [link]];
      else if (score === best && score > 0) targets.push(link);
    }
    // no <link> names the file (an @import, a renamed bundle): refresh them all, still cheap
    for (const link of best > 0 ? targets : links) {
      const text = best > 0 ? bestOf(link, paths, texts) : undefined;
      const version = best > 0 ? bestOf(link, paths, versions) : undefined;
      swap(link, text, version);
    }
  }

  // what ``table`` holds for the changed file that best matches the link
  function bestOf(link, paths, table) {
    let found, score = 0;
    for (const path of paths) {
      const s = matchScore(link, path);
      if (s > score && path in table) [found, score] = [table[path], s];
    }
    return found;
  }

  // url(...) and @import paths in the saved text are relative to the stylesheet, not the page
  function rebase(text, base) {
    const absolute = (ref) =>
      /^([a-z][a-z0-9+.-]*:|\/|#)/i.test(ref) ? ref : new URL(ref, base).href;
    return text
      .replace(/url\(\s*(['"]?)([^'")]+)\1\s*\)/g, (_, q, ref) => `url(${q}${absolute(ref)}${q})`)
      .replace(/@import\s+(['"])([^'"]+)\1/g, (_, q, ref) => `@import ${q}${absolute(ref)}${q}`);
  }

  // how many trailing path segments of the link's URL and the changed file agree
  function matchScore(link, path) {
    const href = link.getAttribute("data-pyair-href") || link.getAttribute("href");
    const url = new URL(href, location.href);
    if (url.origin !== location.origin) return 0;
    const a = url.pathname.split("/").filter(Boolean).reverse();
    const b = path.split("/").filter(Boolean).reverse();
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    return n;
  }

  function swap(link, text, version) {
    const original = link.getAttribute("data-pyair-href") || link.getAttribute("href");
    const url = new URL(original, location.href);
    let preview = null;
    if (text !== undefined) {
      // the saved text applies at once, in the link's place in the cascade; the app's own
      // copy replaces it a few milliseconds later
      preview = document.createElement("style");
      preview.setAttribute("data-pyair", "");
      preview.textContent = rebase(text, url.href);
      link.after(preview);
      if (link.sheet) link.sheet.disabled = true;
    }
    ++cssRound;
    // a link the page names by version: the next page names the new one, as the link now does
    const named = version && url.searchParams.has("__pyair");
    url.searchParams.set("__pyair", version || Date.now().toString(36) + "." + cssRound);
    const fresh = link.cloneNode(false);
    fresh.setAttribute(
      "data-pyair-href",
      named ? original.replace(/__pyair=[^&#]*/, "__pyair=" + version) : original,
    );
    fresh.setAttribute("href", url.href);
    link.setAttribute("data-pyair-stale", "");
    // the old sheet stays applied until the new one is in: no flash of unstyled content
    const done = () => {
      link.remove();
      if (preview) preview.remove();
    };
    fresh.addEventListener("load", done, { once: true });
    fresh.addEventListener("error", done, { once: true });
    link.after(fresh);
  }

  // -- the error overlay ----------------------------------------------------------------------

  const OVERLAY_CSS = `
    :host { all: initial; position: fixed; inset: 0; z-index: 2147483647; }
    .backdrop { position: absolute; inset: 0; background: rgba(20, 20, 24, .72);
      display: flex; align-items: flex-start; justify-content: center; padding: 6vh 1rem;
      font: 14px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
    .box { background: #1e1e24; color: #eee; max-width: 60rem; width: 100%; border-radius: 8px;
      border-top: 4px solid #e5534b; box-shadow: 0 10px 40px rgba(0, 0, 0, .5); overflow: auto;
      max-height: 88vh; }
    header { display: flex; justify-content: space-between; gap: 1rem; padding: 1rem 1.25rem .25rem; }
    h1 { margin: 0; font: 600 16px/1.4 system-ui, sans-serif; color: #ff7b72; }
    button { all: unset; cursor: pointer; color: #aaa; font-size: 20px; line-height: 1; }
    .where { padding: 0 1.25rem; color: #9cdcfe; }
    .message { padding: .5rem 1.25rem; white-space: pre-wrap; }
    pre { margin: 0; padding: .75rem 1.25rem 1.25rem; background: #16161a; overflow-x: auto; }
    .line { display: block; color: #aaa; }
    .line.bad { color: #fff; background: rgba(229, 83, 75, .25); }
    footer { padding: .5rem 1.25rem 1rem; color: #888; font-family: system-ui, sans-serif; }`;

  function showError(error) {
    hideError();
    const host = document.createElement("div");
    host.id = "__pyair_overlay";
    host.setAttribute("data-pyair", "");
    host.dataset.kind = error.kind || "";
    const root = host.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = OVERLAY_CSS;
    const backdrop = el("div", "backdrop");
    const box = el("div", "box");
    const header = el("header");
    header.append(el("h1", "", error.title || "Error"));
    const close = el("button", "", "\u00d7");
    close.title = "Dismiss (it comes back with the next error)";
    close.addEventListener("click", hideError);
    header.append(close);
    box.append(header);
    if (error.file) {
      box.append(el("div", "where", error.file + (error.line ? ":" + error.line : "")));
    }
    box.append(el("div", "message", error.message || ""));
    if (error.source && error.source.length) {
      const pre = el("pre");
      for (const line of error.source) {
        pre.append(el("span", line.startsWith(">") ? "line bad" : "line", line));
      }
      box.append(pre);
    }
    box.append(el("footer", "", "pyair: fix it and save; this clears by itself."));
    backdrop.append(box);
    root.append(style, backdrop);
    (document.body || document.documentElement).append(host);
  }

  function hideError(kind) {
    const old = document.getElementById("__pyair_overlay");
    if (old && (typeof kind !== "string" || old.dataset.kind === kind)) old.remove();
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  connect();
})();
