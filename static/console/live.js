// Console live progress: size the bars from their data-width, then poll the progress
// endpoint every few seconds (while the tab is visible) and move the bars and counts.
(function () {
  "use strict";
  var PERIOD_MS = 5000;

  function size(root) {
    root.querySelectorAll("[data-seg]").forEach(function (seg) {
      seg.style.width = (parseFloat(seg.dataset.width) || 0) + "%";
    });
  }

  function fill(row, counts, pct) {
    row.querySelectorAll("[data-count]").forEach(function (cell) {
      var value = counts[cell.dataset.count];
      if (value !== undefined) cell.textContent = value;
    });
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var value = counts[cell.dataset.field];
      if (value === undefined) return;
      cell.textContent = value;
      if (cell.dataset.field === "status") cell.className = "status " + value;
    });
    row.querySelectorAll("[data-seg]").forEach(function (seg) {
      var value = pct[seg.dataset.seg];
      if (value !== undefined) { seg.dataset.width = value; seg.style.width = value + "%"; }
    });
  }

  function refresh(root) {
    if (document.hidden) return;
    fetch(root.dataset.live, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        root.querySelectorAll("[data-study]").forEach(function (row) {
          var s = data.studies[row.dataset.study];
          if (s) fill(row, s, s.pct);
        });
        root.querySelectorAll("[data-set]").forEach(function (row) {
          var s = data.sets[row.dataset.set];
          if (s) fill(row, s, { done: s.pct });
        });
        root.dataset.updated = new Date().toISOString();
      })
      .catch(function () { /* keep the last numbers; try again next period */ });
  }

  size(document);
  var root = document.querySelector("[data-live]");
  if (!root) return;
  setInterval(function () { refresh(root); }, PERIOD_MS);
})();
