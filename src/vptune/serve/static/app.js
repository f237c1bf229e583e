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
    cell(row, t.task_type === "segmentation" ? t.method + " (segmentation)" : t.method);
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
  result.predictions.forEach((p, i) => div.appendChild(barRow(p.label, p.score, i === 0, null)));
  return div;
}

// Segmentation tasks answer with a label map (base64 PNG, one class index per pixel, at the model's input size):
// drawn over the image in colour, with the classes present and their share of the pixels as bars.
function classColour(index) {
  const h = ((index * 137.508) % 360) / 360;
  const f = (n) => {
    const k = (n + h * 12) % 12;
    return Math.round(255 * (0.5 - 0.35 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("could not draw an image"));
    img.src = url;
  });
}

function barRow(label, share, top, colour) {
  const row = document.createElement("div");
  row.className = "bar-row" + (top ? " top" : "");
  const text = document.createElement("div");
  text.className = "text";
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = (100 * share).toFixed(1) + "%";
  text.append(name, score);
  const track = document.createElement("div");
  track.className = "track";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = Math.max(0, Math.min(100, 100 * share)).toFixed(1) + "%";
  if (colour) fill.style.background = "rgb(" + colour.join(",") + ")";
  track.appendChild(fill);
  row.append(text, track);
  return row;
}

async function segCard(file, result) {
  const div = document.createElement("div");
  div.className = "card seg";
  const [h, w] = result.size;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const name = document.createElement("div");
  name.className = "file";
  name.textContent = file.name + " — " + result.task + " (mask over the image)";
  div.append(canvas, name);
  const bytes = Uint8Array.from(atob(result.mask_png), (c) => c.charCodeAt(0));
  const maskUrl = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  const photoUrl = URL.createObjectURL(file);
  try {
    const [photo, mask] = await Promise.all([loadImage(photoUrl), loadImage(maskUrl)]);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(mask, 0, 0, w, h);
    const labels = ctx.getImageData(0, 0, w, h).data; // grey PNG: R = G = B = class index
    ctx.drawImage(photo, 0, 0, w, h);
    const out = ctx.getImageData(0, 0, w, h);
    const counts = new Map();
    for (let i = 0; i < labels.length; i += 4) {
      const c = labels[i];
      counts.set(c, (counts.get(c) || 0) + 1);
      const [r, g, b] = classColour(c);
      out.data[i] = Math.round(0.45 * out.data[i] + 0.55 * r);
      out.data[i + 1] = Math.round(0.45 * out.data[i + 1] + 0.55 * g);
      out.data[i + 2] = Math.round(0.45 * out.data[i + 2] + 0.55 * b);
    }
    ctx.putImageData(out, 0, 0);
    canvas.dataset.pixels = String(w * h);
    const ranked = Array.from(counts.entries()).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    ranked.slice(0, Number($("top-k").value) || 3).forEach(([c, n], i) => {
      const label = result.classes[c] !== undefined ? result.classes[c] : "class " + c;
      div.appendChild(barRow(label, n / (w * h), i === 0, classColour(c)));
    });
  } finally {
    URL.revokeObjectURL(maskUrl);
    URL.revokeObjectURL(photoUrl);
  }
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
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    box.appendChild(r.mask_png ? await segCard(images[i], r) : card(images[i], r));
  }
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
