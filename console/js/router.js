// Hash routes (#/models/mdl-1/versions/2?tab=x): no server rewrites needed, on the local stack or behind CloudFront.
// A view is async (params, query, page) => Element; page.onLeave(fn) runs fn when the user navigates away (timers).

const routes = [];
let current = null;  // {leave: [fns], token}

export function route(pattern, view) {
  const names = [];
  const regex = new RegExp("^" + pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  }) + "$");
  routes.push({regex, names, view, pattern});
}

export function parse(hash) {
  const [path, search = ""] = hash.replace(/^#/, "").split("?");
  return {path: path || "/", query: Object.fromEntries(new URLSearchParams(search))};
}

export function href(path, query = {}) {
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const text = search.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

export function go(path, query) {
  const target = href(path, query);
  if (location.hash === target) render();
  else location.hash = target;
}

let outlet = null;
let fallback = "/";
let guard = () => null;
let onChange = () => {};

export function start({element, home, before, changed}) {
  outlet = element;
  fallback = home;
  guard = before || guard;
  onChange = changed || onChange;
  window.addEventListener("hashchange", render);
  render();
}

export async function render() {
  if (current) current.leave.forEach((fn) => fn());
  const page = {leave: [], onLeave(fn) { this.leave.push(fn); }, active: true};
  page.onLeave(() => { page.active = false; });
  current = page;
  const {path, query} = parse(location.hash);
  const redirect = guard(path);
  if (redirect && redirect !== path) {
    location.replace(href(redirect, redirect === "/key" ? {next: path} : {}));
    return;
  }
  const match = routes.map((r) => ({r, m: r.regex.exec(path)})).find(({m}) => m);
  if (!match) {
    location.replace(href(fallback));
    return;
  }
  const params = Object.fromEntries(match.r.names.map((name, i) => [name, decodeURIComponent(match.m[i + 1])]));
  onChange(match.r.pattern);
  const element = await match.r.view(params, query, page);
  if (current !== page) return;  // the user moved on while it loaded
  outlet.replaceChildren(element);
  const heading = outlet.querySelector("h1");
  document.title = heading ? `${heading.textContent} · Sightline` : "Sightline console";
  outlet.focus({preventScroll: true});
  window.scrollTo(0, 0);
}
