// The judge's page: plain JavaScript over the judge's own API (docs/judge.md), no build step.
// Every piece of text from the server is put in with textContent, never parsed as HTML, except
// a challenge's spec, which is the server's own challenge.html.
"use strict";

const TERMINAL = new Set(["success", "error", "timeout", "oom", "interrupted"]);
const state = { token: localStorage.getItem("judge-token") || "", me: null, accelerators: [],
                challenges: [], socket: null };

// -- small helpers ------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const $ = (sel) => document.querySelector(sel);
const main = () => $("#main");
function us(ms) { return ms === null || ms === undefined ? "—" : `${(ms * 1e3).toFixed(1)} us`; }
function pct(x) { return x === null || x === undefined ? "—" : `${(x * 100).toFixed(0)}%`; }
function num(x, digits = 0) {
  return x === null || x === undefined ? "—" : Number(x).toLocaleString("en", {maximumFractionDigits: digits});
}
function when(t) { return t ? new Date(t * 1000).toLocaleString() : "—"; }
function fmtValue(v) {
  if (v === null || v === undefined) return "NaN/none";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6);
  return JSON.stringify(v);
}
function headers() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && (body.output || body.detail) ? (body.output || JSON.stringify(body.detail)) : response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}
function typeset(node) {
  if (window.renderMathInElement) {
    window.renderMathInElement(node, {
      delimiters: [{ left: "\\[", right: "\\]", display: true }, { left: "\\(", right: "\\)", display: false },
                   { left: "$$", right: "$$", display: true }],
      throwOnError: false,
    });
  }
}
function show(...nodes) {
  // a part a view leaves out is null: never shown (replaceChildren would print "null")
  main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}
// whether an accelerator times submissions: a CPU worker checks them but cannot time them
function isTimed(name) {
  const a = state.accelerators.find((x) => x.name === name);
  return a ? a.timed !== false : true;
}
function submitLabel(accelerator) {
  return isTimed(accelerator) ? "Submit (every test, timed, ranked)"
    : "Submit (every test; not timed on a CPU)";
}
function errorBox(message) { return el("p", { class: "error", role: "alert", text: message }); }
function newId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- sign-in ------------------------------------------------------------------------------
async function refreshMe() {
  const who = $("#whoami");
  try {
    state.me = await api("/api/v1/me");
    who.textContent = state.me.auth === "off" ? `signed in as ${state.me.name} (authentication is off)`
                                             : `signed in as ${state.me.name}`;
    who.className = "ok";
  } catch (e) {
    state.me = null;
    who.textContent = state.token ? `sign-in failed: ${e.message}` : "not signed in";
    who.className = state.token ? "bad" : "";
  }
  $("#signout").hidden = !state.token;
  $("#token").hidden = !!(state.me && state.token);
  $("#signin").hidden = !!(state.me && state.token);
}
function setupSignIn() {
  $("#signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("judge-token", state.token);
    $("#token").value = "";
    await refreshMe();
    route();
  });
  $("#signout").addEventListener("click", async () => {
    state.token = "";
    localStorage.removeItem("judge-token");
    await refreshMe();
    $("#token").focus();
    route();
  });
}

