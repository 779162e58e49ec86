/*
 * Pomoc widget: the POMOC button of a shop admin panel and the support chat behind it; one
 * global (`Pomoc`), UI in a Shadow DOM. Configured by data-* on its <script> (mount, token-url,
 * lang, server) or `Pomoc.init({mount, getToken, tokenUrl, lang, server})`. Protocol: PROTOCOL.md.
 * Messages are kept per (ticket, seq): a replay shows nothing twice. `Pomoc.Connection` is
 * reused by the agent console.
 */
(function () {
"use strict";
if (window.Pomoc?.version) return; // loaded twice: the first copy rules

var VERSION = "1.0.0";
var SCRIPT = document.currentScript;
var SEVERITIES = ["critical", "major", "minor", "question", "suggestion"];
var TYPING_EVERY_MS = 2000;
var TYPING_SHOWN_MS = 5000;
var PING_EVERY_MS = 25000;
var STALE_AFTER_MS = 70000;
var HISTORY_PAGE = 30;
var MAX_FILE = 10485760; // 10 MB, the server's limit (else 413)
var TYPES = /^(image\/(png|jpeg|gif|webp)|application\/pdf|text\/plain)$/; // accepted (else 415)

// ---- messages: key: [Polish, English]
var CATALOGUE = {
  launcher: ["POMOC", "HELP"],
  launcherUnread: ["POMOC — masz nieprzeczytane odpowiedzi", "HELP — you have unread replies"],
  close: ["Zamknij", "Close"],
  back: ["Wróć do listy zgłoszeń", "Back to tickets"],
  yourTickets: ["Twoje zgłoszenia", "Your tickets"],
  noTickets: ["Nie masz jeszcze zgłoszeń. Opisz problem, a odpowiemy tutaj.", "You have no tickets yet. Describe a problem and we will answer here."],
  newTicket: ["Nowe zgłoszenie", "New ticket"],
  unreadN: ["{n} nowe", "{n} new"],
  unreadLabel: ["nieprzeczytane odpowiedzi: {n}", "unread replies: {n}"],
  connecting: ["Łączenie z pomocą…", "Connecting to support…"],
  offline: ["Brak połączenia — łączymy ponownie. Nic, co napiszesz, nie przepadnie.", "Offline — reconnecting. Nothing you type will be lost."],
  status_open: ["otwarte", "open"],
  status_waiting_on_customer: ["czeka na Twoją odpowiedź", "waiting for your reply"],
  status_resolved: ["rozwiązane", "resolved"],
  status_closed: ["zamknięte", "closed"],
  sev_critical: ["Krytyczny", "Critical"],
  sev_major: ["Poważny", "Major"],
  sev_minor: ["Drobny", "Minor"],
  sev_question: ["Pytanie", "Question"],
  sev_suggestion: ["Sugestia", "Suggestion"],
  def_critical: ["Błąd systemu, przez który sklep nie może sprzedawać ani obsługiwać zamówień. " +
    "Nie jest krytyczny błąd źle skonfigurowanej integracji, np. błędne klucze API Przelewy24 lub innej bramki płatności.",
    "A system error that stops the shop selling or handling orders. " +
    "A misconfigured integration, e.g. wrong Przelewy24 or other payment-gateway API keys, is not critical."],
  def_major: ["Ważna funkcja sklepu nie działa, ale sprzedaż jest nadal możliwa.",
    "An important function of the shop does not work, but selling is still possible."],
  def_minor: ["Funkcja działa niezgodnie z dokumentacją, ale istnieje obejście.",
    "A feature works differently from the documentation, but a workaround exists."],
  def_question: ["Pytanie o działanie funkcji lub wyjaśnienie dokumentacji.", "A question about how a feature works or about the documentation."],
  def_suggestion: ["Pomysł na nową funkcję lub ulepszenie.", "An idea for a new feature or an improvement."],
  onePerTicket: ["Jedno zgłoszenie = jeden problem.", "One ticket = one problem."],
  title: ["Tytuł", "Title"],
  titleHint: ["2–3 słowa, np. „Płatności nie działają”.", "2–3 words, e.g. “Payments failing”."],
  titleLong: ["Wystarczą 2–3 słowa — szczegóły wpisz w opisie.", "2–3 words are enough — put the details in the description."],
  body: ["Opis problemu", "Description"],
  bodyHint: ["Co się stało i gdzie?", "What happened, and where?"],
  severity: ["Priorytet", "Severity"],
  more: ["Dodatkowe informacje (opcjonalne, przyspieszają pomoc)", "More details (optional, they speed things up)"],
  occurredAt: ["Kiedy to się stało?", "When did it happen?"],
  stepsTried: ["Co już próbowano?", "What have you tried already?"],
  expectations: ["Czego oczekujesz?", "What do you expect?"],
  orderUrl: ["Link do zamówienia", "Link to the order"],
  autoInfo: ["Do zgłoszenia dołączymy automatycznie:", "Attached automatically:"],
  browser: ["Przeglądarka", "Browser"],
  page: ["Strona", "Page"],
  time: ["Czas", "Time"],
  submit: ["Wyślij zgłoszenie", "Send ticket"],
  submitting: ["Wysyłanie…", "Sending…"],
  cancel: ["Anuluj", "Cancel"],
  required: ["Uzupełnij tytuł i opis problemu.", "Fill in the title and the description."],
  live: ["Konsultant jest teraz dostępny.", "An agent is available now."],
  queued: ["Zgłoszenie czeka w kolejce do otwarcia: {at}.", "Your ticket waits in the queue until support opens: {at}."],
  answerBy: ["Odpowiemy najpóźniej {due}.", "We will answer {due} at the latest."],
  yourTurn: ["Czekamy na Twoją odpowiedź.", "We are waiting for your reply."],
  answerSoon: ["Odpowiemy w godzinach pracy wsparcia: {hours}.", "We will answer during support hours: {hours}."],
  closedNow: ["Wsparcie jest teraz nieczynne, najbliższe otwarcie: {at}. Godziny pracy: {hours}. Zgłoszenia krytyczne obsługujemy całą dobę.",
    "Support is closed now and opens {at}. Hours: {hours}. Critical tickets are handled around the clock."],
  hours: ["pon.–pt. 9:00–17:00", "Mon–Fri 9:00–17:00"],
  queuedShort: ["w kolejce", "queued"],
  // As the acknowledgment writes dates; Polish puts the weekday in the genitive after "do" (daysTo).
  due: ["do {dayTo} {date}, {time}", "by {day} {date}, {time}"],
  at: ["{day} {date} o {time}", "{day} {date} at {time}"],
  days: ["poniedziałek wtorek środa czwartek piątek sobota niedziela", "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"],
  daysTo: ["poniedziałku wtorku środy czwartku piątku soboty niedzieli"],
  daysShort: ["pon. wt. śr. czw. pt. sob. niedz.", "Mon Tue Wed Thu Fri Sat Sun"],
  chars: ["{n} / {max} znaków", "{n} / {max} characters"],
  over: ["skróć o {n}", "shorten by {n}"],
  older: ["Pokaż wcześniejsze wiadomości", "Show earlier messages"],
  loading: ["Wczytywanie…", "Loading…"],
  typing: ["{name} pisze…", "{name} is typing…"],
  messageLabel: ["Twoja wiadomość", "Your message"],
  placeholder: ["Napisz wiadomość… (Enter wysyła, Shift+Enter nowa linia)", "Write a message… (Enter sends, Shift+Enter new line)"],
  send: ["Wyślij", "Send"],
  pending: ["wysyłanie…", "sending…"],
  failed: ["nie wysłano", "not sent"],
  retry: ["Ponów", "Retry"],
  edit: ["Edytuj", "Edit"],
  discard: ["Usuń", "Discard"],
  markResolved: ["Problem rozwiązany", "Problem solved"],
  askSolved: ["Czy problem został rozwiązany?", "Has the problem been solved?"],
  yes: ["Tak", "Yes"],
  no: ["Nie", "No"],
  rate: ["Oceń naszą pomoc (1–5)", "Rate our help (1–5)"],
  rateNote: ["Komentarz (opcjonalnie)", "Comment (optional)"],
  resolvedNote: ["Zgłoszenie jest rozwiązane. Jeśli problem wróci, po prostu napisz.",
    "This ticket is resolved. If the problem comes back, just write."],
  closedNote: ["Zgłoszenie jest zamknięte i tylko do odczytu. Nowy problem? Otwórz nowe zgłoszenie.",
    "This ticket is closed and read-only. A new problem? Open a new ticket."],
  you: ["Ty", "You"],
  support: ["wsparcie", "support"],
  conversation: ["Rozmowa w zgłoszeniu {title}", "Conversation in ticket {title}"],
  announce: ["Nowa wiadomość od {name}: {body}", "New message from {name}: {body}"],
  err_rate_limited: ["Za dużo wiadomości naraz — spróbuj za chwilę.", "Too many messages at once — try again in a moment."],
  err_closed_ticket: ["To zgłoszenie jest zamknięte.", "This ticket is closed."],
  err_too_large: ["Tekst jest za długi.", "The text is too long."],
  err_unavailable: ["Serwis jest chwilowo niedostępny — ponawiamy.", "The service is briefly unavailable — retrying."],
  err_other: ["Coś poszło nie tak: {message}", "Something went wrong: {message}"],
  attach: ["Dołącz plik", "Attach a file"],
  attachHint: ["Możesz też wkleić zrzut ekranu (Ctrl+V) albo przeciągnąć tu plik.", "You can also paste a screenshot (Ctrl+V) or drop a file here."],
  remove: ["Usuń {name}", "Remove {name}"],
  uploading: ["wysyłanie {n}%", "uploading {n}%"],
  e413: ["plik jest za duży (maks. 10 MB)", "the file is too large (max. 10 MB)"],
  e415: ["niedozwolony typ — dołącz obraz (PNG, JPG, GIF, WebP), PDF albo plik tekstowy",
    "type not allowed — attach an image (PNG, JPG, GIF, WebP), a PDF or a text file"],
  eUp: ["nie udało się wysłać pliku", "the file could not be uploaded"],
  eMax: ["najwyżej 10 plików naraz", "at most 10 files at once"],
  waitUp: ["Poczekaj, aż pliki się wyślą.", "Wait until the files are uploaded."],
  helpTitle: ["Może to pomoże:", "This may help:"],
  solved: ["To rozwiązało mój problem", "This solved my problem"],
  thanks: ["Cieszymy się, że artykuł pomógł! Zgłoszenie nie zostało wysłane.", "Glad the article helped! No ticket was sent."]
};
var LANGS = ["pl", "en"];

function translator(lang) {
  var i = LANGS.indexOf(lang);
  return (key, vars) => {
    var text = CATALOGUE[key] || [key];
    return (text[i] ?? text[0]).replace(/\{(\w+)\}/g, (_, name) => vars?.[name] ?? "");
  };
}

// ---- small tools
// randomUUID needs a secure context; any unique id will do.
function uuid() {
  return crypto.randomUUID?.() ??
    Date.now().toString(36) + Array.from(crypto.getRandomValues(new Uint32Array(3)), (x) => "-" + x.toString(36)).join("");
}

/** h("b.x", {onclick: fn}, "text", child): element builder; ".x" after the tag are its classes. */
function h(tag, attrs, ...children) {
  var [name, ...classes] = tag.split(".");
  var el = document.createElement(name);
  if (classes[0]) el.className = classes.join(" ");
  if (name === "button") el.type = "button"; // "submit" only when asked
  for (var key in attrs) {
    var value = attrs[key];
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.filter(Boolean)); // null, false, "" and 0 are left out
  return el;
}

function fmtSize(n) { return n < 1048576 ? Math.ceil(n / 1024) + " KB" : (n / 1048576).toFixed(1) + " MB"; }

/** The first browser whose token the user agent has (Edge's includes Chrome's). */
function browserInfo() {
  var known = [["Edge", "Edg"], ["Opera", "OPR"], ["Samsung Internet", "SamsungBrowser"], ["Firefox", "Firefox"], ["Chrome", "Chrome"],
    ["Safari", "Version"]];
  for (var [name, token] of known) {
    var m = navigator.userAgent.match(token + "/([\\d.]+)");
    if (m) return { name: name, version: m[1] };
  }
  return { name: "unknown", version: "" };
}

function serverFromScript(script) {
  try { return new URL(script.src, location.href).origin; } catch { return location.origin; } // no script: inline
}

async function fetchToken(url) {
  var res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new Error("token endpoint answered " + res.status);
  if (/json/.test(res.headers.get("content-type"))) return (await res.json()).token;
  return (await res.text()).trim();
}

// ---- connection
/**
 * One lasting WebSocket to /ws: hello on each (re)connect, capped jittered backoff, a fresh
 * token before expiry and after 4401 (`auth`), keepalive pings. Options: url, token, renew,
 * hello, onFrame, onState, onClose.
 */
function Connection(options) {
  this.options = options;
  this.ws = this.token = this.timer = this.pinger = null;
  this.ready = false;
  this.stopped = true;
  this.attempt = this.lastFrameAt = 0;
  this._online = () => this.reconnectNow();
}
var C = Connection.prototype;

C.start = function () {
  if (!this.stopped) return;
  this.stopped = false;
  window.addEventListener("online", this._online);
  this._connect();
};

C.stop = function () {
  this.stopped = true;
  window.removeEventListener("online", this._online);
  clearTimeout(this.timer);
  clearTimeout(this.renewer);
  clearInterval(this.pinger);
  this.ws?.close(1000, "bye");
  this.ws = null;
  this.ready = false;
};

/** Retry now (back online, or asked to). */
C.reconnectNow = function () {
  if (this.stopped || this.ws) return;
  clearTimeout(this.timer);
  this._connect();
};

C.send = function (frame) {
  if (!this.ready || !this.ws) return false;
  this.ws.send(JSON.stringify(frame));
  return true;
};

C._state = function (state) { this.options.onState?.(state); };

/** The token, or a fresh one from the provider. */
C.getToken = async function () {
  return this.token || (this.token = await this.options.token());
};

/** Renew the token on this socket: a fresh one from the provider unless given. */
C.renew = async function (token) {
  try { token ||= await this.options.token(); } catch { /* then 4401 at expiry */ }
  if (token) this.send({ type: "auth", token: this.next = token, ref: "auth" });
};

C._connect = async function () {
  this.timer = null;
  this._state("connecting");
  var token, ws;
  try {
    token = await this.getToken();
    if (!token) throw new Error("empty token");
  } catch {
    this.token = null;
    return this._retry();
  }
  if (this.stopped) return;
  try { ws = this.ws = new WebSocket(this.options.url, "pomoc.v1.json"); } catch { return this._retry(); }
  // No welcome within 15 s: the socket is dead.
  var handshake = setTimeout(() => { if (this.ws === ws && !this.ready) ws.close(4000, "no welcome"); }, 15000);
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: token, ...this.options.hello?.() }));
  ws.onmessage = (event) => {
    if (this.ws !== ws) return;
    var frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    this.lastFrameAt = Date.now();
    if (frame.type === "welcome") {
      clearTimeout(handshake);
      this.ready = true;
      this.attempt = 0;
      this._keepalive();
      this._state("online");
    }
    if (frame.type === "authenticated") this.token = this.next;
    // A minute before expiry (halfway for short ones), by the server's clock; setTimeout caps at 23 days.
    var s = frame.expires_in;
    if (s >= 0 && this.options.renew !== false) {
      clearTimeout(this.renewer);
      this.renewer = setTimeout(() => this.renew(), Math.min(Math.max(s - 60, s / 2), 2e6) * 1000);
    }
    this.options.onFrame(frame);
  };
  ws.onclose = (event) => {
    clearTimeout(handshake);
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    clearInterval(this.pinger);
    if (event.code === 4401) this.token = null; // expired or revoked
    this.options.onClose?.(event.code, event.reason);
    this._retry();
  };
};

