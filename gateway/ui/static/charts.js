/* Tiny SVG charts for the SynergAI operator page: no dependencies, no network.
 * SynergCharts.line(el, {x: [...], series: {label: [y|null...]}, xLabel})
 * SynergCharts.bars(el, {groups: [...], series: {label: [y|null...]}})
 */
(function (global) {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#3558d4", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0b7285",
                 "#e67700", "#5c940d", "#862e9c", "#495057"];

  function node(tag, attrs, parent) {
    var n = document.createElementNS(NS, tag);
    for (var k in attrs) { n.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(n); }
    return n;
  }
  function text(parent, x, y, s, attrs) {
    var t = node("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function niceMax(v) {
    if (!(v > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) { return steps[i] * p; } }
    return 10 * p;
  }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    var a = Math.abs(v);
    if (a >= 100) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1); }
    return v.toFixed(2);
  }
  function frame(el) {
    el.textContent = "";
    var w = Math.max(el.clientWidth || 0, 320), h = Math.max(el.clientHeight || 0, 180);
    var svg = node("svg", {viewBox: "0 0 " + w + " " + h, width: w, height: h}, el);
    return {svg: svg, w: w, h: h};
  }
  function empty(el, message) {
    var f = frame(el);
    text(f.svg, f.w / 2, f.h / 2, message, {"text-anchor": "middle", "class": "empty"});
    f.svg.setAttribute("data-empty", "1");
    return f.svg;
  }
  function yAxis(svg, m, w, h, ymax) {
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4, y = m.t + (h - m.t - m.b) * (1 - i / 4);
      node("line", {x1: m.l, x2: w - m.r, y1: y, y2: y, "class": i ? "grid" : "axis"}, svg);
      text(svg, m.l - 6, y + 4, fmt(v), {"text-anchor": "end"});
    }
  }
  function legend(svg, labels, w, m) {
    var x = m.l, y = 12;
    labels.forEach(function (label, i) {
      var width = 18 + label.length * 6.3;
      if (x + width > w - m.r) { x = m.l; y += 14; }
      node("rect", {x: x, y: y - 8, width: 10, height: 10, fill: PALETTE[i % PALETTE.length]}, svg);
      text(svg, x + 14, y + 1, label, {"class": "legend"});
      x += width + 10;
    });
    return y;
  }

  function line(el, data) {
    var labels = Object.keys(data.series || {}).sort();
    var xs = data.x || [];
    if (!labels.length || xs.length < 1) { return empty(el, data.emptyText || "no data yet"); }
    var f = frame(el), svg = f.svg, w = f.w, h = f.h;
    var m = {l: 46, r: 12, t: 16, b: 26};
    m.t = legend(svg, labels, w, m) + 10;
    var ymax = 0;
    labels.forEach(function (k) { data.series[k].forEach(function (v) { if (v > ymax) { ymax = v; } }); });
    ymax = niceMax(ymax * 1.05);
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    if (x1 - x0 < 1e-9) { x0 -= 1; }
    yAxis(svg, m, w, h, ymax);
    var sx = function (x) { return m.l + (w - m.l - m.r) * (x - x0) / (x1 - x0); };
    var sy = function (y) { return m.t + (h - m.t - m.b) * (1 - y / ymax); };
    [x0, (x0 + x1) / 2, x1].forEach(function (x, i) {
      text(svg, sx(x), h - m.b + 14, fmt(x) + (i === 2 ? " " + (data.xLabel || "") : ""),
           {"text-anchor": i === 0 ? "start" : (i === 2 ? "end" : "middle")});
    });
    labels.forEach(function (k, i) {
      var ys = data.series[k], d = "", pen = false, last = null;
      for (var j = 0; j < xs.length; j++) {
        var v = ys[j];
        if (v === null || v === undefined || !isFinite(v)) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(xs[j]).toFixed(1) + " " + sy(v).toFixed(1) + " ";
        pen = true; last = v;
      }
      var color = PALETTE[i % PALETTE.length];
      var p = node("path", {d: d, fill: "none", stroke: color, "stroke-width": 2,
                            "class": "series", "data-series": k, "data-last": fmt(last)}, svg);
      if (xs.length === 1 && last !== null) {
        node("circle", {cx: sx(xs[0]), cy: sy(last), r: 3, fill: color}, svg);
      }
      p.appendChild(document.createElementNS(NS, "title")).textContent = k + ": " + fmt(last);
    });
    return svg;
  }

  function bars(el, data) {
    var groups = data.groups || [], labels = Object.keys(data.series || {});
    if (!groups.length) { return empty(el, data.emptyText || "no data yet"); }
    var f = frame(el), svg = f.svg, w = f.w, h = f.h;
    var m = {l: 46, r: 12, t: 16, b: 26};
    m.t = legend(svg, labels, w, m) + 10;
    var ymax = 0;
    labels.forEach(function (k) { data.series[k].forEach(function (v) { if (v > ymax) { ymax = v; } }); });
    ymax = niceMax(ymax * 1.1);
    yAxis(svg, m, w, h, ymax);
    var gw = (w - m.l - m.r) / groups.length, bw = Math.min(40, gw * 0.8 / Math.max(labels.length, 1));
    groups.forEach(function (g, gi) {
      var cx = m.l + gw * (gi + 0.5);
      text(svg, cx, h - m.b + 14, g, {"text-anchor": "middle"});
      labels.forEach(function (k, si) {
        var v = data.series[k][gi];
        if (v === null || v === undefined || !isFinite(v)) { return; }
        var x = cx - bw * labels.length / 2 + bw * si;
        var y = m.t + (h - m.t - m.b) * (1 - v / ymax);
        var r = node("rect", {x: x + 1, y: y, width: bw - 2, height: h - m.b - y,
                              fill: PALETTE[si % PALETTE.length], "class": "bar-rect",
                              "data-group": g, "data-series": k, "data-value": fmt(v)}, svg);
        r.appendChild(document.createElementNS(NS, "title")).textContent = g + " " + k + ": " + fmt(v);
        text(svg, x + bw / 2, y - 3, fmt(v), {"text-anchor": "middle"});
      });
    });
    return svg;
  }

  global.SynergCharts = {line: line, bars: bars, fmt: fmt, palette: PALETTE};
})(window);