// -- views --------------------------------------------------------------------------------
async function viewChallenges() {
  const data = await api("/api/v1/challenges");
  state.challenges = data.challenges;
  const rows = await Promise.all(data.challenges.map(async (c) => {
    let title = c.slug.replaceAll("_", " ");
    try { title = (await api(`/api/v1/challenges/${encodeURIComponent(c.id)}`)).title; } catch (e) { /* listed anyway */ }
    return el("tr", {},
      el("td", { text: c.number ?? "" }),
      el("td", {}, el("a", { href: `#/challenge/${encodeURIComponent(c.id)}`, text: title })),
      el("td", { text: c.difficulty }),
      el("td", {}, el("a", { href: `#/leaderboard/${encodeURIComponent(c.id)}`, text: "leaderboard",
                             "aria-label": `leaderboard of ${title}` })));
  }));
  show(el("h1", { text: "Challenges" }),
       el("table", { class: "grid", id: "challenge-list" },
          el("thead", {}, el("tr", {}, ["#", "challenge", "difficulty", ""].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, rows)));
}

function acceleratorSelect(id, selected) {
  return el("select", { id }, state.accelerators.map((a) =>
    el("option", { value: a.name, selected: a.name === selected, text: a.name })));
}

async function viewChallenge(id) {
  const c = await api(`/api/v1/challenges/${encodeURIComponent(id)}`);
  const spec = el("article", { class: "spec", id: "spec", "aria-label": "Specification" });
  spec.innerHTML = c.spec;                 // the server's own challenge.html
  const language = el("select", { id: "language" }, c.languages.map((l) =>
    el("option", { value: l, selected: l === "pytorch", text: l })));
  const source = el("textarea", { id: "source", rows: 18, spellcheck: "false", wrap: "off",
                                  "aria-label": "Solution source code" });
  const fillStarter = () => { source.value = c.starters[language.value] || ""; };
  language.addEventListener("change", () => { if (!source.dataset.edited) fillStarter(); });
  source.addEventListener("input", () => { source.dataset.edited = "1"; });
  fillStarter();
  const file = el("input", { id: "file", type: "file", accept: ".py,.cu,.txt" });
  file.addEventListener("change", async () => {
    const f = file.files[0];
    if (!f) return;
    source.value = await f.text();
    source.dataset.edited = "1";
    for (const l of c.languages) if (f.name.endsWith(c.fileNames[l].replace("solution", ""))) language.value = l;
  });
  const form = el("form", { id: "submit-form", class: "submit" },
    el("fieldset", {},
      el("legend", { text: "Submit a solution" }),
      el("div", { class: "row" },
        el("label", { for: "language", text: "Language" }), language,
        el("label", { for: "accelerator", text: "Accelerator" }), acceleratorSelect("accelerator"),
      ),
      el("div", { class: "row", role: "radiogroup", "aria-label": "Action" },
        el("input", { type: "radio", name: "action", id: "action-run", value: "run", checked: true }),
        el("label", { for: "action-run", text: "Run (the example test)" }),
        el("input", { type: "radio", name: "action", id: "action-submit", value: "submit" }),
        el("label", { for: "action-submit", id: "action-submit-label",
                      text: submitLabel((state.accelerators[0] || {}).name) }),
        el("input", { type: "radio", name: "action", id: "action-profile", value: "profile" }),
        el("label", { for: "action-profile", text: "Profile (every test, then why it is slow; not ranked)" }),
      ),
      el("div", { class: "row" }, el("label", { for: "file", text: "Upload a file" }), file),
      source,
      el("div", { class: "row" },
        el("button", { id: "submit-btn", type: "submit", text: "Send" }),
        el("span", { class: "hint", text: "Ctrl+Enter in the editor sends too" })),
    ));
  form.querySelector("#accelerator").addEventListener("change", (ev) => {
    form.querySelector("#action-submit-label").textContent = submitLabel(ev.target.value);
  });
  source.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
  });
  const progress = el("ol", { id: "progress", class: "progress", "aria-live": "polite" });
  const resultBox = el("section", { id: "result", "aria-live": "polite" });
  const lbBox = el("section", { id: "lb-status", "aria-live": "polite" });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const lang = language.value;
    const action = form.querySelector("input[name=action]:checked").value;
    runSubmission({ challenge: c.id, language: lang, action, accelerator: $("#accelerator").value,
                    name: c.fileNames[lang], content: source.value }, progress, resultBox, lbBox);
  });
  show(el("h1", { text: c.title }),
       el("p", { class: "meta" }, `${c.id} · ${c.difficulty} · `,
          el("a", { href: `#/leaderboard/${encodeURIComponent(c.id)}`, text: "leaderboard" })),
       el("div", { class: "columns" }, spec,
          el("div", { class: "work" }, form,
             el("h2", { text: "Progress" }), progress, resultBox, lbBox)));
  typeset(spec);
}

