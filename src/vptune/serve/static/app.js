// The page of `vptune serve`: lists the tasks held and predicts dropped or chosen images through the same
// JSON API as any client (GET /v1/tasks, POST /v1/predict), sending the API key in x-api-key when one is set.
// No framework, no build step; every text from the server is set with textContent (never parsed as HTML).
"use strict";

const KEY_STORE = "vptune-api-key";
const $ = (id) => document.getElementById(id);

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function headers() {
  const key = apiKey();
  return key ? { "x-api-key": key } : {};
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "muted";
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (err) {
    return response.statusText;
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

async function loadTasks() {
  const response = await fetch("/v1/tasks", { headers: headers() });
  if (response.status === 401) {
    $("key-box").hidden = false;
    setStatus("This server needs its API key: " + (await detail(response)), true);
    return;
  }
  if (!response.ok) {
    setStatus("Could not list the tasks: " + (await detail(response)), true);
    return;
  }
  const body = await response.json();
  $("backbone").textContent = "backbone " + body.backbone;
  const tbody = $("tasks").querySelector("tbody");
  const select = $("task");
  tbody.replaceChildren();
  select.replaceChildren();
  for (const t of body.tasks) {
    const row = document.createElement("tr");
    row.dataset.task = t.name;
    cell(row, t.name);
    cell(row, t.method);
    cell(row, String(t.num_classes), "num");
    cell(row, String(t.prompt_tokens), "num");
    cell(row, Number(t.params.trainable_params).toLocaleString("en-US"), "num");
    cell(row, Number(t.params.trainable_percent).toFixed(3) + "%", "num");
    cell(row, t.mode);
    tbody.appendChild(row);
    const option = document.createElement("option");
    option.value = t.name;
    option.textContent = t.name + " (" + t.method + ")";
    select.appendChild(option);
  }
  setStatus(body.tasks.length + " task(s) held. Choose or drop images to predict.", false);
}

function card(file, result) {
  const div = document.createElement("div");
  div.className = "card";
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  img.onload = () => URL.revokeObjectURL(img.src);
  const name = document.createElement("div");
  name.className = "file";
  name.textContent = file.name + " — " + result.task;
  div.append(img, name);
  result.predictions.forEach((p, i) => {
    const row = document.createElement("div");
    row.className = "bar-row" + (i === 0 ? " top" : "");
    const text = document.createElement("div");
    text.className = "text";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = (100 * p.score).toFixed(1) + "%";
    text.append(label, score);
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = Math.max(0, Math.min(100, 100 * p.score)).toFixed(1) + "%";
    track.appendChild(fill);
    row.append(text, track);
    div.appendChild(row);
  });
  return div;
}

async function predict(files) {
  const images = Array.from(files);
  const task = $("task").value;
  if (!images.length) return;
  if (!task) {
    setStatus("No task to predict with.", true);
    return;
  }
  const form = new FormData();
  for (const f of images) form.append("file", f, f.name);
  form.append("task", task);
  form.append("top_k", $("top-k").value || "3");
  setStatus("Predicting " + images.length + " image(s) with '" + task + "'…", false);
  const response = await fetch("/v1/predict", { method: "POST", headers: headers(), body: form });
  if (!response.ok) {
    if (response.status === 401) $("key-box").hidden = false;
    setStatus("Prediction failed (" + response.status + "): " + (await detail(response)), true);
    return;
  }
  const body = await response.json();
  const results = Array.isArray(body) ? body : [body];
  const box = $("results");
  box.replaceChildren();
  results.forEach((r, i) => box.appendChild(card(images[i], r)));
  setStatus("Predicted " + results.length + " image(s) with '" + task + "'.", false);
}

function failed(err) {
  setStatus("Could not reach the server: " + err, true);
}

function init() {
  $("key-save").addEventListener("click", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    $("api-key").value = "";
    $("key-box").hidden = true;
    loadTasks().catch(failed);
  });
  $("files").addEventListener("change", (e) => predict(e.target.files).catch(failed));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    predict(e.dataTransfer.files).catch(failed);
  });
  loadTasks().catch(failed);
}

document.addEventListener("DOMContentLoaded", init);
