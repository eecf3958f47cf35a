// Building the page: elements from data (text is always text, never parsed as HTML), and small formatters.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(element, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.setAttribute("class", value);
    else if (name === "text") element.textContent = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name in element && !(element instanceof SVGElement)) element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  apply(element, props);
  append(element, children);
  return element;
}

export function s(tag, props, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "class") element.setAttribute("class", value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function replace(container, ...children) {
  container.replaceChildren();
  append(container, children);
  return container;
}

export function number(value, digits = 3) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
}

export function bytes(size) {
  if (size === undefined || size === null) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function duration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  return minutes ? `${minutes} min ${total % 60} s` : `${total} s`;
}

export const badge = (status) => h("span", {class: `badge status-${String(status).replace(/[^a-z_-]/gi, "")}`,
                                            text: String(status)});

export function table(columns, rows, {caption, empty = "Nothing yet."} = {}) {
  if (!rows.length) return h("p", {class: "muted", text: empty});
  return h("div", {class: "table-wrap"},
    h("table", null,
      caption ? h("caption", {text: caption}) : null,
      h("thead", null, h("tr", null, columns.map((column) => h("th", {scope: "col", class: column.numeric ? "num" : null,
                                                                       text: column.title})))),
      h("tbody", null, rows.map((row) => h("tr", null, columns.map((column) => {
        const value = column.cell(row);
        return h("td", {class: column.numeric ? "num" : null}, value);
      }))))));
}

// A definition list of label -> value pairs (values may be elements).
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(([, value]) => value !== undefined && value !== null)
    .map(([label, value]) => [h("dt", {text: label}), h("dd", null, value)]));
}

export function section(title, ...children) {
  return h("section", {class: "card"}, h("h2", {text: title}), children);
}

let toastTimer = null;
export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("shown"), 4000);
}