function runSubmission(sub, progress, resultBox, lbBox) {
  if (state.socket) state.socket.close();
  progress.replaceChildren();
  resultBox.replaceChildren();
  lbBox.replaceChildren();
  const submissionId = newId();
  let last = -1, attempts = 0, finished = false;
  const message = {
    action: sub.action, token: state.token || undefined, submissionId, followLeaderboard: true,
    submission: { files: [{ name: sub.name, content: sub.content }], language: sub.language,
                  accelerator: sub.accelerator, challenge: sub.challenge, mode: "accelerated", public: false },
  };
  const connect = () => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws/submit`);
    state.socket = ws;
    ws.addEventListener("open", () => ws.send(JSON.stringify({ ...message, after: last })));
    ws.addEventListener("message", (ev) => {
      const data = JSON.parse(ev.data);
      if (data.code) {                       // refused before it was stored
        progress.append(el("li", { class: "bad", text: `refused (${data.code}): ${data.output}` }));
        finished = true;
        return;
      }
      if (typeof data.seq === "number") { if (data.seq <= last) return; last = data.seq; }
      addProgress(progress, data);
      if (TERMINAL.has(data.status)) {
        finished = true;
        resultBox.replaceChildren(renderResult(data.output, data.status));
      } else if (data.status === "leaderboard") {
        lbBox.replaceChildren(renderLeaderboardEvent(data.output, sub));
      }
    });
    ws.addEventListener("close", () => {
      if (state.socket !== ws) return;
      const lbDone = lbBox.dataset.final === "1";
      if ((!finished || (sub.action === "submit" && !lbDone && lbBox.childElementCount)) && attempts < 20) {
        attempts += 1;                       // resume where the stream broke off
        setTimeout(connect, Math.min(5000, 300 * attempts));
      }
    });
  };
  connect();
}

function addProgress(list, data) {
  let text;
  if (TERMINAL.has(data.status)) {
    const out = data.output || {};
    text = typeof out === "string" ? out : `${(out.verdict || data.status).replaceAll("_", " ")}${out.message ? ": " + out.message : ""}`;
  } else if (data.status === "leaderboard") {
    text = (data.output && data.output.message) || "leaderboard";
  } else {
    text = typeof data.output === "string" ? data.output : JSON.stringify(data.output);
  }
  const item = el("li", { class: `st-${data.status}`, "data-status": data.status },
                  el("span", { class: "badge", text: data.status }), " ", text);
  list.append(item);
  list.scrollTop = list.scrollHeight;      // keep the latest event in view
}

function renderResult(result, status) {
  if (typeof result === "string") return errorBox(result);
  const verdict = (result.verdict || status || "").replaceAll("_", " ");
  const box = el("div", { class: "result" },
    el("h2", {}, "Result: ", el("span", { id: "verdict", class: `verdict v-${result.verdict}`, text: verdict })),
    result.message ? el("p", { class: "message", text: result.message }) : null,
    el("p", { class: "meta", text: `${result.challenge || ""} · ${result.language || ""} · ${result.action || ""} · device ${result.device || "?"} · seed ${result.seed ?? "?"} · submission ${result.submissionId || ""}` }));
  const tests = result.tests || [];
  if (tests.length) {
    const passed = tests.filter((t) => t.passed).length;
    box.append(el("details", { id: "tests-details", open: passed < tests.length },
      el("summary", { text: `Tests: ${passed} of ${tests.length} passed` }),
      el("table", { class: "grid", id: "tests" },
      el("thead", {}, el("tr", {}, ["test", "sizes", "", "max abs err", "mismatches"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, tests.map((t) => el("tr", { class: t.passed ? "pass" : "fail" },
        el("td", { text: t.name }),
        el("td", { text: Object.entries(t.params || {}).map(([k, v]) => `${k}=${v}`).join(", ") }),
        el("td", { text: t.passed ? "pass" : "FAIL" }),
        el("td", { text: t.max_abs_error === null || t.max_abs_error === undefined ? "—" : Number(t.max_abs_error).toExponential(2) }),
        el("td", { text: t.total ? `${num(t.mismatches)} of ${num(t.total)}` : "" })))))));
    const failed = tests.find((t) => !t.passed);
    if (failed) {
      const w = failed.worst;
      const worst = el("div", { id: "worst", class: "worst" },
        el("h3", { text: `Worst element of ${failed.name}` }));
      if (w) {
        worst.append(el("dl", {},
          el("dt", { text: "index" }), el("dd", { text: fmtValue(w.index) }),
          el("dt", { text: "got" }), el("dd", { text: fmtValue(w.got) }),
          el("dt", { text: "expected" }), el("dd", { text: fmtValue(w.expected) }),
          el("dt", { text: "abs error" }), el("dd", { text: fmtValue(w.abs_error) }),
          el("dt", { text: "rel error" }), el("dd", { text: fmtValue(w.rel_error) })));
      }
      if (failed.message) worst.append(el("pre", { text: failed.message }));
      box.append(worst);
    }
  }
  const timing = renderPerformance(result.performance);
  if (timing) box.append(timing);
  const profile = typeof renderProfile === "function" ? renderProfile(result.profile) : null;
  if (profile) box.append(profile);                    // profile.js (--action profile)
  if (result.details) box.append(el("details", {}, el("summary", { text: "Compiler output / traceback" }), el("pre", { text: result.details })));
  if (result.logs) box.append(el("details", {}, el("summary", { text: "Your program's output" }), el("pre", { text: result.logs })));
  return box;
}

function renderPerformance(perf) {
  if (!perf) return null;
  if (perf.run === false) return el("p", { id: "timing", class: "meta", text: `Timing: ${perf.reason || "not run"}` });
  if (!perf.timed) return el("p", { id: "timing", class: "meta", text: `Timing: not timed (${perf.reason || "no GPU"})` });
  const sol = perf.solution || {}, ref = perf.reference || {};
  const floor = perf.floor_fraction ?? (perf.floor && perf.floor.fraction);
  const rows = [
    ["your median", us(sol.median_ms)], ["reference median", us(ref.median_ms)],
    ["speedup", perf.speedup ? `${Number(perf.speedup).toFixed(2)}x` : "—"],
    ["bandwidth", perf.gbps ? `${num(perf.gbps)} GB/s` : "—"],
    ["of the device's peak", pct(perf.bandwidth_fraction)],
    ["of the measured floor", floor === undefined || floor === null ? "—" : pct(floor)],
    ["runs", num(sol.runs)],
  ];
  return el("table", { class: "grid timing", id: "timing" }, el("caption", { text: "Timing" }),
    el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: v })))));
}

function renderLeaderboardEvent(ev, sub) {
  const box = el("div", { class: `lb-event lb-${ev.state}` },
    el("h2", { text: "Leaderboard" }),
    el("p", { id: "lb-message", "data-state": ev.state, text: ev.message || ev.state }));
  if (ev.final) box.dataset.final = "1";
  box.append(el("p", {}, el("a", { href: `#/leaderboard/${encodeURIComponent(sub.challenge)}?accelerator=${encodeURIComponent(sub.accelerator)}`,
                                   text: "Open the leaderboard" })));
  const holder = document.querySelector("#lb-status");
  if (holder) holder.dataset.final = ev.final ? "1" : "";
  return box;
}

