/* SynergAI operator page: polls the gateway's JSON and renders tables and SVG charts.
 * Query parameters: ?interval=<ms> (poll period, default 2000), ?stale_after=<s> (default 5).
 */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var POLL_MS = Math.max(200, Number(params.get("interval")) || 2000);
  var STALE_AFTER_S = Number(params.get("stale_after")) || 5;
  // Relative to /synergai/ui, so the page also works behind a path prefix (ingress).
  var WORKERS_URL = "v1/workers", STATS_URL = "v1/stats";
  var HISTORY = 180;
  var C = window.SynergCharts, fmt = C.fmt;
  var state = {updates: 0, lastOk: null, failures: 0, outstanding: [], t0: Date.now()};

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, txt) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (txt !== undefined) { n.textContent = txt; }
    return n;
  }
  function num(v) { return (typeof v === "number" && isFinite(v)) ? v : null; }

  function getJSON(url) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, Math.max(1500, POLL_MS));
    return fetch(url, {cache: "no-store", signal: ctl.signal}).then(function (r) {
      clearTimeout(timer);
      if (!r.ok) { throw new Error(url + " answered HTTP " + r.status); }
      return r.json();
    }, function (e) { clearTimeout(timer); throw e; });
  }

  function banner(kind, message) {
    var b = $("banner");
    if (!kind) { b.hidden = true; b.className = "banner"; b.textContent = ""; return; }
    b.hidden = false; b.className = "banner " + kind; b.textContent = message;
  }

  function renderPools(rows) {
    var pools = {};
    rows.forEach(function (w) {
      var p = pools[w.pool] || (pools[w.pool] = {arch: w.arch, n: 0, healthy: 0, out: 0,
                                                 work: 0, waits: []});
      p.n += 1; if (w.healthy) { p.healthy += 1; }
      p.out += num(w.outstanding) || 0; p.work += num(w.work_ms) || 0;
      if (w.healthy && num(w.predicted_wait_ms) !== null) { p.waits.push(w.predicted_wait_ms); }
    });
    var box = $("pools"); box.textContent = "";
    Object.keys(pools).sort().forEach(function (name) {
      var p = pools[name], card = el("div", "card");
      card.setAttribute("data-pool", name);
      card.appendChild(el("h3", "", name));
      card.appendChild(el("div", "arch", p.arch || ""));
      var dl = el("dl");
      var minWait = p.waits.length ? Math.min.apply(null, p.waits) : null;
      [["healthy", p.healthy + " / " + p.n], ["outstanding", String(p.out)],
       ["work ms", fmt(p.work)], ["best predicted wait ms", fmt(minWait)]].forEach(function (kv) {
        dl.appendChild(el("dt", "", kv[0])); dl.appendChild(el("dd", "", kv[1]));
      });
      card.appendChild(dl);
      if (p.healthy < p.n) { card.style.borderColor = "#c62828"; }
      box.appendChild(card);
    });
    return pools;
  }

  function renderWorkers(rows) {
    var body = $("workers").tBodies[0]; body.textContent = "";
    var maxOut = 1;
    rows.forEach(function (w) { maxOut = Math.max(maxOut, num(w.outstanding) || 0); });
    rows.forEach(function (w) {
      var tr = el("tr", w.healthy ? "up" : "down");
      tr.setAttribute("data-worker", w.id);
      tr.appendChild(el("td", "id", w.id));
      tr.appendChild(el("td", "", w.pool));
      tr.appendChild(el("td", "", w.arch || ""));
      tr.appendChild(el("td", "health " + (w.healthy ? "ok" : "down"), w.healthy ? "● up" : "✖ down"));
      var out = el("td", "num outstanding", String(num(w.outstanding) === null ? "–" : w.outstanding));
      var bar = el("span", "bar"); bar.style.width = (40 * (num(w.outstanding) || 0) / maxOut) + "px";
      out.appendChild(bar); tr.appendChild(out);
      tr.appendChild(el("td", "num work", fmt(num(w.work_ms))));
      tr.appendChild(el("td", "num wait", fmt(num(w.predicted_wait_ms))));
      var corr = el("td", "correction");
      Object.keys(w.correction || {}).sort().forEach(function (model) {
        var f = num(w.correction[model]);
        var chip = el("span", "chip" + (f > 1.2 ? " hi" : (f !== null && f < 0.83 ? " lo" : "")),
                      model + " ×" + fmt(f));
        corr.appendChild(chip);
      });
      if (!corr.childNodes.length) { corr.textContent = "–"; }
      tr.appendChild(corr);
      var st = num(w.staleness_s);
      tr.appendChild(el("td", "num staleness" + (st !== null && st > STALE_AFTER_S ? " stale-val" : ""),
                        st === null ? "–" : st.toFixed(1)));
      body.appendChild(tr);
    });
    $("worker-count").textContent = rows.length + " workers";
  }

  function renderOutstanding(pools) {
    var t = (Date.now() - state.t0) / 1000, point = {t: t, v: {}};
    Object.keys(pools).forEach(function (p) { point.v[p] = pools[p].out; });
    state.outstanding.push(point);
    if (state.outstanding.length > HISTORY) { state.outstanding.shift(); }
    var now = t, series = {};
    Object.keys(pools).forEach(function (p) {
      series[p] = state.outstanding.map(function (pt) { return p in pt.v ? pt.v[p] : null; });
    });
    C.line($("chart-outstanding"), {x: state.outstanding.map(function (pt) { return pt.t - now; }),
                                   series: series, xLabel: "s"});
  }

  function renderWorkersPayload(data) {
    var rows = Array.isArray(data.workers) ? data.workers : [];
    $("policy").textContent = data.policy || "–";
    renderWorkers(rows);
    renderOutstanding(renderPools(rows));
    var maxStale = 0;
    rows.forEach(function (w) { maxStale = Math.max(maxStale, num(w.staleness_s) || 0); });
    return {stale: !!data.stale, maxStale: maxStale};
  }

  function renderStats(s) {
    var note = $("stats-note");
    if (!s || !s.available) {
      note.textContent = "Stats unavailable" + (s && s.error ? ": " + s.error : "") +
        " — the charts below show what was last received.";
    } else {
      note.textContent = "";
    }
    if (!s) { return; }
    var waiting = "collecting: rates appear after two polls";
    C.line($("chart-requests"), {x: s.t, series: s.requests_rps, xLabel: "s", emptyText: waiting});
    C.line($("chart-violations"), {x: s.t, series: s.violations_rps, xLabel: "s",
                                   emptyText: s.t && s.t.length ? "no SLO violations" : waiting});
    var pools = Object.keys(s.pools || {}).sort();
    C.bars($("chart-latency"), {groups: pools, emptyText: waiting, series: {
      predicted: pools.map(function (p) { return s.pools[p].predicted_ms; }),
      actual: pools.map(function (p) { return s.pools[p].actual_ms; })}});
    var secs = s.recent ? s.recent.seconds : 0;
    $("latency-window").textContent = "mean ms, last " + fmt(secs) + " s";
    $("recent-window").textContent = secs ? "(over the last " + fmt(secs) + " s)" : "";
    var body = $("recent").tBodies[0]; body.textContent = "";
    ((s.recent && s.recent.rows) || []).forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", "", r.model));
      tr.appendChild(el("td", "", r.priority === "*" ? "all" : r.priority));
      tr.appendChild(el("td", "num", fmt(r.rps)));
      tr.appendChild(el("td", "num", fmt(r.violations_rps)));
      var rate = num(r.violation_rate);
      tr.appendChild(el("td", "num" + (rate !== null && rate > 0.05 ? " stale-val" : ""),
                        rate === null ? "–" : (100 * rate).toFixed(1) + " %" +
                        (r.rps === null && r.priority !== "*" ? " of all" : "")));
      body.appendChild(tr);
    });
  }

  function tick() {
    var w = getJSON(WORKERS_URL), s = getJSON(STATS_URL).catch(function (e) {
      return {available: false, error: String(e.message || e)};
    });
    Promise.all([w, s]).then(function (res) {
      var info = renderWorkersPayload(res[0]);
      renderStats(res[1]);
      state.updates += 1; state.failures = 0; state.lastOk = new Date();
      document.body.setAttribute("data-updates", String(state.updates));
      $("updated").textContent = "updated " + state.lastOk.toLocaleTimeString() +
        " · every " + (POLL_MS / 1000) + " s";
      if (info.stale || info.maxStale > STALE_AFTER_S) {
        document.body.setAttribute("data-state", "stale");
        banner("stale", "Shared state is stale (Redis slow or unreachable): the gateway is " +
               "routing on this replica's local view. Oldest worker state: " +
               info.maxStale.toFixed(1) + " s.");
      } else {
        document.body.setAttribute("data-state", "ok");
        banner(null);
      }
    }).catch(function (e) {
      state.failures += 1;
      document.body.setAttribute("data-state", "down");
      banner("down", "Gateway unreachable (" + String(e.message || e) + "). " +
             (state.lastOk ? "Showing data from " + state.lastOk.toLocaleTimeString() + "; "
                           : "No data received yet; ") + "retrying every " + (POLL_MS / 1000) + " s.");
    }).then(function () { setTimeout(tick, POLL_MS); });
  }
  tick();
})();