C._retry = function () {
  if (this.stopped) return;
  // Doubles from 0.5 s up to 30 s; jitter spreads reconnecting tabs.
  var ceiling = Math.min(30000, 500 * 2 ** this.attempt++);
  this._state("offline");
  this.timer = setTimeout(() => this._connect(), ceiling / 2 + Math.random() * ceiling / 2);
};

C._keepalive = function () {
  clearInterval(this.pinger);
  this.pinger = setInterval(() => {
    if (!this.ws) return;
    if (Date.now() - this.lastFrameAt > STALE_AFTER_MS) this.ws.close(4000, "stale");
    else this.send({ type: "ping" });
  }, PING_EVERY_MS);
};

// ---- styles
var CSS = `
:host{all:initial!important;display:inline-block!important;position:relative!important;vertical-align:middle!important}
:host([data-floating]){position:fixed!important;right:20px!important;bottom:20px!important;z-index:2147483000!important}
.root{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1d2733;text-align:left;letter-spacing:normal}
*{box-sizing:border-box}
[hidden]{display:none!important}
button,input,select,textarea{font:inherit;color:inherit;margin:0}
button{cursor:pointer}
:focus-visible{outline:2px solid #1565c0;outline-offset:2px}
.icon,.primary,.secondary,.ticket,input,select,textarea,.def,details,.auto,.note,.chip,.sug,.att img{border-radius:6px}
.row h3,.def,.auto,.status,.link,.msg.system,.note{font-size:12.5px}
.row h3,.ticket .m,.empty,.hint,.auto dt,.msg.system,.typing,.theirs .meta{color:#5b6b7c}
.head h2,.primary,.ticket .t,label,.label,summary,.sug a,.att a{font-weight:600}
.head,.row,.status,.chip,.composer{display:flex;align-items:center;gap:8px}
.icon,.link,.x,.retry{border:0;background:none;padding:0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launcher{display:inline-flex;align-items:center;gap:6px;height:34px;padding:0 14px;border:1px solid #c9d3df;border-radius:17px;background:#fff;color:#17324d;font-weight:700;letter-spacing:.06em;font-size:13px}
.launcher:hover{background:#f1f5fa}
.launcher[aria-expanded=true]{background:#17324d;color:#fff;border-color:#17324d}
:host([data-floating]) .launcher{height:46px;border-radius:23px;box-shadow:0 4px 16px #0003}
.badge{display:inline-grid;place-items:center;width:18px;height:18px;border-radius:50%;background:#f57c00;color:#fff;font-size:12px;font-weight:800;letter-spacing:0}
.panel{position:fixed;z-index:2147483001;display:flex;flex-direction:column;background:#fff;border:1px solid #d5dde6;border-radius:10px;box-shadow:0 12px 36px #17324d38;overflow:hidden}
.head{padding:10px 12px;background:#17324d;color:#fff}
.head h2{flex:1;margin:0;font-size:15px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.icon{color:#fff;width:28px;height:28px;font-size:18px;line-height:1}
.icon:hover{background:#fff3}
.banner{padding:8px 12px;background:#fdecea;color:#8a1c12;font-size:13px;border-bottom:1px solid #f5c6c0}
.banner.info{background:#eef3f8;color:#34495e;border-color:#d5dde6}
.body,.log{flex:1;overflow:auto;min-height:0}
.pad{padding:12px}
.row{justify-content:space-between;margin-bottom:10px}
.row h3{margin:0;font-weight:400}
.primary{border:0;background:#1565c0;color:#fff;padding:8px 14px;white-space:nowrap}
.primary:hover{background:#0d47a1}
.primary[disabled]{background:#90a4ae;cursor:default}
.secondary{border:1px solid #c9d3df;background:#fff;padding:7px 12px;white-space:nowrap}
.tickets{list-style:none;margin:0;padding:0}
.ticket{display:block;width:100%;text-align:left;border:1px solid #e1e7ee;border-left:4px solid #c9d3df;background:#fff;padding:9px 10px;margin-bottom:8px}
.ticket:hover{background:#f6f8fb}
.ticket .t{display:flex;justify-content:space-between;gap:8px}
.ticket .m{font-size:12px;margin-top:2px}
.ticket.unread{border-color:#ffcc80;border-left-color:#f57c00;background:#fff3e0}
.ticket.unread .t{color:#a63800}
.pill{flex:none;border-radius:9px;background:#b84d00;color:#fff;font-size:11px;font-weight:700;padding:1px 7px}
.empty{margin:16px 0}
label,.label{display:block;margin:10px 0 4px}
input,select,textarea{display:block;width:100%;border:1px solid #c3cdd8;padding:7px 9px;background:#fff}
textarea{resize:vertical;min-height:70px}
.hint{font-size:12px;margin-top:3px}
.warn{color:#b45309}
.def{margin-top:6px;padding:7px 9px;background:#f1f5fa}
.def.crit{background:#fdecea}
details{margin-top:12px;border:1px solid #e1e7ee;padding:6px 10px}
.auto{margin-top:12px;padding:8px 10px;background:#f6f8fb;color:#34495e}
.auto dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:4px 0 0}
.auto dd{margin:0;word-break:break-all}
.error{color:#b71c1c;margin-top:8px}
.actions{display:flex;gap:8px;justify-content:flex-end;margin-top:12px}
.chat{display:flex;flex-direction:column;height:100%}
.status{padding:7px 12px;background:#eef3f8;border-bottom:1px solid #e1e7ee}
.status.live{background:#e8f5e9;color:#1b5e20}
.status.queued{background:#fff8e1;color:#7a4d00}
.status span{flex:1}
.link{color:#1565c0;text-decoration:underline}
.log{padding:10px 12px;display:flex;flex-direction:column;gap:8px;min-height:160px}
.older{align-self:center}
.msg{max-width:85%;padding:7px 10px;border-radius:10px;background:#f1f5fa;align-self:flex-start}
.msg.mine{align-self:flex-end;background:#1565c0;color:#fff}
.msg.system{align-self:center;background:none;text-align:center;padding:2px 6px}
.meta{font-size:11px;margin-bottom:2px}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
.msg.pending{background:#fff;color:#1565c0;border:1px dashed}
.msg.failed{background:#fdecea;color:#8a1c12}
.retry{margin-left:6px;border:1px solid;border-radius:4px;font-size:11px;padding:0 6px}
.typing{min-height:20px;padding:0 12px;font-size:12px;font-style:italic}
.note{margin:0 12px 8px;padding:8px 10px;background:#e8f5e9;color:#1b5e20}
.pad .note{margin:0 0 10px}
.ask fieldset{border:0;padding:0;display:flex;gap:10px}
.note.closed,.note.off{background:#eceff1;color:#37474f}
.composer{align-items:flex-end;padding:10px 12px;border-top:1px solid #e1e7ee}
.composer textarea{min-height:40px;max-height:140px}
.files{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.chat>.files,.chat>.hint{margin:0 12px}
.chip{gap:6px;max-width:100%;border:1px solid #c9d3df;padding:3px 6px;font-size:12px;background:#f6f8fb}
.chip.bad{border-color:#f5c6c0;background:#fdecea;color:#8a1c12}
.chip img{width:32px;height:32px;object-fit:cover;border-radius:3px}
.x{width:22px;height:22px;font-size:16px}
.drag{outline:2px dashed #1565c0}
.sug{margin-top:6px;padding:7px 9px;border:1px solid #e1e7ee}
.sug a{color:#1565c0}
.att{display:flex;flex-wrap:wrap;gap:6px;margin-top:4px}
.att a{color:inherit}
.att img{display:block;max-width:160px;max-height:120px}`;

