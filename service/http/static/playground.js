// The playground: a client of the service's public HTTP API, nothing else. Every URL is relative to the page
// (/playground), so the page also works behind a proxy that serves the service under a path prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const SCALE = 4; // screen pixels per image pixel for the results
const SLIDER_RANGE = 3; // each latent slider goes from -3 to +3 (standard deviations of the standard prior)

const state = {
  models: [], // GET /models' "models": name, kind, image, latent_dim, labels, capabilities, priors, ...
  model: null, // the selected one
  muA: null, // pad A's posterior mean [latent_dim], from its last encoding with the selected model
  z: [], // the sliders' latent vector
  listed: false, // whether GET /models has answered once
};

// --- API calls and problem details (RFC 9457) ---

class Problem extends Error {
  constructor(status, body, retryAfter = null) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter; // seconds, from a 503's Retry-After
    this.title = body.title || `HTTP ${status}`;
    this.detail = body.detail || "";
    this.errors = Array.isArray(body.errors) ? body.errors : [];
  }
}

class UserError extends Error {} // something to fix on the page itself, before any request is sent

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

// method + relative path + query ({name: value or [values]}) + optional JSON body -> the Response, or a Problem.
async function api(method, path, { query = {}, json } = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(query)) {
    for (const item of [].concat(value)) {
      if (item !== undefined && item !== null && item !== "") url.searchParams.append(name, String(item));
    }
  }
  const init = { method, headers: authHeaders() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new Problem(0, { title: "No answer", detail: `the service did not answer ${method} ${url.pathname}: ${e.message}` });
  }
  if (!response.ok) {
    let body;
    try {
      body = await response.json();
    } catch {
      body = { title: response.statusText, detail: await response.text().catch(() => "") };
    }
    throw new Problem(response.status, body, response.headers.get("Retry-After"));
  }
  return response;
}

function showError(error) {
  const box = $("error");
  const list = $("error-list");
  list.replaceChildren();
  if (error instanceof Problem) {
    $("error-title").textContent = error.status ? `${error.status} ${error.title}` : error.title;
    let detail = error.detail;
    if (error.status === 401) detail += " (enter the service's key in the API key field above)";
    $("error-detail").textContent = detail;
    for (const item of error.errors) {
      const li = document.createElement("li");
      const where = Array.isArray(item.loc) ? item.loc.join(".") : "";
      li.textContent = where ? `${where}: ${item.msg}` : item.msg;
      list.append(li);
    }
  } else {
    $("error-title").textContent = error instanceof UserError ? "Not yet" : "Error";
    $("error-detail").textContent = error.message;
    if (!(error instanceof UserError)) console.error(error); // a bug of the page: say so in the console too
  }
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

// The buttons wired by `action`: each sends requests for the selected model, so each waits for one to be selected
// (the page starts them disabled).
const actionButtons = [];

// Runs an action behind a button: the button is disabled meanwhile, errors are shown, not thrown.
function action(button, run) {
  actionButtons.push(button);
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    hideError();
    button.disabled = true;
    button.classList.add("busy");
    try {
      await run();
    } catch (e) {
      showError(e);
      if (e instanceof Problem && e.status === 404) refreshModels(); // unloaded meanwhile: the list says so
    } finally {
      button.classList.remove("busy");
      button.disabled = !enabled(button);
    }
  });
}

// --- images ---

function showPng(img, blobOrDataUrl) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.onload = () => {
    img.width = img.naturalWidth * SCALE;
    img.classList.add("shown");
  };
  img.src = typeof blobOrDataUrl === "string" ? blobOrDataUrl : URL.createObjectURL(blobOrDataUrl);
}

