// The dashboard's script: live progress on the jobs and job pages, and the upload of the
// new-job page. It calls the JSON API with the page's own cookie, which the browser sends
// (it is HttpOnly: this script never sees the key).
"use strict";

const POLL_MS = 1000;

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// The API's error answer ({"detail": ...}) as one line: a string, or pydantic's list.
function detailOf(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

async function getJson(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(answer.status, detailOf(body, answer.status));
  return body;
}

// The API writes UTC without a zone (the database's naive times): read them as UTC.
function parseTime(text) {
  if (!text) return null;
  return new Date(/(Z|[+-]\d\d:\d\d)$/.test(text) ? text : `${text}Z`);
}

function percent(done, total, finished) {
  if (finished) return 100;
  return total ? Math.min(100, Math.floor((100 * done) / total)) : 0;
}

// The same short form as the pages' server side: 0.8 s, 42 s, 3 min 05 s, 1 h 02 min.
function took(start, end) {
  const from = parseTime(start);
  if (!from) return "—";
  const seconds = Math.max(0, ((parseTime(end) || new Date()) - from) / 1000);
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (hours) return `${hours} h ${pad(minutes)} min`;
  return minutes ? `${minutes} min ${pad(whole % 60)} s` : `${whole % 60} s`;
}

function timeElement(text) {
  if (!text) return document.createTextNode("—");
  const node = document.createElement("time");
  node.dateTime = parseTime(text).toISOString();
  localise(node);
  return node;
}

// Times are rendered in UTC by the server; shown in the reader's own zone, UTC on hover.
function localise(node) {
  const when = new Date(node.dateTime);
  if (Number.isNaN(when.getTime())) return;
  node.title = `${when.toISOString().replace("T", " ").slice(0, 19)} UTC`;
  node.textContent = when.toLocaleString();
}

function setState(badge, state) {
  badge.textContent = state;
  badge.className = `state state-${state}`;
}

function bar(value) {
  const node = document.createElement("progress");
  node.max = 100;
  node.value = value;
  return node;
}

function cell(...children) {
  const td = document.createElement("td");
  td.append(...children);
  return td;
}

function polling(step) {
  const tick = async () => {
    let again = true;
    try {
      again = await step();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        window.location.assign("/"); // the key was revoked, or the cookie is gone
        return;
      }
      console.warn("progress update failed:", err.message);
    }
    if (again) window.setTimeout(tick, POLL_MS);
  };
  window.setTimeout(tick, POLL_MS);
}

// -- /jobs: the rows of unfinished jobs follow their progress ----------------------------

function updateRow(row, job) {
  const finished = Boolean(job.finished_at);
  const value = percent(job.frames_done, job.frames_total, job.state === "done");
  setState(row.querySelector("[data-field=state]"), job.state);
  row.querySelector("[data-field=bar]").value = value;
  row.querySelector("[data-field=percent]").textContent = `${value}%`;
  row.querySelector("[data-field=duration]").textContent = took(job.started_at, job.finished_at);
  row.dataset.finished = finished ? "1" : "0";
}

function jobsPage() {
  const table = document.getElementById("jobs");
  if (!table) return;
  const rows = [...table.querySelectorAll("tr[data-job]")];
  polling(async () => {
    const open = rows.filter((row) => row.dataset.finished !== "1");
    if (!open.length) return false;
    // One request for the page as listed; a job that left it (a state filter) is asked alone.
    const listed = await getJson(`/v1/jobs?${table.dataset.apiQuery}`);
    const byId = new Map(listed.jobs.map((job) => [job.id, job]));
    for (const row of open) {
      updateRow(row, byId.get(row.dataset.job) || (await getJson(`/v1/jobs/${row.dataset.job}`)));
    }
    return true;
  });
}

// -- /jobs/{id}: the job and its stages, until it finishes -------------------------------

function stageRow(stage) {
  const row = document.createElement("tr");
  row.dataset.stage = stage.stage;
  const value = percent(stage.frames_done, stage.frames_total, stage.state === "done");
  const badge = document.createElement("span");
  setState(badge, stage.state);
  const shown = document.createElement("span");
  shown.className = "percent";
  shown.textContent = `${value}%`;
  const progress = cell(bar(value), " ", shown);
  progress.className = "progress";
  const tasks = Object.entries(stage.tasks).map(([state, n]) => `${n} ${state}`).join(", ");
  row.append(
    cell(stage.stage),
    cell(badge),
    progress,
    cell(`${stage.frames_done} of ${stage.frames_total}`),
    cell(tasks),
    cell(took(stage.started_at, stage.finished_at)),
  );
  return row;
}

function showJob(job) {
  const value = percent(job.frames_done, job.frames_total, job.state === "done");
  setState(document.getElementById("job-state"), job.state);
  document.getElementById("job-bar").value = value;
  document.getElementById("job-percent").textContent = `${value}%`;
  document.getElementById("job-stage").textContent = job.current_stage || "";
  document.getElementById("job-frames").textContent = `${job.frames_done} of ${job.frames_total}`;
  document.getElementById("job-started").replaceChildren(timeElement(job.started_at));
  document.getElementById("job-waited").textContent = job.started_at ? took(job.created_at, job.started_at) : "—";
  document.getElementById("job-ran").textContent = took(job.started_at, job.finished_at);
  const error = document.getElementById("job-error");
  error.textContent = job.error || "";
  error.hidden = !job.error;
  document.getElementById("stages").replaceChildren(...(job.stages || []).map(stageRow));
}