// ---- the widget
function Widget(config) {
  this.config = config;
  this.t = translator(config.lang);
  // By ticket id: tickets, msgs (seq -> message), seen (the highest gapless seq, for resume),
  // more (older history exists), unread, counted (where the server's unread counts stand),
  // readSent (the highest seq sent in `read`), typing ({name, until}); pending by client_id.
  ["tickets", "msgs", "seen", "more", "unread", "counted", "readSent", "pending", "typing"].forEach((k) => this[k] = new Map());
  this.drafts = {}; // ticket id -> text
  this.files = {}; // "new" (the form) or ticket id -> [file]
  this.sug = []; // help articles for the form
  this.form = { severity: "question" };
  this.openReq = this.me = this.current = null; // openReq: awaiting its ticket
  this.typingSentAt = this.agentsOnline = this.skew = 0; // skew: the server's clock minus ours
  this.service = { open: true };
  this.limits = {};
  this.state = "connecting";
  this.view = "list";
  this.formError = this.chatError = "";
  // Flags start undefined: isOpen, everOnline, serverBadge, restored, scheduled, loadingOlder.
}
var W = Widget.prototype;

W.start = function () {
  var config = this.config;
  var host = this.host = document.createElement("div");
  host.setAttribute("data-pomoc", VERSION);
  var mount = null;
  try { mount = typeof config.mount === "string" ? document.querySelector(config.mount) : config.mount; } catch { /* a bad selector */ }
  if (mount) mount.append(host);
  else { host.setAttribute("data-floating", ""); document.body.append(host); }
  this.root = h("div.root", { lang: config.lang });
  host.attachShadow({ mode: "open" }).append(h("style", { text: CSS }), this.root);
  this.buildShell();

  var t = config.token, get = t?.call ? t : config.tokenUrl && (() => fetchToken(config.tokenUrl));
  if (!t && !get) throw new Error("Pomoc: give getToken, a token or a token URL (data-token-url)");
  this.conn = new Connection({
    url: config.server.replace(/^http/, "ws") + "/ws",
    token: get || (async () => t),
    renew: !!get,
    hello: () => ({ resume: Object.fromEntries(this.seen), lang: config.lang }),
    onFrame: (f) => { this["on_" + f.type]?.(f); this.schedule(); },
    onState: (state) => { this.state = state; this.schedule(); }
  });
  this._onVisible = () => this.maybeRead();
  this._onResize = () => this.isOpen && this.position();
  document.addEventListener("visibilitychange", this._onVisible);
  window.addEventListener("resize", this._onResize);
  this.root.addEventListener("keydown", (e) => { if (e.key === "Escape" && this.isOpen) { e.stopPropagation(); this.close(); } });
  this.conn.start();
};

