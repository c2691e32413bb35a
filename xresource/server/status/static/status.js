// xresource status page: live updates from the server's event stream, filters, no dependencies.
// The server renders every fragment (already escaped); this script only swaps them in.
(function () {
  "use strict";
  var body = document.body;
  var live = document.getElementById("live");
  var form = document.getElementById("filters");
  var parts = ["summary", "filter-options", "shown", "rows", "timeline"];
  var pollTimer = null;

  function chosen() {
    var out = {};
    ["tag", "type", "state"].forEach(function (key) {
      var select = document.getElementById("filter-" + key);
      out[key] = select ? select.value : "";
    });
    return out;
  }

  function applyFilters() {
    var f = chosen();
    var rows = document.querySelectorAll("#rows tr[data-name]");
    var shown = 0;
    rows.forEach(function (row) {
      var tags = [];
      try { tags = JSON.parse(row.getAttribute("data-tags") || "[]"); } catch (e) { tags = []; }
      var ok = (!f.tag || tags.indexOf(f.tag) >= 0) &&
        (!f.type || row.getAttribute("data-type") === f.type) &&
        (!f.state || row.getAttribute("data-state") === f.state);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var counter = document.getElementById("shown");
    if (counter) { counter.textContent = "showing " + shown + " of " + rows.length; }
    var query = new URLSearchParams();
    Object.keys(f).forEach(function (key) { if (f[key]) { query.set(key, f[key]); } });
    var search = query.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  function swap(fragments) {
    var before = chosen();
    var focused = document.activeElement && document.activeElement.id;
    parts.forEach(function (id) {
      var element = document.getElementById(id);
      if (element && typeof fragments[id] === "string" && element.innerHTML !== fragments[id]) {
        element.innerHTML = fragments[id];
      }
    });
    ["tag", "type", "state"].forEach(function (key) {  // keep what the reader chose
      var select = document.getElementById("filter-" + key);
      if (select) { select.value = before[key]; }
    });
    if (focused && document.activeElement !== document.getElementById(focused)) {
      var again = document.getElementById(focused);
      if (again) { again.focus(); }
    }
    applyFilters();
    body.setAttribute("data-updated", String(Date.now()));
  }

  function say(text) { live.textContent = "Updates: " + text; }

  function poll() {
    if (pollTimer) { return; }
    say("refreshing every 5 s");
    var refresh = function () {
      fetch(body.getAttribute("data-refresh"), { headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (fragments) { swap(fragments); say("refreshed every 5 s"); })
        .catch(function () { say("the server does not answer; retrying every 5 s"); });
    };
    refresh();
    pollTimer = setInterval(refresh, 5000);
  }

  function connect() {
    if (!window.EventSource) { poll(); return; }
    var failures = 0;
    var source = new EventSource(body.getAttribute("data-events"));
    source.addEventListener("update", function (event) {
      failures = 0;
      say("live");
      swap(JSON.parse(event.data));
    });
    source.onopen = function () { say("live"); };
    source.onerror = function () {
      failures += 1;
      if (failures >= 3 || source.readyState === EventSource.CLOSED) {
        source.close();  // events are not available here: fall back to a periodic refresh
        poll();
      } else {
        say("reconnecting");
      }
    };
  }

  form.addEventListener("change", applyFilters);
  form.addEventListener("submit", function (event) { event.preventDefault(); applyFilters(); });
  applyFilters();
  connect();
})();
