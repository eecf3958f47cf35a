// The console's entry point: configuration, theme, key guard, navigation and the routes.
import {loadConfig, getKey, forgetKey} from "./api.js";
import {route, start, go} from "./router.js";
import {setupTheme} from "./theme.js";
import {keyView} from "./views/key.js";
import {datasetsView, datasetView} from "./views/datasets.js";
import {modelsView, modelView} from "./views/models.js";
import {versionView} from "./views/version.js";
import {tryView} from "./views/try.js";
import {compareView} from "./views/compare.js";

function showKeyState() {
  document.getElementById("forget-key").hidden = !getKey();
}

function markNav(pattern) {
  const section = pattern.split("/")[1];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  showKeyState();
}

async function main() {
  setupTheme(document.getElementById("theme-toggle"));
  document.getElementById("forget-key").addEventListener("click", () => {
    forgetKey();
    showKeyState();
    go("/key");
  });
  document.addEventListener("sightline:key", showKeyState);
  await loadConfig();
  route("/key", keyView);
  route("/datasets", datasetsView);
  route("/datasets/:name", datasetView);
  route("/models", modelsView);
  route("/models/:id", modelView);
  route("/models/:id/versions/:version", versionView);
  route("/try", tryView);
  route("/compare", compareView);
  start({
    element: document.getElementById("main"),
    home: "/datasets",
    before: (path) => (getKey() || path === "/key" ? null : "/key"),
    changed: markNav,
  });
}

main();