W.destroy = function () {
  this.conn.stop();
  document.removeEventListener("visibilitychange", this._onVisible);
  window.removeEventListener("resize", this._onResize);
  this.host.remove();
};

// ---- frames in
W.on_welcome = function (f) {
  this.me = f.principal;
  this.everOnline = true;
  this.agentsOnline = f.agents_online || 0;
  this.service = f.service || this.service;
  this.week = f.hours;
  this.limits = f.limits || {};
  this.skew = Date.parse(f.now) - Date.now() || 0;
  f.tickets?.forEach((t) => {
    this.upsert(t);
    this.counted.set(t.id, t.last_seq || 0);
    if (!this.seen.has(t.id)) this.seen.set(t.id, t.last_seq || 0);
  });
  this.unread = new Map(Object.entries(f.unread || {}).map(([k, n]) => [+k, n]));
  this.serverBadge = !!f.badge;
  f.resume_incomplete?.forEach((id) => {
    // More was missed than the server replays: reload the thread.
    this.msgs.delete(id);
    this.more.delete(id);
    this.seen.set(id, this.tickets.get(id)?.last_seq || 0);
  });
  if (!this.restored) this.restore();
  if (this.openReq) this.conn.send(this.openReq);
  this.pending.forEach((p) => { if (p.state === "pending") this.transmit(p); });
  if (this.view === "chat" && !this.more.has(this.current)) this.loadHistory(this.current);
  this.maybeRead();
};

W.on_ticket = function (f) {
  var t = f.ticket;
  this.upsert(t);
  if (this.openReq && f.ref === this.openReq.ref) {
    // Our new ticket: its opener has read it (server-side too).
    this.counted.set(t.id, t.last_seq || 0);
    this.openReq = null;
    this.resetForm();
    this.showChat(t.id);
  }
};

W.on_message = function (f) { this.insert(f, true); };

W.on_history = function (f) {
  var list = f.messages || [];
  list.forEach((m) => this.insert({ ticket: f.ticket, ...m }));
  if (/^hist:/.test(f.ref)) this.more.set(f.ticket, !!f.more);
  var last = list.at(-1);
  // The newest page ends the thread: seen moves there.
  if (/:tail$/.test(f.ref) && last?.seq > (this.seen.get(f.ticket) || 0)) this.seen.set(f.ticket, last.seq);
  this.loadingOlder = false;
  this.maybeRead();
};

W.on_ack = function (f) {
  var p = this.pending.get(f.client_id);
  if (!p) return;
  var me = this.me;
  this.pending.delete(f.client_id);
  this.insert({ ticket: f.ticket, seq: f.seq, client_id: f.client_id, body: p.body, att: p.att,
    created_at: new Date().toISOString(), author: { kind: me.role, id: me.id, name: me.name } });
  this.save();
};

W.on_unread = function (f) {
  Object.entries(f.tickets || {}).forEach(([k, n]) => this.unread.set(+k, n));
  this.serverBadge = !!f.badge;
  if (!f.badge) this.unread.forEach((n, id) => this.unread.set(id, 0));
};

W.on_typing = function (f) {
  if (this.isMine({ author: f.who })) return;
  this.typing.set(f.ticket, { name: f.who?.name || this.t("support"), until: Date.now() + TYPING_SHOWN_MS });
  setTimeout(() => this.schedule(), TYPING_SHOWN_MS + 50); // then hidden, unless typed again
};

W.on_presence = function (f) { this.agentsOnline = f.agents_online ?? this.agentsOnline; };

W.on_error = function (f) {
  var ref = String(f.ref ?? "");
  var message = CATALOGUE["err_" + f.code] ? this.t("err_" + f.code) : this.t("err_other", { message: f.message });
  var p = this.pending.get(ref.slice(5));
  if (ref === this.openReq?.ref) {
    this.openReq = null;
    this.formError = message;
  } else if (/^(upd|rate):/.test(ref)) {
    this.chatError = message;
  } else if (ref.startsWith("send:") && p) {
    // Sent again after the pause unless edited or discarded.
    var again = () => this.pending.get(p.client_id) === p && this.transmit(p);
    if (/unavailable|rate_limited/.test(f.code)) setTimeout(again, 1000 * (f.retry_after || 2));
    if (f.code === "unavailable") return;
    p.state = "failed";
    p.code = f.code;
    this.chatError = message;
    if (f.code === "closed_ticket") this.upsert({ id: p.ticket, status: "closed" });
  }
};

// ---- state
W.upsert = function (t) {
  var merged = { ...this.tickets.get(t.id), ...t };
  this.tickets.set(t.id, merged);
  if (typeof t.unread === "number") this.unread.set(t.id, Math.max(this.unread.get(t.id) || 0, t.unread));
  if (merged.status === "closed") this.pending.forEach((p) => { if (p.ticket === t.id && p.state === "pending") p.state = "failed"; });
};

W.isMine = function (m) { return !!this.me && m.author?.kind === this.me.role && m.author.id === this.me.id; };

W.now = function () { return Date.now() + this.skew; };

W.active = function (tk) { return /^(open|waiting_on_customer)$/.test(tk.status); };

/** Held in the off-hours queue; a closed or resolved ticket is not. */
W.queued = function (tk) { return this.active(tk) && new Date(tk.queued_until) > this.now(); };

W.closedNow = function () { return !this.service.open && new Date(this.service.next_open) > this.now(); };

W.viewing = function (id) {
  return this.isOpen && this.view === "chat" && this.current === id && document.visibilityState !== "hidden";
};

