/*
 * Pomoc agent console: the support lead's reports (PROTOCOL.md, HTTP: /api/reports).
 *
 * "Raporty" in the top bar shows only for a token with lead: true. The panel asks
 * for a period (business dates, Warsaw time), reads the report and shows one table
 * per grouping (the total, departments, severities, plans, agents), with a link to
 * the same report as CSV (fetched with the token, offered as a file).
 *
 * It reads the console only through window.PomocConsole (console.js).
 */
(function () {
  "use strict";

  var C = window.PomocConsole;
  if (!C) return;
  var $ = function (id) { return document.getElementById(id); };
  var csvUrl = null;

  var GROUPS = [["total", "Razem"], ["department", "Według działu"], ["severity", "Według priorytetu"],
    ["plan", "Według planu"], ["agent", "Według agenta (pierwsza odpowiedź)"]];
  var COLUMNS = ["Otwarte", "1. odpowiedź: mediana", "1. odpowiedź: p90", "Kolejne odpowiedzi: mediana",
    "Kolejne odpowiedzi: p90", "Rozwiązanie: mediana", "Rozwiązanie: p90", "SLA dotrzymane", "Przekroczenia",
    "W kolejce po godzinach", "Średnio w kolejce", "Oceny", "Średnia ocena", "Oceny 4–5"];

  function h(tag, attrs) {
    var el = document.createElement(tag);
    for (var key in attrs || {}) {
      var v = attrs[key];
      if (v == null || v === false) continue;
      if (key === "text") el.textContent = v;
      else el.setAttribute(key, v === true ? "" : v);
    }
    for (var i = 2; i < arguments.length; i++) if (arguments[i] != null) el.append(arguments[i]);
    return el;
  }

  /** Seconds as "2 h 05 min", "35 min", "—" for none. */
  function dur(s) {
    if (s == null) return "—";
    var m = Math.round(s / 60);
    if (m < 60) return m + " min";
    var hrs = Math.floor(m / 60);
    return hrs + " h " + String(m % 60).padStart(2, "0") + " min";
  }
  function pct(v) { return v == null ? "—" : String(v).replace(".", ",") + "%"; }
  function num(v) { return v == null ? "—" : String(v).replace(".", ","); }

  function label(group, key) {
    if (group === "total") return "Wszystkie";
    if (key == null) return group === "agent" ? "bez odpowiedzi" : "bez działu";
    if (group === "department") return C.departments()[key] || key;
    return key;
  }

  function table(group, caption, rows) {
    var head = h("tr", null, h("th", { scope: "col", text: group === "total" ? "Zakres" : caption.replace("Według ", "") }));
    COLUMNS.forEach(function (c) { head.append(h("th", { scope: "col", text: c })); });
    var body = h("tbody");
    rows.forEach(function (r) {
      var cells = [r.tickets_opened, dur(r.first_response.median_s), dur(r.first_response.p90_s),
        dur(r.next_response.median_s), dur(r.next_response.p90_s), dur(r.resolution.median_s), dur(r.resolution.p90_s),
        pct(r.sla.met_pct), r.sla.breaches, r.held.tickets, dur(r.held.mean_s), r.csat.count, num(r.csat.average),
        pct(r.csat.satisfied_pct)];
      var tr = h("tr", null, h("th", { scope: "row", text: label(group, r.key) }));
      cells.forEach(function (c) { tr.append(h("td", { text: String(c) })); });
      body.append(tr);
    });
    return h("div", { class: "reports-scroll", role: "region", "aria-label": caption, tabindex: "0" },
      h("table", { class: "reports-table" }, h("caption", { text: caption }), h("thead", null, head), body));
  }

  function render(report) {
    var box = $("reports-body");
    box.textContent = "";
    box.append(h("p", { text: "Okres " + report.from + " – " + report.to + " (" + report.days + " dni). " +
      "Odpowiedzi z Centrum Pomocy, które rozwiązały problem przed zgłoszeniem: " + report.deflections + "." }));
    GROUPS.forEach(function (g) { box.append(table(g[0], g[1], report.groups[g[0]] || [])); });
  }

  async function load(from, to) {
    $("reports-error").textContent = "";
    $("reports-status").textContent = "Wczytywanie raportu…";
    var link = $("reports-csv");
    link.hidden = true;
    try {
      var token = await C.token();
      var q = "/api/reports?from=" + encodeURIComponent(from) + "&to=" + encodeURIComponent(to);
      var headers = { Authorization: "Bearer " + token };
      var res = await fetch(q, { cache: "no-store", headers: headers });
      var data = await res.json().catch(function () { return null; });
      if (!res.ok) throw new Error((data && data.error && data.error.message) || "HTTP " + res.status);
      render(data);
      $("reports-status").textContent = "Raport gotowy.";
      var csv = await fetch(q + "&format=csv", { cache: "no-store", headers: headers });
      if (csv.ok) {
        if (csvUrl) URL.revokeObjectURL(csvUrl);
        csvUrl = URL.createObjectURL(await csv.blob());
        link.href = csvUrl;
        link.download = "pomoc-raport-" + from + "-" + to + ".csv";
        link.hidden = false;
      }
    } catch (err) {
      $("reports-status").textContent = "";
      $("reports-error").textContent = "Nie udało się wczytać raportu: " + err.message;
    }
  }

  function iso(d) { return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0"); }

  function init() {
    var dialog = $("reports-panel");
    var now = new Date();
    $("reports-from").value = iso(new Date(now.getFullYear(), now.getMonth(), 1));
    $("reports-to").value = iso(now);
    $("reports-open").addEventListener("click", function () {
      if (!C.lead()) return;
      dialog.showModal();
      load($("reports-from").value, $("reports-to").value);
    });
    $("reports-close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { $("reports-open").focus(); });
    $("reports-form").addEventListener("submit", function (e) {
      e.preventDefault();
      load($("reports-from").value, $("reports-to").value);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
