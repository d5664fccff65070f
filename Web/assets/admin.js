/* Admin dashboard /admin: sign in with an API key (kept in this tab's sessionStorage), list,
 * create, open, close, reveal and export polls, live results and timeline, and the server's
 * own metrics. */
(function () {
  "use strict";
  var KINDS = ["single", "multiple", "rating", "nps", "ranking", "text"];
  var key = sessionStorage.getItem("pollwire:key");
  var live = null;
  var lastVotes = null;

  function $(sel) { return document.querySelector(sel); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }
  function api(method, path, body) {
    var headers = { Authorization: "Bearer " + key };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.text().then(function (t) {
          var json = null;
          try { json = t ? JSON.parse(t) : null; } catch (e) { json = null; }
          if (!r.ok) throw new Error((json && json.error && json.error.message) || "HTTP " + r.status);
          return json;
        });
      });
  }

  $("#signin").addEventListener("submit", function (event) {
    event.preventDefault();
    key = $("#key").value.trim();
    api("GET", "/v1/polls?limit=1").then(function () {
      sessionStorage.setItem("pollwire:key", key);
      start();
    }, function (error) { $("#signin-error").textContent = "Sign-in failed: " + error.message; });
  });
  $("#signout").addEventListener("click", function () {
    sessionStorage.removeItem("pollwire:key");
    location.reload();
  });
  if (key) api("GET", "/v1/polls?limit=1").then(start, function () { sessionStorage.removeItem("pollwire:key"); });

  function start() {
    $("#signin").hidden = true;
    $("#app").hidden = false;
    addQuestion();
    refresh();
    metrics();
    setInterval(metrics, 2000);
  }

  function refresh() {
    return api("GET", "/v1/polls?limit=200").then(function (page) {
      var polls = Array.isArray(page) ? page : (page.polls || []);
      var body = $("#polls");
      body.textContent = "";
      polls.forEach(function (poll) {
        var row = el("tr", { "data-poll": poll.id });
        var title = el("td");
        var link = el("button", { type: "button", class: "secondary" }, poll.title);
        link.addEventListener("click", function () { show(poll); });
        title.appendChild(link);
        row.appendChild(title);
        row.appendChild(el("td", { class: "phase" }, poll.phase || poll.status));
        var actions = el("td", { class: "actions" });
        ["open", "close", "reveal"].forEach(function (action) {
          var button = el("button", { type: "button", class: "secondary", "aria-label": action + " " + poll.title }, action);
          button.addEventListener("click", function () {
            api("POST", "/v1/polls/" + poll.id + "/" + action).then(refresh, alert);
          });
          actions.appendChild(button);
        });
        ["csv", "ndjson"].forEach(function (format) {
          var button = el("button", { type: "button", class: "secondary", "aria-label": "export " + poll.title + " as " + format }, format);
          button.addEventListener("click", function () { exportPoll(poll, format); });
          actions.appendChild(button);
        });
        var present = el("a", { href: "/p/" + poll.id, target: "_blank", rel: "noopener" }, "present");
        actions.appendChild(present);
        row.appendChild(actions);
        body.appendChild(row);
      });
    });
  }

  function exportPoll(poll, format) {
    fetch("/v1/polls/" + poll.id + "/export?format=" + format, { headers: { Authorization: "Bearer " + key } })
      .then(function (r) { return r.blob(); })
      .then(function (blob) {
        var a = el("a", { href: URL.createObjectURL(blob), download: poll.id + "." + format });
        document.body.appendChild(a);
        a.click();
        a.remove();
      });
  }

  /* The poll's timeline: its last 60 windows (the server's default width) from
   * GET /timeline, then each window as it ends from the live stream's window events (a
   * correction replaces the window it names). */
  var timeline = null;
  function drawTimeline() {
    var chart = $("#detail-timeline");
    chart.textContent = "";
    if (!timeline) return;
    var starts = Object.keys(timeline.windows).map(Number).sort(function (a, b) { return a - b; }).slice(-60);
    var top = starts.reduce(function (m, s) { return Math.max(m, timeline.windows[s]); }, 1);
    var width = 200 / 60, total = 0;
    starts.forEach(function (s, i) {
      var ballots = timeline.windows[s];
      total += ballots;
      if (!ballots) return;
      var height = (ballots / top) * 46;
      var bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      bar.setAttribute("x", ((i + 60 - starts.length) * width).toFixed(2));
      bar.setAttribute("y", (48 - height).toFixed(2));
      bar.setAttribute("width", (width - 0.5).toFixed(2));
      bar.setAttribute("height", height.toFixed(2));
      bar.setAttribute("class", "spark-bar");
      chart.appendChild(bar);
    });
    chart.setAttribute("data-ballots", String(total));
  }

  function show(poll) {
    $("#detail").hidden = false;
    $("#detail-title").textContent = poll.title;
    if (live) live.close();
    live = null;
    timeline = null;
    drawTimeline();
    fetch("/v1/polls/" + poll.id + "/timeline").then(function (r) { return r.json(); }).then(function (t) {
      timeline = { width: t.window, windows: {} };
      (t.windows || []).forEach(function (w) { timeline.windows[Date.parse(w.start)] = w.ballots; });
      drawTimeline();
      follow(poll, t.window);
    }, function () { follow(poll, null); });
  }

  function follow(poll, width) {
    if (live) live.close();
    live = new EventSource("/v1/polls/" + poll.id + "/live" + (width ? "?windows=" + encodeURIComponent(width) : ""));
    live.addEventListener("window", function (event) {
      var w = JSON.parse(event.data);
      if (!timeline || w.poll !== poll.id) return;
      timeline.windows[Date.parse(w.start)] = w.ballots;
      drawTimeline();
    });
    live.onopen = function () { $("#detail-status").textContent = "Live"; };
    live.onerror = function () { $("#detail-status").textContent = "Reconnecting…"; };
    live.addEventListener("results", function (event) {
      var results = JSON.parse(event.data);
      var area = $("#detail-results");
      area.textContent = "";
      area.appendChild(el("p", { "data-total": String(results.total) }, results.total + " votes · version " + results.version));
      (results.questions || []).forEach(function (qr) {
        var q = poll.questions.filter(function (x) { return x.id === qr.id; })[0] || { prompt: qr.id, options: [] };
        area.appendChild(el("h3", null, q.prompt));
        var rows = qr.options ? qr.options.map(function (o) {
          var option = (q.options || []).filter(function (x) { return x.id === o.id; })[0];
          return [option ? option.label : o.id, o.count != null ? o.count : o.points];
        }) : (qr.distribution || []).map(function (d) { return [String(d.value), d.count]; });
        var max = rows.reduce(function (m, r) { return Math.max(m, r[1]); }, 0) || 1;
        rows.forEach(function (r) {
          var line = el("div", { class: "bar-row" });
          line.appendChild(el("span", { dir: "auto" }, r[0]));
          var track = el("div", { class: "track", role: "progressbar", "aria-label": r[0], "aria-valuenow": String(r[1]) });
          var fill = el("div", { class: "fill" });
          fill.style.width = (r[1] / max) * 100 + "%";
          track.appendChild(fill);
          line.appendChild(track);
          line.appendChild(el("span", { class: "count" }, String(r[1])));
          area.appendChild(line);
        });
        (qr.latest || []).forEach(function (text) { area.appendChild(el("p", { dir: "auto" }, "“" + text + "”")); });
      });
    });
  }

  /* The question builder: every kind, options one per line. */
  var counter = 0;
  function addQuestion() {
    counter += 1;
    var n = counter;
    var box = el("div", { class: "q", "data-n": String(n) });
    box.appendChild(el("label", { for: "q" + n + "-prompt" }, "Question " + n));
    box.appendChild(el("input", { id: "q" + n + "-prompt", type: "text", required: "", class: "prompt" }));
    box.appendChild(el("label", { for: "q" + n + "-kind" }, "Kind"));
    var kind = el("select", { id: "q" + n + "-kind", class: "kind" });
    KINDS.forEach(function (k) { kind.appendChild(el("option", { value: k }, k)); });
    box.appendChild(kind);
    box.appendChild(el("label", { for: "q" + n + "-options" }, "Options, one per line (single, multiple, ranking); for rating: min-max"));
    box.appendChild(el("textarea", { id: "q" + n + "-options", rows: "3", class: "options" }));
    var optional = el("label");
    optional.appendChild(el("input", { type: "checkbox", class: "optional" }));
    optional.appendChild(document.createTextNode(" Optional"));
    box.appendChild(optional);
    $("#c-questions").appendChild(box);
  }
  $("#c-add").addEventListener("click", addQuestion);

  $("#create").addEventListener("submit", function (event) {
    event.preventDefault();
    var questions = Array.prototype.map.call(document.querySelectorAll("#c-questions .q"), function (box, index) {
      var kind = box.querySelector(".kind").value;
      var lines = box.querySelector(".options").value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
      var q = { id: "q" + (index + 1), kind: kind, prompt: box.querySelector(".prompt").value.trim() };
      if (box.querySelector(".optional").checked) q.required = false;
      if (kind === "single" || kind === "multiple" || kind === "ranking") {
        q.options = lines.map(function (label, i) { return { id: "o" + (i + 1), label: label }; });
      }
      if (kind === "rating" && lines.length) {
        var m = /^(-?\d+)\s*-\s*(-?\d+)$/.exec(lines[0]);
        if (m) q.scale = { min: Number(m[1]), max: Number(m[2]) };
      }
      return q;
    });
    var origins = $("#c-origins").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
    var poll = {
      title: $("#c-title").value.trim(),
      questions: questions,
      status: $("#c-status").value,
      settings: { visibility: $("#c-visibility").value, dedupe: $("#c-dedupe").value,
        allowChange: $("#c-change").checked, allowedOrigins: origins }
    };
    if ($("#c-opens").value) poll.opensAt = new Date($("#c-opens").value).toISOString();
    if ($("#c-closes").value) poll.closesAt = new Date($("#c-closes").value).toISOString();
    api("POST", "/v1/polls", poll).then(function (created) {
      $("#c-error").textContent = "";
      $("#create").reset();
      $("#c-questions").textContent = "";
      counter = 0;
      addQuestion();
      refresh().then(function () { show(created); });
    }, function (error) { $("#c-error").textContent = error.message; });
  });

  /* The system panel, from the server's own /metrics (Prometheus text). */
  function metrics() {
    fetch("/metrics").then(function (r) { return r.text(); }).then(function (text) {
      var votes = 0, viewers = 0, buckets = [];
      text.split("\n").forEach(function (line) {
        if (line.charAt(0) === "#" || !line) return;
        var parts = line.split(" ");
        var value = Number(parts[parts.length - 1]);
        if (/^pollwire_votes_total\{/.test(line)) votes += value;
        else if (/^pollwire_live_subscribers\b/.test(line)) viewers += value;
        else if (/^pollwire_ingest_commit_duration_seconds_bucket\{/.test(line)) {
          var le = /le="([^"]+)"/.exec(line);
          if (le) buckets.push([le[1] === "+Inf" ? Infinity : Number(le[1]), value]);
        }
      });
      var now = Date.now();
      if (lastVotes) $("#m-votes").textContent = Math.max(0, Math.round((votes - lastVotes[1]) / ((now - lastVotes[0]) / 1000)));
      lastVotes = [now, votes];
      $("#m-viewers").textContent = String(viewers);
      buckets.sort(function (a, b) { return a[0] - b[0]; });
      var total = buckets.length ? buckets[buckets.length - 1][1] : 0;
      var p99 = buckets.filter(function (b) { return b[1] >= total * 0.99; })[0];
      $("#m-commit").textContent = total && p99 ? (p99[0] === Infinity ? "> 5 s" : (p99[0] * 1000) + " ms") : "–";
    });
  }
})();