/** Store a message once per (ticket, seq); `live` when it just happened. */
W.insert = function (m, live) {
  var id = m.ticket;
  var map = this.msgs.get(id);
  if (!map) this.msgs.set(id, map = new Map());
  // A duplicate, unless it adds attachment links our copy lacks.
  if (map.has(m.seq) && !(m.attachments && !map.get(m.seq).attachments)) return;
  map.set(m.seq, m);
  if (this.isMine(m)) this.pending.delete(m.client_id);
  // Each ticket's messages arrive in order without gaps (seqs skip private notes).
  var s = this.seen.get(id) || 0;
  while (map.has(s + 1)) s++;
  this.seen.set(id, live && m.seq > s ? m.seq : s);
  if (!live) return;
  if (!this.tickets.has(id)) this.upsert({ id: id, title: "#" + id, status: "open" });
  var t = this.tickets.get(id);
  t.last_seq = Math.max(t.last_seq || 0, m.seq);
  if (this.isMine(m)) return;
  this.typing.delete(id);
  if (this.viewing(id)) return this.maybeRead();
  // At least one; `unread` frames carry exact numbers.
  if (m.seq > (this.counted.get(id) || 0)) this.unread.set(id, Math.max(this.unread.get(id) || 0, 1));
  if (m.author.kind !== "system") this.announce(this.t("announce", { name: this.authorName(m), body: String(m.body).slice(0, 140) }));
};

W.maybeRead = function () {
  var id = this.current;
  var map = this.msgs.get(id);
  if (!this.viewing(id) || !this.conn.ready || !map?.size) return;
  var top = Math.max(...map.keys());
  if (top <= (this.readSent.get(id) || 0) && !(this.unread.get(id) > 0)) return;
  this.readSent.set(id, top);
  this.unread.set(id, 0);
  this.conn.send({ type: "read", ticket: id, seq: top });
};

W.loadHistory = function (id, before) {
  this.conn.send({ type: "history", ticket: id, before_seq: before, limit: HISTORY_PAGE, ref: "hist:" + id + ":" + (before || "tail") });
};

W.transmit = function (p) {
  p.state = "pending";
  this.conn.send({ type: "send", ticket: p.ticket, body: p.body, client_id: p.client_id, ref: "send:" + p.client_id,
    attachments: p.att?.map((a) => a.id) });
};

W.sendMessage = function (id, body, att) {
  var p = { ticket: id, body: body, client_id: uuid(), att: att.length ? att : null };
  this.pending.set(p.client_id, p);
  delete this.drafts[id];
  this.chatError = "";
  this.transmit(p);
  this.save();
};

/** An unsent message back into the composer (or the new ticket's form), or discarded. */
W.drop = function (p, edit) {
  var input = this.input;
  this.pending.delete(p.client_id);
  this.chatError = "";
  if (edit && this.tickets.get(p.ticket)?.status === "closed") {
    this.form.body = p.body;
    this.showNew();
  } else if (edit) {
    input.value = this.drafts[p.ticket] = [p.body, input.value].filter(Boolean).join("\n");
    this.files[p.ticket] = [...(p.att || []), ...(this.files[p.ticket] || [])];
    this.count(this.countEl, input.value);
    input.focus();
  }
  this.save();
};

W.resetForm = function () {
  this.form = { severity: "question" };
  this.files.new = [];
  this.sug = [];
  this.save();
};

W.openTicket = function () {
  var f = this.form;
  var att = this.ready("new");
  var filled = f.title?.trim() && f.body?.trim();
  if (!filled || !att || !this.count(this.bodyCount, f.body)) {
    this.formError = this.t(!att ? "waitUp" : filled ? "err_too_large" : "required");
    return;
  }
  var info = browserInfo();
  var context = { browser: info.name, browser_version: info.version, page_url: location.href };
  var when = new Date(f.occurred_at);
  if (f.occurred_at && !isNaN(when)) context.occurred_at = when.toISOString();
  ["steps_tried", "expectations", "order_url"].forEach((k) => { if (f[k]?.trim()) context[k] = f[k].trim(); });
  var id = uuid();
  this.openReq = { type: "open_ticket", title: f.title.trim(), body: f.body, severity: f.severity, context: context,
    client_id: id, ref: "open:" + id, attachments: att.map((a) => a.id) };
  this.formError = "";
  this.conn.send(this.openReq); // if offline, resent after welcome
  this.save();
};

// ---- attachments and help
W.api = function (path) { return this.config.server + path; };

/** The uploaded files of `key`; null while one still uploads. */
W.ready = function (key) {
  var list = this.files[key] || [];
  return list.some((x) => !x.id && !x.err) ? null : list.filter((x) => x.id);
};

/** Check and upload each file; its chip shows progress or the error. */
W.addFiles = function (key, files) {
  var list = this.files[key] ||= [];
  for (var file of files) {
    var type = file.type;
    var x = { name: file.name || "plik", size: file.size, content_type: type, pct: 0 };
    if (TYPES.test(type) && /^image/.test(type)) x.thumb = URL.createObjectURL(file);
    list.push(x);
    x.err = list.length > 10 ? "eMax" : file.size > MAX_FILE ? "e413" : type && !TYPES.test(type) ? "e415" : "";
    if (!x.err) this.upload(key, x, file, 1);
  }
  this.schedule();
};

// XMLHttpRequest, not fetch: it reports upload progress.
W.upload = async function (key, x, file, retry) {
  var xhr = x.xhr = new XMLHttpRequest();
  xhr.open("POST", this.api(key === "new" ? "/api/attachments" : "/api/tickets/" + key + "/attachments"));
  xhr.upload.onprogress = (e) => { x.pct = Math.round(100 * e.loaded / e.total); this.schedule(); };
  xhr.onloadend = () => {
    var s = xhr.status;
    if (x.xhr !== xhr) return; // removed meanwhile
    x.xhr = null;
    if (s === 401 && retry) { this.conn.token = null; return this.upload(key, x, file, 0); } // token expired
    if (s === 201) x.id = JSON.parse(xhr.responseText).id;
    else x.err = s === 413 ? "e413" : s === 415 ? "e415" : "eUp";
    this.schedule();
  };
  var data = new FormData();
  data.append("file", file, x.name);
  try { xhr.setRequestHeader("Authorization", "Bearer " + await this.conn.getToken()); xhr.send(data); }
  catch { x.err = "eUp"; x.xhr = null; this.schedule(); }
};

/** Paste, drop and a picker for `zone`; returns [button, input]. */
W.dropZone = function (zone, key, label) {
  var t = this.t;
  var input = h("input", { type: "file", multiple: true, hidden: true,
    onchange: () => { this.addFiles(key, input.files); input.value = ""; } });
  zone.addEventListener("paste", (e) => {
    var files = e.clipboardData?.files;
    if (files?.length) { e.preventDefault(); this.addFiles(key, files); }
  });
  ["dragover", "dragleave", "drop"].forEach((type) => zone.addEventListener(type, (e) => {
    e.preventDefault();
    zone.classList.toggle("drag", type === "dragover");
    if (type === "drop") this.addFiles(key, e.dataTransfer.files);
  }));
  this.filesEl = h("div.files", { "aria-live": "polite" });
  this.filesKey = key;
  return [h("button.secondary", { "aria-label": t("attach"), title: t("attachHint"), onclick: () => input.click() }, label), input];
};

W.renderFiles = function () {
  var t = this.t;
  var list = this.files[this.filesKey] || [];
  this.filesEl.replaceChildren(...list.map((x) => h("div", { class: "chip" + (x.err ? " bad" : "") },
    x.thumb && h("img", { src: x.thumb, alt: "" }),
    h("span", null, x.name + " · " + fmtSize(x.size) + (x.err ? " — " + t(x.err) : x.id ? "" : " · " + t("uploading", { n: x.pct }))),
    h("button.x", { "aria-label": t("remove", { name: x.name }), onclick: () => {
      list.splice(list.indexOf(x), 1);
      x.xhr?.abort();
      x.xhr = null;
      this.schedule();
    } }, "×"))));
};

/** Help articles matching the form, 300 ms after typing stops. */
W.suggest = function () {
  var q = ((this.form.title || "") + " " + (this.form.body || "")).trim().slice(0, 500);
  clearTimeout(this.sugTimer);
  this.sugTimer = setTimeout(async () => {
    var found = [];
    this.sugQ = q;
    var url = this.api("/api/help/search?limit=3&q=" + encodeURIComponent(q));
    try { if (q.length >= 3) found = (await (await fetch(url)).json()).articles; }
    catch { /* no suggestions then */ }
    if (this.sugQ !== q) return; // superseded
    this.sug = found || [];
    this.renderSug();
  }, 300);
};

