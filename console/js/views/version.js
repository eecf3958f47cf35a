// One model version: live training progress (epoch bar, loss and metric curves from the per-epoch history), or
// its metrics, per-class figures, plots, model card, download links and evaluations once trained.
import {get, post, seg} from "../api.js";
import {h, replace, number, when, duration, bytes, badge, table, facts, section, toast} from "../dom.js";
import {errorBox, act} from "../errors.js";
import {href} from "../router.js";
import {epochBar, historyCharts} from "../charts.js";
import {PRIMARY, versionActions} from "./models.js";
import {rememberEvaluation} from "./compare.js";

const POLL_MS = 2000;

export async function versionView({id, version}, q, page) {
  const base = `/v1/models/${seg(id)}/versions/${seg(version)}`;
  const body = h("div");
  let shownStatus = null;
  let lastProgress = null;

  async function refresh() {
    let model;
    let v;
    try {
      [model, v] = await Promise.all([get(`/v1/models/${seg(id)}`), get(base)]);
    } catch (error) {
      replace(body, errorBox(error, {retry: refresh}));
      return;
    }
    const progressKey = JSON.stringify(v.progress && v.progress.updated_at);
    if (v.status === shownStatus && (v.status !== "training" || progressKey === lastProgress) &&
        String(model.serving_version) === body.dataset.serving) return;
    shownStatus = v.status;
    lastProgress = progressKey;
    body.dataset.serving = String(model.serving_version);
    const problems = h("div");
    const parts = [summary(model, v, problems, refresh), problems];
    if (v.status === "training") parts.push(progressSection(model, v));
    else if (v.status === "ready") parts.push(...await trainedSections(model, v, base));
    else if (v.failure_reason) parts.push(section("Why it ended", h("p", {text: v.failure_reason})));
    replace(body, parts);
  }
  await refresh();
  const timer = setInterval(() => {
    if (page.active && shownStatus === "training") refresh();
  }, POLL_MS);
  page.onLeave(() => clearInterval(timer));
  return h("div", null,
    h("p", {class: "crumbs"}, h("a", {href: href("/models"), text: "Models"}), " / ",
      h("a", {href: href(`/models/${encodeURIComponent(id)}`), text: id})),
    h("h1", {text: `Version ${version}`}), body);
}

function summary(model, v, problems, refresh) {
  return section("Version", facts([
    ["Model", h("a", {href: href(`/models/${encodeURIComponent(model.model_id)}`), text: model.name || model.model_id})],
    ["Status", [badge(v.status), v.version === model.serving_version ? h("span", {class: "badge serving", text: "serving"}) : null]],
    ["Template", v.template],
    ["Datasets", (v.datasets || []).join(", ")],
    ["Parameters", v.params ? h("code", {text: Object.entries(v.params).filter(([, value]) => value !== null).map(([k, value]) => `${k}=${value}`).join(" ")}) : null],
    ["Started", when(v.created_at)],
    ["Finished", v.finished_at ? when(v.finished_at) : null],
    ["Promotion", v.promotion ? `${v.promotion.passed ? "passed" : "not passed"}: ${v.promotion.reason || v.promotion.gate}` : null],
    ["Weights", v.weights ? `${v.weights.source}${v.weights.name ? ` (${v.weights.name})` : ""}${v.weights.reason ? `: ${v.weights.reason}` : ""}` : null],
  ]), versionActions(model, v, problems, refresh));
}

function progressSection(model, v) {
  const p = v.progress;
  if (!p) return section("Training", h("p", {class: "muted", role: "status", text: "Starting: the first epoch has not finished yet."}));
  const metric = (p.metric && p.metric.name) || PRIMARY[model.task];
  return section("Training", h("div", {class: "progress-live", role: "status"},
    epochBar(p.epoch, p.epochs),
    facts([
      ["Training loss", number(p.train_loss)],
      [metric, number(p.metric && p.metric.value)],
      ["Images per second", number(p.images_per_second, 1)],
      ["Time left", duration(p.eta_seconds)],
      ["Updated", when(p.updated_at)],
    ])), historyCharts(p.history, metric));
}

