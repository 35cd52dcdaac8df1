// pyair's DOM morph: turn the live document into a freshly fetched copy of itself in place.
//
//   const next = new DOMParser().parseFromString(html, "text/html");
//   window.__pyairMorph.morphDocument(document, next);
//
// Nodes that are still there are kept, not rebuilt, so focus, typed form values, scroll
// positions, listeners and JS references survive; only what changed is touched. Siblings are
// paired by id first, then in order by tag, with a short look-ahead so an inserted or removed
// element does not shift every node after it. Elements marked data-pyair belong to pyair (its
// script, its overlay) and are left alone on both sides. Nodes that scripts added to <body>
// or <head> after the page loaded are left alone too: the server never sent them.
(function () {
  "use strict";
  if (window.__pyairMorph) return;

  const OWNED = "data-pyair";
  const ORIGINAL_HREF = "data-pyair-href"; // a stylesheet pyair re-requested with a ?query
  const LOOKAHEAD = 8;

  // what the server sent: <head> keys and top-level <body> nodes, to tell scripts' additions
  const served = { head: null, body: new WeakSet(), html: null, bodyAttrs: null };

  function owned(node) {
    return node.nodeType === 1 && node.hasAttribute(OWNED);
  }

  function keyOf(node) {
    return node.nodeType === 1 && node.id ? node.nodeName + "#" + node.id : null;
  }

  function sameKind(a, b) {
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) return false;
    if (a.nodeName === "INPUT") return a.getAttribute("type") === b.getAttribute("type");
    return true;
  }

  function setAttr(el, attr) {
    if (attr.namespaceURI) el.setAttributeNS(attr.namespaceURI, attr.name, attr.value);
    else el.setAttribute(attr.name, attr.value);
  }

  function syncAttributes(from, to) {
    // a stylesheet swapped by pyair keeps its cache-busting href while the source is the same
    const keepHref =
      from.hasAttribute(ORIGINAL_HREF) &&
      from.getAttribute(ORIGINAL_HREF) === to.getAttribute("href");
    for (const attr of Array.from(from.attributes)) {
      if (keepHref && (attr.name === "href" || attr.name === ORIGINAL_HREF)) continue;
      if (!to.hasAttribute(attr.name)) from.removeAttribute(attr.name);
    }
    for (const attr of Array.from(to.attributes)) {
      if (keepHref && attr.name === "href") continue;
      if (from.getAttribute(attr.name) !== attr.value) setAttr(from, attr);
    }
  }

  // html and body: apply what the server changed, keep what scripts set (classes, styles)
  function mergeAttributes(live, before, after) {
    for (const name of Object.keys(before)) {
      if (!(name in after) && live.getAttribute(name) === before[name]) live.removeAttribute(name);
    }
    for (const name of Object.keys(after)) {
      if (before[name] !== after[name]) live.setAttribute(name, after[name]);
    }
  }

  function attributesOf(el) {
    const out = {};
    for (const attr of Array.from(el.attributes)) out[attr.name] = attr.value;
    return out;
  }

  function morphNode(from, to) {
    if (from.nodeType !== 1) {
      if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
      return;
    }
    syncAttributes(from, to);
    switch (from.nodeName) {
      case "TEXTAREA": // the text is the default; a typed value is kept by the browser
        if (from.defaultValue !== to.textContent) from.defaultValue = to.textContent;
        return;
      case "TEMPLATE":
        if (from.innerHTML !== to.innerHTML) from.innerHTML = to.innerHTML;
        return;
      case "INPUT":
      case "IFRAME":
        return;
      default:
        morphChildren(from, to, owned);
    }
  }

  // The index in `old` of the node to morph into `want`, or -1 to insert a new one. Unkeyed
  // nodes are paired in order (from `start`, the first old node that may still be paired),
  // so the pairs need no moves; text and comments only pair with the very next node.
  function pick(old, start, want, fresh, at, used) {
    let first = -1;
    for (let j = start; j < old.length; j++) {
      const node = old[j];
      if (used.has(node) || keyOf(node)) continue;
      if (want.nodeType !== 1) {
        if (sameKind(node, want)) first = j;
        break;
      }
      if (sameKind(node, want)) {
        first = j;
        break;
      }
    }
    if (first < 0 || want.nodeType !== 1 || old[first].isEqualNode(want)) return first;
    // an exact copy a little further on: the nodes before it were removed
    for (let j = first + 1, seen = 0; j < old.length && seen < LOOKAHEAD; j++) {
      const node = old[j];
      if (used.has(node) || keyOf(node) || node.nodeType !== 1) continue;
      seen++;
      if (node.isEqualNode(want)) return j;
    }
    // the candidate turns up a little later in the new list: `want` was inserted before it
    for (let g = at + 1; g < fresh.length && g <= at + LOOKAHEAD; g++) {
      if (!keyOf(fresh[g]) && old[first].isEqualNode(fresh[g])) return -1;
    }
    return first;
  }

  function morphChildren(parent, next, skip) {
    const old = Array.from(parent.childNodes).filter((n) => !skip(n));
    const fresh = Array.from(next.childNodes).filter((n) => !owned(n));
    const byKey = new Map();
    for (const node of old) {
      const key = keyOf(node);
      if (key && !byKey.has(key)) byKey.set(key, node);
    }
    // 1. pair new nodes with old ones
    const used = new Set();
    const pairs = [];
    let start = 0;
    for (let at = 0; at < fresh.length; at++) {
      const want = fresh[at];
      const key = keyOf(want);
      let node = null;
      if (key) {
        const found = byKey.get(key);
        if (found && !used.has(found) && sameKind(found, want)) node = found;
      } else {
        const index = pick(old, start, want, fresh, at, used);
        if (index >= 0) {
          node = old[index];
          start = index + 1;
        }
      }
      if (node) used.add(node);
      pairs.push([node, want]);
    }
    // 2. drop the old nodes nobody wants: what is left is already in order
    for (const node of old) {
      if (!used.has(node) && node.parentNode === parent) parent.removeChild(node);
    }
    // 3. update the pairs, insert the new nodes; only reordered ids move
    const placed = [];
    let after = null;
    for (const [match, want] of pairs) {
      let node = match;
      if (node) morphNode(node, want);
      else node = parent.ownerDocument.importNode(want, true);
      let ref = after ? after.nextSibling : parent.firstChild;
      while (ref && ref !== node && skip(ref)) ref = ref.nextSibling;
      if (ref !== node) parent.insertBefore(node, ref);
      placed.push(node);
      after = node;
    }
    return placed;
  }

  function headKey(el) {
    switch (el.nodeName) {
      case "TITLE":
      case "BASE":
        return el.nodeName;
      case "META":
        for (const name of ["charset", "name", "property", "http-equiv", "itemprop"]) {
          if (el.hasAttribute(name)) return "META " + name + "=" + el.getAttribute(name);
        }
        return el.outerHTML;
      case "LINK":
        return (
          "LINK " + el.getAttribute("rel") + " " +
          (el.getAttribute(ORIGINAL_HREF) || el.getAttribute("href"))
        );
      default: // style, script, noscript...: by content
        return el.outerHTML;
    }
  }

  function headKeys(head) {
    const keys = new Set();
    for (const el of Array.from(head.children)) if (!owned(el)) keys.add(headKey(el));
    return keys;
  }

  // <head> by key: unchanged stylesheets and scripts are kept (never re-fetched or re-run),
  // changed titles and metas are updated, new elements added, removed ones dropped
  function morphHead(head, next) {
    const live = new Map();
    for (const el of Array.from(head.children)) {
      if (owned(el)) continue;
      const key = headKey(el);
      if (!live.has(key)) live.set(key, []);
      live.get(key).push(el);
    }
    const kept = new Set();
    let after = null;
    for (const want of Array.from(next.children)) {
      if (owned(want)) continue;
      const list = live.get(headKey(want));
      let el = list && list.shift();
      if (el) {
        if (el.nodeName === "TITLE" || el.nodeName === "META" || el.nodeName === "BASE") {
          morphNode(el, want);
        }
      } else {
        el = head.ownerDocument.importNode(want, true);
        head.insertBefore(el, after ? after.nextSibling : head.firstChild);
      }
      kept.add(el);
      after = el;
    }
    const before = served.head || new Set();
    for (const el of Array.from(head.children)) {
      if (!owned(el) && !kept.has(el) && before.has(headKey(el))) el.remove();
    }
    served.head = headKeys(next);
  }

  function snapshot(doc) {
    served.head = headKeys(doc.head);
    served.html = attributesOf(doc.documentElement);
    served.bodyAttrs = attributesOf(doc.body);
    for (const node of Array.from(doc.body.childNodes)) served.body.add(node);
  }

  function morphDocument(doc, next) {
    if (!served.html) snapshot(doc);
    const html = attributesOf(next.documentElement);
    const body = attributesOf(next.body);
    mergeAttributes(doc.documentElement, served.html, html);
    mergeAttributes(doc.body, served.bodyAttrs, body);
    served.html = html;
    served.bodyAttrs = body;
    morphHead(doc.head, next.head);
    const foreign = (node) => owned(node) || !served.body.has(node);
    for (const node of morphChildren(doc.body, next.body, foreign)) served.body.add(node);
  }

  window.__pyairMorph = { morphDocument, morphNode, snapshot };
})();