function clearImage(img) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  img.classList.remove("shown");
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// A drawing pad: white strokes on black, from the mouse, a finger or a pen (pointer events), or an uploaded image.
class Pad {
  constructor(name, canvas) {
    this.name = name;
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.uploaded = false; // an upload is sent whole; a drawing is cropped and centred as MNIST digits are
    this.last = null;
    this.clear();
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(type, () => (this.last = null));
  }

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.uploaded = false;
    this.empty = true;
  }

  point(e) {
    const box = this.canvas.getBoundingClientRect();
    return [((e.clientX - box.left) * this.canvas.width) / box.width, ((e.clientY - box.top) * this.canvas.height) / box.height];
  }

  down(e) {
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.point(e);
    this.stroke(this.last, this.last);
  }

  move(e) {
    if (!this.last) return;
    e.preventDefault();
    const next = this.point(e);
    this.stroke(this.last, next);
    this.last = next;
  }

  stroke(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = this.canvas.width / 12;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    this.empty = false;
  }

  async upload(file) {
    const bitmap = await createImageBitmap(file);
    this.clear();
    const fit = Math.min(this.canvas.width / bitmap.width, this.canvas.height / bitmap.height);
    const w = bitmap.width * fit;
    const h = bitmap.height * fit;
    this.ctx.drawImage(bitmap, (this.canvas.width - w) / 2, (this.canvas.height - h) / 2, w, h);
    bitmap.close();
    this.uploaded = true;
    this.empty = false;
  }

  // The pad as a PNG data URL of the model's size: a drawing's strokes fit a box of 20/28 of the image, their
  // centre of mass at the centre (how MNIST digits were made); an upload is scaled whole.
  async png(spec) {
    if (this.empty) throw new UserError(`pad ${this.name.toUpperCase()} is empty: draw a digit on it, or upload an image`);
    const out = document.createElement("canvas");
    out.width = spec.width;
    out.height = spec.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.imageSmoothingQuality = "high";
    if (this.uploaded) {
      ctx.drawImage(this.canvas, 0, 0, out.width, out.height);
    } else {
      const ink = this.ink();
      if (!ink) throw new UserError(`pad ${this.name.toUpperCase()} is empty: draw a digit on it`);
      const s = (Math.min(out.width, out.height) * (20 / 28)) / Math.max(ink.w, ink.h);
      const x = out.width / 2 - (ink.cx - ink.x) * s;
      const y = out.height / 2 - (ink.cy - ink.y) * s;
      ctx.drawImage(this.canvas, ink.x, ink.y, ink.w, ink.h, x, y, ink.w * s, ink.h * s);
    }
    return dataUrl(await new Promise((resolve) => out.toBlob(resolve, "image/png")));
  }

  // The strokes' bounding box and centre of mass, in pad pixels; null when nothing is drawn.
  ink() {
    const { width, height } = this.canvas;
    const pixels = this.ctx.getImageData(0, 0, width, height).data;
    let x0 = width, y0 = height, x1 = -1, y1 = -1, mass = 0, mx = 0, my = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = pixels[(y * width + x) * 4];
        if (v === 0) continue;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        mass += v; mx += v * x; my += v * y;
      }
    }
    if (x1 < 0) return null;
    return { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1, cx: mx / mass + 0.5, cy: my / mass + 0.5 };
  }
}

const pads = { a: new Pad("a", $("pad-a")), b: new Pad("b", $("pad-b")) };

// --- the selected model: what it can do decides what is enabled ---

const can = {
  sample: () => state.model?.capabilities.sample,
  generate: () => state.model?.capabilities.generate,
  priorMean: () => state.model?.priors.includes("standard"), // GET /traverse: an ae has no prior mean
};

function enabled(button) {
  if (!state.model) return false;
  if (button.id === "sample") return Boolean(can.sample());
  if (button.id === "generate") return Boolean(can.generate());
  return true;
}

function labelQuery() {
  return state.model?.labels ? $("label").value : undefined;
}

function labelsBody() {
  return state.model?.labels ? { labels: [$("label").value] } : {};
}

// What a request is sent for. Its answer is shown only while the page still asks for that: a model or label chosen
// meanwhile would otherwise get the other one's results (and a latent code of the other length).
function asked() {
  return { model: state.model, label: labelQuery() };
}

function stillAsked(sent) {
  return state.model === sent.model && labelQuery() === sent.label;
}

// A PNG answer into `img`, unless the page has moved on since it was asked; whether it was shown.
async function showAnswer(img, response, sent) {
  const blob = await response.blob();
  if (!stillAsked(sent)) return false;
  showPng(img, blob);
  return true;
}