async function trainedSections(model, v, base) {
  const metrics = v.metrics || {};
  const metric = metrics.primary_metric || PRIMARY[model.task];
  const headline = Object.entries(metrics).filter(([, value]) => typeof value === "number");
  let artifacts = [];
  let artifactsError = null;
  try {
    artifacts = (await get(`${base}/artifacts`)).artifacts || [];
  } catch (error) {
    artifactsError = error;
  }
  const byName = Object.fromEntries(artifacts.map((a) => [a.name, a]));
  const [metricsFile, card] = await Promise.all([fetchJson(byName["metrics.json"]), fetchJson(byName["card.json"])]);
  const plots = artifacts.filter((a) => a.name.endsWith(".png"));
  return [
    section("Metrics", table([
      {title: "Metric", cell: (r) => r[0]},
      {title: "Value", numeric: true, cell: (r) => number(r[1])},
    ], headline, {caption: `Validation (best epoch ${number(metrics.best_epoch)})`, empty: "No metrics recorded."})),
    section("Per class", perClass(metricsFile)),
    section("Training curves", historyCharts(metrics.history || (metricsFile && metricsFile.history), metric)),
    section("Evaluation plots", plots.length
      ? h("div", {class: "plots"}, plots.map((plot) => h("figure", null,
        h("img", {src: plot.url, alt: plot.name.replace(/[_.]/g, " "), loading: "lazy"}),
        h("figcaption", {text: plot.name}))))
      : h("p", {class: "muted", text: "No plots for this version."})),
    section("Model card", modelCard(card, byName["card.json"])),
    section("Downloads", artifactsError ? errorBox(artifactsError) : table([
      {title: "File", cell: (a) => h("a", {href: a.url, download: a.name, rel: "noopener", text: a.name})},
      {title: "Size", numeric: true, cell: (a) => bytes(a.size)},
    ], artifacts, {caption: "Presigned links, valid for an hour"})),
    evaluateSection(model, v, base),
  ];
}

// A presigned JSON artifact, read through the bucket's CORS rule for the console's origin.
async function fetchJson(artifact) {
  if (!artifact) return null;
  try {
    const response = await fetch(artifact.url);
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

function perClass(metricsFile) {
  const details = metricsFile && metricsFile.per_class;
  if (!details) return h("p", {class: "muted", text: "metrics.json could not be read (see Downloads)."});
  const rows = Array.isArray(details) ? details.map((entry, i) => ({name: entry.label || entry.class || String(i), ...entry}))
    : Object.entries(details).map(([name, entry]) => ({name, ...entry}));
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => typeof r[k] === "number")))];
  return table([{title: "Class", cell: (r) => r.name},
    ...columns.map((c) => ({title: c.replace(/_/g, " "), numeric: true, cell: (r) => number(r[c])})),
    {title: "Assumed threshold", numeric: true, cell: (r) => number(r.assumed_threshold && r.assumed_threshold.threshold)},
  ], rows, {caption: "Per class, on the validation images"});
}

function modelCard(card, artifact) {
  if (!card) return h("p", {class: "muted", text: artifact ? "card.json could not be read (see Downloads)." : "No model card for this version."});
  const scalar = Object.entries(card).filter(([, value]) => value !== null && typeof value !== "object");
  const nested = Object.entries(card).filter(([, value]) => value !== null && typeof value === "object");
  return h("div", null, facts(scalar.map(([k, value]) => [k.replace(/_/g, " "), String(value)])),
    nested.map(([k, value]) => h("details", null, h("summary", {text: k.replace(/_/g, " ")}),
      h("pre", {text: JSON.stringify(value, null, 2)}))));
}

function evaluateSection(model, v, base) {
  const dataset = h("input", {id: "evaluate-dataset", required: true, value: (v.datasets || [])[0] || "", autocomplete: "off"});
  const include = h("input", {id: "evaluate-include", type: "checkbox"});
  const status = h("div", {role: "status"});
  const problems = h("div");
  const button = h("button", {type: "submit", text: "Evaluate"});
  const form = h("form", {class: "stack", onsubmit: (event) => {
    event.preventDefault();
    act(button, problems, async () => {
      const answer = await post(`${base}/evaluations`, {dataset: dataset.value.trim(),
                                                        include_training_images: include.checked});
      rememberEvaluation(answer.evaluation_id, `${model.name || model.model_id} v${v.version} on ${dataset.value.trim()}`);
      toast(`Evaluation ${answer.evaluation_id} started`);
      follow(answer.evaluation_id, status);
    });
  }},
    h("label", {for: "evaluate-dataset", text: "Dataset"}), dataset,
    h("label", {class: "check"}, include, " include the images this version trained on"),
    button, problems, status);
  return section("Evaluate on a dataset", form);
}

async function follow(evaluationId, place) {
  for (;;) {
    let evaluation;
    try {
      evaluation = await get(`/v1/evaluations/${seg(evaluationId)}`);
    } catch (error) {
      replace(place, errorBox(error));
      return;
    }
    replace(place, h("p", null, badge(evaluation.status), " ", h("code", {text: evaluationId}), " ",
      evaluation.status === "succeeded" ? h("a", {href: href("/compare", {ids: evaluationId}), text: "See it in Compare"}) : null,
      evaluation.failure_reason ? ` ${evaluation.failure_reason}` : null));
    if (!["queued", "running"].includes(evaluation.status) || !place.isConnected) return;
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}