W.renderSug = function () {
  var t = this.t;
  this.sugEl.hidden = !this.sug.length;
  this.sugEl.replaceChildren(h("div.label", { text: t("helpTitle") }), ...this.sug.map((a) => h("div.sug", { "data-article": a.id },
    h("a", { href: this.api(a.url), target: "_blank", rel: "noopener", text: a.title }),
    h("div.hint", { text: a.snippet }),
    h("button.link", { onclick: () => this.deflect(a.id) }, t("solved")))));
};

/** An article helped: count it, drop the form, open no ticket. */
W.deflect = async function (article) {
  try {
    await fetch(this.api("/api/help/deflections"), { method: "POST", body: JSON.stringify({ article: article, query: this.sugQ }),
      headers: { Authorization: "Bearer " + await this.conn.getToken(), "Content-Type": "application/json" } });
  } catch { /* only a statistic: the customer is helped either way */ }
  this.resetForm();
  this.notice = this.t("thanks");
  this.showList();
};

/** `typing` at most every 2 s while there is text (shown for 5 s). */
W.typingPing = function (id, text) {
  if (!text || Date.now() - this.typingSentAt < TYPING_EVERY_MS) return;
  this.typingSentAt = Date.now();
  this.conn.send({ type: "typing", ticket: id });
};

// Drafts, the form and unsent messages survive a page reload.
W.storageKey = function () { return "pomoc:v1:" + (this.me.shop || "") + ":" + this.me.id; };

W.save = function () {
  try {
    var saved = { drafts: this.drafts, form: this.form, openReq: this.openReq, pending: [...this.pending.values()] };
    if (this.me) sessionStorage.setItem(this.storageKey(), JSON.stringify(saved));
  } catch { /* storage full or disabled: drafts stay in memory */ }
};

W.restore = function () {
  var saved = null;
  this.restored = true;
  try { saved = JSON.parse(sessionStorage.getItem(this.storageKey())); } catch { /* nothing saved */ }
  if (!saved) return;
  this.drafts = { ...saved.drafts, ...this.drafts };
  if (!this.form.title && !this.form.body && saved.form) this.form = saved.form;
  this.openReq ||= saved.openReq;
  saved.pending?.forEach((p) => { if (!this.pending.has(p.client_id)) this.pending.set(p.client_id, p); });
};

// ---- formatting
var WARSAW = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Warsaw", weekday: "short", day: "2-digit", month: "2-digit",
  hour: "numeric", minute: "2-digit", hourCycle: "h23" });

/** Warsaw time as the server writes it: "9:05", or with key "due"/"at" the day and date too. */
W.when = function (iso, key) {
  var d = new Date(iso);
  if (isNaN(d)) return "";
  var p = Object.fromEntries(WARSAW.formatToParts(d).map((x) => [x.type, x.value]));
  var i = "MonTueWedThuFriSatSun".indexOf(p.weekday) / 3;
  var time = +p.hour + ":" + p.minute;
  var day = (list) => this.t(list).split(" ")[i];
  return key ? this.t(key, { day: day("days"), dayTo: day("daysTo"), date: p.day + "." + p.month, time: time }) : time;
};

/** The usual week from welcome.hours: "pon.–pt. 9:00–17:00, sob. 9:00–13:00". */
W.hours = function () {
  var days = this.t("daysShort").split(" ");
  var clock = (hhmm) => hhmm.replace(/^0/, "");
  return this.week?.map((r) => days[r.days[0]] + (r.days[1] ? "–" + days[r.days.at(-1)] : "") + " " +
    clock(r.opens) + "–" + clock(r.closes)).join(", ") || this.t("hours");
};

/** "n / max" near the body limit (in code points, as the server counts); false when over. */
W.count = function (el, text) {
  var max = this.limits.max_body_chars;
  var n = [...text].length;
  el.hidden = !(n > max * 0.9);
  el.className = "hint count" + (n > max ? " warn" : "");
  el.textContent = this.t("chars", { n: n, max: max }) + (n > max ? " — " + this.t("over", { n: n - max }) : "");
  return !(n > max);
};

W.authorName = function (m) {
  if (this.isMine(m)) return this.t("you");
  return m.author.name + (m.author.kind === "agent" ? " · " + this.t("support") : "");
};

W.announce = function (text) {
  this.live.textContent = "";
  setTimeout(() => { this.live.textContent = text; }, 50);
};

// ---- UI shell
W.buildShell = function () {
  var t = this.t;
  var icon = (label, onclick, text) => h("button.icon", { "aria-label": label, title: label, onclick: onclick }, text);
  this.badgeEl = h("span.badge", { "aria-hidden": "true", hidden: true }, "!");
  this.launcher = h("button.launcher", { "aria-expanded": "false", "aria-controls": "pomoc-panel", "aria-haspopup": "dialog",
    onclick: () => this.isOpen ? this.close() : this.open() }, t("launcher"), this.badgeEl);
  this.live = h("div.sr", { "aria-live": "polite", role: "status" });
  this.titleEl = h("h2", { id: "pomoc-title", tabindex: "-1" });
  this.backBtn = icon(t("back"), () => this.showList(), "‹");
  this.banner = h("div", { role: "status", hidden: true });
  this.body = h("div.body");
  this.panel = h("section.panel", { id: "pomoc-panel", role: "dialog", "aria-labelledby": "pomoc-title", hidden: true },
    h("div.head", null, this.backBtn, this.titleEl, icon(t("close"), () => this.close(), "×")), this.banner, this.body);
  this.root.append(this.launcher, this.live, this.panel);
};

W.open = function () {
  this.isOpen = true;
  this.renderView();
  this.titleEl.focus();
  this.maybeRead();
};

W.close = function () {
  this.isOpen = false;
  this.panel.hidden = true;
  this.launcher.setAttribute("aria-expanded", "false");
  this.launcher.focus();
};

/** Under the launcher (above it when floating), never past either edge of the viewport. */
W.position = function () {
  var r = this.launcher.getBoundingClientRect();
  var vw = document.documentElement.clientWidth || innerWidth; // without a scrollbar
  var width = Math.min(390, vw - 16);
  var floating = this.host.hasAttribute("data-floating");
  var right = Math.max(8, Math.min(floating ? 20 : vw - r.right, vw - width - 8));
  var top = Math.max(8, r.bottom + 8);
  var max = floating ? Math.min(600, r.top - 16) : Math.min(620, innerHeight - top - 12);
  this.panel.hidden = false;
  this.launcher.setAttribute("aria-expanded", "true");
  this.panel.style.cssText = (floating ? "bottom:" + (innerHeight - r.top + 8) : "top:" + top) + "px;right:" + right + "px;width:" + width +
    "px;max-height:" + max + "px;" + (this.view === "chat" ? "height:" + max + "px" : ""); // a steady chat height
};

W.showList = function () { this.view = "list"; this.current = null; this.renderView(); this.titleEl.focus(); };
W.showNew = function () { this.view = "new"; this.current = null; this.formError = this.notice = ""; this.renderView(); };
W.showChat = function (id) {
  this.view = "chat";
  this.current = id;
  this.notice = this.chatError = "";
  this.typingSentAt = 0;
  if (!this.more.has(id)) this.loadHistory(id);
  this.renderView();
  this.maybeRead();
};

W.schedule = function () {
  if (this.scheduled) return;
  this.scheduled = true;
  Promise.resolve().then(() => { this.scheduled = false; this.update(); });
};

W.update = function () {
  var t = this.t;
  var badge = this.serverBadge || [...this.unread.values()].some((n) => n > 0);
  this.badgeEl.hidden = !badge;
  this.launcher.setAttribute("aria-label", t(badge ? "launcherUnread" : "launcher"));
  this.banner.hidden = this.state === "online";
  this.banner.className = this.everOnline ? "banner" : "banner info";
  this.banner.textContent = t(this.everOnline ? "offline" : "connecting");
  if (this.isOpen) this[{ list: "renderList", chat: "updateChat", new: "updateForm" }[this.view]]();
};

W.renderView = function () {
  this.body.textContent = "";
  this.logEls = new Map(); // log key -> element
  this.listEl = null;
  this.backBtn.hidden = this.view === "list";
  if (this.isOpen) this.position();
  this[{ list: "renderList", chat: "renderChat", new: "renderForm" }[this.view]]();
  this.update();
};

