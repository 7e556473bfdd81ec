// wfm console: live worklist updates. Reading works without this script; it only keeps the rows of the
// page shown up to date (state and Input Readiness) from the server's WebSocket at /ui/live.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var table = document.getElementById("worklist");
  if (!status || !table || !window.WebSocket) { return; }
  var rows = {};
  table.querySelectorAll("tbody tr[data-uid]").forEach(function (tr) { rows[tr.getAttribute("data-uid")] = tr; });
  var uids = Object.keys(rows);
  var delay = 1000;

  function apply(change) {
    var tr = rows[change.uid];
    if (!tr) { return; }
    var state = tr.querySelector("td.state"), readiness = tr.querySelector("td.readiness");
    state.textContent = change.state; state.setAttribute("data-state", change.state);
    readiness.textContent = change.readiness || "-"; readiness.setAttribute("data-readiness", change.readiness || "");
    tr.classList.remove("changed"); void tr.offsetWidth; tr.classList.add("changed");
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + status.getAttribute("data-live"));
    socket.onopen = function () {
      delay = 1000;
      socket.send(JSON.stringify({uids: uids}));
      status.textContent = "Live: rows update as workitems change.";
      status.setAttribute("data-connected", "1");
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      (data.changed || []).forEach(apply);
    };
    socket.onclose = function () {
      status.textContent = "Live updates paused; reconnecting…";
      status.removeAttribute("data-connected");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
