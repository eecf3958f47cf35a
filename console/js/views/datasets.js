// Datasets: the list (status, task, formats, counts) with an upload form, and one dataset's classes, issues
// (filtered, a page at a time) and images (a page at a time, labels and boxes drawn on the thumbnails).
import {get, del, seg, query, ApiError} from "../api.js";
import {h, replace, number, when, badge, table, facts, section, toast} from "../dom.js";
import {errorBox, act} from "../errors.js";
import {href, go} from "../router.js";
import {boxedImage} from "../boxes.js";
import {confirmDialog} from "../confirm.js";
import {uploadFiles} from "../upload.js";

const PAGE = 20;
const IMAGES_PAGE = 24;
const ISSUES_PAGE = 100;
const NAME = /^[A-Za-z0-9._-]{1,64}$/;  // the API's rule (sightline.datasets.paths)

export async function datasetsView(params, q) {
  let listing;
  try {
    listing = await get(`/v1/datasets${query({limit: PAGE, after: q.after})}`);
  } catch (error) {
    return h("div", null, h("h1", {text: "Datasets"}), errorBox(error, {retry: () => go("/datasets", q)}));
  }
  const rows = listing.datasets;
  const list = table([
    {title: "Name", cell: (d) => h("a", {href: href(`/datasets/${encodeURIComponent(d.name)}`), text: d.name})},
    {title: "Status", cell: (d) => badge(d.status)},
    {title: "Tasks", cell: (d) => (d.tasks || []).join(", ") || "–"},
    {title: "Formats", cell: (d) => (d.formats || []).join(", ") || "–"},
    {title: "Images", numeric: true, cell: (d) => number(d.images)},
    {title: "Annotations", numeric: true, cell: (d) => number(d.annotations)},
    {title: "Classes", numeric: true, cell: (d) => number(d.class_count)},
    {title: "Issues", numeric: true, cell: (d) => number(d.issue_count)},
    {title: "Updated", cell: (d) => when(d.updated_at)},
  ], rows, {caption: "Registered datasets", empty: "No datasets yet: upload one below."});
  const pager = h("nav", {class: "pager", "aria-label": "Dataset pages"},
    q.after ? h("a", {href: href("/datasets"), text: "First page"}) : null,
    listing.next_after ? h("a", {href: href("/datasets", {after: listing.next_after}), text: "Next page"}) : null);
  return h("div", null, h("h1", {text: "Datasets"}), section("All datasets", list, pager), uploadForm());
}

function uploadForm() {
  const name = h("input", {id: "upload-name", name: "dataset", required: true, pattern: "[A-Za-z0-9._\\-]{1,64}",
                           autocomplete: "off", "aria-describedby": "upload-help"});
  const files = h("input", {id: "upload-files", type: "file", multiple: true});
  const folder = h("input", {id: "upload-folder", type: "file", webkitdirectory: true});
  const status = h("p", {class: "muted", role: "status"});
  const problems = h("div");
  const button = h("button", {type: "submit", class: "primary", text: "Upload"});
  const form = h("form", {class: "stack", onsubmit: (event) => {
    event.preventDefault();
    const chosen = [...files.files, ...folder.files];
    if (!NAME.test(name.value)) return replace(problems, errorBox(new ApiError(400, "invalid_name",
      "A dataset name is letters, digits, dots, dashes and underscores.")));
    if (!chosen.length) return replace(problems, errorBox(new ApiError(400, "no_files", "Choose files or a folder.")));
    act(button, problems, async () => {
      await uploadFiles(name.value, chosen, (done, total, path) => {
        status.textContent = `Uploaded ${done} of ${total} (${path})`;
      });
      toast(`Uploaded to ${name.value}: registering`);
      go(`/datasets/${encodeURIComponent(name.value)}`);
    });
  }},
    h("label", {for: "upload-name", text: "Dataset name"}), name,
    h("p", {id: "upload-help", class: "muted",
            text: "Class folders, a zip or tar of them, COCO, Pascal VOC, YOLO, CSV or Ground Truth manifests: the format is detected. Files go straight to the data bucket with presigned URLs."}),
    h("label", {for: "upload-files", text: "Files or archives"}), files,
    h("label", {for: "upload-folder", text: "…or a folder (its sub-folders are the classes)"}), folder,
    button, status, problems);
  return section("Upload a dataset", form);
}

