// Models: the list with a form to train a new one, and one model with its versions (promote or roll back,
// cancel, delete, train another version).
import {get, post, del, seg} from "../api.js";
import {h, replace, number, when, badge, table, facts, section, toast} from "../dom.js";
import {errorBox, act} from "../errors.js";
import {href, go} from "../router.js";
import {confirmDialog} from "../confirm.js";

export const PRIMARY = {classification: "accuracy", detection: "map_50_95", multilabel: "mean_average_precision"};

export async function modelsView(params, q) {
  let models;
  let templates;
  try {
    [models, templates] = await Promise.all([get("/v1/models"), get("/v1/templates")]);
  } catch (error) {
    return h("div", null, h("h1", {text: "Models"}), errorBox(error, {retry: () => go("/models")}));
  }
  const list = table([
    {title: "Name", cell: (m) => h("a", {href: href(`/models/${encodeURIComponent(m.model_id)}`), text: m.name || m.model_id})},
    {title: "Id", cell: (m) => h("code", {text: m.model_id})},
    {title: "Task", cell: (m) => m.task},
    {title: "Status", cell: (m) => badge(m.status)},
    {title: "Serving version", numeric: true, cell: (m) => number(m.serving_version)},
    {title: "Latest version", numeric: true, cell: (m) => number(m.latest_version)},
    {title: "Classes", numeric: true, cell: (m) => number((m.classes || []).length)},
    {title: "Updated", cell: (m) => when(m.updated_at)},
  ], models.models || [], {caption: "Models", empty: "No models yet: train one below."});
  return h("div", null, h("h1", {text: "Models"}), section("All models", list),
    trainForm(templates.templates || [], q.dataset || ""));
}

function trainForm(templates, dataset) {
  const name = h("input", {id: "train-name", required: true, autocomplete: "off"});
  const task = h("select", {id: "train-task"}, ["classification", "detection", "multilabel"].map((t) =>
    h("option", {value: t, text: t})));
  const datasets = h("input", {id: "train-datasets", required: true, value: dataset, autocomplete: "off",
                               "aria-describedby": "train-datasets-help"});
  const template = h("select", {id: "train-template"});
  const epochs = h("input", {id: "train-epochs", type: "number", min: 1, max: 500, placeholder: "chosen from the data"});
  const imageSize = h("input", {id: "train-image-size", type: "number", min: 32, max: 1024, step: 32,
                                placeholder: "the template's"});
  const problems = h("div");
  const button = h("button", {type: "submit", class: "primary", text: "Start training"});
  function fillTemplates() {
    replace(template, h("option", {value: "", text: "default for the task"}),
      templates.filter((t) => t.task === task.value).map((t) => h("option", {value: t.id, text: t.id})));
  }
  task.addEventListener("change", fillTemplates);
  fillTemplates();
  const form = h("form", {class: "stack", onsubmit: (event) => {
    event.preventDefault();
    const params = {};
    if (epochs.value) params.epochs = Number(epochs.value);
    if (imageSize.value) params.image_size = Number(imageSize.value);
    const body = {name: name.value.trim(), task: task.value,
                  datasets: datasets.value.split(",").map((d) => d.trim()).filter(Boolean), params};
    if (template.value) body.template = template.value;
    act(button, problems, async () => {
      const answer = await post("/v1/models", body);
      toast(`Training ${answer.model_id} version ${answer.version}`);
      go(`/models/${encodeURIComponent(answer.model_id)}/versions/${answer.version}`);
    });
  }},
    h("label", {for: "train-name", text: "Name"}), name,
    h("label", {for: "train-task", text: "Task"}), task,
    h("label", {for: "train-datasets", text: "Datasets"}), datasets,
    h("p", {id: "train-datasets-help", class: "muted", text: "Dataset names, separated by commas."}),
    h("label", {for: "train-template", text: "Template"}), template,
    h("label", {for: "train-epochs", text: "Epochs"}), epochs,
    h("label", {for: "train-image-size", text: "Image size"}), imageSize,
    button, problems);
  return section("Train a model", form);
}

export async function modelView({id}, q, page) {
  const path = `/v1/models/${seg(id)}`;
  const body = h("div");
  const heading = h("h1", {text: id});
  async function refresh() {
    let model;
    let versions;
    try {
      [model, versions] = await Promise.all([get(path), get(`${path}/versions`)]);
    } catch (error) {
      replace(body, errorBox(error, {retry: refresh}));
      return null;
    }
    heading.textContent = model.name || id;
    replace(body, modelFacts(model), versionsSection(model, versions.versions || [], refresh), dangerZone(model));
    return model;
  }
  const model = await refresh();
  // While something trains, the versions' states change: follow them.
  const timer = setInterval(() => {
    if (page.active && body.querySelector(".status-training")) refresh();
  }, 4000);
  page.onLeave(() => clearInterval(timer));
  return h("div", null, h("p", {class: "crumbs"}, h("a", {href: href("/models"), text: "Models"})), heading,
    model ? h("p", {class: "muted"}, h("code", {text: id})) : null, body);
}

