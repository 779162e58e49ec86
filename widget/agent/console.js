/*
 * Pomoc agent console: the support team's inbox and chat, over the same /ws protocol
 * as the widget (PROTOCOL.md). The connection itself (backoff, resume, token refresh,
 * keepalive) is `Pomoc.Connection` from /embed.js; this file keeps the inbox, the
 * followed threads and the screen in step with the frames.
 *
 * Sign-in: a pasted agent token (kept in sessionStorage for this tab), `#token=` in the
 * URL's fragment (never sent to a server; removed from the address bar at once), or —
 * when the server runs the demo — the demo agent (`?demo=1`). A token in the query
 * string (`?token=`) is not accepted: query strings reach server logs and history.
 * A connection lasts as long as its token (PROTOCOL.md, `auth`): the demo agent's is
 * renewed by itself; before a pasted one expires a banner asks for a new one.
 *
 * Collision (PROTOCOL.md, "Collision"): the console follows the ticket it shows and
 * unfollows the one it leaves, shows the other agents viewing it ("Anna przegląda")
 * and writing in it ("Anna pisze odpowiedź…"), and sends every reply with the last
 * seq it has shown (`seen_seq`): a teammate's reply meanwhile stops it with "Ktoś
 * inny odpowiedział w międzyczasie" until the agent sends anyway or takes it back.
 *
 * "Moje" lists the open tickets assigned to this agent (`list_tickets assignee: "me"`);
 * an assignment by a teammate or by Pomoc's automatic assignment arrives as `assigned`.
 *
 * Alerts: a new ticket in the agent's departments, a customer's message on a ticket
 * assigned to this agent, and an assignment to this agent — each switched on or off
 * in "Powiadomienia" (kept in localStorage). They alert only while the agent is away
 * from the console (its tab hidden or the window unfocused): a browser notification
 * (permission asked by the "Włącz powiadomienia" button), a short beep and the count
 * in the tab's title, which clears as soon as the agent is back. While the agent
 * looks at the console, the inbox itself shows what happened.
 */
