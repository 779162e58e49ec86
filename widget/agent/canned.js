/*
 * Pomoc agent console: canned replies (PROTOCOL.md, HTTP: /api/canned).
 *
 * In the composer, "/" and a few letters at the start of a word open a list of the
 * replies whose shortcut or title begins so — the open ticket's department's and the
 * shared ones. Arrow keys move, Enter or Tab (or a click) insert the reply in place of
 * "/…", filled in by the server for that ticket (the customer's name, the shop's name,
 * the ticket, the help-centre links); Escape closes the list. The textarea keeps the
 * focus and points at the list (aria-autocomplete, aria-controls) and its chosen
 * option (aria-activedescendant); a status line says how many match. (A textarea
 * may not be a combobox, so it has no aria-expanded.) The panel behind "Szablony
 * odpowiedzi" lists, creates, changes and deletes replies.
 *
 * It reads the console only through window.PomocConsole (console.js): the open ticket,
 * its department, the configured departments and a token for /api.
 */
(function () {
  "use strict";

  var C = window.PomocConsole;
  if (!C) return;
  var $ = function (id) { return document.getElementById(id); };
  var FRESH_MS = 60000; // a ticket's filled replies are fetched again after a minute, or after an edit
  var SHOWN = 8;

  var cache = { ticket: null, at: 0, replies: null, loading: null };
  var menu = { items: [], active: 0, query: null, dismissed: null };

  function h(tag, attrs) {
    var el = document.createElement(tag);
    for (var key in attrs || {}) {
      var v = attrs[key];
      if (v == null || v === false) continue;
      if (key.slice(0, 2) === "on") el.addEventListener(key.slice(2), v);
      else if (key === "text") el.textContent = v;
      else el.setAttribute(key, v === true ? "" : v);
    }
    for (var i = 2; i < arguments.length; i++) if (arguments[i] != null) el.append(arguments[i]);
    return el;
  }

  /** A call to /api/canned; rejects with the server's message (err.code, err.status) on an error. */
  async function api(method, path, body) {
    var token = await C.token();
    var res = await fetch(path, { method: method, cache: "no-store",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
    var data = res.status === 204 ? null : await res.json().catch(function () { return null; });
    if (!res.ok) {
      var err = new Error((data && data.error && data.error.message) || "HTTP " + res.status);
      err.status = res.status;
      err.code = data && data.error && data.error.code;
      throw err;
    }
    return data;
  }

  /** Lower case without diacritics: "/plat" finds "Płatności". */
  function fold(s) {
    return String(s).toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/ł/g, "l");
  }

  // ------------------------------------------------------------------ the composer's list
  /** The replies of the open ticket, filled in for it (cached for a minute). */
  function load(ticket) {
    if (cache.ticket === ticket && cache.replies && Date.now() - cache.at < FRESH_MS) return Promise.resolve(cache.replies);
    if (cache.ticket === ticket && cache.loading) return cache.loading;
    cache = { ticket: ticket, at: 0, replies: null, loading: null };
    var mine = cache;
    mine.loading = api("GET", "/api/canned?ticket=" + encodeURIComponent(ticket)).then(function (data) {
      if (cache === mine) { mine.replies = data.replies; mine.at = Date.now(); mine.loading = null; }
      return data.replies;
    }, function (err) {
      if (cache === mine) mine.loading = null;
      throw err;
    });
    return mine.loading;
  }

  /** "/…" just before the caret at the start of a word: {text, start, end}, or null. */
  function typedQuery() {
    var box = $("reply");
    if (box.selectionStart !== box.selectionEnd) return null;
    var before = box.value.slice(0, box.selectionStart);
    var m = /(^|\s)\/([\p{L}\p{N}_-]{0,32})$/u.exec(before);
    if (!m) return null;
    return { text: fold(m[2]), start: box.selectionStart - m[2].length - 1, end: box.selectionStart };
  }

  function matches(replies, q, department) {
    var found = [];
    replies.forEach(function (r) {
      var rank = fold(r.shortcut).indexOf(q) === 0 ? 0
        : fold(r.title).split(/[^\p{L}\p{N}]+/u).some(function (w) { return w && w.indexOf(q) === 0; }) ? 1 : -1;
      if (rank >= 0) found.push({ r: r, rank: rank, own: r.department && r.department === department ? 0 : 1 });
    });
    found.sort(function (a, b) { return a.rank - b.rank || a.own - b.own || (a.r.shortcut < b.r.shortcut ? -1 : 1); });
    return found.slice(0, SHOWN).map(function (x) { return x.r; });
  }

  function refresh() {
    var ticket = C.current();
    var q = ticket == null ? null : typedQuery();
    if (!q || (menu.dismissed && menu.dismissed.start === q.start && menu.dismissed.ticket === ticket)) return close();
    menu.dismissed = null;
    menu.query = q;
    load(ticket).then(function (replies) {
      // Still the same "/…" at the caret when the replies arrive?
      var now = typedQuery();
      if (C.current() !== ticket || !now || now.start !== q.start || now.text !== q.text) return;
      show(matches(replies, q.text, (C.ticket(ticket) || {}).department), q);
    }, function (err) {
      close();
      status(err.status === 401 ? "Nie można wczytać szablonów — token wygasł." : "Nie udało się wczytać szablonów.");
    });
  }

  function show(items, q) {
    var list = $("canned-list");
    var box = $("reply");
    menu.items = items;
    menu.active = 0;
    list.textContent = "";
    if (!items.length) {
      close();
      status("Brak szablonu pasującego do „/" + q.text + "”.");
      return;
    }
    items.forEach(function (r, i) {
      list.append(h("li", { id: "canned-opt-" + r.id, role: "option", class: "canned-option",
        "aria-selected": i === 0 ? "true" : "false", "data-shortcut": r.shortcut,
        // Keep the caret in the textarea: the choice is made on mousedown.
        onmousedown: function (e) { e.preventDefault(); insert(r); } },
      h("span", { class: "canned-shortcut", text: "/" + r.shortcut }),
      h("span", { class: "canned-name", text: r.title }),
      r.department ? h("span", { class: "canned-dept", text: (C.departments()[r.department] || r.department) }) : null));
    });
    list.hidden = false;
    box.setAttribute("aria-activedescendant", "canned-opt-" + items[0].id);
    status(items.length === 1 ? "1 szablon. Enter wstawia." : items.length + " szablonów — strzałki wybierają, Enter wstawia.");
  }

  function move(by) {
    var n = menu.items.length;
    menu.active = (menu.active + by + n) % n;
    Array.from($("canned-list").children).forEach(function (li, i) {
      li.setAttribute("aria-selected", String(i === menu.active));
      if (i === menu.active) {
        $("reply").setAttribute("aria-activedescendant", li.id);
        li.scrollIntoView({ block: "nearest" });
      }
    });
  }

  function close() {
    var list = $("canned-list");
    if (!list) return;
    list.hidden = true;
    list.textContent = "";
    menu.items = [];
    $("reply").removeAttribute("aria-activedescendant");
  }

  function status(text) { $("canned-status").textContent = text; }

  /** The reply, filled in for the ticket, in place of the "/…" that found it. */
  function insert(reply) {
    var box = $("reply");
    var q = typedQuery() || menu.query;
    var text = reply.text != null ? reply.text : reply.body;
    if (!q) return;
    box.value = box.value.slice(0, q.start) + text + box.value.slice(q.end);
    var caret = q.start + text.length;
    box.setSelectionRange(caret, caret);
    close();
    status("Wstawiono szablon „" + reply.title + "”.");
    // The console keeps the draft and tells the customer an agent is typing.
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }

  function wireComposer() {
    var box = $("reply");
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", "canned-list");
    box.addEventListener("input", refresh);
    box.addEventListener("click", refresh);
    box.addEventListener("blur", close);
    box.addEventListener("focus", function () {
      // Fetch the open ticket's replies ahead of the first "/".
      var ticket = C.current();
      if (ticket != null) load(ticket).catch(function () { /* reported when the list is opened */ });
    });
    // Capture on the form: these keys belong to the list while it is open, before
    // console.js's own Enter (send) on the textarea sees them.
    $("composer").addEventListener("keydown", function (e) {
      if ($("canned-list").hidden || e.target !== box || e.isComposing) return;
      var key = e.key;
      if (key === "ArrowDown" || key === "ArrowUp") move(key === "ArrowDown" ? 1 : -1);
      else if ((key === "Enter" || key === "Tab") && !e.shiftKey) insert(menu.items[menu.active]);
      else if (key === "Escape") {
        var q = typedQuery();
        menu.dismissed = q && { start: q.start, ticket: C.current() };
        close();
        status("");
      } else return;
      e.preventDefault();
      e.stopPropagation();
    }, true);
    box.addEventListener("keyup", function (e) {
      if (e.key === "ArrowLeft" || e.key === "ArrowRight" || e.key === "Home" || e.key === "End") refresh();
    });
  }

  // ------------------------------------------------------------------ the management panel
  var editing = null; // the reply being changed, or null for a new one
  // The reply whose delete button asks once more; kept when the list is drawn again
  // (a reload that lands between the two clicks must not swallow the first).
  var confirming = null;
  var listed = [];

  function departmentOptions(select, first) {
    var keep = select.value;
    var names = C.departments();
    select.length = 1;
    select.options[0].textContent = first;
    Object.keys(names).forEach(function (k) { select.append(h("option", { value: k, text: names[k] })); });
    select.value = keep;
  }

  async function reload() {
    var dept = $("canned-filter").value;
    $("canned-panel-error").textContent = "";
    try {
      listed = (await api("GET", "/api/canned" + (dept ? "?department=" + encodeURIComponent(dept) : ""))).replies;
    } catch (err) {
      $("canned-panel-error").textContent = "Nie udało się wczytać szablonów: " + err.message;
      return;
    }
    var names = C.departments();
    var ul = $("canned-items");
    ul.textContent = "";
    if (!listed.length) ul.append(h("li", { class: "muted", text: "Brak szablonów." }));
    listed.forEach(function (r) {
      var asking = confirming === r.id;
      var del = h("button", { type: "button", class: "secondary", "aria-label": "Usuń szablon " + r.title,
        text: asking ? "Na pewno usunąć?" : "Usuń" });
      del.addEventListener("click", function () {
        // Two steps instead of a confirm() box: the button asks once more.
        if (confirming !== r.id) {
          confirming = r.id;
          ul.querySelectorAll("button[data-asking]").forEach(function (b) { b.textContent = "Usuń"; delete b.dataset.asking; });
          del.dataset.asking = "1";
          del.textContent = "Na pewno usunąć?";
          return;
        }
        confirming = null;
        remove(r);
      });
      if (asking) del.dataset.asking = "1";
      ul.append(h("li", { class: "canned-item", "data-id": r.id },
        h("div", null, h("b", { text: r.title }),
          h("div", { class: "muted", text: "/" + r.shortcut + " · " + (r.department ? names[r.department] || r.department : "wspólny") })),
        h("div", { class: "canned-actions" },
          h("button", { type: "button", class: "secondary", "aria-label": "Edytuj szablon " + r.title, text: "Edytuj",
            onclick: function () { edit(r); } }), del)));
    });
  }

  function edit(reply) {
    editing = reply;
    $("canned-form").hidden = false;
    $("canned-form-title").textContent = reply ? "Edycja: " + reply.title : "Nowy szablon";
    $("canned-error").textContent = "";
    departmentOptions($("canned-f-department"), "wspólny (wszystkie działy)");
    $("canned-f-title").value = reply ? reply.title : "";
    $("canned-f-shortcut").value = reply ? reply.shortcut : "";
    $("canned-f-department").value = reply && reply.department ? reply.department : "";
    $("canned-f-body").value = reply ? reply.body : "";
    $("canned-f-articles").value = reply ? reply.articles.map(function (a) { return a.id; }).join(", ") : "";
    $("canned-f-title").focus();
  }

  async function save(e) {
    e.preventDefault();
    var fields = {
      title: $("canned-f-title").value,
      shortcut: $("canned-f-shortcut").value,
      department: $("canned-f-department").value || null,
      body: $("canned-f-body").value,
      articles: $("canned-f-articles").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean)
    };
    try {
      if (editing) await api("PUT", "/api/canned/" + editing.id, fields);
      else await api("POST", "/api/canned", fields);
    } catch (err) {
      $("canned-error").textContent = err.code === "conflict" ? "Ten skrót jest już zajęty w tym dziale (" + err.message + ")."
        : "Nie zapisano: " + err.message;
      return;
    }
    changed();
    $("canned-form").hidden = true;
    await reload();
    $("canned-new").focus();
  }

  async function remove(reply) {
    try {
      await api("DELETE", "/api/canned/" + reply.id);
    } catch (err) {
      if (err.status !== 404) { $("canned-panel-error").textContent = "Nie usunięto: " + err.message; return; }
    }
    if (editing && editing.id === reply.id) $("canned-form").hidden = true;
    changed();
    await reload();
    $("canned-new").focus();
  }

  /** An edit: the composer fetches its replies again. */
  function changed() { cache = { ticket: null, at: 0, replies: null, loading: null }; }

  function wirePanel() {
    var dialog = $("canned-panel");
    $("canned-open").addEventListener("click", function () {
      departmentOptions($("canned-filter"), "wszystkie");
      $("canned-form").hidden = true;
      confirming = null;
      dialog.showModal();
      reload();
    });
    $("canned-close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { $("canned-open").focus(); });
    $("canned-filter").addEventListener("change", reload);
    $("canned-new").addEventListener("click", function () { edit(null); });
    $("canned-cancel").addEventListener("click", function () { $("canned-form").hidden = true; $("canned-new").focus(); });
    $("canned-form").addEventListener("submit", save);
  }

  wireComposer();
  wirePanel();
})();
