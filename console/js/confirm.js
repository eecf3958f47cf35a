// A modal confirmation (<dialog>: focus moves into it, Escape cancels) before anything is deleted.
import {h} from "./dom.js";

export function confirmDialog(message, {confirm = "Delete", detail = ""} = {}) {
  return new Promise((resolve) => {
    const dialog = h("dialog", {class: "confirm", "aria-labelledby": "confirm-title"},
      h("form", {method: "dialog"},
        h("h2", {id: "confirm-title", text: message}),
        detail ? h("p", {text: detail}) : null,
        h("div", {class: "row"},
          h("button", {type: "submit", value: "cancel", class: "ghost", autofocus: true, text: "Cancel"}),
          h("button", {type: "submit", value: "confirm", class: "danger", text: confirm}))));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