(function () {
  "use strict";

  var STATUS = { open: "otwarte", waiting_on_customer: "czeka na klienta", resolved: "rozwiązane", closed: "zamknięte" };
  var SEVERITY = { critical: "krytyczny", major: "poważny", minor: "drobny", question: "pytanie", suggestion: "sugestia" };
  var PLAN = { trial: "TRIAL", standard: "standard", priority: "priorytet" };
  var ERRORS = { rate_limited: "Za dużo wiadomości naraz — spróbuj za chwilę.", too_large: "Tekst jest za długi.",
    closed_ticket: "To zgłoszenie jest zamknięte.", forbidden: "Brak uprawnień do tego zgłoszenia." };
  // The server's default departments until welcome says which are configured (POMOC_DEPARTMENTS);
  // keys seen on tickets but missing here are added as they come.
  var DEPARTMENTS = { payments: "Płatności", invoicing: "Faktury", shipping: "Wysyłka", orders: "Zamówienia",
    products: "Produkty", domains: "Domeny i poczta", sales: "Handel", technical: "Techniczny" };
  var TOKEN_KEY = "pomoc-agent-token";
  var DEMO_KEY = "pomoc-agent-demo";
  var TYPING_EVERY_MS = 2000;
  var INBOX_PAGE = 50;
  var TYPING_SHOWN_MS = 5000;
  var RENEW_WARN_S = 300; // the renewal banner: five minutes before a pasted token expires (halfway for short ones)
  var ALERTS_KEY = "pomoc-agent-alerts";
  var ALERT_KINDS = ["new_ticket", "customer_message", "assigned"];
  var NEW_TICKET_MS = 120000; // a ticket pushed unknown and created this recently is a new one

  var $ = function (id) { return document.getElementById(id); };
  var demoAvailable = (document.querySelector('meta[name="pomoc-demo"]') || {}).content === "1";

  var state = {
    me: null,
    tickets: new Map(),   // id -> ticket
    unread: new Map(),    // id -> n
    counted: new Map(),   // id -> seq already accounted for by the server's unread
    msgs: new Map(),      // id -> Map(seq -> message)
    seen: new Map(),      // id -> highest contiguous seq (resume)
    more: new Map(),      // id -> older history exists
    pending: new Map(),   // client_id -> {ticket, body, client_id, state}
    drafts: {},
    typing: new Map(),    // id -> {name, until}
    readSent: new Map(),
    current: null,
    tab: "open",
    listLimit: INBOX_PAGE, // how many of the current view the server sends (the most urgent first)
    listMore: false,       // the server has more tickets for the current view
    listLoading: false,    // a "more" page was asked for and has not arrived yet
    presence: "online",
    online: false,
    everOnline: false,
    typingSentAt: 0,
    token: null,           // a pasted token (null for the demo agent, whose tokens come from /demo/token)
    expiresAt: 0,          // when the connection's token expires (this browser's clock, from expires_in)
    renewAt: 0,            // when the renewal banner shows
    search: null,          // the last search's answer {q, results}, shown above the inbox
    jump: null,            // {ticket, seq}: scroll to this message once it is in the log (a search result)
    viewers: new Map(),    // id -> [{id, name}] who has the ticket open
    team: new Map(),       // agent id -> "online" | "away" | "offline"
    names: new Map(),      // agent id -> name, as far as we know it
    shopTickets: new Map(),// shop -> its tickets, newest first (the context panel)
    stale: null,           // the pending send a teammate's reply stopped
    attached: [],          // files uploaded for the next reply: {name, id?, err?}
    alertCount: 0,         // alerts while the agent was away (the tab title)
    alerted: new Set(),    // "assigned:<id>" already told
    assigning: new Map()   // id -> when this agent assigned it to itself (not news to it)
  };
  var baseTitle = document.title;
  var audio = null;
  var conn = null;
  var renderedSearch = null;

  function h(tag, attrs) {
    var el = document.createElement(tag);
    for (var key in attrs || {}) {
      var v = attrs[key];
      if (v == null || v === false) continue;
      if (key.slice(0, 2) === "on") el.addEventListener(key.slice(2), v);
      else if (key === "text") el.textContent = v;
      else el.setAttribute(key, v === true ? "" : v);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (Array.isArray(c)) el.append.apply(el, c);
      else if (c != null && c !== false) el.append(c);
    }
    return el;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  }

  // Times in Warsaw, written as the server's acknowledgment writes them.
  var DAYS = ["poniedziałek", "wtorek", "środa", "czwartek", "piątek", "sobota", "niedziela"];
  var DAYS_TO = ["poniedziałku", "wtorku", "środy", "czwartku", "piątku", "soboty", "niedzieli"]; // after "do"
  var WARSAW = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Warsaw", weekday: "short", day: "2-digit",
    month: "2-digit", hour: "numeric", minute: "2-digit", hourCycle: "h23" });

  /** "9:05"; with form "due" "do czwartku 31.12, 16:30"; with form "at" "środa 02.12 o 9:00". */
  function fmt(iso, form) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    var p = {};
    WARSAW.formatToParts(d).forEach(function (x) { p[x.type] = x.value; });
    var day = "MonTueWedThuFriSatSun".indexOf(p.weekday) / 3;
    var date = p.day + "." + p.month;
    var time = Number(p.hour) + ":" + p.minute;
    if (form === "due") return "do " + DAYS_TO[day] + " " + date + ", " + time;
    return form === "at" ? DAYS[day] + " " + date + " o " + time : time;
  }

  function active(t) { return t.status === "open" || t.status === "waiting_on_customer"; }

  /** Held in the off-hours queue; a closed or resolved ticket is not. */
  function queued(t) { return active(t) && !!t.queued_until && new Date(t.queued_until) > new Date(); }

  function ago(ms) {
    var m = Math.round(Math.abs(ms) / 60000);
    if (m < 60) return m + " min";
    var hrs = Math.round(m / 60);
    return hrs < 48 ? hrs + " h" : Math.round(hrs / 24) + " dni";
  }

  // ------------------------------------------------------------------ sign-in
  function showSignin(error) {
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = error || "";
    $("demo-signin").hidden = !demoAvailable;
    $("token-input").focus();
  }

  async function demoToken() {
    var res = await fetch("/demo/token?role=agent", { cache: "no-store" });
    if (!res.ok) throw new Error("demo token: " + res.status);
    return (await res.json()).token;
  }

  /** A customer-supplied URL as a link only when it is http(s); anything else (javascript:, data:, …) stays text. */
  function safeLink(url) {
    var parsed = null;
    try { parsed = new URL(url); } catch (e) { /* not an absolute URL: text */ }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
      return h("span", { class: "url-text", text: url });
    }
    return h("a", { href: parsed.href, target: "_blank", rel: "noopener noreferrer", text: url });
  }

  function signIn(token, demo) {
    try {
      sessionStorage.setItem(DEMO_KEY, demo ? "1" : "");
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* private mode: the token lives only in memory */ }
    $("signin").hidden = true;
    $("app").hidden = false;
    state.token = demo ? null : token;
    var provider = demo ? demoToken : function () { return Promise.resolve(state.token); };
    conn = new Pomoc.Connection({
      url: location.origin.replace(/^http/, "ws") + "/ws",
      token: provider,
      renew: !!demo, // a pasted token is renewed by pasting another (the banner)
      // hello.resume re-follows the threads we had open and replays what they missed.
      hello: function () {
        var resume = {};
        state.msgs.forEach(function (map, id) { resume[id] = state.seen.get(id) || 0; });
        return { feed: true, resume: resume };
      },
      onFrame: onFrame,
      onState: function (s) { state.online = s === "online"; renderConn(); },
      onClose: function (code) {
        if (code === 4401 && !demo) {
          conn.stop();
          try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
          showSignin("Token jest nieważny albo wygasł — wklej nowy.");
        }
      }
    });
    conn.start();
  }

  function signOut() {
    if (conn) conn.stop();
    try { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(DEMO_KEY); } catch (e) { /* ignore */ }
    location.href = "/agent";
  }

  // ------------------------------------------------------------------ frames
  var handlers = {
    welcome: function (f) {
      expiry(f);
      state.me = f.principal;
      state.everOnline = true;
      if (f.departments && f.departments.length) {
        // The server refuses departments it does not know: offer exactly the configured ones.
        DEPARTMENTS = {};
        f.departments.forEach(function (d) { DEPARTMENTS[d.key] = d.name; });
        state.departmentsChanged = true;
      }
      $("agent-name").textContent = f.principal.name;
      $("reports-open").hidden = !f.principal.lead; // the lead's reports (reports.js)
      (f.tickets || []).forEach(function (t) {
        upsert(t, true);
        state.counted.set(t.id, t.last_seq || 0);
      });
      state.listMore = !!f.tickets_more;
      state.unread = new Map();
      Object.keys(f.unread || {}).forEach(function (k) { state.unread.set(Number(k), f.unread[k]); });
      (f.resume_incomplete || []).forEach(function (id) { state.msgs.delete(id); state.more.delete(id); state.seen.delete(id); });
      send({ type: "presence", status: state.presence });
      if (state.tab !== "open" || $("filter-status").value || $("filter-department").value) list(); // a filter chosen before the welcome
      if (state.current != null && !state.msgs.has(state.current)) openTicket(state.current);
      else if (state.current != null) send({ type: "follow", ticket: state.current, ref: "follow:" + state.current }); // a viewer again
      state.pending.forEach(function (p) { if (p.state === "pending") transmit(p); });
      maybeRead();
    },
    ticket: function (f) {
      if (f.ref == null) alertTicket(state.tickets.get(f.ticket.id), f.ticket);
      // Inbox frames carry this agent's unread; the open thread's count is ours to keep (we read it).
      upsert(f.ticket, f.ref != null || f.ticket.id !== state.current);
      if (f.ref != null) maybeRead();
      // Opened: the shop's other tickets for the context panel.
      if (typeof f.ref === "string" && f.ref.indexOf("follow:") === 0 && f.ticket.shop) {
        send({ type: "list_tickets", shop: f.ticket.shop, limit: 20, ref: "shop:" + f.ticket.shop });
      }
    },
    tickets: function (f) {
      if (typeof f.ref === "string" && f.ref.indexOf("shop:") === 0) {
        state.shopTickets.set(f.ref.slice(5), f.tickets || []); // not the inbox: any status, any department
        return;
      }
      (f.tickets || []).forEach(function (t) { upsert(t, true); });
      if (f.ref === "list") { state.listMore = !!f.more; state.listLoading = false; schedule(); }
    },
    message: function (f) {
      var t = state.tickets.get(f.ticket);
      var fresh = !(state.msgs.get(f.ticket) || new Map()).has(f.seq);
      insert(f, true);
      if (fresh && f.author && f.author.kind === "customer" && t && state.me && t.assignee === state.me.id) {
        notify("customer_message", "Nowa wiadomość: " + (t.title || "#" + f.ticket), (f.author.name || "Klient") + ": " +
          (f.body || "").slice(0, 140), f.ticket);
      }
    },
    viewers: function (f) {
      state.viewers.set(f.ticket, f.agents || []);
      (f.agents || []).forEach(function (a) { state.names.set(a.id, a.name); });
    },
    assigned: function (f) {
      var id = f.ticket && typeof f.ticket === "object" ? f.ticket.id : f.ticket;
      if (f.ticket && typeof f.ticket === "object") upsert(f.ticket, false);
      alertAssigned(id, f.by && (f.by.name || f.by));
    },
    unfollowed: function () { /* the ticket's frames stop */ },
    history: function (f) {
      var ref = typeof f.ref === "string" ? f.ref : "";
      (f.messages || []).forEach(function (m) { insert(Object.assign({ ticket: f.ticket }, m), false); });
      if (ref.indexOf("hist:") === 0) state.more.set(f.ticket, !!f.more);
      var last = (f.messages || []).slice(-1)[0];
      // The newest page is the thread's end: seen moves there even if older pages are not loaded.
      if (/:tail$/.test(ref) && last && last.seq > (state.seen.get(f.ticket) || 0)) state.seen.set(f.ticket, last.seq);
      maybeRead();
    },
    ack: function (f) {
      var p = state.pending.get(f.client_id);
      if (!p) return;
      state.pending.delete(f.client_id);
      if (f.ticket !== state.current && !state.msgs.has(f.ticket)) return; // left meanwhile: reloaded when opened
      insert({ ticket: f.ticket, seq: f.seq, client_id: f.client_id, body: p.body, created_at: f.created_at || new Date().toISOString(),
        author: { kind: "agent", id: state.me.id, name: state.me.name }, internal: !!(f.internal || p.internal),
        attachments: f.attachments }, false);
    },
    unread: function (f) {
      Object.keys(f.tickets || {}).forEach(function (k) { state.unread.set(Number(k), f.tickets[k]); });
    },
    typing: function (f) {
      var teammate = !!(f.who && f.who.kind === "agent");
      if (teammate && state.me && f.who.id === state.me.id) return;
      state.typing.set(f.ticket, { name: (f.who && f.who.name) || "Klient", agent: teammate, until: Date.now() + TYPING_SHOWN_MS });
    },
    presence: function (f) { if (f.agent) state.team.set(f.agent, f.status); },
    authenticated: function (f) {
      expiry(f);
      if (state.token != null && conn.token) {
        state.token = conn.token; // the renewed token, for reconnects and this tab's next load
        try { sessionStorage.setItem(TOKEN_KEY, conn.token); } catch (e) { /* in memory only */ }
      }
      $("renew-token").value = "";
      $("renew-error").textContent = "";
    },
    search: function (f) {
      if (f.ref !== "search:" + state.searchSeq) return; // an older search answered late
      state.search = { q: state.searchQ, results: f.results || [] };
      state.search.results.forEach(function (r) { upsert(r.ticket, false); });
    },
    error: function (f) {
      var ref = typeof f.ref === "string" ? f.ref : "";
      if (ref.indexOf("search:") === 0) {
        $("search-error").textContent = f.code === "bad_request" ? "Wpisz co najmniej jedno słowo (2+ znaki)." + " (" + f.message + ")"
          : ERRORS[f.code] || "Błąd: " + f.message;
        return;
      }
      if (ref === "auth") {
        $("renew-error").textContent = f.code === "forbidden" ? "Ten token jest dla kogoś innego — wklej swój."
          : "Token jest nieważny albo wygasł — wklej nowy.";
        return;
      }
      if (ref.indexOf("send:") === 0) {
        var p = state.pending.get(ref.slice(5));
        if (p && f.code === "stale") {
          // A teammate replied since: show it and ask before this goes out.
          p.state = "stale";
          p.newer = f.seqs || [];
          state.stale = p;
          var map = state.msgs.get(p.ticket) || new Map();
          if (p.newer.some(function (s) { return !map.has(s); })) {
            send({ type: "history", ticket: p.ticket, after_seq: Math.min.apply(null, p.newer) - 1, limit: 50, ref: "stale:" + p.ticket });
          }
          return;
        }
        // Sent again by itself after the pause, unless edited or discarded meanwhile.
        if (p && (f.code === "unavailable" || f.code === "rate_limited")) {
          setTimeout(function () { if (state.pending.get(p.client_id) === p) transmit(p); }, 1000 * (f.retry_after || 2));
        }
        if (f.code === "unavailable") return;
        if (p) { p.state = "failed"; p.code = f.code; }
      }
      $("chat-error").textContent = ERRORS[f.code] || "Błąd: " + f.message;
    }
  };

  /** When the connection's token expires, from the server's expires_in (no trust in this browser's clock). */
  function expiry(f) {
    if (typeof f.expires_in !== "number") return;
    var now = Date.now();
    state.expiresAt = now + f.expires_in * 1000;
    state.renewAt = now + Math.max(f.expires_in - RENEW_WARN_S, f.expires_in / 2) * 1000;
  }

  function onFrame(f) {
    var fn = handlers[f.type];
    if (fn) fn(f);
    schedule();
  }

  function send(frame) { return conn && conn.send(frame); }

  function upsert(t, authoritative) {
    var old = state.tickets.get(t.id);
    var merged = Object.assign({}, old || {}, t);
    state.tickets.set(t.id, merged);
    if (authoritative && typeof t.unread === "number") state.unread.set(t.id, t.unread);
    else if (!old) state.unread.set(t.id, t.last_seq || 0); // new to this agent: nothing of it read yet
    else if (old && t.last_seq > (old.last_seq || 0) && t.id !== state.current && !state.msgs.has(t.id)) {
      // A pushed update of a ticket we do not follow: its new messages are unread.
      state.unread.set(t.id, (state.unread.get(t.id) || 0) + (t.last_seq - old.last_seq));
    }
  }

  function insert(m, live) {
    var id = m.ticket;
    var map = state.msgs.get(id);
    if (!map) { map = new Map(); state.msgs.set(id, map); }
    if (map.has(m.seq)) return;
    map.set(m.seq, m);
    var mine = m.author && m.author.kind === "agent" && state.me && m.author.id === state.me.id;
    if (mine && state.pending.has(m.client_id)) state.pending.delete(m.client_id);
    var s = state.seen.get(id) || 0;
    while (map.has(s + 1)) s += 1;
    if (!state.seen.has(id) || s > state.seen.get(id)) state.seen.set(id, s);
    var t = state.tickets.get(id);
    if (t && m.seq > (t.last_seq || 0)) t.last_seq = m.seq;
    if (!live || mine) return;
    if (m.author.kind === "customer") state.typing.delete(id);
    if (viewing(id)) maybeRead();
    else if (m.seq > (state.counted.get(id) || 0)) state.unread.set(id, Math.max(state.unread.get(id) || 0, 1));
  }

  function viewing(id) { return state.current === id && document.visibilityState !== "hidden"; }

  function maybeRead() {
    var id = state.current;
    if (id == null || !viewing(id) || !conn || !conn.ready) return;
    var map = state.msgs.get(id);
    if (!map || !map.size) return;
    var top = Math.max.apply(null, Array.from(map.keys()));
    if (top <= (state.readSent.get(id) || 0) && !(state.unread.get(id) > 0)) return;
    state.readSent.set(id, top);
    state.unread.set(id, 0);
    send({ type: "read", ticket: id, seq: top });
  }

  /** The inbox list for the current tab or status filter and department ("" = the agent's own). */
  function list() {
    var frame = { type: "list_tickets", limit: state.listLimit, ref: "list" };
    var status = listStatus();
    if (status) frame.status = status;
    // "Moje": the tickets assigned to me, whatever their department (PROTOCOL.md, list_tickets assignee).
    if (state.tab === "mine") frame.assignee = "me";
    if ($("filter-department").value) frame.department = $("filter-department").value;
    send(frame);
  }

  function deptName(key) { return DEPARTMENTS[key] || key; }

  function loadHistory(id, before) {
    var frame = { type: "history", ticket: id, limit: 50, ref: "hist:" + id + (before ? ":old" : ":tail") };
    if (before) frame.before_seq = before;
    send(frame);
  }

  function transmit(p) {
    p.state = "pending";
    // The last seq this console has shown: the server stops the send if a teammate replied after it.
    var frame = { type: "send", ticket: p.ticket, body: p.body, client_id: p.client_id, ref: "send:" + p.client_id,
      seen_seq: state.seen.get(p.ticket) || 0 };
    if (p.internal) frame.internal = true; // a private note: only agents ever see it
    if (p.force) frame.force = true;
    if (p.attachments && p.attachments.length) frame.attachments = p.attachments;
    send(frame);
  }

  /** `typing` at most every 2 s while typing; a burst inside the window still gets one trailing frame. */
  var typingTimer = null;
  function typingPing(id) {
    var wait = TYPING_EVERY_MS - (Date.now() - state.typingSentAt);
    // Writing a private note is not writing to the customer: no "typing" for them.
    if (!$("reply").value || typingTimer || $("internal").checked) return;
    if (wait <= 0) {
      state.typingSentAt = Date.now();
      send({ type: "typing", ticket: id });
    } else {
      typingTimer = setTimeout(function () { typingTimer = null; if (state.current === id) typingPing(id); }, wait + 100);
    }
  }

  function listStatus() { return $("filter-status").value || (state.tab === "mine" ? null : state.tab); }

  // ------------------------------------------------------------------ actions
  /** An unsent reply back into the reply box (edit) or discarded. */
  function drop(p, edit) {
    state.pending.delete(p.client_id);
    $("chat-error").textContent = "";
    if (!edit) return;
    var box = $("reply");
    box.value = state.drafts[p.ticket] = [p.body, box.value].filter(Boolean).join("\n");
    box.focus();
  }

  function showTab(tab) {
    state.tab = tab;
    state.listLimit = INBOX_PAGE;
    $("filter-status").value = "";
    list();
    schedule();
    var selected = document.querySelector('[data-tab="' + tab + '"]');
    if (selected !== document.activeElement && document.activeElement.closest("#tickets")) selected.focus();
  }

  function search() {
    var q = $("search-q").value.trim();
    $("search-error").textContent = "";
    if (!q) { state.search = null; schedule(); return; }
    state.searchSeq = (state.searchSeq || 0) + 1;
    state.searchQ = q;
    var frame = { type: "search", q: q, ref: "search:" + state.searchSeq };
    if ($("search-department").value) frame.department = $("search-department").value;
    if ($("search-status").value) frame.status = $("search-status").value;
    if ($("search-shop").value.trim()) frame.shop = $("search-shop").value.trim();
    send(frame);
  }

  function renderSearch() {
    var select = $("search-department");
    if (select.options.length === 1) {
      Object.keys(DEPARTMENTS).forEach(function (k) { select.append(h("option", { value: k, text: DEPARTMENTS[k] })); });
    }
    var found = state.search;
    $("search-box").hidden = !found;
    if (!found || renderedSearch === found) return; // drawn once per answer: focus stays where it is
    renderedSearch = found;
    var n = found.results.length;
    $("search-summary").textContent = "„" + found.q + "”: " + (n ? n + (n === 1 ? " zgłoszenie" : " zgłoszeń") : "nic nie znaleziono");
    var ul = $("search-results");
    ul.replaceChildren.apply(ul, found.results.map(function (r) {
      var t = r.ticket;
      return h("li", { "data-ticket": t.id },
        h("button", { type: "button", class: "ticket", onclick: function () {
          state.jump = r.seq != null ? { ticket: t.id, seq: r.seq } : null;
          openTicket(t.id);
        } },
          h("span", { class: "title", text: "#" + t.id + " " + t.title }),
          h("span", { class: "sub muted", text: (t.shop_name || t.shop) + " · " + (STATUS[t.status] || t.status) +
            (t.department ? " · " + deptName(t.department) : "") + (r.seq != null ? " · wiadomość " + r.seq : " · tytuł") }),
          h("span", { class: "snippet", text: r.snippet })));
    }));
  }

  /** A search result's message: scrolled to and marked once it is in the log (older ones need "earlier messages"). */
  function jumpToFound() {
    var jump = state.jump;
    if (!jump || jump.ticket !== state.current) return false;
    var el = logEls.get("s" + jump.seq) || $("log").querySelector('[data-seq="' + jump.seq + '"]');
    if (!el) return false;
    state.jump = null;
    pinned = false;
    el.classList.add("found");
    el.scrollIntoView({ block: "center" });
    return true;
  }

  /** The console no longer shows this ticket: it stops following it (and being one of its viewers). */
  function leaveTicket(id) {
    if (id == null) return;
    send({ type: "unfollow", ticket: id });
    state.msgs.delete(id);
    state.seen.delete(id);
    state.more.delete(id);
    state.viewers.delete(id);
    state.typing.delete(id);
    if (state.stale && state.stale.ticket === id) state.stale = null;
  }

  function openTicket(id) {
    if (state.jump && state.jump.ticket !== id) state.jump = null;
    if (state.current != null && state.current !== id) leaveTicket(state.current);
    if (state.current !== id) state.attached = [];
    state.current = id;
    state.typingSentAt = 0;
    $("chat-error").textContent = "";
    $("reply").value = state.drafts[id] || "";
    noteMode(false); // every ticket opens in reply mode: a note is a deliberate choice
    // Follow first, then read the history: nothing posted in between is lost.
    send({ type: "follow", ticket: id, ref: "follow:" + id });
    if (!state.seen.has(id)) state.seen.set(id, 0);
    if (!state.more.has(id)) loadHistory(id);
    renderedLog = null;
    schedule();
    maybeRead();
    $("reply").focus();
  }

  function update(field, value) {
    if (state.current == null) return;
    var frame = { type: "update_ticket", ticket: state.current, ref: "upd:" + state.current };
    frame[field] = value === "" ? null : value;
    send(frame);
  }

  function reply() {
    var id = state.current;
    var body = $("reply").value;
    if (state.attached.some(function (x) { return !x.id && !x.err; })) return; // still uploading
    var files = state.attached.filter(function (x) { return x.id; });
    if (id == null || (!body.trim() && !files.length)) return;
    var p = { ticket: id, body: body, client_id: uuid(), state: "pending", internal: $("internal").checked,
      attachments: files.map(function (x) { return x.id; }) };
    state.attached = [];
    state.pending.set(p.client_id, p);
    $("reply").value = "";
    delete state.drafts[id];
    transmit(p);
    schedule();
  }

  /** The composer writes private notes (true) or replies to the customer. */
  function noteMode(on) {
    $("internal").checked = on;
    $("composer").classList.toggle("internal", on);
    $("reply").placeholder = on ? "Notatka wewnętrzna — klient jej nie zobaczy (Enter zapisuje)"
      : "Odpowiedz klientowi… (Enter wysyła, Shift+Enter nowa linia)";
    $("send").textContent = on ? "Dodaj notatkę" : "Wyślij";
  }

  // ------------------------------------------------------------------ rendering
  var scheduled = false;
  var renderedLog = null;
  var pinned = true; // the log follows the newest message
  var logEls = new Map();

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    Promise.resolve().then(function () { scheduled = false; render(); });
  }

  function render() {
    $("app").classList.toggle("reading", state.current != null); // phones show the inbox or the open ticket
    renderConn();
    renderRenew();
    renderInbox();
    renderSearch();
    renderChat();
    renderSide();
  }

  /** The renewal banner: a pasted token about to expire, and how long it has left. */
  function renderRenew() {
    var now = Date.now();
    var show = state.token != null && state.expiresAt > now && now >= state.renewAt;
    $("renew").hidden = !show;
    if (!show) return;
    var left = Math.max(0, Math.round((state.expiresAt - now) / 1000));
    $("renew-title").textContent = "Token wygasa za " + (left < 60 ? left + " s" : Math.round(left / 60) + " min") +
      " — wklej nowy, aby pozostać zalogowanym.";
  }

  function renderConn() {
    var el = $("conn");
    el.textContent = state.online ? "Połączono" : state.everOnline ? "Brak połączenia — łączę ponownie…" : "Łączenie…";
    el.className = "conn " + (state.online ? "on" : "off");
  }

  function inTab(t) {
    var status = $("filter-status").value;
    if (status && state.tab === "mine") return t.status === status && assignedToMe(t);
    return status ? t.status === status : inTabPlain(t, state.tab);
  }

  function assignedToMe(t) { return !!state.me && t.assignee === state.me.id; }

  function renderInbox() {
    var dept = $("filter-department").value;
    var onlyUnread = $("filter-unread").checked;
    var all = Array.from(state.tickets.values());
    // Departments the server routes to, for the filter and the re-route select; keys we do not know get their own.
    all.forEach(function (t) { if (t.department && !DEPARTMENTS[t.department]) DEPARTMENTS[t.department] = t.department; });
    var keys = Object.keys(DEPARTMENTS);
    [["filter-department", 2], ["act-department", 0]].forEach(function (pair) {
      var select = $(pair[0]);
      if (!state.departmentsChanged && select.options.length - pair[1] === keys.length) return;
      var keep = select.value;
      select.length = pair[1];
      keys.forEach(function (k) { select.append(h("option", { value: k, text: DEPARTMENTS[k] })); });
      select.value = keep;
    });
    state.departmentsChanged = false;
    var counts = {};
    ["open", "mine", "waiting_on_customer", "queued", "resolved"].forEach(function (tab) {
      counts[tab] = all.filter(function (t) { return inTabPlain(t, tab); }).length;
    });
    document.querySelectorAll("[data-tab]").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.dataset.tab === state.tab));
      b.querySelector(".count").textContent = counts[b.dataset.tab] ? String(counts[b.dataset.tab]) : "";
    });
    var now = Date.now();
    var list = all.filter(function (t) {
      return inTab(t) && (!dept || dept === "*" || t.department === dept) && (!onlyUnread || state.unread.get(t.id) > 0);
    }).sort(function (a, b) {
      // The server's inbox order: a running deadline of a plan that goes first (priority) first.
      var ra = a.inbox_rank === undefined ? 1 : a.inbox_rank, rb = b.inbox_rank === undefined ? 1 : b.inbox_rank;
      if (ra !== rb) return ra - rb;
      var da = a.sla_due_at ? Date.parse(a.sla_due_at) : Infinity;
      var db = b.sla_due_at ? Date.parse(b.sla_due_at) : Infinity;
      if (da !== db) return da - db;
      if ((a.severity === "critical") !== (b.severity === "critical")) return a.severity === "critical" ? -1 : 1;
      return a.id - b.id;
    });
    var ul = $("tickets");
    var focusedId = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.ticket;
    var items = list.length ? [] : [emptyInbox(counts)];
    list.forEach(function (t) {
      var n = state.unread.get(t.id) || 0;
      var overdue = t.sla_due_at && Date.parse(t.sla_due_at) < now && (t.status === "open" || t.status === "waiting_on_customer");
      var cls = "ticket" + (n > 0 ? " unread" : "") + (overdue ? " overdue" : "") + (t.severity === "critical" ? " critical" : "") +
        (t.id === state.current ? " current" : "");
      var due = t.sla_due_at ? (overdue ? "po terminie " + ago(now - Date.parse(t.sla_due_at)) : "odpowiedź " + fmt(t.sla_due_at, "due")) : "bez terminu";
      var btn = h("button", { type: "button", class: cls, "data-ticket": t.id, "aria-current": t.id === state.current ? "true" : null,
        onclick: function () { openTicket(t.id); } },
      h("span", { class: "line1" },
        h("span", { class: "title", text: t.title }),
        n > 0 ? h("span", { class: "pill", text: String(n), "aria-label": "nieprzeczytane: " + n }) : null),
      h("span", { class: "line2" },
        h("span", { class: "sev sev-" + t.severity, text: SEVERITY[t.severity] || t.severity }),
        t.plan === "trial" ? h("span", { class: "trial", text: "TRIAL" }) : null,
        h("span", { text: "#" + t.id + " · " + (t.shop_name || t.shop || "") })),
      h("span", { class: "line3" + (overdue ? " late" : ""), text: due + (t.department ? " · " + deptName(t.department) : "") +
        (t.assignee ? " · " + t.assignee : "") }));
      items.push(h("li", { "data-key": t.id }, btn));
    });
    // Items that look the same stay the same elements: a click or a tap whose press and release straddle
    // an update (typing pings come every 2 s) still lands, and focus and hover stay where they were.
    var kept = new Map(Array.from(ul.children, function (li) { return [li.dataset.key || "", li]; }));
    items = items.map(function (li) {
      var old = kept.get(li.dataset.key || "");
      return old && old.outerHTML === li.outerHTML ? old : li;
    });
    var wanted = new Set(items);
    Array.from(ul.children).forEach(function (li) { if (!wanted.has(li)) li.remove(); });
    items.forEach(function (li, i) { if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null); });
    var focused = focusedId && ul.querySelector('[data-ticket="' + focusedId + '"]');
    if (focused && focused !== document.activeElement) focused.focus();
    var more = $("more-tickets");
    more.hidden = !state.listMore;
    more.disabled = state.listLoading;
  }

  /** An empty view; off-hours the open tab says that tickets wait in the queue and shows them on request. */
  function emptyInbox(counts) {
    if (!state.everOnline) return h("li", { class: "empty", text: "Wczytywanie…" });
    var waiting = counts.queued;
    if (state.tab !== "open" || $("filter-status").value || !waiting) return h("li", { class: "empty", text: "Brak zgłoszeń w tym widoku." });
    var verb = waiting % 10 >= 2 && waiting % 10 <= 4 && (waiting % 100 < 12 || waiting % 100 > 14) ? "czekają" : "czeka";
    return h("li", { class: "empty" }, "Brak otwartych zgłoszeń — " + waiting + " " + verb + " w kolejce.",
      h("button", { type: "button", class: "secondary", onclick: function () { showTab("queued"); } }, "Pokaż kolejkę"));
  }

  function inTabPlain(t, tab) {
    if (tab === "mine") return active(t) && assignedToMe(t);
    if (tab === "queued") return queued(t);
    if (tab === "open") return t.status === "open" && !queued(t);
    return t.status === tab;
  }

  function renderChat() {
    var id = state.current;
    $("chat-empty").hidden = id != null;
    $("chat-body").hidden = id == null;
    if (id == null) return;
    var t = state.tickets.get(id) || { id: id, title: "#" + id, status: "open" };
    $("chat-title").textContent = t.title;
    $("chat-sub").textContent = "#" + id + " · " + (STATUS[t.status] || t.status) + " · " + (SEVERITY[t.severity] || "") +
      (t.sla_due_at && active(t) ? " · odpowiedź " + fmt(t.sla_due_at, "due") : "") +
      (queued(t) ? " · w kolejce do otwarcia: " + fmt(t.queued_until, "at") : "");
    var closed = t.status === "closed";
    $("composer").hidden = closed;
    $("closed-note").hidden = !closed;
    var typing = state.typing.get(id);
    $("typing").textContent = typing && typing.until > Date.now() ? typing.name + (typing.agent ? " pisze odpowiedź…" : " pisze…") : "";
    var others = (state.viewers.get(id) || []).filter(function (a) { return !state.me || a.id !== state.me.id; });
    $("viewers").textContent = others.length ? others.map(function (a) { return a.name; }).join(", ") +
      (others.length === 1 ? " przegląda" : " przeglądają") : "";
    renderStale(id);
    renderAttached();
    $("older").hidden = state.more.get(id) !== true;

    var log = $("log");
    if (renderedLog !== id) {
      logEls.forEach(function (el) { el.remove(); });
      logEls = new Map();
      renderedLog = id;
      pinned = true;
    }
    var firstBefore = log.children[1];
    var oldHeight = log.scrollHeight;
    var entries = Array.from((state.msgs.get(id) || new Map()).values()).sort(function (a, b) { return a.seq - b.seq; });
    state.pending.forEach(function (p) { if (p.ticket === id) entries.push(p); });
    var keep = new Set();
    var cursor = $("older");
    entries.forEach(function (m) {
      var mine = m.seq == null || (m.author.kind === "agent" && m.author.id === state.me.id);
      var key = mine ? "c" + m.client_id : "s" + m.seq;
      keep.add(key);
      var el = logEls.get(key);
      if (!el || (m.seq != null && !el.hasAttribute("data-seq")) || (m.seq == null && !el.classList.contains(m.state))) {
        var fresh = renderMessage(m, mine);
        if (el) el.replaceWith(fresh);
        el = fresh;
        logEls.set(key, el);
      }
      if (cursor.nextSibling !== el) cursor.after(el);
      cursor = el;
    });
    logEls.forEach(function (el, key) { if (!keep.has(key)) { el.remove(); logEls.delete(key); } });
    if (jumpToFound()) return;
    if (log.children[1] !== firstBefore && firstBefore) log.scrollTop += log.scrollHeight - oldHeight;
    else stick();
  }

  /** Down to the newest message unless the agent scrolled up: after a render, and when an image loads and grows the log. */
  function stick() {
    if (pinned) $("log").scrollTop = $("log").scrollHeight;
  }

  function renderMessage(m, mine) {
    var kind = mine ? "mine" : m.author.kind;
    var attrs = { class: "msg " + kind + (m.internal ? " note" : "") + (m.seq == null ? " " + m.state : ""),
      "data-client-id": m.client_id };
    if (m.seq != null) attrs["data-seq"] = m.seq;
    // A private note says so on its face: the customer never sees it.
    var label = m.internal ? h("div", { class: "note-label", text: "Notatka — klient tego nie widzi" }) : null;
    if (kind === "system") return h("div", attrs, label, h("div", { class: "text", text: m.body }), attachments(m.attachments));
    var who = mine ? "Ty" : m.author.name + (m.author.kind === "customer" ? " (klient)" : "");
    var meta = h("div", { class: "meta", text: who + (m.created_at ? " · " + fmt(m.created_at) : "") +
      (m.seq == null ? (m.state === "failed" ? " · nie wysłano" : m.state === "stale" ? " · wstrzymano" : " · wysyłanie…") : "") });
    if (m.state === "failed" && m.seq == null) {
      // Not sent: again (unless it cannot succeed), back into the reply box, or away.
      var act = function (label, fn) {
        return h("button", { type: "button", class: "retry", onclick: function () { fn(); schedule(); } }, label);
      };
      if (m.code !== "too_large" && m.code !== "closed_ticket") meta.append(act("Ponów", function () { transmit(m); }));
      meta.append(act("Edytuj", function () { drop(m, true); }), act("Usuń", function () { drop(m, false); }));
    }
    return h("div", attrs, label, meta, h("div", { class: "text", text: m.body }), attachments(m.attachments));
  }

  function size(n) { return n < 1048576 ? Math.ceil(n / 1024) + " KB" : (n / 1048576).toFixed(1).replace(".", ",") + " MB"; }

  /** Images as thumbnails, other files as download links; the urls are signed links valid for minutes. */
  function attachments(list) {
    if (!list || !list.length) return null;
    return h("div", { class: "att" }, list.map(function (a) {
      var image = /^image\//.test(a.content_type);
      return h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer", class: image ? "thumb" : "file",
        title: a.name + " · " + size(a.size) },
      image ? h("img", { src: a.url, alt: a.name, onload: stick }) : "↓ " + a.name + " · " + size(a.size));
    }));
  }

  /** How much of what support needs the ticket gave (server/intake.py): score, "too vague", what is missing. */
  function renderCompleteness(comp) {
    var box = $("completeness");
    box.textContent = "";
    box.previousElementSibling.hidden = box.hidden = !comp;
    if (!comp) return;
    var bar = h("span");
    bar.style.width = comp.score + "%";
    var level = comp.too_vague || comp.score < 40 ? "low" : comp.score < 75 ? "mid" : "high";
    box.append(
      h("div", { class: "score " + level },
        h("span", { class: "bar", role: "meter", "aria-label": "Kompletność zgłoszenia", "aria-valuemin": "0",
          "aria-valuemax": "100", "aria-valuenow": String(comp.score) }, bar),
        h("b", { text: comp.score + "%" }),
        comp.too_vague ? h("span", { class: "vague", text: "zbyt ogólne" }) : null),
      comp.missing && comp.missing.length ? h("div", { class: "muted", text: "Brakuje:" }) : null,
      h("ul", { class: "missing" }, (comp.missing || []).map(function (m) { return h("li", { text: m.label }); })));
  }

  /** A teammate's reply stopped this send: what they wrote, and the agent's choice. */
  function renderStale(id) {
    var box = $("stale");
    var p = state.stale;
    box.hidden = !p || p.ticket !== id;
    if (box.hidden) return;
    if (box.dataset.for === p.client_id + ":" + p.newer.join(",") + ":" + (state.msgs.get(id) || new Map()).size) return;
    box.dataset.for = p.client_id + ":" + p.newer.join(",") + ":" + (state.msgs.get(id) || new Map()).size;
    var map = state.msgs.get(id) || new Map();
    box.textContent = "";
    box.append(h("strong", { text: "Ktoś inny odpowiedział w międzyczasie" }));
    p.newer.forEach(function (s) {
      var m = map.get(s);
      box.append(h("div", { class: "newer", "data-seq": s, text: m ? m.author.name + ": " + m.body : "wiadomość #" + s }));
    });
    box.append(h("div", null,
        h("button", { type: "button", class: "primary", onclick: function () {
          state.stale = null; p.force = true; transmit(p); schedule();
        } }, "Wyślij mimo to"),
        h("button", { type: "button", class: "secondary", onclick: function () {
          state.stale = null; drop(p, true); schedule();
        } }, "Anuluj")));
  }

  function renderAttached() {
    var ul = $("attached");
    var key = JSON.stringify(state.attached);
    if (ul.dataset.key === key) return;
    ul.dataset.key = key;
    ul.textContent = "";
    state.attached.forEach(function (x) {
      ul.append(h("li", { class: x.err ? "error" : "" }, x.name + (x.err ? " — " + x.err : x.id ? " ✓" : " — wysyłanie…"),
        h("button", { type: "button", class: "linkbtn", "aria-label": "Usuń " + x.name, onclick: function () {
          state.attached = state.attached.filter(function (y) { return y !== x; }); schedule();
        } }, "×")));
    });
  }

  /** Files from the console, as the widget does: uploaded first, then named in the send. */
  async function attachFiles(files) {
    var id = state.current;
    if (id == null) return;
    Array.from(files).forEach(function (file) {
      var x = { name: file.name };
      state.attached.push(x);
      upload(id, x, file, true);
    });
    schedule();
  }

  async function upload(id, x, file, retry) {
    var data = new FormData();
    data.append("file", file, file.name);
    try {
      var res = await fetch("/api/tickets/" + id + "/attachments", { method: "POST", body: data,
        headers: { Authorization: "Bearer " + await conn.getToken() } });
      if (res.status === 401 && retry) { conn.token = null; return upload(id, x, file, false); }
      if (res.status === 201) x.id = (await res.json()).id;
      else x.err = res.status === 413 ? "za duży plik" : res.status === 415 ? "niedozwolony typ pliku" : "nie udało się wysłać";
    } catch (e) { x.err = "nie udało się wysłać"; }
    schedule();
  }

  var TEAM_STATUS = { online: "dostępna/y", away: "zaraz wraca" };

  function renderContext(t) {
    var ul = $("shop-tickets");
    var others = (state.shopTickets.get(t.shop) || []).filter(function (o) { return o.id !== t.id; });
    var key = JSON.stringify(others.map(function (o) { return [o.id, o.status, o.title]; }));
    if (ul.dataset.key !== key) {
      ul.dataset.key = key;
      ul.textContent = "";
      if (!others.length) ul.append(h("li", { class: "muted", text: "brak" }));
      others.forEach(function (o) {
        ul.append(h("li", null, h("button", { type: "button", "data-ticket": o.id, onclick: function () {
          if (!state.tickets.has(o.id)) state.tickets.set(o.id, o);
          openTicket(o.id);
        } }, "#" + o.id + " " + o.title + " · " + (STATUS[o.status] || o.status) + " · " + fmt(o.created_at, "at"))));
      });
    }
    var rec = t.shop_record;
    var dl = $("shop-record");
    dl.textContent = "";
    if (rec) {
      [["Zgłoszone jako pilne", String(rec.claims)], ["Z tego obniżone przez wsparcie", String(rec.downgraded)],
        ["Fair use", rec.penalized ? "obniżony priorytet (zawyża pilność)" : "bez zastrzeżeń"]].forEach(function (r) {
        dl.append(h("dt", { text: r[0] }), h("dd", { text: r[1] }));
      });
    } else dl.append(h("dt", { text: "—" }));
    var team = $("team");
    team.textContent = "";
    var online = Array.from(state.team.entries()).filter(function (e) { return e[1] !== "offline" && (!state.me || e[0] !== state.me.id); });
    if (!online.length) team.append(h("li", { class: "muted", text: "nikt poza Tobą (o ile wiadomo)" }));
    online.forEach(function (e) {
      team.append(h("li", { class: e[1] }, (state.names.get(e[0]) || e[0]) + " · " + (TEAM_STATUS[e[1]] || e[1])));
    });
  }

  // ------------------------------------------------------------------ alerts
  function alertPrefs() {
    var prefs = { new_ticket: true, customer_message: true, assigned: true };
    try { Object.assign(prefs, JSON.parse(localStorage.getItem(ALERTS_KEY) || "{}")); } catch (e) { /* defaults */ }
    return prefs;
  }

  /** Away from the console: its tab hidden or its window not focused. */
  function away() { return document.hidden || !document.hasFocus(); }

  function renderTitle() { document.title = (state.alertCount ? "(" + state.alertCount + ") " : "") + baseTitle; }

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      audio = audio || new Ctx();
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound: the notification and the title still tell */ }
  }

  /**
   * Tell the agent of something while it is away from the console (see the file's head):
   * kind is one of ALERT_KINDS (each switched on or off in "Powiadomienia"). True when alerted.
   */
  function notify(kind, title, body, ticketId) {
    if (!alertPrefs()[kind] || !away()) return false;
    state.alertCount += 1;
    renderTitle();
    beep();
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        var n = new Notification(title, { body: body || "", tag: kind + ":" + (ticketId == null ? "" : ticketId) });
        n.onclick = function () { window.focus(); if (ticketId != null) openTicket(ticketId); n.close(); };
      } catch (e) { /* some browsers allow notifications only from a service worker */ }
    }
    return true;
  }

  function backFromAway() {
    if (away() || !state.alertCount) return;
    state.alertCount = 0;
    renderTitle();
  }

  function mine(t) {
    var depts = (state.me && state.me.departments) || [];
    return !depts.length || depts.indexOf(t.department) >= 0;
  }

  function alertAssigned(id, by) {
    if (id == null || state.alerted.has("assigned:" + id)) return;
    var when = state.assigning.get(id);
    if (when && Date.now() - when < 10000) return; // this agent took it itself
    state.alerted.add("assigned:" + id);
    var t = state.tickets.get(id) || {};
    notify("assigned", "Przypisano Ci zgłoszenie #" + id, (t.title || "") + (by ? " · przez " + by : ""), id);
  }

  /** A pushed ticket frame: a new ticket of my departments, an assignment to me, or news on my ticket. */
  function alertTicket(old, t) {
    if (!state.me) return;
    if (!old && active(t) && !queued(t) && mine(t) && t.created_at && Date.now() - Date.parse(t.created_at) < NEW_TICKET_MS) {
      notify("new_ticket", "Nowe zgłoszenie #" + t.id, t.title + " · " + (t.shop_name || t.shop || ""), t.id);
    }
    // An assignment to me is told by its own frame (`assigned`, with who did it); here only
    // forget it once the ticket is someone else's, so that a later one alerts again.
    if (t.assignee !== state.me.id) state.alerted.delete("assigned:" + t.id);
    // A ticket this console does not follow: its message frames do not come, its ticket frames do.
    // (Not the frame of the assignment itself: what it added to the thread is the assignment's note.)
    if (old && old.assignee === t.assignee && t.assignee === state.me.id && (t.last_seq || 0) > (old.last_seq || 0) &&
        !state.msgs.has(t.id)) {
      notify("customer_message", "Nowa wiadomość: " + t.title, "#" + t.id + " · " + (t.shop_name || t.shop || ""), t.id);
    }
  }

  function renderAlerts() {
    var enable = $("alerts-enable");
    enable.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  function renderSide() {
    var id = state.current;
    renderAlerts();
    $("side").hidden = id == null;
    if (id == null) return;
    var t = state.tickets.get(id) || {};
    renderContext(t);
    var c = t.context || {};
    var online = t.customer_online === true ? "tak, teraz" : t.customer_online === false ? "nie" : "nieznany";
    var rows = [
      ["Sklep", (t.shop_name || "—") + (t.shop ? " (" + t.shop + ")" : "")],
      ["Plan", t.plan ? h("span", { class: "plan plan-" + t.plan, text: PLAN[t.plan] || t.plan }) : "—"],
      ["Klient połączony", h("span", { class: "online-" + (t.customer_online == null ? "unknown" : t.customer_online), text: online })],
      ["Zgłaszający", t.created_by || "—"],
      ["Przeglądarka", ((c.browser || "") + " " + (c.browser_version || "")).trim() || "—"],
      ["Strona", c.page_url ? safeLink(c.page_url) : "—"],
      ["Kiedy wystąpiło", c.occurred_at ? fmt(c.occurred_at, "at") : "—"],
      ["Co już próbowano", c.steps_tried || "—"],
      ["Oczekiwania", c.expectations || "—"],
      ["Zamówienie", c.order_url ? safeLink(c.order_url) : "—"],
      ["Utworzone", fmt(t.created_at, "at")],
      ["Termin odpowiedzi", fmt(t.sla_due_at, "due")]
    ];
    renderCompleteness(c.completeness);
    var dl = $("customer");
    dl.textContent = "";
    rows.forEach(function (r) { dl.append(h("dt", { text: r[0] }), h("dd", null, r[1])); });
    var active = document.activeElement;
    [["act-status", t.status], ["act-severity", t.severity], ["act-department", t.department || ""],
      ["act-assignee", t.assignee || ""]].forEach(function (pair) {
      var el = $(pair[0]);
      if (el !== active) el.value = pair[1] || "";
      el.disabled = t.status === "closed";
    });
    $("assign-me").disabled = t.status === "closed";
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    $("signin-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var token = $("token-input").value.trim();
      if (token) signIn(token, false);
    });
    $("demo-signin").addEventListener("click", function () { signIn(null, true); });
    $("renew").addEventListener("submit", function (e) {
      e.preventDefault();
      var token = $("renew-token").value.trim();
      if (!token || !conn) return;
      if (!conn.ready) { $("renew-error").textContent = "Brak połączenia — spróbuj za chwilę."; return; }
      $("renew-error").textContent = "";
      conn.renew(token);
    });
    $("signout").addEventListener("click", signOut);
    $("presence").addEventListener("click", function () {
      state.presence = state.presence === "online" ? "away" : "online";
      var btn = $("presence");
      btn.setAttribute("aria-pressed", String(state.presence === "online"));
      btn.textContent = state.presence === "online" ? "Dostępna" : "Zaraz wracam";
      btn.className = "presence " + state.presence;
      send({ type: "presence", status: state.presence });
    });
    document.querySelectorAll("[data-tab]").forEach(function (b) {
      b.addEventListener("click", function () { showTab(b.dataset.tab); });
    });
    $("back").addEventListener("click", function () {
      var id = state.current;
      leaveTicket(id);
      state.current = null;
      render();
      var item = document.querySelector('#tickets [data-ticket="' + id + '"]');
      if (item) item.focus();
    });
    $("log").addEventListener("scroll", function () {
      var log = $("log");
      pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    });
    $("filter-department").addEventListener("change", function () { state.listLimit = INBOX_PAGE; list(); schedule(); });
    $("more-tickets").addEventListener("click", function () {
      state.listLimit += INBOX_PAGE;
      state.listLoading = true;
      list();
      schedule();
    });
    $("filter-unread").addEventListener("change", schedule);
    $("filter-status").addEventListener("change", function () {
      state.listLimit = INBOX_PAGE;
      if ($("filter-status").value) list();
      schedule();
    });
    $("composer").addEventListener("submit", function (e) { e.preventDefault(); reply(); });
    $("internal").addEventListener("change", function (e) { noteMode(e.target.checked); $("reply").focus(); });
    $("search").addEventListener("submit", function (e) { e.preventDefault(); search(); });
    ["search-department", "search-status"].forEach(function (id) {
      $(id).addEventListener("change", function () { if (state.search) search(); });
    });
    $("search-clear").addEventListener("click", function () { state.search = null; $("search-q").value = ""; schedule(); });
    $("reply").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); reply(); }
    });
    $("reply").addEventListener("input", function () {
      if (state.current == null) return;
      state.drafts[state.current] = $("reply").value;
      typingPing(state.current);
    });
    $("older").addEventListener("click", function () {
      var map = state.msgs.get(state.current);
      loadHistory(state.current, map && map.size ? Math.min.apply(null, Array.from(map.keys())) : undefined);
    });
    $("act-status").addEventListener("change", function (e) { update("status", e.target.value); });
    $("act-severity").addEventListener("change", function (e) { update("severity", e.target.value); });
    $("act-department").addEventListener("change", function (e) { update("department", e.target.value); });
    $("act-assignee").addEventListener("change", function (e) { update("assignee", e.target.value.trim()); });
    $("assign-me").addEventListener("click", function () {
      if (!state.me) return;
      state.assigning.set(state.current, Date.now());
      $("act-assignee").value = state.me.id;
      update("assignee", state.me.id);
    });
    $("act-assignee").addEventListener("change", function (e) {
      if (state.me && e.target.value.trim() === state.me.id) state.assigning.set(state.current, Date.now());
    });
    $("attach-file").addEventListener("change", function (e) { attachFiles(e.target.files); e.target.value = ""; });
    var prefs = alertPrefs();
    document.querySelectorAll("[data-alert]").forEach(function (box) {
      box.checked = !!prefs[box.dataset.alert];
      box.addEventListener("change", function () {
        var now = alertPrefs();
        now[box.dataset.alert] = box.checked;
        try { localStorage.setItem(ALERTS_KEY, JSON.stringify(now)); } catch (e) { /* this page only */ }
      });
    });
    $("alerts-enable").addEventListener("click", function () {
      // Asked from the click (browsers refuse a prompt without a gesture); the sound is unlocked by it too.
      try { var Ctx = window.AudioContext || window.webkitAudioContext; if (Ctx && !audio) audio = new Ctx(); } catch (e) { /* no sound */ }
      if ("Notification" in window) Notification.requestPermission().then(renderAlerts, renderAlerts);
    });
    document.addEventListener("visibilitychange", maybeRead);
    document.addEventListener("visibilitychange", backFromAway);
    window.addEventListener("focus", backFromAway);
    setInterval(function () {
      var now = Date.now();
      state.typing.forEach(function (v, id) { if (v.until <= now) { state.typing.delete(id); schedule(); } });
      renderRenew();
    }, 1000);
  }

  function boot() {
    wire();
    var params = new URLSearchParams(location.search);
    var fragment = new URLSearchParams(location.hash.slice(1));
    var notice = "";
    if (params.has("token")) {
      // Not accepted: a query string reaches server and proxy logs, history and Referer headers.
      params.delete("token");
      notice = "Token w adresie (?token=) nie jest przyjmowany — wklej go tutaj.";
    }
    var hashToken = fragment.get("token");
    if (hashToken || notice) {
      // Keep the token out of the address bar, history and screenshots.
      history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    }
    if (hashToken) return signIn(hashToken, false);
    if (params.get("demo") === "1" && demoAvailable) return signIn(null, true);
    var saved = null;
    var demo = false;
    try { saved = sessionStorage.getItem(TOKEN_KEY); demo = sessionStorage.getItem(DEMO_KEY) === "1"; } catch (e) { /* ignore */ }
    if (demo && demoAvailable) return signIn(null, true);
    if (saved) return signIn(saved, false);
    showSignin(notice);
  }

  // What /agent/canned.js (canned replies in the composer and their panel) may read of the console.
  window.PomocConsole = {
    current: function () { return state.current; },
    ticket: function (id) { return state.tickets.get(id) || null; },
    departments: function () { return Object.assign({}, DEPARTMENTS); },
    lead: function () { return !!(state.me && state.me.lead); },
    token: function () { return conn ? conn.getToken() : Promise.reject(new Error("not signed in")); }
  };

  boot();
})();