// ---- list view
W.renderList = function () {
  var t = this.t;
  var focused = this.root.getRootNode().activeElement?.dataset?.ticket;
  if (!this.listEl) {
    this.titleEl.textContent = t("yourTickets");
    this.listEl = h("ul.tickets", { "aria-label": t("yourTickets") });
    this.offEl = h("div.note.off");
    this.body.append(h("div.pad", null, this.notice && h("div.note", { role: "status", text: this.notice }), this.offEl,
      h("div.row", null, h("h3", { text: t("onePerTicket") }),
        h("button.primary.new-ticket", { onclick: () => this.showNew() }, t("newTicket"))),
      this.listEl));
  }
  // Off-hours: when support opens, and its hours.
  this.offEl.hidden = !this.closedNow();
  this.offEl.textContent = t("closedNow", { at: this.when(this.service.next_open, "at"), hours: this.hours() });
  var list = this.listEl;
  var was = new Map([...list.children].map((li) => [li.dataset.key, li]));
  var items = [...this.tickets.values()].sort((a, b) => b.id - a.id).map((tk) => {
    var n = this.unread.get(tk.id) || 0;
    var open = () => this.showChat(tk.id);
    return h("li", { "data-key": tk.id }, h("button", { class: "ticket" + (n > 0 ? " unread" : ""), "data-ticket": tk.id, onclick: open },
      h("span.t", null, h("span", { text: tk.title }),
        n > 0 && h("span.pill", { "aria-label": t("unreadLabel", { n: n }) }, t("unreadN", { n: n }))),
      h("span.m", { text: ["#" + tk.id, t("status_" + tk.status), t("sev_" + tk.severity), this.queued(tk) && t("queuedShort")]
        .filter(Boolean).join(" · ") })));
  });
  if (!items[0]) items = [h("li.empty", null, t(this.everOnline ? "noTickets" : "loading"))];
  // Unchanged items stay the same elements, so a tap across an update still lands.
  items = items.map((li) => was.get(li.dataset.key)?.outerHTML === li.outerHTML ? was.get(li.dataset.key) : li);
  was.forEach((li) => items.includes(li) || li.remove());
  items.forEach((li, i) => list.children[i] !== li && list.insertBefore(li, list.children[i] || null));
  list.querySelector(`[data-ticket="${focused}"]`)?.focus();
};

// ---- new ticket
W.renderForm = function () {
  var t = this.t;
  var f = this.form;
  var field = (name, label, input, hint) => {
    input.id = "pomoc-f-" + name;
    input.value = f[name] || "";
    input.addEventListener("input", () => {
      f[name] = input.value;
      this.save();
      if (name !== "severity") this.suggest();
      this.updateForm();
    });
    if (hint) input.setAttribute("aria-describedby", "pomoc-h-" + name);
    return h("div", null, h("label", { for: input.id, text: label }), input, hint && h("div.hint", { id: "pomoc-h-" + name, text: hint }));
  };
  var select = h("select", { "aria-describedby": "pomoc-def" }, ...SEVERITIES.map((s) => h("option", { value: s, text: t("sev_" + s) })));
  var title = h("input", { type: "text", maxlength: this.limits.max_title_chars || 200, autocomplete: "off", required: true,
    "aria-describedby": "pomoc-h-title" });
  var info = browserInfo();
  var more = ["occurred_at", "steps_tried", "expectations", "order_url"];
  this.titleEl.textContent = t("newTicket");
  this.defEl = h("div.def", { id: "pomoc-def" });
  this.titleHint = h("div", { id: "pomoc-h-title", "aria-live": "polite" });
  this.bodyCount = h("div");
  this.autoTime = h("dd");
  this.submitBtn = h("button.primary", { type: "submit" });
  this.formErrorEl = h("div.error", { role: "alert" });
  this.sugEl = h("div", { "aria-live": "polite" });
  var form = h("form.pad", { novalidate: true, onsubmit: (e) => { e.preventDefault(); this.openTicket(); this.schedule(); } },
    h("div.hint", { text: t("onePerTicket") }),
    field("title", t("title"), title), this.titleHint,
    field("body", t("body"), h("textarea", { rows: "4", required: true }), t("bodyHint")), this.bodyCount,
    field("severity", t("severity"), select), this.defEl,
    h("details", { open: more.some((k) => f[k]) }, h("summary", { text: t("more") }),
      field(more[0], t("occurredAt"), h("input", { type: "datetime-local" })),
      field(more[1], t("stepsTried"), h("textarea", { rows: "2" })),
      field(more[2], t("expectations"), h("textarea", { rows: "2" })),
      field(more[3], t("orderUrl"), h("input", { type: "url", placeholder: "https://" }))),
    h("div.auto", null, h("div", { text: t("autoInfo") }),
      h("dl", null, h("dt", { text: t("browser") }), h("dd.auto-browser", { text: (info.name + " " + info.version).trim() }),
        h("dt", { text: t("page") }), h("dd.auto-page", { text: location.href }),
        h("dt", { text: t("time") }), this.autoTime)),
    this.sugEl, this.formErrorEl,
    h("div.actions", null, h("button.secondary", { onclick: () => this.showList() }, t("cancel")), this.submitBtn));
  var pick = this.dropZone(form, "new", t("attach"));
  this.sugEl.before(h("div.actions", null, h("span.hint", { text: t("attachHint") }), ...pick), this.filesEl);
  this.body.append(form);
  this.renderSug();
  this.suggest();
  title.focus();
};

W.updateForm = function () {
  var t = this.t;
  var f = this.form;
  var long = (f.title || "").trim().split(/\s+/).length > 4;
  this.defEl.textContent = t("def_" + f.severity);
  this.defEl.className = "def" + (f.severity === "critical" ? " crit" : "");
  this.titleHint.textContent = t(long ? "titleLong" : "titleHint");
  this.titleHint.className = "hint" + (long ? " warn" : "");
  this.autoTime.textContent = this.when(new Date(), "at");
  this.count(this.bodyCount, f.body || "");
  this.submitBtn.disabled = !!this.openReq;
  this.submitBtn.textContent = t(this.openReq ? "submitting" : "submit");
  this.formErrorEl.textContent = this.formError;
  this.renderFiles();
};