export async function datasetView({name}, q, page) {
  const path = `/v1/datasets/${seg(name)}`;
  const summary = h("div");
  const classes = h("div");
  const heading = h("h1", {text: name});
  const images = imageGrid(name, q.class || "");
  const issues = issuesSection(name);
  const deleteButton = h("button", {type: "button", class: "danger", text: "Delete dataset"});
  const deleteProblems = h("div");
  deleteButton.addEventListener("click", async () => {
    if (!await confirmDialog(`Delete the dataset ${name}?`, {
      detail: "Its uploads and the images nothing else uses are removed. Model versions keep their snapshots."})) return;
    act(deleteButton, deleteProblems, async () => {
      await del(path);
      toast(`Deleting ${name}`);
      go("/datasets");
    });
  });

  let last = null;
  async function refresh() {
    let dataset;
    try {
      dataset = await get(path);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && !last) {
        replace(summary, h("p", {class: "muted", role: "status", text: "Not registered yet: waiting for the upload to register…"}));
        return true;
      }
      replace(summary, errorBox(error));
      return false;
    }
    if (last && last.updated_at === dataset.updated_at && last.status === dataset.status) return true;
    const grew = !last || last.images !== dataset.images;
    last = dataset;
    renderSummary(summary, dataset);
    renderClasses(classes, name, dataset);
    if (grew) images.reload();
    issues.reload();
    return true;
  }
  await refresh();
  // Registration is asynchronous: keep the summary current while the page is open.
  const timer = setInterval(() => { if (page.active) refresh(); }, 3000);
  page.onLeave(() => clearInterval(timer));

  return h("div", null,
    h("p", {class: "crumbs"}, h("a", {href: href("/datasets"), text: "Datasets"})),
    heading, summary, classes, images.element, issues.element,
    section("Danger zone", deleteButton, deleteProblems));
}

function renderSummary(container, d) {
  const tooSmall = Object.entries(d.too_small || {}).map(([task, info]) =>
    h("li", {text: `${task}: ${(info.reasons || []).join("; ")}`}));
  replace(container, section("Summary", facts([
    ["Status", badge(d.status)],
    ["Tasks", (d.tasks || []).join(", ") || "–"],
    ["Formats", (d.formats || []).join(", ") || "–"],
    ["Images", number(d.images)],
    ["Annotations", number(d.annotations)],
    ["Negatives", number(d.negatives)],
    ["Duplicate copies", number(d.duplicates && d.duplicates.count)],
    ["Issues", number(d.issue_count ?? (d.issues || []).length)],
    ["Updated", when(d.updated_at)],
  ]), tooSmall.length ? h("div", {class: "warning"}, h("p", {text: "Too small to train yet:"}), h("ul", null, tooSmall)) : null));
}

function renderClasses(container, name, d) {
  const counts = d.class_counts || {};
  const names = Object.keys(d.classes || counts).sort();
  const rows = names.map((label) => ({label, examples: (d.classes || {})[label], ...(counts[label] || {})}));
  replace(container, section("Classes", table([
    {title: "Class", cell: (r) => h("a", {href: href(`/datasets/${encodeURIComponent(name)}`, {class: r.label}),
                                          text: r.label, class: "class-name"})},
    {title: "Examples", numeric: true, cell: (r) => number(r.examples)},
    {title: "Images", numeric: true, cell: (r) => number(r.images)},
    {title: "Boxes", numeric: true, cell: (r) => number(r.boxes)},
  ], rows, {caption: `${names.length} classes`, empty: "No classes yet."})));
}

