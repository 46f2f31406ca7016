/* Worker pages' script (no framework, no third-party code).
 *
 * The grid page (#work) loads its items from the worker API, takes one key per box (0-9 or ?),
 * autosaves answers with a per-image response time, restores them on reload and submits once
 * every image is answered. The completion page (#done) gets a copy button.
 */
(function () {
  "use strict";

  var SAVE_DELAY_MS = 300;
  // The answer alphabet, from the server (data-labels on #work): one definition, annotate/labels.py.
  var VALID = "";
  // The one message the server cannot send: it is unreachable. Every other message is the
  // API's own "detail" and "hint".
  var NETWORK_TROUBLE =
    "Cannot reach the server. Please check your connection; we will keep trying.";

  /* A JSON request to the worker API; rejects with {status, code, detail, fatal}. */
  function request(method, url, body, keepalive) {
    var init = {
      method: method,
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
      keepalive: !!keepalive,
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(
      function (response) {
        return response
          .json()
          .catch(function () {
            return {};
          })
          .then(function (data) {
            if (response.ok) return data;
            var status = response.status;
            throw {
              status: status,
              code: data.error || "http_" + status,
              detail: [data.detail, data.hint].filter(Boolean).join(" "),
              // Client errors will not go away by retrying (except timeouts and rate limits).
              fatal: status >= 400 && status < 500 && status !== 408 && status !== 429,
            };
          });
      },
      function () {
        throw { status: 0, code: "network", detail: "", fatal: false };
      }
    );
  }

  // The browser that took a lease keeps its page's address (when the browser lets it store
  // anything), so coming back by the study link offers to continue. The server decides: a
  // bare participant id never reaches a lease, only this address does.
  function resumeKey(study) {
    return "blindspot:lease:" + study;
  }

  function remember(study, url) {
    try {
      window.localStorage.setItem(resumeKey(study), url);
    } catch (e) {
      /* storage blocked (a third-party frame): the page address is the only way back */
    }
  }

  function initEntry(root) {
    var url = null;
    try {
      url = window.localStorage.getItem(resumeKey(root.getAttribute("data-study")));
    } catch (e) {
      return;
    }
    if (!url || url.indexOf("/w/") !== 0) return;
    document.getElementById("resume-link").setAttribute("href", url);
    document.getElementById("resume").hidden = false;
  }

  function initWork(root) {
    VALID = root.getAttribute("data-labels") || "";
    remember(root.getAttribute("data-study"), window.location.pathname);
    var api = root.getAttribute("data-api");
    var doneUrl = root.getAttribute("data-done");
    var grid = document.getElementById("grid");
    var form = document.getElementById("grid-form");
    var submitButton = document.getElementById("submit");
    var unsureButton = document.getElementById("unsure");
    var progress = document.getElementById("progress");
    var saveStatus = document.getElementById("save-status");
    var problem = document.getElementById("problem");

    var items = []; // [{key, position, image}] in grid order
    var inputs = [];
    var cells = [];
    var answers = {}; // item key -> {label, ms}
    var shownAt = []; // performance.now() when each image was first shown or focused
    var visible = [];
    var loaded = [];
    var dirty = {}; // item keys with unsaved answers
    var saveTimer = null;
    var retryTimer = null;
    var inflight = false;
    var failures = 0;
    var locked = false;
    var submitting = false;
    var current = 0;

    function setStatus(kind, text) {
      saveStatus.className = "status " + kind;
      saveStatus.textContent = text;
    }

    function showProblem(text) {
      problem.textContent = text;
      problem.hidden = false;
    }

    function answeredCount() {
      var n = 0;
      for (var i = 0; i < items.length; i++) if (answers[items[i].key]) n++;
      return n;
    }

    function firstEmpty() {
      for (var i = 0; i < items.length; i++) if (!answers[items[i].key]) return i;
      return -1;
    }

    function updateProgress() {
      var n = answeredCount();
      progress.textContent = n + " / " + items.length + " answered";
      submitButton.disabled = locked || submitting || n < items.length;
    }

    function render(i) {
      var a = answers[items[i].key];
      inputs[i].value = a ? a.label : "";
      cells[i].classList.toggle("answered", !!a);
    }

    function markShown(i) {
      if (shownAt[i] === undefined) shownAt[i] = performance.now();
    }

    function elapsed(i) {
      markShown(i);
      return Math.max(0, Math.round(performance.now() - shownAt[i]));
    }

    function focusBox(i) {
      if (i >= 0 && i < inputs.length) inputs[i].focus();
    }

    function columns() {
      var tracks = getComputedStyle(grid).gridTemplateColumns.split(" ");
      var n = tracks.filter(function (t) {
        return t.length > 0;
      }).length;
      return n || 5;
    }

    /* Locks the page after an error that retrying cannot fix, saying what happened. */
    function fail(err) {
      if (err.status === 409 && /submit/.test(err.code)) {
        window.location.replace(doneUrl);
        return;
      }
      locked = true;
      clearTimeout(saveTimer);
      clearTimeout(retryTimer);
      grid.classList.add("locked");
      inputs.forEach(function (input) {
        input.readOnly = true;
      });
      updateProgress();
      setStatus("failed", "");
      showProblem(
        err.detail || "Something went wrong (error " + err.status + ")."
      );
    }

    function scheduleSave() {
      clearTimeout(saveTimer);
      if (!inflight) setStatus("saving", "Saving…");
      saveTimer = setTimeout(flush, SAVE_DELAY_MS);
    }

    /* Sends every unsaved answer; one request at a time, retried with a growing delay. */
    function flush(keepalive) {
      clearTimeout(saveTimer);
      if (locked || submitting || inflight) return;
      var batch = [];
      Object.keys(dirty).forEach(function (key) {
        var a = answers[key];
        // A cleared box is sent as label null, so a reload does not bring the old answer back.
        batch.push(a ? { item: key, label: a.label, ms: a.ms } : { item: key, label: null });
      });
      dirty = {};
      if (!batch.length) return;
      inflight = true;
      setStatus("saving", "Saving…");
      request("PUT", api + "/answers", { answers: batch }, keepalive === true).then(
        function () {
          inflight = false;
          failures = 0;
          if (Object.keys(dirty).length) flush();
          else if (!submitting) setStatus("saved", "Answers saved.");
        },
        function (err) {
          inflight = false;
          batch.forEach(function (a) {
            dirty[a.item] = true;
          });
          if (err.fatal) {
            fail(err);
            return;
          }
          failures += 1;
          setStatus(
            "failed",
            err.code === "network" ? NETWORK_TROUBLE : "Could not save your answers; retrying…"
          );
          clearTimeout(retryTimer);
          retryTimer = setTimeout(flush, Math.min(30000, 1000 * Math.pow(2, failures)));
        }
      );
    }

    function enter(i, label) {
      if (locked) return;
      var key = items[i].key;
      var before = answers[key];
      if (!before || before.label !== label) {
        answers[key] = { label: label, ms: elapsed(i) };
        dirty[key] = true;
        scheduleSave();
      }
      render(i);
      updateProgress();
      if (i < items.length - 1) focusBox(i + 1);
      else if (firstEmpty() === -1) progress.textContent += " — ready to submit";
    }

    function clearBox(i) {
      if (locked) return;
      var key = items[i].key;
      if (answers[key]) {
        delete answers[key];
        dirty[key] = true;
        scheduleSave();
      }
      render(i);
      updateProgress();
    }

    function submit() {
      if (locked || submitting) return;
      var missing = firstEmpty();
      if (missing !== -1) {
        setStatus("failed", items.length - answeredCount() + " images still need an answer.");
        focusBox(missing);
        return;
      }
      submitting = true;
      clearTimeout(saveTimer);
      clearTimeout(retryTimer);
      updateProgress();
      setStatus("saving", "Submitting…");
      var all = items.map(function (it) {
        var a = answers[it.key];
        return { item: it.key, label: a.label, ms: a.ms };
      });
      request("POST", api + "/submit", { answers: all }).then(
        function (data) {
          window.location.replace(data.done_url || doneUrl);
        },
        function (err) {
          submitting = false;
          if (err.fatal) {
            fail(err);
            return;
          }
          updateProgress();
          setStatus("failed", "Could not submit. Please check your connection and try again.");
        }
      );
    }

    function onKeydown(i, e) {
      if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      var key = e.key;
      if (key.length === 1 && VALID.indexOf(key) !== -1) {
        e.preventDefault();
        enter(i, key);
        return;
      }
      switch (key) {
        case "Backspace":
          e.preventDefault();
          if (answers[items[i].key]) clearBox(i);
          else if (i > 0) {
            clearBox(i - 1);
            focusBox(i - 1);
          }
          return;
        case "Delete":
          e.preventDefault();
          clearBox(i);
          return;
        case "ArrowLeft":
          e.preventDefault();
          focusBox(i - 1);
          return;
        case "ArrowRight":
          e.preventDefault();
          focusBox(i + 1);
          return;
        case "ArrowUp":
          e.preventDefault();
          focusBox(i - columns());
          return;
        case "ArrowDown":
          e.preventDefault();
          focusBox(i + columns());
          return;
        case "Home":
          e.preventDefault();
          focusBox(0);
          return;
        case "End":
          e.preventDefault();
          focusBox(items.length - 1);
          return;
        case "Enter":
          e.preventDefault();
          submit();
          return;
        default:
          if (key.length === 1) e.preventDefault(); // any other character is ignored
      }
    }

    /* Virtual keyboards may send no usable keydown: take the typed character from the box. */
    function onInput(i) {
      var input = inputs[i];
      var a = answers[items[i].key];
      var previous = a ? a.label : "";
      var typed = input.value.split("").filter(function (c) {
        return VALID.indexOf(c) !== -1;
      });
      if (!typed.length) {
        if (input.value === "") clearBox(i);
        else input.value = previous;
        return;
      }
      var fresh = typed.filter(function (c) {
        return c !== previous;
      });
      enter(i, fresh.length ? fresh[fresh.length - 1] : typed[typed.length - 1]);
    }

    function buildCell(item, i, total) {
      var li = document.createElement("li");
      li.className = "cell";
      var img = document.createElement("img");
      img.alt = "";
      img.width = 84;
      img.height = 84;
      img.draggable = false;
      img.decoding = "async";
      img.addEventListener("load", function () {
        loaded[i] = true;
        if (visible[i]) markShown(i);
      });
      img.addEventListener("error", function () {
        li.classList.add("broken");
        showProblem("An image did not load. Please reload the page; your answers are kept.");
      });
      img.src = item.image;
      var input = document.createElement("input");
      input.type = "text";
      input.inputMode = "numeric";
      input.maxLength = 1;
      input.autocomplete = "off";
      input.setAttribute("autocorrect", "off");
      input.setAttribute("autocapitalize", "off");
      input.spellcheck = false;
      input.setAttribute("enterkeyhint", i === total - 1 ? "done" : "next");
      input.setAttribute("aria-label", "Image " + (i + 1) + " of " + total);
      input.addEventListener("keydown", function (e) {
        onKeydown(i, e);
      });
      input.addEventListener("input", function () {
        onInput(i);
      });
      input.addEventListener("focus", function () {
        current = i;
        markShown(i);
        input.select();
      });
      input.addEventListener("blur", function () {
        flush();
      });
      li.appendChild(img);
      li.appendChild(input);
      cells.push(li);
      inputs.push(input);
      return li;
    }

    function watchVisibility() {
      if (!("IntersectionObserver" in window)) {
        items.forEach(function (_, i) {
          visible[i] = true;
        });
        return;
      }
      // One observer per cell, so each callback knows its index.
      cells.forEach(function (cell, i) {
        var observer = new IntersectionObserver(
          function (entries) {
            if (!entries.some(function (entry) {
              return entry.isIntersecting;
            })) return;
            visible[i] = true;
            if (loaded[i]) markShown(i);
            observer.disconnect();
          },
          { threshold: 0.6 }
        );
        observer.observe(cell);
      });
    }

    /* The recruiting site's own time limit (MTurk, Prolific): warn WARN_MS before it, and say
       so when it has passed, since no save of ours can extend it. */
    var WARN_MS = 3 * 60 * 1000;
    function watchDeadline(deadline) {
      var end = Date.parse(deadline || "");
      if (isNaN(end)) return;
      var deadlineNote = document.getElementById("deadline");
      function at(ms) {
        var d = new Date(ms);
        return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
      }
      function tick() {
        var left = end - Date.now();
        if (left <= 0) {
          deadlineNote.textContent =
            "The time limit for this task has passed; your answers can no longer be submitted.";
          deadlineNote.hidden = false;
          return;
        }
        if (left <= WARN_MS) {
          deadlineNote.textContent =
            "Please submit soon: the time limit for this task ends at " + at(end) +
            " (about " + Math.max(1, Math.round(left / 60000)) + " min left).";
          deadlineNote.hidden = false;
        }
        window.setTimeout(tick, Math.min(30000, Math.max(1000, left - WARN_MS)));
      }
      tick();
    }

    function start(data) {
      watchDeadline(data.deadline);
      if (data.status === "submitted") {
        window.location.replace(doneUrl);
        return;
      }
      if (data.status === "expired") {
        fail({ status: 410, code: "expired" });
        return;
      }
      items = (data.items || []).slice().sort(function (a, b) {
        return a.position - b.position;
      });
      answers = {};
      var saved = data.answers || {};
      items.forEach(function (it) {
        var a = saved[it.key];
        if (a && VALID.indexOf(a.label) !== -1) answers[it.key] = { label: a.label, ms: a.ms };
      });
      var fragment = document.createDocumentFragment();
      items.forEach(function (it, i) {
        fragment.appendChild(buildCell(it, i, items.length));
      });
      grid.appendChild(fragment);
      items.forEach(function (_, i) {
        render(i);
      });
      watchVisibility();
      unsureButton.hidden = false;
      updateProgress();
      if (answeredCount()) setStatus("saved", "Your earlier answers were restored.");
      var empty = firstEmpty();
      focusBox(empty === -1 ? items.length - 1 : empty);
    }

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      submit();
    });
    // Keep the focus in the box while the "can't tell" button is pressed.
    unsureButton.addEventListener("pointerdown", function (e) {
      e.preventDefault();
    });
    unsureButton.addEventListener("click", function () {
      if (items.length) {
        enter(current, "?");
        if (current === items.length - 1) focusBox(current);
      }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") flush(true);
    });
    window.addEventListener("pagehide", function () {
      flush(true);
    });

    request("GET", api).then(start, function (err) {
      progress.textContent = "";
      if (err.fatal) fail(err);
      else showProblem("The task could not be loaded. Please reload the page.");
    });
  }

  function initDone(root) {
    var button = document.getElementById("copy");
    var status = document.getElementById("copy-status");
    var output = document.getElementById(button.getAttribute("data-copy"));

    function selectCode() {
      var range = document.createRange();
      range.selectNodeContents(output);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }

    function fallback() {
      selectCode();
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
      if (!ok) throw new Error("copy refused");
    }

    button.addEventListener("click", function () {
      var code = output.textContent.trim();
      var copied =
        navigator.clipboard && navigator.clipboard.writeText
          ? navigator.clipboard.writeText(code).catch(fallback)
          : Promise.resolve().then(fallback);
      copied.then(
        function () {
          status.textContent = "Copied.";
        },
        function () {
          selectCode();
          status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
        }
      );
    });
    root.classList.add("ready");
  }

  // Our server has the answers; now hand the worker back to the recruiting site, once: post its
  // form (MTurk's externalSubmit) or follow its link (a completion URL). The button or link
  // stays as a fallback if the automatic step is blocked.
  function initHandback(element) {
    if (element.getAttribute("data-auto") !== "1") return;
    element.setAttribute("data-auto", "sent");
    window.setTimeout(function () {
      try {
        if (element.tagName === "FORM") element.submit();
        else window.location.assign(element.getAttribute("href"));
      } catch (e) {
        var status = document.getElementById("handback-status");
        if (status) status.textContent = "Please press the button to finish.";
      }
    }, 300);
  }

  var entry = document.getElementById("entry");
  if (entry) initEntry(entry);
  var work = document.getElementById("work");
  if (work) initWork(work);
  var done = document.getElementById("done");
  if (done) initDone(done);
  var handback = document.getElementById("handback");
  if (handback) initHandback(handback);
})();
