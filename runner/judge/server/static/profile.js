// The judge's page: the profile of `--action profile` (docs/profile.md): the diagnosis, a
// timeline chart of one call of solve (the host's time in solve, and each kernel and copy on
// the GPU), the kernels and Nsight Compute's counters. Information only, never the verdict.
// Every string comes from the result and is put in with textContent, never parsed as HTML.
"use strict";

function profileEl(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function profileUs(x) {
  if (x === null || x === undefined) return "—";
  return x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${Number(x).toFixed(1)} us`;
}

function shortKernelName(name) {
  const base = String(name || "").split("(")[0].replace(/^void\s+/, "").trim() || String(name || "");
  return base.length > 60 ? base.slice(0, 57) + "..." : base;
}

function profileTimeline(tl) {
  const NS = "http://www.w3.org/2000/svg";
  const left = 70, width = 820, right = 20, lane = 26, top = 8;
  const span = Math.max(tl.call_us || 0, 1e-3);
  const x = (t) => left + (width - left - right) * Math.max(0, Math.min(t, span)) / span;
  const svg = document.createElementNS(NS, "svg");
  const height = top + 3 * (lane + 8) + 18;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("id", "profile-chart");
  svg.setAttribute("aria-label", `Timeline of one call: ${profileUs(tl.call_us)}, GPU busy ` +
    `${profileUs(tl.gpu_busy_us)}, ${tl.launches} kernel launches`);
  const text = (tx, ty, s, cls, anchor) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("class", cls || "chart-label");
    if (anchor) t.setAttribute("text-anchor", anchor);
    t.textContent = s;
    return t;
  };
  const rect = (x0, x1, y, cls, tip) => {
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", x0); r.setAttribute("y", y);
    r.setAttribute("width", Math.max(1, x1 - x0)); r.setAttribute("height", lane);
    r.setAttribute("class", cls);
    const title = document.createElementNS(NS, "title");
    title.textContent = tip;
    r.append(title);
    return r;
  };
  const lanes = [["host", 0], ["kernels", 1], ["copies", 2]];
  for (const [label, k] of lanes) svg.append(text(left - 8, top + k * (lane + 8) + lane * 0.7, label, "chart-label", "end"));
  svg.append(rect(x(0), x(tl.host_us), top, "tl-host", `host time in solve: ${profileUs(tl.host_us)}`));
  (tl.kernels || []).forEach((k, i) => {
    svg.append(rect(x(k.start_us), x(k.start_us + k.dur_us), top + lane + 8, `tl-kernel tl-k${i % 6}`,
      `${shortKernelName(k.name)}: ${profileUs(k.dur_us)} at ${profileUs(k.start_us)}, grid ` +
      `${(k.grid || []).join("x")}, block ${(k.block || []).join("x")}`));
  });
  (tl.copies || []).forEach((c) => {
    svg.append(rect(x(c.start_us), x(c.start_us + c.dur_us), top + 2 * (lane + 8), "tl-copy",
      `${c.kind}: ${profileUs(c.dur_us)}, ${c.bytes} bytes`));
  });
  const axisY = top + 3 * (lane + 8) + 12;
  svg.append(text(left, axisY, "0", "chart-value"),
             text(width - right, axisY, profileUs(span), "chart-value", "end"));
  return profileEl("figure", { class: "chart profile-chart" }, svg,
    profileEl("figcaption", { text: `One call of solve: ${profileUs(tl.call_us)}; the GPU is busy ` +
      `${profileUs(tl.gpu_busy_us)} and idle ${profileUs(tl.gpu_idle_us)}; ${tl.launches} ` +
      `kernel launch${tl.launches === 1 ? "" : "es"}` }));
}

function renderProfile(profile) {
  if (!profile) return null;
  const box = profileEl("section", { id: "profile", class: "profile" },
    profileEl("h3", { text: "Profile (information only, not part of the verdict)" }));
  if (!profile.available) {
    box.append(profileEl("p", { id: "profile-reason", class: "meta", text: profile.reason || "not available" }));
    return box;
  }
  const d = profile.diagnosis || {};
  if (d.summary) box.append(profileEl("p", { id: "profile-diagnosis", class: `diagnosis b-${d.bottleneck}`, text: d.summary }));
  const findings = (d.findings || []).slice(1);
  if (findings.length) box.append(profileEl("ul", { id: "profile-findings" }, findings.map((f) => profileEl("li", { text: f.text }))));
  const tl = profile.timeline || {};
  box.append(profileTimeline(tl));
  const kernels = (tl.kernels || []).slice(0, 20);
  box.append(profileEl("table", { class: "grid", id: "profile-kernels" },
    profileEl("caption", { text: `Kernels (${tl.launches} launches${tl.launches > kernels.length ? `, first ${kernels.length} shown` : ""})` }),
    profileEl("thead", {}, profileEl("tr", {}, ["start", "duration", "share", "gap before", "grid", "block", "kernel"].map((h) => profileEl("th", { scope: "col", text: h })))),
    profileEl("tbody", {}, kernels.map((k) => profileEl("tr", {},
      profileEl("td", { text: profileUs(k.start_us) }), profileEl("td", { text: profileUs(k.dur_us) }),
      profileEl("td", { text: `${(100 * (k.share || 0)).toFixed(0)}%` }),
      profileEl("td", { text: profileUs(k.gap_before_us) }),
      profileEl("td", { text: (k.grid || []).join("x") }), profileEl("td", { text: (k.block || []).join("x") }),
      profileEl("td", { text: shortKernelName(k.name) }))))));
  const counters = profile.counters || [];
  if (counters.length) {
    const pctText = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(0)}%`);
    box.append(profileEl("table", { class: "grid", id: "profile-counters" },
      profileEl("caption", { text: "Nsight Compute's counters (the longest kernels)" }),
      profileEl("thead", {}, profileEl("tr", {}, ["kernel", "time", "DRAM of peak", "DRAM of measured ceiling", "occupancy", "limiter", "L2 hits", "top stalls"].map((h) => profileEl("th", { scope: "col", text: h })))),
      profileEl("tbody", {}, counters.map((c) => profileEl("tr", {},
        profileEl("td", { text: shortKernelName(c.name) }), profileEl("td", { text: profileUs(c.duration_us) }),
        profileEl("td", { text: pctText(c.dram_pct_of_peak) }),
        profileEl("td", { text: c.dram_of_ceiling === undefined ? "—" : pctText(100 * c.dram_of_ceiling) }),
        profileEl("td", { text: pctText(c.achieved_occupancy_pct) }),
        profileEl("td", { text: c.occupancy_limiter || "—" }), profileEl("td", { text: pctText(c.l2_hit_rate_pct) }),
        profileEl("td", { text: (c.top_stalls || []).map((s) => `${s.reason} ${(100 * s.share).toFixed(0)}%`).join(", ") }))))));
  }
  for (const key of ["counters_reason", "counters_note"]) {
    if (profile[key]) box.append(profileEl("p", { class: "meta", id: `profile-${key.replace("_", "-")}`, text: `Counters: ${profile[key]}` }));
  }
  return box;
}
