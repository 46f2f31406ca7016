// Console live progress: size the bars from their data-width, then poll the page's JSON
// endpoint (data-live, every data-period ms, 5 s by default) while the tab is visible and move
// the bars, counts and fields of its rows: studies, stimulus sets and jobs.
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
      var field = cell.dataset.field;
      if (field === "status" || field === "state") cell.className = "status " + value;
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
          var s = (data.studies || {})[row.dataset.study];
          if (s) fill(row, s, s.pct);
        });
        root.querySelectorAll("[data-set]").forEach(function (row) {
          var s = (data.sets || {})[row.dataset.set];
          if (s) fill(row, s, { done: s.pct });
        });
        var jobs = Object.assign({}, data.jobs, data.children);
        if (data.job) jobs[data.job.id] = data.job;
        root.querySelectorAll("[data-job]").forEach(function (row) {
          var j = jobs[row.dataset.job];
          if (j) fill(row, j, { done: j.pct });
        });
        root.dataset.updated = new Date().toISOString();
      })
      .catch(function () { /* keep the last numbers; try again next period */ });
  }

  size(document);
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var period = parseInt(root.dataset.period, 10) || PERIOD_MS;
  setInterval(function () { refresh(root); }, period);
})();
