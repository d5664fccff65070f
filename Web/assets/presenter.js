/* Presenter page /p/{id}: live results for a big screen, over SSE (EventSource reconnects by
 * itself and sends Last-Event-ID; the page says when it is reconnecting). */
(function () {
  "use strict";
  var id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  var svgNS = "http://www.w3.org/2000/svg";
  var poll = null;
  var samples = [];
  var momentum = {};
  var timelineAt = 0;
  var timelinePending = null;

  function $(sel) { return document.querySelector(sel); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(svgNS, tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    return node;
  }
  function status(text, kind) {
    var s = $("#status");
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  fetch("/v1/polls/" + encodeURIComponent(id)).then(function (r) {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }).then(function (definition) {
    poll = definition;
    document.title = poll.title + " · Pollwire";
    $("#title").textContent = poll.title;
    $("#title").setAttribute("dir", "auto");
    var url = location.origin + "/embed/" + encodeURIComponent(poll.id);
    $("#vote-url").textContent = url.replace(/^https?:\/\//, "");
    $("#vote-url").href = url;
    connect();
    timeline();
  }).catch(function () { status("This poll could not be loaded.", "error"); });

  function connect() {
    var source = new EventSource("/v1/polls/" + encodeURIComponent(id) + "/live");
    source.onopen = function () { status("Live", "live"); };
    source.onerror = function () { status("Reconnecting…", "warn"); };
    source.addEventListener("results", function (event) { draw(JSON.parse(event.data)); });
  }

  function draw(results) {
    $("#total").textContent = results.total.toLocaleString();
    $("#total-label").textContent = results.total === 1 ? "vote" : "votes";
    document.body.setAttribute("data-version", String(results.version));
    sample(results.total);
    if (!results.hidden) refreshTimeline();
    if (results.stale) status("Live (the server is catching up)", "warn");
    var area = $("#questions");
    if (results.hidden) {
      area.textContent = "";
      area.appendChild(el("p", { class: "hidden-note" }, "Results will be shown soon."));
      return;
    }
    (results.questions || []).forEach(function (qr) {
      var q = poll.questions.filter(function (x) { return x.id === qr.id; })[0];
      if (!q) return;
      var section = area.querySelector('section[data-q="' + qr.id + '"]');
      if (!section) {
        section = el("section", { "data-q": qr.id, class: "question" });
        section.appendChild(el("h2", { dir: "auto" }, q.prompt));
        section.appendChild(el("div", { class: "body" }));
        area.appendChild(section);
      }
      var body = section.querySelector(".body");
      if (qr.kind === "nps") gauge(body, qr);
      else if (qr.kind === "text") cloud(body, qr.latest || []);
      else bars(body, q, qr);
    });
  }

  function bars(body, q, qr) {
    var rows;
    if (qr.options) {
      rows = qr.options.map(function (o) {
        var option = q.options.filter(function (x) { return x.id === o.id; })[0];
        return { id: o.id, label: option ? option.label : o.id, value: o.count != null ? o.count : o.points };
      });
      if (qr.kind === "ranking") rows.sort(function (a, b) { return b.value - a.value; });
    } else {
      rows = (qr.distribution || []).map(function (d) { return { id: String(d.value), label: String(d.value), value: d.count }; });
    }
    var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0) || 1;
    var sum = rows.reduce(function (m, r) { return m + r.value; }, 0) || 1;
    rows.forEach(function (row, index) {
      var line = body.querySelector('[data-option="' + row.id + '"]');
      if (!line) {
        line = el("div", { class: "bar-row", "data-option": row.id });
        line.appendChild(el("span", { class: "label", dir: "auto" }, row.label));
        var track = el("div", { class: "track", role: "progressbar", "aria-label": row.label, "aria-valuemin": "0" });
        track.appendChild(el("div", { class: "fill" }));
        line.appendChild(track);
        line.appendChild(el("span", { class: "count" }));
        body.appendChild(line);
      }
      // Ranking: the order on screen is the order of points.
      if (body.children[index] !== line) body.insertBefore(line, body.children[index]);
      var track = line.querySelector(".track");
      track.setAttribute("aria-valuemax", String(sum));
      track.setAttribute("aria-valuenow", String(row.value));
      line.querySelector(".fill").style.width = (row.value / max) * 100 + "%";
      // Momentum (the server's timeline): the option's share now against the minute before.
      var m = (momentum[qr.id] || {})[row.id] || 0;
      var trend = m >= 0.01 ? " ▲" : m <= -0.01 ? " ▼" : "";
      line.setAttribute("data-trend", trend ? (m > 0 ? "up" : "down") : "flat");
      line.querySelector(".count").textContent =
        row.value.toLocaleString() + (qr.kind === "ranking" ? " pts" : " · " + Math.round((row.value / sum) * 100) + "%") + trend;
    });
    if (qr.mean != null) {
      var mean = body.querySelector(".mean") || body.appendChild(el("p", { class: "mean" }));
      mean.textContent = "Mean " + qr.mean.toFixed(2);
    }
    if (qr.winner) {
      var winner = body.querySelector(".winner") || body.appendChild(el("p", { class: "winner" }));
      var option = q.options.filter(function (x) { return x.id === qr.winner; })[0];
      winner.textContent = "Instant-runoff winner: " + (option ? option.label : qr.winner);
    }
  }

  function gauge(body, qr) {
    var nps = qr.nps == null ? 0 : qr.nps;
    var g = body.querySelector("svg.gauge");
    if (!g) {
      g = svg("svg", { class: "gauge", viewBox: "0 0 200 120", role: "img" });
      g.appendChild(svg("path", { d: "M20 100 A80 80 0 0 1 180 100", class: "gauge-track" }));
      g.appendChild(svg("path", { d: "M20 100 A80 80 0 0 1 180 100", class: "gauge-fill", pathLength: "200" }));
      var text = svg("text", { x: "100", y: "95", "text-anchor": "middle", class: "gauge-value" });
      g.appendChild(text);
      body.appendChild(g);
      body.appendChild(el("p", { class: "gauge-split" }));
    }
    g.setAttribute("aria-label", "Net Promoter Score " + Math.round(nps));
    g.querySelector(".gauge-fill").style.strokeDasharray = (nps + 100) + " 200";
    g.querySelector(".gauge-value").textContent = (nps > 0 ? "+" : "") + Math.round(nps);
    body.querySelector(".gauge-split").textContent =
      "Promoters " + (qr.promoters || 0) + " · Passives " + (qr.passives || 0) + " · Detractors " + (qr.detractors || 0);
  }

  function cloud(body, latest) {
    var counts = {};
    latest.forEach(function (text) {
      text.toLowerCase().split(/[^\p{L}\p{N}]+/u).forEach(function (word) {
        if (word.length > 2) counts[word] = (counts[word] || 0) + 1;
      });
    });
    var words = Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; }).slice(0, 40);
    var max = words.length ? counts[words[0]] : 1;
    body.textContent = "";
    var list = el("ul", { class: "cloud", "aria-label": "Most used words" });
    words.forEach(function (word) {
      var item = el("li", { dir: "auto", class: "w" + Math.max(1, Math.round((counts[word] / max) * 5)) }, word);
      list.appendChild(item);
    });
    body.appendChild(list);
  }

  /* Votes per second now, from the totals the stream brings. */
  function sample(total) {
    var now = Date.now();
    samples.push([now, total]);
    while (samples.length && now - samples[0][0] > 60000) samples.shift();
    var rate = 0;
    for (var i = 1; i < samples.length; i++) {
      var dt = (samples[i][0] - samples[i - 1][0]) / 1000;
      rate = dt > 0 ? (samples[i][1] - samples[i - 1][1]) / dt : rate;
    }
    $("#rate").textContent = Math.round(rate).toLocaleString();
  }

  /* The server's timeline in its default window (10 s unless the server lists other widths:
   * analytics.windows), 60 windows, and each option's momentum, read at most every 3 seconds
   * while votes arrive. */
  function refreshTimeline() {
    if (timelinePending) return;
    var wait = Math.max(0, timelineAt + 3000 - Date.now());
    timelinePending = setTimeout(function () { timelinePending = null; timeline(); }, wait);
  }

  function timeline() {
    timelineAt = Date.now();
    fetch("/v1/polls/" + encodeURIComponent(id) + "/timeline?momentum=6").then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (t) {
      momentum = t.momentum || {};
      var spark = $("#spark");
      spark.textContent = "";
      var windows = t.windows || [];
      var top = windows.reduce(function (m, w) { return Math.max(m, w.ballots); }, 1);
      var width = 200 / Math.max(windows.length, 1);
      windows.forEach(function (w, i) {
        if (!w.ballots) return;
        var height = (w.ballots / top) * 46;
        spark.appendChild(svg("rect", {
          x: (i * width).toFixed(2), y: (48 - height).toFixed(2), width: Math.max(width - 0.5, 0.5).toFixed(2),
          height: height.toFixed(2), class: w.complete ? "spark-bar" : "spark-bar open"
        }));
      });
      spark.setAttribute("data-ballots", String(t.totals ? t.totals.ballots : 0));
    }).catch(function () { /* the bars wait for the next results */ });
  }
})();