function selectModel(name) {
  const model = state.models.find((m) => m.name === name);
  state.model = model;
  state.muA = null;
  const { channels, height, width } = model.image;
  const priors = model.priors.length ? `priors: ${model.priors.join(", ")}` : "no prior";
  const providers = [...new Set([...model.providers.encoder, ...model.providers.decoder])].join(", ");
  $("model-summary").textContent =
    `${model.name} (${model.kind}, version ${model.version})` +
    `${model.description ? `: ${model.description.replace(/\.$/, "")}` : ""}. ` +
    `Images ${channels}×${height}×${width}, ${model.latent_dim} latent dimensions, ${model.likelihood} likelihood, ` +
    `${priors}; runs on ${providers}.`;
  const list = $("capabilities");
  list.replaceChildren();
  for (const [capability, yes] of Object.entries(model.capabilities)) {
    const li = document.createElement("li");
    li.className = yes ? "yes" : "no";
    li.textContent = `${capability.replace("_", " ")} ${yes ? "✓" : "✗"}`;
    li.title = yes ? `${model.name} can ${capability}` : `${model.name} cannot ${capability}`;
    list.append(li);
  }

  $("label-row").hidden = !model.labels;
  $("label").replaceChildren(...(model.labels || []).map((label, i) => new Option(`${i}: ${label}`, label)));

  const prior = $("sample-prior");
  prior.replaceChildren(...model.priors.map((p) => new Option(p, p, false, p === model.default_prior)));
  prior.disabled = model.priors.length === 0;
  $("sample-note").textContent = can.sample()
    ? ""
    : `${model.name} cannot sample: it has no prior (a ${model.kind} without a fitted mixture)`;
  if (!can.generate()) $("generate").title = "generation by label needs a conditional model (such as a cvae)";
  else $("generate").title = "";

  const aroundA = $("traverse-around-a");
  aroundA.disabled = !can.priorMean();
  if (!can.priorMean()) aroundA.checked = true; // an ae is traversed around an image's code only
  aroundA.title = can.priorMean() ? "" : `${model.name} has no prior mean: its traversal starts from pad A's code`;

  for (const button of actionButtons) button.disabled = !enabled(button);
  for (const id of ["sent-image", "recon-image", "sample-image", "interpolate-image", "decoded-image", "traverse-image"]) clearImage($(id));
  $("score").replaceChildren();
  $("latent").replaceChildren();
  buildSliders(new Array(model.latent_dim).fill(0));
}

// GET /models into the list. Asked again later, it follows loads and unloads made meanwhile: the selected model
// stays selected (its answers still in flight still count) unless it is gone or has changed.
async function loadModels() {
  const body = await (await api("GET", "models")).json();
  state.listed = true;
  const current = state.model;
  const same = current && body.models.find((m) => JSON.stringify(m) === JSON.stringify(current));
  state.models = body.models.map((m) => (same && m.name === same.name ? current : m));
  const select = $("model");
  const names = body.models.map((m) => m.name);
  if (names.join("\n") !== [...select.options].map((o) => o.value).join("\n")) {
    const chosen = names.includes(current?.name) ? current.name : body.default;
    select.replaceChildren(...body.models.map((m) => new Option(`${m.name} (${m.kind})`, m.name, false, m.name === chosen)));
  }
  if (!body.models.length) {
    state.model = null; // the service keeps its last model loaded, but a page must not break on an empty list
    $("model-summary").textContent = "The service serves no model now; the list is asked again when it is opened.";
    $("capabilities").replaceChildren();
    for (const button of actionButtons) button.disabled = true;
  } else if (!same) {
    selectModel(select.value);
    if (current && current.name !== select.value) {
      $("model-summary").textContent = `${current.name} is no longer served. ` + $("model-summary").textContent;
    }
  }
}

// Refreshes the list when the page is looked at again and when the list is opened; one request at a time.
let refreshing = null;
function refreshModels() {
  if (!state.listed) return; // the first list is still on its way (or waits for the API key)
  refreshing ??= loadModels()
    .catch(showError)
    .finally(() => (refreshing = null));
}

// GET /models until the service has loaded them: meanwhile it answers 503 with Retry-After.
async function loadModelsWhenReady() {
  for (;;) {
    try {
      await loadModels();
      return;
    } catch (e) {
      if (!(e instanceof Problem) || e.status !== 503) throw e;
      const seconds = Math.min(Math.max(Number(e.retryAfter) || 1, 1), 10);
      $("model-summary").textContent = `The service is still loading its models; asking again in ${seconds} s.`;
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    }
  }
}

// --- pad A: reconstruction, latent code, score ---