function jobPage() {
  const section = document.getElementById("job");
  if (!section || section.dataset.finished === "1") return;
  polling(async () => {
    const job = await getJson(`/v1/jobs/${section.dataset.job}`);
    if (job.finished_at) {
      window.location.reload(); // the finished page: previews, download, no cancel button
      return false;
    }
    showJob(job);
    return true;
  });
}

// A preview the server did not make (media over the pixel limit, or that cannot be decoded)
// gives way to a line saying so, with the server's reason.
function previewFallbacks() {
  for (const media of document.querySelectorAll(".previews img, .previews video")) {
    let replaced = false;
    const replace = async () => {
      if (replaced) return;
      replaced = true;
      const note = document.createElement("p");
      note.className = "no-preview";
      note.id = media.id;
      note.textContent = "No preview.";
      media.replaceWith(note);
      try {
        await getJson(media.getAttribute("src"));
      } catch (error) {
        // "no preview of NAME: why", as a sentence
        if (error instanceof ApiError) note.textContent = error.message.replace(/^./, (c) => c.toUpperCase());
      }
    };
    media.addEventListener("error", replace);
    const failed = media.tagName === "IMG" ? media.complete && media.naturalWidth === 0 : media.error !== null;
    if (failed) replace();
  }
}

// -- /jobs/new: the options each recipe takes, and the upload ----------------------------

function newPage() {
  const form = document.getElementById("new-job");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const recipe = $("recipe");
  const style = $("style");
  const strength = $("strength");
  const kind = $("background-kind");
  let styleChosen = false;

  function sync() {
    const option = recipe.selectedOptions[0];
    $("recipe-description").textContent = option.dataset.description;
    const paints = option.dataset.defaultStyle !== "";
    $("style-options").hidden = !paints;
    if (paints && !styleChosen) style.value = option.dataset.defaultStyle;
    const background = option.dataset.background;
    const kinds = option.dataset.kinds.split(" ");
    $("background-options").hidden = background === "none";
    const allowed = {
      none: background !== "required",
      colour: kinds.includes("colour"),
      file: kinds.includes("image") || kinds.includes("video"),
    };
    for (const choice of kind.options) choice.disabled = !allowed[choice.value];
    if (kind.selectedOptions[0].disabled) kind.value = [...kind.options].find((o) => !o.disabled).value;
    $("background-colour").hidden = kind.value !== "colour";
    $("background-file").hidden = kind.value !== "file";
  }

  recipe.addEventListener("change", sync);
  kind.addEventListener("change", sync);
  style.addEventListener("change", () => {
    styleChosen = true;
  });
  strength.addEventListener("input", () => {
    $("strength-value").textContent = Number(strength.value).toFixed(2);
  });
  const sheet = $("styles-sheet");
  if (sheet) {
    const hide = () => {
      $("sheet").hidden = true; // no sheet (a model file missing): the list alone
    };
    sheet.addEventListener("error", hide);
    if (sheet.complete && sheet.naturalWidth === 0) hide();
  }
  sync();

  const fail = (message) => {
    $("submit-error").textContent = message;
    $("submit-error").hidden = false;
    $("submit").disabled = false;
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    $("submit-error").hidden = true;
    const file = $("file").files[0];
    if (!file) return fail("Choose a video or a picture to upload.");
    const maxBytes = Number(form.dataset.maxMb) * 1024 * 1024;
    if (file.size > maxBytes) return fail(`${file.name} is larger than the limit of ${form.dataset.maxMb} MiB.`);
    const data = new FormData();
    const params = {};
    data.append("recipe", recipe.value);
    data.append("priority", $("priority").value);
    if (!$("style-options").hidden) {
      params.style = style.value;
      params.strength = Number(strength.value);
      params.preserve_colour = $("preserve-colour").checked;
    }
    if (!$("background-options").hidden && kind.value === "colour") params.background = $("background-colour").value;
    if (!$("background-options").hidden && kind.value === "file") {
      const background = $("background-file").files[0];
      if (!background) return fail("Choose the background picture or video.");
      data.append("background_file", background, background.name);
    }
    data.append("params", JSON.stringify(params));
    data.append("file", file, file.name); // last: the small fields first, then the media

    // XMLHttpRequest rather than fetch: only it reports how much of an upload has been sent.
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/jobs");
    request.responseType = "json";
    request.setRequestHeader("Accept", "application/json");
    const shown = (sent, total) => {
      const value = total ? Math.floor((100 * sent) / total) : 0;
      $("upload-bar").value = value;
      $("upload-text").textContent = `Uploading ${file.name}: ${value}% (${(sent / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB)`;
    };
    let body = file.size; // the whole request's size, once the browser says it
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      body = e.total;
      shown(e.loaded, e.total);
    });
    request.upload.addEventListener("load", () => shown(body, body));
    request.addEventListener("load", () => {
      if (request.status === 201 || request.status === 200) {
        $("upload-text").textContent = "Uploaded: opening the job…";
        window.location.assign(`/jobs/${request.response.id}`);
      } else {
        $("upload").hidden = true;
        fail(detailOf(request.response, request.status));
      }
    });
    request.addEventListener("error", () => {
      $("upload").hidden = true;
      fail("The upload failed: the server could not be reached.");
    });
    $("submit").disabled = true;
    $("upload").hidden = false;
    shown(0, file.size);
    request.send(data);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("time[datetime]").forEach(localise);
  jobsPage();
  jobPage();
  previewFallbacks();
  newPage();
});
