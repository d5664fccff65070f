/* Pollwire widget: <script src="https://HOST/embed/pollwire.js" data-poll="ID" async></script>
 * (data-voter="ID" names the voter on polls that dedupe by voter; without it the browser's device
 * token identifies the voter; data-voter-token="JWT" carries the voter the site signed, for polls with
 * signedVoters). Renders the poll where the script tag is, votes, then shows live results (per the poll's
 * visibility). No dependencies; styles live in a shadow root, so the host page cannot break them. */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me) return;
  var base = new URL(me.src).origin;
  // data-poll, or the page's own path on /embed/{id} (the iframe and short-link page).
  var pollId = me.getAttribute("data-poll") ||
    (location.origin === base && (/^\/embed\/([^/]+)$/.exec(location.pathname) || [])[1]);
  var store = window.localStorage;
  var css = [
    ":host{all:initial;display:block;font:16px/1.45 system-ui,sans-serif;color:#1b1f24;max-width:34em}",
    ".pw{border:1px solid #8a939e;border-radius:10px;padding:1em 1.1em;background:#fff}",
    "h2{font-size:1.15em;margin:0 0 .6em}fieldset{border:0;margin:0 0 .9em;padding:0}",
    "legend{font-weight:600;margin-bottom:.35em;padding:0}label{display:flex;gap:.5em;align-items:center;padding:.2em 0;cursor:pointer}",
    ".scale{display:flex;flex-wrap:wrap;gap:.25em}.scale label{border:1px solid #8a939e;border-radius:6px;padding:.15em .55em}",
    "textarea{width:100%;box-sizing:border-box;font:inherit;border:1px solid #5c6670;border-radius:6px;padding:.4em}",
    "button{font:inherit;background:#0b57d0;color:#fff;border:0;border-radius:6px;padding:.5em 1.2em;cursor:pointer}",
    "button[disabled]{background:#5c6670;cursor:progress}button.s{background:#e9edf2;color:#1b1f24;padding:.1em .5em;margin-left:.3em}",
    ":focus-visible{outline:3px solid #b3261e;outline-offset:2px}",
    ".msg{margin:.6em 0 0;min-height:1.4em}.err{color:#b3261e;font-weight:600}",
    ".bar{background:#e9edf2;border-radius:4px;height:.9em;overflow:hidden;margin:.15em 0 .5em}",
    ".fill{background:#0b57d0;height:100%;width:0;transition:width .4s ease}",
    ".row{display:flex;justify-content:space-between;gap:1em}.muted{color:#4a535c;font-size:.9em}",
    "ol{margin:.2em 0;padding-left:1.4em}",
    "@media (prefers-reduced-motion:reduce){.fill{transition:none}}"
  ].join("");

  var hostEl = document.createElement("div");
  hostEl.className = "pollwire-widget";
  me.parentNode.insertBefore(hostEl, me.nextSibling);
  var root = hostEl.attachShadow ? hostEl.attachShadow({ mode: "open" }) : hostEl;
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
  }
  var box = el("div", { class: "pw", role: "region", "aria-label": "Poll" });
  root.appendChild(box);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }
  function key(name) { return "pollwire:" + base + ":" + name; }
  function api(path, options) {
    return fetch(base + path, options).then(function (r) {
      return r.text().then(function (t) {
        var body = null;
        try { body = t ? JSON.parse(t) : null; } catch (e) { body = null; }
        return { status: r.status, body: body, retry: r.headers.get("Retry-After") };
      });
    });
  }
  function fail(text) {
    box.textContent = "";
    box.appendChild(el("p", { class: "err", role: "alert" }, text));
  }
  function dirOf(text) {
    return /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF]/.test(text) ? "rtl" : "auto";
  }

  if (!pollId) return fail("Pollwire: the script tag needs data-poll.");
  api("/v1/polls/" + encodeURIComponent(pollId)).then(function (r) {
    if (r.status !== 200 || !r.body) return fail("This poll could not be loaded.");
    var poll = r.body;
    box.setAttribute("dir", dirOf(poll.title));
    box.setAttribute("aria-label", poll.title);
    if (store.getItem(key("voted:" + poll.id))) return showResults(poll);
    if (poll.phase && poll.phase !== "open") {
      render(poll);
      return say("This poll is closed.", true);
    }
    render(poll);
  }, function () { fail("This poll could not be loaded."); });

  var msg;
  function say(text, error) {
    msg.className = "msg" + (error ? " err" : "");
    msg.setAttribute("role", error ? "alert" : "status");
    msg.textContent = text;
  }

  function render(poll) {
    box.textContent = "";
    var form = el("form", { novalidate: "" });
    form.appendChild(el("h2", { id: "pw-title" }, poll.title));
    poll.questions.forEach(function (q) { form.appendChild(question(q)); });
    var button = el("button", { type: "submit" }, "Vote");
    form.appendChild(button);
    msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
    form.appendChild(msg);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) return;
      var answers = collect(poll, form);
      if (typeof answers === "string") return say(answers, true);
      button.disabled = true;
      button.textContent = "Sending…";
      say("");
      submit(poll, answers).then(function (done) {
        if (done) return;
        button.disabled = false;
        button.textContent = "Vote";
      });
    });
    box.appendChild(form);
  }

  function question(q) {
    var set = el("fieldset", { "data-q": q.id, dir: dirOf(q.prompt) });
    set.appendChild(el("legend", null, q.prompt + (q.required === false ? " (optional)" : "")));
    var name = "pw-" + q.id;
    if (q.kind === "single" || q.kind === "multiple") {
      q.options.forEach(function (o) {
        var label = el("label");
        label.appendChild(el("input", { type: q.kind === "single" ? "radio" : "checkbox", name: name, value: o.id }));
        label.appendChild(document.createTextNode(o.label));
        set.appendChild(label);
      });
    } else if (q.kind === "rating" || q.kind === "nps") {
      var scale = q.kind === "nps" ? { min: 0, max: 10 } : (q.scale || { min: 1, max: 5 });
      var row = el("div", { class: "scale" });
      for (var v = scale.min; v <= scale.max; v++) {
        var label = el("label");
        label.appendChild(el("input", { type: "radio", name: name, value: String(v) }));
        label.appendChild(document.createTextNode(String(v)));
        row.appendChild(label);
      }
      set.appendChild(row);
    } else if (q.kind === "ranking") {
      var list = el("ol", { "aria-label": "Your order, first is best" });
      q.options.forEach(function (o) {
        var item = el("li", { "data-id": o.id }, o.label);
        var up = el("button", { type: "button", class: "s", "aria-label": "Move " + o.label + " up" }, "↑");
        up.addEventListener("click", function () {
          if (item.previousElementSibling) { list.insertBefore(item, item.previousElementSibling); up.focus(); }
        });
        item.appendChild(up);
        list.appendChild(item);
      });
      set.appendChild(list);
    } else {
      set.appendChild(el("textarea", { name: name, rows: "3", maxlength: String(q.maxLength || 500), "aria-label": q.prompt }));
    }
    return set;
  }

  function collect(poll, form) {
    var answers = {};
    for (var i = 0; i < poll.questions.length; i++) {
      var q = poll.questions[i];
      var set = form.querySelector('fieldset[data-q="' + q.id + '"]');
      var value;
      if (q.kind === "single" || q.kind === "multiple") {
        value = Array.prototype.map.call(set.querySelectorAll("input:checked"), function (n) { return n.value; });
        if (!value.length) value = undefined;
      } else if (q.kind === "rating" || q.kind === "nps") {
        var checked = set.querySelector("input:checked");
        value = checked ? Number(checked.value) : undefined;
      } else if (q.kind === "ranking") {
        value = Array.prototype.map.call(set.querySelectorAll("li"), function (n) { return n.getAttribute("data-id"); });
      } else {
        var text = set.querySelector("textarea").value.trim();
        value = text ? text : undefined;
      }
      if (value === undefined) {
        if (q.required !== false) return "Please answer: " + q.prompt;
      } else {
        answers[q.id] = value;
      }
    }
    return answers;
  }

  function deviceToken() {
    var saved = store.getItem(key("device"));
    if (saved) return Promise.resolve(saved);
    return api("/v1/device-tokens", { method: "POST" }).then(function (r) {
      if (r.status !== 201 || !r.body) throw r;
      store.setItem(key("device"), r.body.token);
      return r.body.token;
    });
  }

  function submit(poll, answers) {
    var dedupe = (poll.settings || {}).dedupe;
    var idem = store.getItem(key("idem:" + poll.id)) || String(Date.now()) + Math.random().toString(36).slice(2);
    store.setItem(key("idem:" + poll.id), idem);
    // A voter id from the page (data-voter) on a poll that dedupes by voter; otherwise this
    // browser's device token, which a voter poll also takes as the voter's identity.
    // A poll with signedVoters takes the voter from the token the page's server signed
    // (data-voter-token), which names the voter itself.
    var signed = (poll.settings || {}).signedVoters ? me.getAttribute("data-voter-token") : null;
    var voter = dedupe === "voter" && !signed ? me.getAttribute("data-voter") : null;
    var token = dedupe === "none" || voter || signed ? Promise.resolve(null) : deviceToken();
    return token.then(function (device) {
      var body = { answers: answers };
      if (voter) body.voter = voter;
      if (device) body.device = device;
      var headers = { "Content-Type": "application/json", "Idempotency-Key": idem };
      if (signed) headers["Pollwire-Voter-Token"] = signed;
      return api("/v1/polls/" + encodeURIComponent(poll.id) + "/votes", {
        method: "POST",
        headers: headers,
        body: JSON.stringify(body)
      });
    }).then(function (r) {
      var code = r.body && r.body.error ? r.body.error.code : null;
      if (r.status === 201 || r.status === 200) {
        store.setItem(key("voted:" + poll.id), r.body.receipt || "1");
        store.removeItem(key("idem:" + poll.id));
        showResults(poll, "Thank you: your vote is counted.");
        return true;
      }
      store.removeItem(key("idem:" + poll.id));
      if (code === "already_voted") {
        store.setItem(key("voted:" + poll.id), "1");
        showResults(poll, "You have already voted.");
        return true;
      }
      if (code === "poll_not_open") say("This poll is closed.", true);
      else if (code === "rate_limited" || r.status === 503) countdown(Number(r.retry) || 5);
      else say((r.body && r.body.error && r.body.error.message) || "Your vote could not be sent.", true);
      return false;
    }, function () {
      say("Your vote could not be sent: check your connection and try again.", true);
      return false;
    });
  }

  function countdown(seconds) {
    var button = box.querySelector("button[type=submit]");
    button.disabled = true;
    var left = seconds;
    (function tick() {
      if (left <= 0) {
        button.disabled = false;
        button.textContent = "Vote";
        return say("You can try again now.");
      }
      say("Too many votes right now. Try again in " + left + " s.", true);
      left--;
      setTimeout(tick, 1000);
    })();
  }

  function showResults(poll, note) {
    box.textContent = "";
    box.appendChild(el("h2", null, poll.title));
    if (note) box.appendChild(el("p", { class: "msg", role: "status" }, note));
    var area = el("div", { "aria-live": "polite" });
    box.appendChild(area);
    var receipt = store.getItem(key("voted:" + poll.id));
    var url = base + "/v1/polls/" + encodeURIComponent(poll.id) + "/live" +
      (receipt && receipt !== "1" ? "?receipt=" + encodeURIComponent(receipt) : "");
    if (!window.EventSource) return;
    var source = new EventSource(url);
    source.addEventListener("results", function (event) { draw(poll, JSON.parse(event.data), area); });
  }

  function draw(poll, results, area) {
    area.textContent = "";
    var total = el("p", { class: "muted", "data-total": String(results.total) },
      results.total + (results.total === 1 ? " vote" : " votes"));
    if (results.hidden) {
      area.appendChild(total);
      area.appendChild(el("p", { class: "muted" }, "Results are not shown yet."));
      return;
    }
    (results.questions || []).forEach(function (qr) {
      var q = poll.questions.filter(function (x) { return x.id === qr.id; })[0];
      if (!q) return;
      var section = el("section", { "aria-label": q.prompt });
      section.appendChild(el("h3", { class: "muted" }, q.prompt));
      var rows = [];
      if (qr.options) {
        rows = qr.options.map(function (o) {
          var label = (q.options.filter(function (x) { return x.id === o.id; })[0] || { label: o.id }).label;
          return { label: label, value: o.count != null ? o.count : o.points, id: o.id };
        });
        if (qr.kind === "ranking") rows.sort(function (a, b) { return b.value - a.value; });
      } else if (qr.distribution) {
        rows = qr.distribution.map(function (d) { return { label: String(d.value), value: d.count, id: String(d.value) }; });
      } else if (qr.latest) {
        var list = el("ul");
        qr.latest.forEach(function (t) { list.appendChild(el("li", { dir: "auto" }, t)); });
        section.appendChild(list);
      }
      var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0) || 1;
      var sum = rows.reduce(function (m, r) { return m + r.value; }, 0) || 1;
      rows.forEach(function (row) {
        var pct = Math.round((row.value / sum) * 100);
        var line = el("div", { class: "row" });
        line.appendChild(el("span", { dir: "auto" }, row.label));
        line.appendChild(el("span", { "data-option": row.id }, row.value + " (" + pct + "%)"));
        section.appendChild(line);
        var bar = el("div", { class: "bar", role: "progressbar", "aria-label": row.label,
          "aria-valuemin": "0", "aria-valuemax": String(sum), "aria-valuenow": String(row.value) });
        var fill = el("div", { class: "fill" });
        bar.appendChild(fill);
        section.appendChild(bar);
        requestAnimationFrame(function () { fill.style.width = (row.value / max) * 100 + "%"; });
      });
      if (qr.nps != null) section.appendChild(el("p", null, "NPS " + Math.round(qr.nps)));
      area.appendChild(section);
    });
    area.appendChild(total);
  }
})();
