// Try it: an image (dropped, pasted, picked from disk or from a dataset's thumbnails), one or several models
// (POST /v1/predict answers each), a threshold applied here to the scores returned, boxes drawn on the image.
import {get, post, seg, query, ApiError} from "../api.js";
import {h, replace, number, section} from "../dom.js";
import {errorBox, act} from "../errors.js";
import {boxedImage} from "../boxes.js";
import {scoreBars} from "../charts.js";

const MAX_MODELS = 10;
const MAX_BYTES = 4 * 1024 * 1024;  // predict's MAX_IMAGE_BYTES

function base64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export async function tryView(params, q, page) {
  let models = [];
  try {
    models = ((await get("/v1/models")).models || []).filter((m) => m.serving_version);
  } catch (error) {
    return h("div", null, h("h1", {text: "Try it"}), errorBox(error));
  }
  const state = {image: null, url: null, answers: []};
  page.onLeave(() => state.url && URL.revokeObjectURL(state.url));

  const preview = h("div", {class: "preview", "aria-live": "polite"});
  const results = h("div", {class: "results"});
  const problems = h("div");
  const threshold = h("input", {id: "threshold", type: "range", min: 0, max: 1, step: 0.01, value: 0.5});
  const thresholdValue = h("output", {for: "threshold", id: "threshold-value", text: "0.50"});

  function setImage(blob, name) {
    if (!blob || !blob.type.startsWith("image/")) {
      replace(problems, errorBox(new ApiError(415, "not_an_image", "That is not an image.")));
      return;
    }
    if (blob.size > MAX_BYTES) {
      replace(problems, errorBox(new ApiError(413, "payload_too_large", "Predict takes images up to 4 MiB.")));
      return;
    }
    problems.replaceChildren();
    if (state.url) URL.revokeObjectURL(state.url);
    state.image = blob;
    state.url = URL.createObjectURL(blob);
    state.answers = [];
    replace(preview, h("img", {src: state.url, alt: `the image to predict: ${name}`}), h("p", {class: "muted", text: name}));
    results.replaceChildren();
  }

  // Drop, pick or paste.
  const file = h("input", {id: "try-file", type: "file", accept: "image/*",
                           onchange: () => file.files[0] && setImage(file.files[0], file.files[0].name)});
  const zone = h("label", {for: "try-file", class: "dropzone"},
    h("strong", {text: "Drop an image here, paste one, or choose a file"}), h("span", {class: "muted", text: " (JPEG or PNG, up to 4 MiB)"}));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const dropped = event.dataTransfer.files[0];
    if (dropped) setImage(dropped, dropped.name);
  });
  const onPaste = (event) => {
    const item = [...(event.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) setImage(item.getAsFile(), "pasted image");
  };
  document.addEventListener("paste", onPaste);
  page.onLeave(() => document.removeEventListener("paste", onPaste));

  // Models and versions.
  const picks = models.map((m) => {
    const box = h("input", {type: "checkbox", value: m.model_id, checked: q.model === m.model_id || models.length === 1,
                            id: `pick-${m.model_id}`});
    const version = h("input", {type: "number", min: 1, max: m.latest_version, placeholder: `serving (v${m.serving_version})`,
                                id: `version-${m.model_id}`, class: "short", "aria-label": `Version of ${m.name || m.model_id}`});
    return {model: m, box, version, element: h("div", {class: "row tight"},
      h("label", {class: "check", for: `pick-${m.model_id}`}, box, ` ${m.name || m.model_id} `, h("span", {class: "muted", text: `(${m.task})`})), version)};
  });

  function render() {
    const cut = Number(threshold.value);
    thresholdValue.textContent = cut.toFixed(2);
    replace(results, state.answers.map(({pick, answer}) => resultPanel(pick, answer, cut, state.url)));
  }
  threshold.addEventListener("input", render);

  const button = h("button", {type: "submit", class: "primary", text: "Predict"});
  const form = h("form", {class: "stack", onsubmit: (event) => {
    event.preventDefault();
    const chosen = picks.filter((p) => p.box.checked).slice(0, MAX_MODELS);
    if (!state.image) return replace(problems, errorBox(new ApiError(400, "no_image", "Choose an image first.")));
    if (!chosen.length) return replace(problems, errorBox(new ApiError(400, "no_model", "Choose at least one model.")));
    act(button, problems, async () => {
      // Every score comes back (threshold 0); the slider cuts them here, without asking again.
      const answer = await post("/v1/predict", {
        models: chosen.map((p) => (p.version.value ? {model_id: p.model.model_id, version: Number(p.version.value)} : p.model.model_id)),
        image: await base64(state.image), threshold: 0, max_results: 100,
      });
      state.answers = chosen.map((pick, i) => ({pick, answer: answer.results[i]}));
      render();
    });
  }},
    models.length ? h("fieldset", null, h("legend", {text: "Models (several answer side by side)"}), picks.map((p) => p.element))
      : h("p", {class: "muted", text: "No model serves yet: train one first."}),
    button, problems);

  return h("div", null, h("h1", {text: "Try it"}),
    h("div", {class: "split"},
      section("Image", zone, file, preview, datasetPicker(setImage)),
      section("Predict", form, h("div", {class: "row"}, h("label", {for: "threshold", text: "Threshold"}), threshold, thresholdValue)),
    ),
    section("Results", results));
}

