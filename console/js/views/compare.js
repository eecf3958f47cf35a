// Compare: evaluations side by side (GET /v1/evaluations/compare), one column each, the metrics they share as rows.
// The API lists no evaluations, so the ones started in this tab are remembered (ids only, sessionStorage).
import {get, query} from "../api.js";
import {h, number, badge, section, table} from "../dom.js";
import {errorBox} from "../errors.js";
import {go} from "../router.js";

const ITEM = "sightline.evaluations";
const MAX = 10;

export function rememberedEvaluations() {
  try {
    return JSON.parse(sessionStorage.getItem(ITEM) || "[]");
  } catch {
    return [];
  }
}

export function rememberEvaluation(id, label) {
  const kept = rememberedEvaluations().filter((e) => e.id !== id);
  sessionStorage.setItem(ITEM, JSON.stringify([{id, label}, ...kept].slice(0, 50)));
}

export async function compareView(params, q) {
  const ids = (q.ids || "").split(",").map((id) => id.trim()).filter(Boolean).slice(0, MAX);
  const input = h("input", {id: "compare-ids", value: ids.join(","), autocomplete: "off",
                            "aria-describedby": "compare-help"});
  const known = rememberedEvaluations();
  const picks = known.map((e) => h("label", {class: "check"},
    h("input", {type: "checkbox", value: e.id, checked: ids.includes(e.id)}), ` ${e.label} `, h("code", {text: e.id})));
  const form = h("form", {class: "stack", onsubmit: (event) => {
    event.preventDefault();
    const chosen = new Set(input.value.split(",").map((id) => id.trim()).filter(Boolean));
    for (const box of form.querySelectorAll("input[type=checkbox]:checked")) chosen.add(box.value);
    go("/compare", {ids: [...chosen].slice(0, MAX).join(",")});
  }},
    picks.length ? h("fieldset", null, h("legend", {text: "Evaluations started in this tab"}), picks) : null,
    h("label", {for: "compare-ids", text: "Evaluation ids"}), input,
    h("p", {id: "compare-help", class: "muted", text: `Separated by commas, up to ${MAX}. Start one from a trained version's page.`}),
    h("button", {type: "submit", class: "primary", text: "Compare"}));
  const page = h("div", null, h("h1", {text: "Compare evaluations"}), section("Choose", form));
  if (!ids.length) return page;
  try {
    const answer = await get(`/v1/evaluations/compare${query({ids: ids.join(",")})}`);
    page.append(section("Side by side", comparison(answer)));
  } catch (error) {
    page.append(errorBox(error));
  }
  return page;
}

function comparison(answer) {
  const evaluations = answer.evaluations || [];
  const head = evaluations.map((e) => h("span", null, `${e.model_id || "?"} v${e.version ?? "?"}`, h("br"),
    `on ${e.dataset || "?"}`, h("br"), badge(e.status || "unknown")));
  const columns = [{title: "Metric", cell: (row) => row.metric},
    ...evaluations.map((e, i) => ({title: `${e.model_id} v${e.version} / ${e.dataset}`, numeric: true,
                                   cell: (row) => best(row, i)}))];
  return h("div", null, h("ul", {class: "columns-legend"}, head.map((item) => h("li", null, item))),
    table(columns, answer.rows || [], {caption: "Shared metrics (the best of each row in bold)",
                                       empty: "No metric is shared yet (are they still running?)."}));
}

function best(row, index) {
  const value = row.values[index];
  const numbers = row.values.filter((v) => typeof v === "number");
  const top = row.metric.includes("loss") ? Math.min(...numbers) : Math.max(...numbers);
  return numbers.length > 1 && value === top ? h("strong", {text: number(value)}) : number(value);
}