function imageGrid(name, initialClass) {
  const grid = h("ul", {class: "grid", "aria-label": "Images"});
  const status = h("p", {class: "muted", role: "status"});
  const select = h("input", {id: "image-class", value: initialClass, placeholder: "all classes", autocomplete: "off"});
  const previous = h("button", {type: "button", text: "Previous page", disabled: true});
  const next = h("button", {type: "button", text: "Next page", disabled: true});
  const cursors = [null];  // the cursor of each page shown so far
  let at = 0;

  async function load() {
    status.textContent = "Loading images…";
    let answer;
    try {
      answer = await get(`/v1/datasets/${seg(name)}/images${query({class: select.value.trim(), limit: IMAGES_PAGE,
                                                                  cursor: cursors[at]})}`);
    } catch (error) {
      status.textContent = "";
      replace(grid, h("li", null, errorBox(error)));
      return;
    }
    cursors.length = at + 1;
    if (answer.next_cursor) cursors.push(answer.next_cursor);
    replace(grid, answer.images.map((image) => h("li", {class: "tile"},
      boxedImage({src: image.thumbnail_url, alt: `${(image.labels || image.classes || []).join(", ") || "image"} (${image.path})`,
                  width: image.width, height: image.height, boxes: image.boxes || [], labels: image.classes || []}),
      h("p", {class: "tile-caption"}, (image.labels || image.classes || []).join(", ") || (image.boxes ? `${image.box_count ?? image.boxes.length} boxes` : "no label")),
      h("p", {class: "tile-path muted", text: image.path}))));
    status.textContent = answer.images.length ? `Page ${at + 1}: ${answer.images.length} images` : "No images.";
    previous.disabled = at === 0;
    next.disabled = !answer.next_cursor;
  }
  previous.addEventListener("click", () => { at -= 1; load(); });
  next.addEventListener("click", () => { at += 1; load(); });
  const form = h("form", {class: "row", onsubmit: (event) => {
    event.preventDefault();
    cursors.length = 1;
    at = 0;
    load();
  }}, h("label", {for: "image-class", text: "Class"}), select, h("button", {type: "submit", text: "Show"}));
  return {
    element: section("Images", form, status, grid, h("div", {class: "pager"}, previous, next)),
    reload: () => { if (at === 0) load(); },
  };
}

function issuesSection(name) {
  const list = h("ul", {class: "issues"});
  const filter = h("input", {id: "issue-filter", type: "search", placeholder: "text in the file or the reason",
                             autocomplete: "off"});
  const more = h("button", {type: "button", text: "More issues", hidden: true});
  const status = h("p", {class: "muted", role: "status"});
  let after = null;
  let shown = 0;

  async function load(reset) {
    if (reset) {
      after = null;
      shown = 0;
      list.replaceChildren();
    }
    const needle = filter.value.trim().toLowerCase();
    let answer;
    try {
      answer = await get(`/v1/datasets/${seg(name)}/issues${query({limit: ISSUES_PAGE, after})}`);
    } catch (error) {
      replace(list, h("li", null, errorBox(error)));
      return;
    }
    const matching = answer.issues.filter((issue) =>
      !needle || `${issue.key} ${issue.reason}`.toLowerCase().includes(needle));
    list.append(...matching.map((issue) => h("li", null, h("code", {text: issue.key}), h("span", {text: issue.reason}))));
    shown += matching.length;
    after = answer.next_after;
    more.hidden = !after;
    status.textContent = shown ? `${shown} issues shown${after ? " (more below)" : ""}` : (needle ? "No issue matches." : "No issues.");
  }
  more.addEventListener("click", () => load(false));
  const form = h("form", {class: "row", role: "search", onsubmit: (event) => { event.preventDefault(); load(true); }},
    h("label", {for: "issue-filter", text: "Filter"}), filter, h("button", {type: "submit", text: "Filter"}));
  // Loaded once the dataset exists, and again whenever it changes (the first page, with the filter kept).
  return {element: section("Issues", form, status, list, more), reload: () => load(true)};
}
