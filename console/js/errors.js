// How an ApiError is shown: what went wrong, in words for its kind, with the API's code and reference.
import {ApiError} from "./api.js";
import {h} from "./dom.js";

const ADVICE = {
  network: "Check that the API is running and reachable from this browser.",
  auth: "The key is missing, unknown, revoked, or its scopes do not allow this.",
  "not-found": "It does not exist (any more).",
  conflict: "Not possible in its current state.",
  throttled: "Too many requests: wait a moment and try again.",
  server: "The service failed. Quote the reference to find the details in the function's log.",
  request: "The request was refused.",
};

export function errorBox(error, {retry} = {}) {
  const typed = error instanceof ApiError ? error : new ApiError(0, "client_error", String(error && error.message || error));
  return h("div", {class: `error error-${typed.kind}`, role: "alert"},
    h("p", {class: "error-title"}, h("strong", {text: typed.status ? `Error ${typed.status}` : "No answer"}),
      " ", h("code", {text: typed.code})),
    h("p", {text: typed.message}),
    h("p", {class: "muted", text: ADVICE[typed.kind]}),
    typed.reference ? h("p", null, "Reference: ", h("code", {text: typed.reference})) : null,
    typed.kind === "auth" ? h("p", null, h("a", {href: "#/key", text: "Enter another key"})) : null,
    retry ? h("button", {type: "button", onclick: retry, text: "Try again"}) : null);
}

// Runs an action from a button: disables it meanwhile, shows the error in `place` (or below the button).
export async function act(button, place, action) {
  button.disabled = true;
  place.replaceChildren();
  try {
    return await action();
  } catch (error) {
    place.replaceChildren(errorBox(error));
    return undefined;
  } finally {
    button.disabled = false;
  }
}
