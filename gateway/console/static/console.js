// Cairn console: filter boxes, the live timeline of a running update and the live logs of a
// running deployment. No dependencies.
"use strict";

function setUpFilters() {
  for (const box of document.querySelectorAll("[data-filter]")) {
    const target = document.querySelector(box.dataset.filter);
    if (!target) continue;
    const apply = () => {
      const needle = box.value.trim().toLowerCase();
      for (const item of target.querySelectorAll("[data-search]")) {
        item.classList.toggle("hidden", needle !== "" && !item.dataset.search.includes(needle));
      }
      for (const group of target.querySelectorAll("[data-group]")) {
        const shown = group.querySelectorAll("[data-search]:not(.hidden)").length;
        group.classList.toggle("hidden", shown === 0);
      }
    };
    box.addEventListener("input", apply);
    apply();
  }
}

function resourceHref(timeline, urn) {
  const base = timeline.dataset.liveUrl.split("/updates/")[0];
  const version = timeline.dataset.liveUrl.split("/updates/")[1].split("/")[0];
  return base + "/resource?" + new URLSearchParams({ urn: urn, version: version });
}

function entryElement(timeline, entry) {
  const item = document.createElement("li");
  item.className = "entry sev-" + entry.severity + (entry.kind === "diagnosticEvent" ? " diagnostic" : "");
  item.dataset.sequence = String(entry.sequence);
  const title = document.createElement("span");
  title.className = "entry-title";
  if (entry.urn) {
    const link = document.createElement("a");
    link.href = resourceHref(timeline, entry.urn);
    link.textContent = entry.title;
    title.appendChild(link);
  } else {
    title.textContent = entry.title;
  }
  item.appendChild(title);
  if (entry.text) {
    const text = document.createElement("pre");
    text.className = "entry-text";
    text.textContent = entry.text;
    item.appendChild(text);
  }
  return item;
}

function showStatus(status) {
  const text = document.getElementById("update-result-text");
  if (text) text.textContent = status.result;
  const badge = document.querySelector("#update-result .badge");
  if (badge) {
    badge.textContent = status.result;
    badge.className = "badge result-" + status.result;
  }
  const duration = document.getElementById("update-duration");
  if (duration) duration.textContent = status.duration;
}

function followLiveTimeline() {
  const timeline = document.getElementById("timeline");
  if (!timeline || !timeline.dataset.liveUrl || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const empty = document.getElementById("timeline-empty");
  const source = new EventSource(timeline.dataset.liveUrl);
  const seen = new Set(
    Array.from(timeline.querySelectorAll("[data-sequence]"), (item) => item.dataset.sequence)
  );
  source.addEventListener("entry", (message) => {
    const entry = JSON.parse(message.data);
    if (seen.has(String(entry.sequence))) return;
    seen.add(String(entry.sequence));
    timeline.appendChild(entryElement(timeline, entry));
    if (empty) empty.classList.add("hidden");
  });
  source.addEventListener("status", (message) => showStatus(JSON.parse(message.data)));
  source.addEventListener("end", (message) => {
    source.close();
    showStatus(JSON.parse(message.data));
    if (state) {
      state.textContent = "Ended";
      state.classList.add("ended");
    }
    // The finished page has the final counts and diagnostics.
    window.setTimeout(() => window.location.reload(), 1500);
  });
  source.addEventListener("failure", () => {
    source.close();
    if (state) {
      state.textContent = "Disconnected; reload to retry";
      state.classList.add("ended");
    }
  });
}

function setUpCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const code = document.getElementById(button.dataset.copy);
      if (!code || !navigator.clipboard) return;
      navigator.clipboard.writeText(code.textContent).then(() => {
        button.textContent = "Copied";
        window.setTimeout(() => { button.textContent = "Copy"; }, 1500);
      });
    });
  }
}

function showDeploymentStatus(status) {
  const text = document.getElementById("deployment-status-text");
  if (text) text.textContent = status.status;
  const badge = document.querySelector("#deployment-status .badge");
  if (badge) {
    badge.textContent = status.status;
    badge.className = "badge deployment-" + status.status;
  }
  const message = document.getElementById("deployment-message");
  if (message) message.textContent = status.message || "-";
}

function followDeploymentLogs() {
  const logs = document.getElementById("deployment-logs");
  if (!logs || !logs.dataset.liveUrl || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const empty = document.getElementById("logs-empty");
  const source = new EventSource(logs.dataset.liveUrl);
  const seen = new Set(Array.from(logs.querySelectorAll("[data-index]"), (item) => item.dataset.index));
  source.addEventListener("line", (message) => {
    const line = JSON.parse(message.data);
    if (seen.has(String(line.index))) return;
    seen.add(String(line.index));
    const item = document.createElement("li");
    item.dataset.index = String(line.index);
    const text = document.createElement("pre");
    text.textContent = line.text;
    item.appendChild(text);
    logs.appendChild(item);
    if (empty) empty.classList.add("hidden");
  });
  source.addEventListener("status", (message) => showDeploymentStatus(JSON.parse(message.data)));
  source.addEventListener("end", (message) => {
    source.close();
    showDeploymentStatus(JSON.parse(message.data));
    if (state) {
      state.textContent = "Ended";
      state.classList.add("ended");
    }
    // The finished page lists the updates the job made.
    window.setTimeout(() => window.location.reload(), 1500);
  });
  source.addEventListener("failure", () => {
    source.close();
    if (state) {
      state.textContent = "Disconnected; reload to retry";
      state.classList.add("ended");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpFilters();
  followLiveTimeline();
  setUpCopyButtons();
  followDeploymentLogs();
});