function entryRow(e, admin, challenge, withRank) {
  const cells = [];
  if (withRank) cells.push(el("td", { text: e.rank ?? "" }));
  cells.push(el("td", { text: e.owner }), el("td", { text: e.language }),
    el("td", { text: e.timed ? us(e.medianMs) : "not timed" }),
    el("td", { text: e.timed ? us(e.submittedMedianMs) : "—" }),
    el("td", { text: e.gbps ? num(e.gbps) : "—" }),
    el("td", { text: pct(e.floorFraction) }),
    el("td", { text: when(e.when) }),
    el("td", { class: "mono", text: e.submissionId }));
  if (admin) {
    const remove = el("button", { type: "button", class: "small", text: "Remove",
                                  "aria-label": `remove ${e.owner}'s entry ${e.submissionId}` });
    remove.addEventListener("click", async () => {
      const reason = prompt(`Remove ${e.owner}'s entry? Reason:`) ?? null;
      if (reason === null) return;
      await api(`/api/v1/leaderboards/${encodeURIComponent(challenge)}/entries/${encodeURIComponent(e.submissionId)}?reason=${encodeURIComponent(reason)}`, { method: "DELETE" });
      route();
    });
    cells.push(el("td", {}, remove));
  }
  return el("tr", {}, cells);
}

function entryTable(id, caption, entries, admin, challenge, withRank) {
  const heads = [...(withRank ? ["rank"] : []), "user", "language", "median (verified)", "submitted", "GB/s", "% of floor", "when", "submission", ...(admin ? [""] : [])];
  return el("table", { class: "grid", id }, el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, entries.map((e) => entryRow(e, admin, challenge, withRank))));
}

