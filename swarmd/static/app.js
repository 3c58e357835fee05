// swarmd status page: polls /api/status and redraws. Every value from the server is
// written with textContent or an SVG attribute, never innerHTML: log lines are untrusted.
"use strict";
(function () {
  const POLL_MS = 1500;
  const MAX_POINTS = 300;      // points drawn per chart, whatever the JSON carries
  const MAX_TRANSITIONS = 20;
  const SVGNS = "http://www.w3.org/2000/svg";
  let lastState = null;
  let lastOk = Date.now();
  const transitions = [];

  const $ = (id) => document.getElementById(id);
  const set = (id, text) => { const el = $(id); if (el) el.textContent = text; };
  const isNum = (x) => typeof x === "number" && isFinite(x);
  const dash = (x) => (x === null || x === undefined || x === "" ? "—" : String(x));

  function duration(s) {
    if (!isNum(s)) return "—";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    const m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + sec + "s";
    return sec + "s";
  }
  function when(at) {
    if (isNum(at)) return new Date(at * 1000).toLocaleTimeString();
    return dash(at);
  }
  // Axis labels for wall-clock seconds: time of day, plus the date when the history
  // spans more than a day.
  function timeLabel(points) {
    const span = points.length ? points[points.length - 1][0] - points[0][0] : 0;
    const opts = span > 86400 ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" } : undefined;
    return (x) => new Date(x * 1000).toLocaleString(undefined, opts || { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function fmtReward(x) { return isNum(x) ? x.toFixed(3) : "—"; }

  function rewardTrend(hist) {
    if (hist.length < 2) return "";
    const last = hist[hist.length - 1][1];
    const prev = hist.slice(-6, -1).map((p) => p[1]).filter(isNum);
    if (!prev.length || !isNum(last)) return "";
    const mean = prev.reduce((a, b) => a + b, 0) / prev.length;
    const arrow = last > mean ? "▲" : last < mean ? "▼" : "▶";
    return arrow + " vs " + mean.toFixed(3) + " (last " + prev.length + ")";
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVGNS, tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // A small line chart: points are [x, y]; labels come from fmtX/fmtY.
  function drawChart(el, points, cls, fmtX, fmtY, emptyText) {
    while (el.firstChild) el.removeChild(el.firstChild);
    const W = 560, H = 200, L = 48, R = 12, T = 10, B = 24;
    el.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    el.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    points = points.filter((p) => isNum(p[0]) && isNum(p[1])).slice(-MAX_POINTS);
    if (!points.length) {
      el.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, emptyText));
      return;
    }
    let x0 = Math.min(...points.map((p) => p[0])), x1 = Math.max(...points.map((p) => p[0]));
    let y0 = Math.min(...points.map((p) => p[1])), y1 = Math.max(...points.map((p) => p[1]));
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    const d = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
    el.appendChild(svg("path", { d: d, class: "series " + cls }));
    if (points.length <= 60) {
      for (const p of points) el.appendChild(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, class: "dot " + cls }));
    }
    el.appendChild(svg("text", { x: L - 4, y: T + 10, "text-anchor": "end", class: "tick" }, fmtY(y1)));
    el.appendChild(svg("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "tick" }, fmtY(y0)));
    el.appendChild(svg("text", { x: L, y: H - 6, class: "tick" }, fmtX(x0)));
    el.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, fmtX(x1)));
  }

  function restartPoints(s) {
    // The JSON carries only the last N restarts: start the cumulative line at the
    // total minus N so that it ends at the true count.
    const hist = Array.isArray(s.restart_history) ? s.restart_history : [];
    let n = (isNum(s.restarts) ? s.restarts : hist.length) - hist.length;
    return hist.map((r) => [r[0], ++n]);
  }

  function drawReasons(byReason) {
    const body = $("reasons");
    while (body.firstChild) body.removeChild(body.firstChild);
    const rows = Object.entries(byReason || {}).sort((a, b) => b[1] - a[1]).slice(0, 10);
    if (!rows.length) rows.push(["no restarts", ""]);
    for (const [reason, n] of rows) {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = reason;
      const b = document.createElement("td"); b.className = "n"; b.textContent = String(n);
      tr.append(a, b); body.appendChild(tr);
    }
  }

  function noteTransition(state, s) {
    if (lastState !== null && state !== lastState) {
      const why = s.last_decision && s.last_decision.reason ? " (" + s.last_decision.reason + ")" : "";
      transitions.unshift(new Date().toLocaleTimeString() + "  " + lastState + " → " + state + why);
      transitions.length = Math.min(transitions.length, MAX_TRANSITIONS);
      const ol = $("transitions");
      while (ol.firstChild) ol.removeChild(ol.firstChild);
      for (const t of transitions) { const li = document.createElement("li"); li.textContent = t; ol.appendChild(li); }
    }
    lastState = state;
  }

  function setState(state) {
    const el = $("state");
    el.textContent = state;
    el.className = "badge state-" + String(state).replace(/[^a-z_]/g, "");
    document.title = "swarmd: " + state;
  }

  // Same texts as swarmd/status_lines.py (the server renders the first page with those).
  function p2pdLine(d) {
    if (d.p2pd_alive === false) return "DEAD: " + (d.p2pd_evidence || "gone");
    if (d.p2pd_pid === null || d.p2pd_pid === undefined) return "-";
    const answered = d.p2pd_answered === true ? "answers" : d.p2pd_answered === false ? "not answering" : "no control socket";
    const dht = d.dht_pid ? ", DHT process " + d.dht_pid : "";
    return "pid " + d.p2pd_pid + dht + ", " + answered + (d.p2pd_alive ? "" : " (starting)");
  }

  function chainLine(c) {
    if (!c.enabled) return "not probed ([chain] rpc_url unset)";
    if (c.rpc_ok === null || c.rpc_ok === undefined) return "not read yet";
    if (!c.rpc_ok) return "RPC DOWN: " + (c.detail || "");
    const where = "chain " + c.chain_id + ", block " + c.block;
    if (c.round === null || c.round === undefined) {
      return c.contract ? "RPC ok, " + where + ", no round (" + (c.detail || "") + ")" : "RPC ok, " + where;
    }
    return "round " + c.round + " stage " + c.stage + ", RPC ok, " + where;
  }

  function render(s) {
    const state = dash(s.state);
    setState(state);
    noteTransition(state, s);
    set("progressing", s.progressing ? "making progress" : "not progressing");
    set("pid", dash(s.pid));
    set("uptime", duration(s.uptime_s));
    set("restarts", dash(s.restarts));
    const reasons = Object.entries(s.restarts_by_reason || {}).sort((a, b) => b[1] - a[1]);
    set("top_reason", reasons.length ? "most: " + reasons[0][0] : "");
    set("round_stage", dash(s.round) + " / " + dash(s.stage));
    set("progress_age", isNum(s.last_progress_age_s) ? duration(s.last_progress_age_s) + " ago" : "—");
    set("peers", dash(s.peers));
    set("p2pd", p2pdLine(s.dht || {}));
    set("chain", chainLine(s.chain || {}));
    const rh = Array.isArray(s.reward_history) ? s.reward_history : [];
    set("reward", rh.length ? fmtReward(rh[rh.length - 1][1]) : "—");
    set("reward_trend", rewardTrend(rh));
    const dec = s.last_decision || {};
    set("decision_action", dash(dec.action));
    set("decision_reason", dash(dec.reason));
    set("decision_at", when(dec.at));
    set("decision_evidence", dash(dec.evidence));
    set("peer_id", dash(s.peer_id));
    set("animal", dash(s.animal));
    set("version", dash(s.version));
    set("config_path", dash(s.config_path));
    drawChart($("reward_chart"), rh, "", (x) => "round " + x, fmtReward, "no rewards yet");
    drawChart($("restart_chart"), restartPoints(s), "restarts",
      timeLabel(restartPoints(s)), (y) => String(Math.round(y)), "no restarts");
    drawReasons(s.restarts_by_reason);
  }

  async function poll() {
    try {
      const r = await fetch("/api/status", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      lastOk = Date.now();
      $("conn").hidden = true;
      set("updated", "updated " + new Date().toLocaleTimeString());
    } catch (e) {
      $("conn").hidden = false;
      set("conn", "swarmd is not answering (" + Math.round((Date.now() - lastOk) / 1000) + " s)");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
