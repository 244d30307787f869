// The dashboard's few scripts: the API token (kept in this tab's sessionStorage and
// sent as "Authorization: Bearer"), the actions on jobs, and following a run's output.
"use strict";

const TOKEN_KEY = "distcron-token";
const POLL_MS = 1000;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function flash(text, bad) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = bad ? "bad" : "good";
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return response.statusText;
  }
}

function showToken() {
  document.getElementById("token-state").textContent = token() ? "token set" : "no token";
}

function setUpToken() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    showToken();
    followOutput();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
  });
  showToken();
}

const DONE = { pause: "paused", resume: "resumed", trigger: "triggered" };

async function act(button) {
  const job = button.dataset.job;
  const action = button.dataset.action;
  const response = await fetch("/jobs/" + encodeURIComponent(job) + "/" + action, {
    method: "POST", headers: headers(),
  });
  if (!response.ok) {
    flash(action + " " + job + " refused (" + response.status + "): " + await detail(response), true);
    return;
  }
  const body = await response.json();
  const what = action === "trigger" ? " as " + body.launch_id : "";
  flash(job + " " + DONE[action] + what, false);
  if (action !== "trigger") {
    window.setTimeout(() => window.location.reload(), 600);
  }
}

function setUpActions() {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button));
  }
}

let following = false;

async function followOutput() {
  const pre = document.getElementById("output");
  if (!pre || following) {
    return;
  }
  const note = document.getElementById("output-note");
  if (!token()) {
    note.textContent = "Enter the API token above to read the output (it may hold secrets).";
    return;
  }
  following = true;
  const url = "/runs/" + encodeURIComponent(pre.dataset.launch) + "?output=true";
  for (;;) {
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) {
      note.textContent = "Output refused (" + response.status + "): " + await detail(response);
      following = false;
      return;
    }
    const run = await response.json();
    const state = document.querySelector("#run-state .state");
    state.textContent = run.state;
    state.className = "state state-" + run.state;
    if (run.output !== null) {
      pre.textContent = run.output;
    }
    for (const attempt of run.attempts || []) {
      const earlier = document.querySelector(`pre.attempt-output[data-attempt="${attempt.attempt}"]`);
      if (earlier && attempt.output !== null) {
        earlier.textContent = attempt.output;
      }
    }
    const live = ["launching", "running", "queued", "retrying"].includes(run.state);
    note.textContent = live
      ? "Live: following the output while the launch runs."
      : (run.output === null ? "No output was kept." : "");
    if (!live) {
      following = false;
      return;
    }
    await new Promise((done) => window.setTimeout(done, POLL_MS));
  }
}

// Backfill: the slots of a past range, each launched once (a dry run lists them).
function setUpBackfill() {
  const form = document.getElementById("backfill-form");
  if (!form) {
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const job = form.dataset.job;
    const body = {
      from: form.elements.from.value.trim(), to: form.elements.to.value.trim(),
      dry_run: form.elements.dry_run.checked,
    };
    const response = await fetch("/jobs/" + encodeURIComponent(job) + "/backfill", {
      method: "POST", headers: { ...headers(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      flash("backfill " + job + " refused (" + response.status + "): " + await detail(response), true);
      return;
    }
    const result = await response.json();
    const verb = result.dry_run ? "would launch" : "launched";
    const lines = [`${verb} ${result.launched.length}, ${result.existing.length} already recorded`];
    for (const slot of result.launched) {
      lines.push(`${verb}: ${slot.launch_id}`);
    }
    for (const slot of result.existing) {
      lines.push(`recorded (${slot.state}): ${slot.launch_id}`);
    }
    document.getElementById("backfill-result").textContent = lines.join("\n");
    flash("backfill " + job + ": " + lines[0], false);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpToken();
  setUpActions();
  setUpBackfill();
  followOutput();
});