function chart(entries) {
  const top = entries.filter((e) => e.timed && e.medianMs).slice(0, 10);
  if (!top.length) return el("p", { class: "meta", id: "lb-empty", text: "No verified timed entries yet." });
  const NS = "http://www.w3.org/2000/svg";
  const bar = 24, gap = 6, left = 190, width = 640, right = 90;
  const height = top.length * (bar + gap) + 10;
  const max = Math.max(...top.map((e) => e.medianMs));
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("id", "lb-chart");
  svg.setAttribute("aria-label", "Verified median time of the top entries: " +
    top.map((e) => `${e.rank}. ${e.owner} (${e.language}) ${us(e.medianMs)}`).join("; "));
  top.forEach((e, k) => {
    const y = 5 + k * (bar + gap);
    const w = Math.max(2, (width - left - right) * e.medianMs / max);
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", left - 8); label.setAttribute("y", y + bar * 0.7);
    label.setAttribute("text-anchor", "end"); label.setAttribute("class", "chart-label");
    label.textContent = `${e.rank}. ${e.owner} (${e.language})`;
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", left); rect.setAttribute("y", y); rect.setAttribute("width", w);
    rect.setAttribute("height", bar); rect.setAttribute("class", `chart-bar lang-${e.language}`);
    const value = document.createElementNS(NS, "text");
    value.setAttribute("x", left + w + 6); value.setAttribute("y", y + bar * 0.7);
    value.setAttribute("class", "chart-value");
    value.textContent = us(e.medianMs);
    svg.append(label, rect, value);
  });
  return el("figure", { class: "chart" }, svg,
            el("figcaption", { text: "Verified median per entry (shorter is faster)" }));
}