// ---- chat view
W.renderChat = function () {
  var t = this.t;
  var id = this.current;
  var tk = this.tickets.get(id) || { title: "#" + id };
  this.statusText = h("span");
  var resolve = () => this.conn.send({ type: "update_ticket", ticket: id, status: "resolved", ref: "upd:" + id });
  this.resolveBtn = h("button.link", { onclick: resolve }, t("markResolved"));
  this.statusEl = h("div", null, this.statusText, this.resolveBtn);
  this.olderBtn = h("button.secondary.older", { onclick: () => {
    this.loadingOlder = true;
    this.loadHistory(id, Math.min(...this.msgs.get(id).keys()));
    this.olderBtn.textContent = t("loading");
  } }, t("older"));
  // At the newest message unless the reader scrolls up (see stick).
  this.pinned = true;
  this.logEl = h("div.log", { role: "log", "aria-live": "polite", "aria-label": t("conversation", { title: tk.title }), tabindex: "0",
    // stick()'s own scroll must not unpin: an image may grow the log before its load event.
    onscroll: (e) => { var l = e.target; if (l.scrollTop !== this.autoTop) this.pinned = l.scrollHeight - l.scrollTop - l.clientHeight < 60; } }, this.olderBtn);
  this.typingEl = h("div.typing", { "aria-live": "polite" });
  this.noteEl = h("div", { role: "status" });
  // Resolved: yes and a rating closes it, no reopens it.
  var rate = (x) => this.conn.send({ type: "rate", ticket: id, ref: "rate:" + id, ...x });
  var note = h("textarea", { rows: "2", maxlength: "1000", placeholder: t("rateNote") });
  this.askEl = h("form.ask.pad", { "aria-label": t("askSolved"), onsubmit: (e) => {
    e.preventDefault();
    rate({ score: +this.askEl.querySelector(":checked").value, comment: note.value.trim() || undefined });
  } }, h("b", { text: t("askSolved") }), h("fieldset", null, h("legend", { text: t("rate") }),
    ...[1, 2, 3, 4, 5].map((n) => h("label", null, h("input", { type: "radio", name: "s", value: n, required: true }), n))),
  note, h("button.primary", { type: "submit" }, t("yes")), " ", h("button.secondary", { onclick: () => rate({ solved: false }) }, t("no")));
  this.chatErrorEl = h("div.error.pad", { role: "alert" });
  this.newBtn = h("button.primary", { onclick: () => this.showNew() }, t("newTicket"));
  this.countEl = h("div", { id: "pomoc-count" });
  var input = this.input = h("textarea", { rows: "2", placeholder: t("placeholder"), "aria-label": t("messageLabel"),
    "aria-describedby": "pomoc-count", value: this.drafts[id] || "" });
  input.addEventListener("input", () => {
    this.drafts[id] = input.value;
    this.save();
    this.count(this.countEl, input.value);
    this.typingPing(id, input.value);
  });
  var submit = () => {
    var body = input.value;
    var att = this.ready(id);
    if (!att || !this.count(this.countEl, body)) this.chatError = t(att ? "err_too_large" : "waitUp");
    else if (body.trim() || att.length) {
      input.value = "";
      this.files[id] = [];
      // Files alone go out under their names as text.
      this.sendMessage(id, body.trim() ? body : att.map((a) => a.name).join(", "), att);
      input.focus();
    }
    this.schedule();
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); } });
  var chat = h("div.chat");
  this.composer = h("form.composer", { onsubmit: (e) => { e.preventDefault(); submit(); } },
    ...this.dropZone(chat, id, "+"), input, h("button.primary", { type: "submit" }, t("send")));
  chat.append(this.statusEl, this.logEl, this.typingEl, this.noteEl, this.askEl, h("div.closed-actions.pad", null, this.newBtn), this.chatErrorEl,
    this.filesEl, this.countEl, this.composer);
  this.count(this.countEl, input.value);
  this.body.append(chat);
  this.updateChat();
  if (tk.status !== "closed") input.focus();
};

W.updateChat = function () {
  var t = this.t;
  var id = this.current;
  var tk = this.tickets.get(id) || { status: "open" };
  var queued = this.queued(tk);
  var live = !queued && this.agentsOnline > 0 && !this.closedNow();
  var closed = tk.status === "closed";
  var yourTurn = tk.status === "waiting_on_customer";
  var replied = [...(this.msgs.get(id)?.values() || [])].some((m) => m.author?.kind === "agent");
  this.titleEl.textContent = tk.title || "#" + id;
  // Queued or live, then one statement of when we answer: the deadline until the first reply, then the hours.
  this.statusEl.className = "status" + (queued ? " queued" : live ? " live" : "");
  this.statusEl.hidden = !this.active(tk);
  this.statusText.textContent = [queued ? t("queued", { at: this.when(tk.queued_until, "at") }) : live && t("live"),
    yourTurn ? t("yourTurn") : !replied && tk.sla_due_at ? t("answerBy", { due: this.when(tk.sla_due_at, "due") })
      : !live && t("answerSoon", { hours: this.hours() })].filter(Boolean).join(" ");
  this.askEl.hidden = tk.status !== "resolved";
  this.noteEl.hidden = !(closed || tk.status === "resolved");
  this.noteEl.className = "note" + (closed ? " closed" : "");
  this.noteEl.textContent = t(closed ? "closedNote" : "resolvedNote");
  this.newBtn.parentNode.hidden = !closed;
  this.composer.hidden = this.filesEl.hidden = closed;
  this.renderFiles();
  this.chatErrorEl.textContent = this.chatError;
  this.chatErrorEl.hidden = !this.chatError;
  var typing = this.typing.get(id);
  this.typingEl.textContent = typing?.until > Date.now() ? t("typing", { name: typing.name }) : "";
  this.olderBtn.hidden = this.more.get(id) !== true;
  if (!this.loadingOlder) this.olderBtn.textContent = t("older");

  // Keyed: messages by seq, then unsent ones.
  var log = this.logEl;
  var oldHeight = log.scrollHeight;
  var firstBefore = log.children[1];
  var entries = [...(this.msgs.get(id)?.values() || [])].sort((a, b) => a.seq - b.seq);
  var keep = new Set();
  var cursor = this.olderBtn;
  this.pending.forEach((p) => { if (p.ticket === id) entries.push(p); });
  entries.forEach((m) => {
    var key = m.seq == null || this.isMine(m) ? "c" + m.client_id : "s" + m.seq;
    var el = this.logEls.get(key);
    keep.add(key);
    if (el?.m !== m || el.state !== m.state) {
      var fresh = this.renderMessage(m);
      fresh.m = m;
      fresh.state = m.state;
      el?.replaceWith(fresh);
      this.logEls.set(key, el = fresh);
    }
    if (cursor.nextSibling !== el) cursor.after(el);
    cursor = el;
  });
  this.logEls.forEach((el, key) => { if (!keep.has(key)) { el.remove(); this.logEls.delete(key); } });
  if (firstBefore && log.children[1] !== firstBefore) log.scrollTop += log.scrollHeight - oldHeight; // older page prepended
  else this.stick();
};

/** Down to the newest message if the reader is there (after a render, and as images load). */
W.stick = function () {
  var l = this.logEl;
  if (this.pinned) { l.scrollTop = l.scrollHeight; this.autoTop = l.scrollTop; }
};

W.renderMessage = function (m) {
  var t = this.t;
  var kind = m.seq == null || this.isMine(m) ? "mine" : m.author.kind === "system" ? "system" : "theirs";
  var state = m.seq == null ? m.state : "";
  var attrs = { class: "msg " + kind + " " + state, "data-client-id": m.client_id, "data-seq": m.seq };
  var text = h("div.text", { text: m.body });
  if (kind === "system") return h("div", attrs, text);
  var act = (key, fn) => h("button.retry", { onclick: () => { fn(); this.schedule(); } }, t(key));
  // Not sent: again (unless that cannot succeed), back into the composer, or away.
  var again = m.code !== "too_large" && this.tickets.get(m.ticket)?.status !== "closed";
  var meta = h("div.meta", null, kind === "mine" ? t("you") : this.authorName(m), m.created_at && " · " + this.when(m.created_at),
    state && " · " + t(state), state === "failed" && h("span", null, again && act("retry", () => this.transmit(m)),
      act("edit", () => this.drop(m, true)), act("discard", () => this.drop(m))));
  // Signed links; just-sent images show from memory until then.
  var files = (m.attachments || m.att || []).map((a) => {
    var url = a.url ? this.api(a.url) : a.thumb;
    return h("a", { href: url, target: "_blank", rel: "noopener" }, /^image/.test(a.content_type) && url
      ? h("img", { src: url, alt: a.name, onload: () => this.stick() }) : a.name + " · " + fmtSize(a.size));
  });
  return h("div", attrs, meta, text, files[0] && h("div.att", null, ...files));
};

// ---- entry points
var instance = null;

function configFrom(script, options) {
  var data = script?.dataset || {};
  var o = options || {};
  var lang = o.lang || data.lang || (document.documentElement.lang || "pl").slice(0, 2);
  return {
    mount: o.mount || data.mount,
    token: o.getToken || o.token,
    tokenUrl: o.tokenUrl || data.tokenUrl,
    lang: LANGS.includes(lang) ? lang : "pl",
    server: (o.server || data.server || serverFromScript(script)).replace(/\/$/, "")
  };
}

window.Pomoc = {
  version: VERSION,
  Connection: Connection,
  /** Start the widget once (when the page is ready); later calls return it. */
  init: function (options) {
    if (instance) return instance;
    var w = instance = new Widget(configFrom(SCRIPT, options));
    var start = () => { if (instance === w) w.start(); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start, { once: true });
    else start();
    return w;
  },
  open: () => instance?.open(),
  close: () => instance?.close(),
  destroy: function () { instance?.destroy(); instance = null; }
};

if (SCRIPT?.dataset.tokenUrl) window.Pomoc.init();
})();
