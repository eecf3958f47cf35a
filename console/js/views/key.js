// The API key, typed once per tab: kept in sessionStorage only.
import {get, setKey, forgetKey, config} from "../api.js";
import {h} from "../dom.js";
import {errorBox} from "../errors.js";
import {go} from "../router.js";

export async function keyView(params, query) {
  const input = h("input", {id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true,
                            minLength: 20, spellcheck: false, "aria-describedby": "api-key-help"});
  const result = h("div");
  const form = h("form", {class: "stack", onsubmit: async (event) => {
    event.preventDefault();
    setKey(input.value);
    try {
      await get("/v1/datasets?limit=1");
    } catch (error) {
      // A valid key whose scopes do not include reading (a predict-only key) is still a key: keep it.
      if (error.code !== "scope_forbidden") {
        forgetKey();
        result.replaceChildren(errorBox(error));
        return;
      }
    }
    document.dispatchEvent(new CustomEvent("sightline:key"));
    go(query.next && query.next !== "/key" ? query.next : "/datasets");
  }},
    h("label", {for: "api-key", text: "API key"}), input,
    h("p", {id: "api-key-help", class: "muted",
            text: "The stack's key, or a scoped key. It stays in this tab only (sessionStorage) and goes to the API in the x-api-key header."}),
    h("button", {type: "submit", class: "primary", text: "Use this key"}), result);
  const where = config().api_url ? h("p", {class: "muted"}, "API: ", h("code", {text: config().api_url})) : null;
  return h("div", {class: "narrow"}, h("h1", {text: "Sign in with an API key"}), where, form);
}