async function viewLeaderboard(id, params) {
  const accelerator = params.get("accelerator") || (state.accelerators[0] || {}).name || "";
  const language = params.get("language") || "";
  const q = new URLSearchParams({ accelerator });
  if (language) q.set("language", language);
  const [c, board] = await Promise.all([api(`/api/v1/challenges/${encodeURIComponent(id)}`),
                                        api(`/api/v1/leaderboards/${encodeURIComponent(id)}?${q}`)]);
  const admin = !!(state.me && state.me.admin);
  const accSel = acceleratorSelect("lb-accelerator", board.accelerator);
  const langSel = el("select", { id: "lb-language" },
    el("option", { value: "", text: "all languages", selected: !language }),
    c.languages.map((l) => el("option", { value: l, text: l, selected: l === language })));
  const apply = () => {
    const p = new URLSearchParams({ accelerator: accSel.value });
    if (langSel.value) p.set("language", langSel.value);
    location.hash = `#/leaderboard/${encodeURIComponent(id)}?${p}`;
  };
  accSel.addEventListener("change", apply);
  langSel.addEventListener("change", apply);
  const parts = [
    el("h1", { text: `Leaderboard: ${c.title}` }),
    el("p", { class: "meta" }, el("a", { href: `#/challenge/${encodeURIComponent(id)}`, text: "the challenge" }),
       ` · ranked by the verification run's median; both medians must agree within ${Math.round(board.band * 100)}%`),
    el("div", { class: "row" }, el("label", { for: "lb-accelerator", text: "Accelerator" }), accSel,
       el("label", { for: "lb-language", text: "Language" }), langSel),
  ];
  if (isTimed(board.accelerator) || board.entries.length) {
    parts.push(chart(board.entries),
               entryTable("lb-ranks", `Timed ranks on ${board.accelerator}`, board.entries, admin, id, true));
  } else {
    parts.push(el("p", { class: "meta", id: "lb-untimed",
                         text: `${board.accelerator} grades without a GPU: accepted submissions are verified and listed, not timed or ranked by time.` }));
  }
  if (board.notTimed.length) {
    parts.push(entryTable("lb-not-timed", "Not timed (graded without a GPU; listed apart, not ranked)",
                          board.notTimed, admin, id, false));
  }
  if (board.verifying.length) {
    parts.push(el("h2", { text: "Being verified" }),
      el("ul", { id: "lb-verifying" }, board.verifying.map((e) =>
        el("li", { text: `${e.owner} (${e.language}): ${e.timed ? us(e.submittedMedianMs) : "not timed"}, submission ${e.submissionId}` }))));
  }
  if (board.held.length) {
    const rows = board.held.map((e) => {
      const cells = [el("td", { text: e.owner }), el("td", { text: e.language }),
        el("td", { text: us(e.submittedMedianMs) }), el("td", { text: us(e.verifiedMedianMs) }),
        el("td", { text: e.reason }), el("td", { class: "mono", text: e.submissionId })];
      if (admin) {
        const approve = el("button", { type: "button", class: "small", text: "Approve" });
        approve.addEventListener("click", async () => {
          try {
            await api(`/api/v1/leaderboards/${encodeURIComponent(id)}/entries/${encodeURIComponent(e.submissionId)}/approve`, { method: "POST" });
          } catch (err) { alert(err.message); }
          route();
        });
        const remove = el("button", { type: "button", class: "small", text: "Remove" });
        remove.addEventListener("click", async () => {
          await api(`/api/v1/leaderboards/${encodeURIComponent(id)}/entries/${encodeURIComponent(e.submissionId)}`, { method: "DELETE" });
          route();
        });
        cells.push(el("td", {}, approve, " ", remove));
      }
      return el("tr", {}, cells);
    });
    parts.push(el("table", { class: "grid", id: "lb-held" }, el("caption", { text: "Held for review (the two medians disagree, or the verification could not finish)" }),
      el("thead", {}, el("tr", {}, ["user", "language", "submitted", "verification", "why", "submission", ...(admin ? [""] : [])].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)));
  }
  if (board.history.length) {
    parts.push(el("details", { id: "lb-history" }, el("summary", { text: `History (${board.history.length} latest decisions)` }),
      el("ul", {}, board.history.map((e) => el("li", { text: `${when(e.decided || e.when)}: ${e.owner} (${e.language}) ${e.state}${e.reason ? " — " + e.reason : ""}` })))));
  }
  show(...parts);
}

async function viewMine() {
  if (!state.me) {
    show(el("h1", { text: "My submissions" }), el("p", { text: "Sign in with your token to see your submissions." }));
    return;
  }
  const data = await api("/api/v1/submissions?limit=100");
  show(el("h1", { text: "My submissions" }),
    data.submissions.length ? el("table", { class: "grid", id: "mine" },
      el("thead", {}, el("tr", {}, ["when", "challenge", "language", "action", "accelerator", "verdict", "submission"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, data.submissions.map((s) => el("tr", {},
        el("td", { text: when(s.created) }), el("td", { text: s.challenge }), el("td", { text: s.language }),
        el("td", { text: s.action }), el("td", { text: s.accelerator }),
        el("td", { text: (s.verdict || s.state).replaceAll("_", " ") }),
        el("td", {}, el("a", { href: `#/submission/${encodeURIComponent(s.submissionId)}`, class: "mono", text: s.submissionId }))))))
      : el("p", { text: "No submissions yet." }));
}

async function viewSubmission(id) {
  const [s, ev] = await Promise.all([api(`/api/v1/submissions/${encodeURIComponent(id)}`),
                                     api(`/api/v1/submissions/${encodeURIComponent(id)}/events`)]);
  const progress = el("ol", { id: "progress", class: "progress" });
  ev.events.forEach((e) => addProgress(progress, e));
  const lb = ev.events.filter((e) => e.status === "leaderboard").pop();
  show(el("h1", { text: `Submission ${s.submissionId}` }),
    el("p", { class: "meta", text: `${s.challenge} · ${s.language} · ${s.action} · ${s.accelerator} · ${s.state} · ${when(s.created)}` }),
    s.result ? renderResult(s.result, s.status) : el("p", { text: `Not finished (${s.state}).` }),
    lb ? renderLeaderboardEvent(lb.output, { challenge: s.challenge, accelerator: s.accelerator }) : null,
    el("h2", { text: "Events" }), progress);
}

// -- routing ------------------------------------------------------------------------------
async function route() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  document.querySelectorAll("nav a").forEach((a) => a.removeAttribute("aria-current"));
  try {
    if (!parts.length) { $("#nav-challenges").setAttribute("aria-current", "page"); await viewChallenges(); }
    else if (parts[0] === "challenge") await viewChallenge(parts[1]);
    else if (parts[0] === "leaderboard") await viewLeaderboard(parts[1], params);
    else if (parts[0] === "mine") { $("#nav-mine").setAttribute("aria-current", "page"); await viewMine(); }
    else if (parts[0] === "submission") await viewSubmission(parts[1]);
    else show(errorBox(`No such page: ${hash}`));
  } catch (e) {
    show(errorBox(e.status === 401 ? `Sign in first: ${e.message}` : `Could not load this page: ${e.message}`));
  }
  const heading = main().querySelector("h1");
  if (heading) document.title = `${heading.textContent} · GPU kernel judge`;
}

async function start() {
  setupSignIn();
  await refreshMe();
  try { state.accelerators = (await api("/api/v1/accelerators")).accelerators; } catch (e) { state.accelerators = []; }
  window.addEventListener("hashchange", () => { route().then(() => main().focus({ preventScroll: true })); });
  await route();
}
document.addEventListener("DOMContentLoaded", start);