async function analyseA() {
  const sent = asked();
  const model = sent.model;
  const image = await pads.a.png(model.image);
  showPng($("sent-image"), image);
  const body = { images: [image], ...labelsBody() };
  const query = { model: model.name };
  const [recon, encoding, score] = await Promise.all([
    api("POST", "reconstruct", { query: { ...query, format: "json" }, json: body }).then((r) => r.json()),
    api("POST", "encode", { query, json: body }).then((r) => r.json()),
    api("POST", "score", { query, json: body }).then((r) => r.json()),
  ]);
  if (!stillAsked(sent)) return;
  showPng($("recon-image"), `data:image/png;base64,${recon.images[0]}`);
  state.muA = encoding.mu[0];
  showLatent(encoding.mu[0], encoding.logvar?.[0]);
  showScore(score.scores[0], recon.reconstruction_error[0], score, sent.label);
}

// `label`: the one the image was scored with, if any (then nll is -log p(x|label)).
function showScore(row, squaredError, response, label) {
  const names = {
    nll: label === undefined ? "−log p(x) (nats)" : `−log p(x | ${label}) (nats)`,
    elbo: "ELBO",
    reconstruction: "reconstruction term",
    kl: "KL",
    ess: "effective samples (trust in −log p(x))",
    squared_error: "squared error",
    complexity: "compressed length (nats)",
    pixel_nll: "−log p under per-pixel histograms (nats)",
    percentile: "percentile among held-out",
    ood: "out-of-distribution distance",
    ood_percentile: "its percentile among held-out",
    anomalous: "anomalous",
  };
  const entries = Object.entries(names).filter(([key]) => row[key] !== undefined && row[key] !== null);
  const dl = $("score");
  dl.replaceChildren();
  const add = (term, value) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dl.append(dt, dd);
  };
  for (const [key, term] of entries) {
    const value = row[key];
    add(term, typeof value === "boolean" ? (value ? "yes" : "no") : Number(value).toFixed(key.endsWith("percentile") ? 1 : 2));
  }
  if (row.label_probabilities) {
    // p(y|x) of a conditional model, most probable first: what it would classify the drawing as.
    const ranked = Object.entries(row.label_probabilities).sort((a, b) => b[1] - a[1]).slice(0, 5);
    add("label probabilities p(y|x)", ranked.map(([label, p]) => `${label} ${(100 * p).toFixed(1)}%`).join(", "));
    dl.lastElementChild.id = "label-probabilities";
  }
  if (!("squared_error" in row)) add("squared error", squaredError.toFixed(2));
  add("scored with", response.samples ? `${response.samples} importance samples, seed ${response.seed}` : "its reconstruction");
  dl.dataset.anomalous = String(Boolean(row.anomalous));
}

// mu as bars around zero, one per dimension (the tooltip gives the value and, for a vae, sigma).
function showLatent(mu, logvar) {
  const box = $("latent");
  box.replaceChildren();
  const caption = document.createElement("p");
  caption.className = "hint";
  caption.textContent = `latent code: posterior mean, ${mu.length} dimensions` + (logvar ? " (bar height: |mu|, tooltip: mu and sigma)" : "");
  box.append(caption);
  const bars = document.createElement("div");
  bars.className = "bars";
  mu.forEach((value, i) => {
    const bar = document.createElement("span");
    bar.className = value >= 0 ? "pos" : "neg";
    bar.style.height = `${Math.min(1, Math.abs(value) / SLIDER_RANGE) * 100}%`;
    const sigma = logvar ? `, sigma ${Math.exp(logvar[i] / 2).toFixed(3)}` : "";
    bar.title = `z${i}: mu ${value.toFixed(3)}${sigma}`;
    bars.append(bar);
  });
  box.append(bars);
}

// --- sampling and generation ---

function drawQuery() {
  return {
    n: $("sample-n").value,
    seed: $("sample-seed").value,
    temperature: $("sample-temperature").value,
    prior: $("sample-prior").disabled ? undefined : $("sample-prior").value,
    label: labelQuery(),
    format: "png",
  };
}

async function showDraw(response, what, sent) {
  if (!(await showAnswer($("sample-image"), response, sent))) return;
  $("sample-note").textContent = `${what}: seed ${response.headers.get("X-Seed")}, prior ${response.headers.get("X-Prior")}`;
}

