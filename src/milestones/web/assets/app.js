// milestone dashboard: live updates (Server-Sent Events), filters, task writes.
// No inline script anywhere (the Content-Security-Policy forbids it).
(function () {
  "use strict";
  var body = document.body;
  var status = document.getElementById("live-status");
  var flash = document.getElementById("flash");

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].split("=");
      if (kv[0] === name) { return decodeURIComponent(kv.slice(1).join("=")); }
    }
    return "";
  }

  function applyFilters() {
    var text = document.getElementById("filter-text");
    if (!text) { return; }
    var q = text.value.trim().toLowerCase();
    var st = document.getElementById("filter-status").value;
    var risk = document.getElementById("filter-risk").checked;
    var rows = document.querySelectorAll("table.milestones tbody tr[data-id]");
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var show = (!q || r.getAttribute("data-search").indexOf(q) >= 0) &&
        (!st || r.getAttribute("data-status") === st) &&
        (!risk || r.getAttribute("data-risk") === "1");
      r.hidden = !show;
    }
  }
  ["filter-text", "filter-status", "filter-risk"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener("input", applyFilters); el.addEventListener("change", applyFilters); }
  });
  var filterForm = document.querySelector("form.filters[role=search]");
  if (filterForm) { filterForm.addEventListener("submit", function (e) { e.preventDefault(); }); }

  var pending = null;
  var refreshing = false;
  function refresh() {
    if (refreshing) { pending = pending || setTimeout(refresh, 200); return; }
    refreshing = true;
    pending = null;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var main = document.getElementById("live");
        if (fresh && main) { main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes)); }
        applyFilters();
      })
      .catch(function (err) { if (status) { status.textContent = "refresh failed: " + err.message; } })
      .then(function () { refreshing = false; });
  }
  function later() { if (!pending) { pending = setTimeout(refresh, 150); } }

  if (body.getAttribute("data-live") === "1" && window.EventSource) {
    var es = new EventSource("/api/events/stream");
    es.onopen = function () { if (status) { status.textContent = "live"; } };
    es.onmessage = function (e) {
      if (status) { status.textContent = "live · event " + e.lastEventId; }
      later();
    };
    es.onerror = function () { if (status) { status.textContent = "reconnecting…"; } };
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("task-action")) { return; }
    e.preventDefault();
    var action = form.elements.action.value;
    var text = form.elements.text.value;
    var payload = {};
    if (action === "block") { payload.reason = text; }
    if (action === "assign") { payload.assignee = text || null; }
    if (action === "comment") { payload.text = text; }
    fetch("/api/tasks/" + form.getAttribute("data-ref") + "/" + action, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("ms_csrf") },
      body: JSON.stringify(payload)
    }).then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function (res) {
        flash.textContent = res[0] < 300 ? action + ": done" :
          (res[1].error ? res[1].error.message : "refused (" + res[0] + ")");
        setTimeout(function () { flash.textContent = ""; }, 5000);
      })
      .catch(function (err) { flash.textContent = err.message; });
  });
})();