function modelFacts(m) {
  return section("Model", facts([
    ["Task", m.task],
    ["Status", badge(m.status)],
    ["Serving version", number(m.serving_version)],
    ["Latest version", number(m.latest_version)],
    ["Classes", (m.classes || []).join(", ") || "–"],
    ["Datasets", (m.datasets || []).map((d, i) => [i ? ", " : "", h("a", {href: href(`/datasets/${encodeURIComponent(d)}`), text: d})])],
    ["Template", m.template],
    ["Retrains on new data", m.retrain_on_new_data ? "yes" : "no"],
    ["Promotion gate", m.promotion ? `${m.promotion.gate}${m.promotion.metric ? ` (${m.promotion.metric})` : ""}` : null],
    ["Last failure", m.failure_reason],
  ]), h("p", null, h("a", {class: "button", href: href("/try", {model: m.model_id}), text: "Try it"})));
}

function versionsSection(model, versions, refresh) {
  const problems = h("div");
  const retrain = h("button", {type: "button", text: "Train a new version"});
  retrain.addEventListener("click", () => act(retrain, problems, async () => {
    const answer = await post(`/v1/models/${seg(model.model_id)}/versions`, {});
    toast(`Version ${answer.version} ${answer.status}`);
    await refresh();
  }));
  const metric = PRIMARY[model.task];
  const rows = versions.map((v) => ({...v, actions: versionActions(model, v, problems, refresh)}));
  return section("Versions", table([
    {title: "Version", cell: (v) => h("a", {href: href(`/models/${encodeURIComponent(model.model_id)}/versions/${v.version}`),
                                            text: `v${v.version}`})},
    {title: "Status", cell: (v) => [badge(v.status), v.version === model.serving_version ? h("span", {class: "badge serving", text: "serving"}) : null]},
    {title: "Template", cell: (v) => v.template || "–"},
    {title: metric, numeric: true, cell: (v) => number(v.metrics && v.metrics[metric])},
    {title: "Trigger", cell: (v) => (v.trigger && v.trigger.type) || "–"},
    {title: "Started", cell: (v) => when(v.created_at)},
    {title: "Actions", cell: (v) => v.actions || "–"},
  ], rows, {caption: `Versions of ${model.name || model.model_id}`}), h("div", {class: "row"}, retrain), problems);
}

export function versionActions(model, v, problems, refresh) {
  const base = `/v1/models/${seg(model.model_id)}/versions/${v.version}`;
  const buttons = [];
  if (v.status === "ready" && v.version !== model.serving_version) {
    const older = model.serving_version && v.version < model.serving_version;
    const promote = h("button", {type: "button", text: older ? `Roll back to v${v.version}` : `Promote v${v.version}`});
    promote.addEventListener("click", () => act(promote, problems, async () => {
      await post(`${base}/promote`);
      toast(`v${v.version} serves now`);
      await refresh();
    }));
    buttons.push(promote);
  }
  if (v.status === "training") {
    const cancel = h("button", {type: "button", text: `Cancel v${v.version}`});
    cancel.addEventListener("click", async () => {
      if (!await confirmDialog(`Cancel the training of v${v.version}?`, {confirm: "Cancel training"})) return;
      act(cancel, problems, async () => {
        await post(`${base}/cancel`);
        toast(`v${v.version} cancelled`);
        await refresh();
      });
    });
    buttons.push(cancel);
  }
  if (v.version !== model.serving_version && v.status !== "training") {
    const remove = h("button", {type: "button", class: "danger", text: `Delete v${v.version}`});
    remove.addEventListener("click", async () => {
      if (!await confirmDialog(`Delete version ${v.version}?`, {detail: "Its model files and metrics are removed."})) return;
      act(remove, problems, async () => {
        await del(base);
        toast(`v${v.version} deleted`);
        await refresh();
      });
    });
    buttons.push(remove);
  }
  return buttons.length ? h("div", {class: "row tight"}, buttons) : null;
}

function dangerZone(model) {
  const problems = h("div");
  const remove = h("button", {type: "button", class: "danger", text: "Delete model"});
  remove.addEventListener("click", async () => {
    if (!await confirmDialog(`Delete the model ${model.name || model.model_id}?`, {
      detail: "Every version and its files are removed; a training run is cancelled. Datasets stay."})) return;
    act(remove, problems, async () => {
      await del(`/v1/models/${seg(model.model_id)}`);
      toast("Model deleted");
      go("/models");
    });
  });
  return section("Danger zone", remove, problems);
}