async function sample() {
  const sent = asked();
  const response = await api("GET", "sample", { query: { model: sent.model.name, ...drawQuery() } });
  await showDraw(response, `${sent.model.name} samples`, sent);
}

async function generate() {
  const sent = asked();
  const response = await api("GET", "generate", { query: { model: sent.model.name, ...drawQuery() } });
  await showDraw(response, `${sent.model.name}, label ${sent.label}`, sent);
}

// --- interpolation ---

async function interpolate() {
  const sent = asked();
  const spec = state.model.image;
  const images = [await pads.a.png(spec), await pads.b.png(spec)];
  const query = { model: state.model.name, steps: $("steps").value, path: $("path").value, format: "png" };
  const response = await api("POST", "interpolate", { query, json: { images, ...labelsBody() } });
  await showAnswer($("interpolate-image"), response, sent);
}

// --- traversal: sliders decoded one vector at a time, and the service's traversal grid ---

function buildSliders(z) {
  state.z = z.slice();
  const box = $("sliders");
  box.replaceChildren();
  z.forEach((value, i) => {
    const label = document.createElement("label");
    label.textContent = `z${i}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -SLIDER_RANGE, max: SLIDER_RANGE, step: 0.05, value: String(value) });
    input.dataset.dim = String(i);
    input.addEventListener("input", () => {
      state.z[i] = Number(input.value);
      decodeSoon();
    });
    label.append(input);
    box.append(label);
  });
}

let decoding = null; // the decode in flight; moves meanwhile ask for one more once it is done
let decodeAgain = false;

function decodeSoon() {
  if (decoding) {
    decodeAgain = true;
    return;
  }
  decoding = decodeZ()
    .catch(showError)
    .finally(() => {
      decoding = null;
      if (decodeAgain) {
        decodeAgain = false;
        decodeSoon();
      }
    });
}

async function decodeZ() {
  const sent = asked();
  const response = await api("POST", "decode", {
    query: { model: state.model.name, format: "png" },
    json: { z: [state.z], ...labelsBody() },
  });
  await showAnswer($("decoded-image"), response, sent);
}

async function zFromA() {
  if (!state.muA) {
    const sent = asked();
    const image = await pads.a.png(state.model.image);
    const response = await api("POST", "encode", { query: { model: state.model.name }, json: { images: [image], ...labelsBody() } });
    const mu = (await response.json()).mu[0];
    if (!stillAsked(sent)) return;
    state.muA = mu;
  }
  buildSliders(state.muA);
  await decodeZ();
}

async function traverse() {
  const sent = asked();
  const query = { model: state.model.name, format: "png" };
  const response = $("traverse-around-a").checked
    ? await api("POST", "traverse", { query, json: { images: [await pads.a.png(state.model.image)], ...labelsBody() } })
    : await api("GET", "traverse", { query: { ...query, label: labelQuery() } });
  await showAnswer($("traverse-image"), response, sent);
}

// --- wiring ---

for (const button of document.querySelectorAll("[data-clear]")) {
  button.addEventListener("click", () => {
    pads[button.dataset.clear].clear();
    if (button.dataset.clear === "a") state.muA = null;
  });
}
for (const input of document.querySelectorAll("[data-upload]")) {
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    try {
      await pads[input.dataset.upload].upload(file);
      if (input.dataset.upload === "a") state.muA = null;
    } catch (e) {
      showError(new UserError(`${file.name} could not be read as an image (${e.message}); upload a PNG or JPEG file`));
    } finally {
      input.value = "";
    }
  });
}
for (const pad of Object.values(pads)) pad.canvas.addEventListener("pointerdown", () => pad === pads.a && (state.muA = null));

$("error-close").addEventListener("click", hideError);
$("model").addEventListener("change", () => selectModel($("model").value));
$("model").addEventListener("focus", refreshModels);
document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && refreshModels());
$("label").addEventListener("change", () => (state.muA = null));
$("api-key").addEventListener("change", () => {
  if (!state.models.length) loadModelsWhenReady().then(hideError, showError);
});
action($("reconstruct"), analyseA);
action($("sample"), sample);
action($("generate"), generate);
action($("interpolate"), interpolate);
action($("traverse"), traverse);
action($("z-origin"), async () => {
  buildSliders(new Array(state.model.latent_dim).fill(0));
  await decodeZ();
});
action($("z-from-a"), zFromA);

loadModelsWhenReady().catch(showError);