function resultPanel(pick, answer, cut, imageUrl) {
  const title = h("h3", {text: `${pick.model.name || pick.model.model_id}${answer && answer.version ? ` · v${answer.version}` : ""}`});
  if (!answer || answer.error) {
    const error = (answer && answer.error) || {code: "no_answer", message: "no answer"};
    return h("article", {class: "result"}, title, errorBox(new ApiError(answer && answer.status || 400, error.code, error.message, error.reference)));
  }
  const kept = (answer.predictions || []).filter((p) => p.score >= cut);
  const summary = h("p", {class: "muted", text: `${kept.length} of ${(answer.predictions || []).length} predictions at or above ${cut.toFixed(2)}`});
  if (answer.task === "detection") {
    const labels = [...new Set((answer.predictions || []).map((p) => p.label))].sort();
    return h("article", {class: "result", "data-task": "detection"}, title, summary,
      boxedImage({src: imageUrl, alt: `boxes found by ${pick.model.name || pick.model.model_id}`,
                  width: answer.image && answer.image.width, height: answer.image && answer.image.height, boxes: kept, labels}),
      h("ol", {class: "predictions"}, kept.map((p) => h("li", null, `${p.label} ${number(p.score)}`))));
  }
  return h("article", {class: "result", "data-task": answer.task}, title, summary, scoreBars(kept));
}

// Pick an image from a dataset: its thumbnail (read through the bucket's CORS rule) becomes the image to predict.
function datasetPicker(setImage) {
  const name = h("input", {id: "try-dataset", autocomplete: "off", placeholder: "dataset name"});
  const tiles = h("ul", {class: "grid small"});
  const problems = h("div");
  const button = h("button", {type: "submit", text: "Show images"});
  const form = h("form", {class: "row", onsubmit: (event) => {
    event.preventDefault();
    act(button, problems, async () => {
      const answer = await get(`/v1/datasets/${seg(name.value.trim())}/images${query({limit: 12})}`);
      replace(tiles, answer.images.map((image) => h("li", null, h("button", {type: "button", class: "tile-button",
        "aria-label": `Use ${image.path}`, onclick: async () => {
          try {
            const response = await fetch(image.thumbnail_url);
            if (!response.ok) throw new ApiError(response.status, "thumbnail_unreadable", "The thumbnail could not be read.");
            const blob = await response.blob();  // a stored original may carry no image type: the browser sniffs it
            setImage(blob.type.startsWith("image/") ? blob : new Blob([blob], {type: "image/*"}), image.path);
          } catch (error) {
            replace(problems, errorBox(error));
          }
        }}, h("img", {src: image.thumbnail_url, alt: ""})))));
    });
  }}, h("label", {for: "try-dataset", text: "…or from a dataset"}), name, button);
  return h("div", null, form, problems, tiles);
}
