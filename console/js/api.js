// The one way the console talks to Sightline: fetch with the x-api-key header, JSON in and out, and errors as
// ApiError (the API's {"error": {"code", "message", "reference"}}, or what the gateway or the network said).

const KEY_ITEM = "sightline.apiKey";

let apiBase = "";  // "" is this page's own origin: /v1/* is served beside the console (README, "Console")
let environment = {};

export class ApiError extends Error {
  constructor(status, code, message, reference = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;  // 0: the request never got an answer
    this.code = code;
    this.reference = reference;
  }

  // What kind of problem it is, for the way it is shown.
  get kind() {
    if (this.status === 0) return "network";
    if (this.status === 401 || this.status === 403) return "auth";
    if (this.status === 404) return "not-found";
    if (this.status === 409) return "conflict";
    if (this.status === 429) return "throttled";
    if (this.status >= 500) return "server";
    return "request";
  }
}

// The key lives in sessionStorage only: gone when the tab closes, never in localStorage or a cookie.
export const getKey = () => sessionStorage.getItem(KEY_ITEM);
export const setKey = (key) => sessionStorage.setItem(KEY_ITEM, key.trim());
export const forgetKey = () => sessionStorage.removeItem(KEY_ITEM);

// config.json: {"api_base": "" (this origin) or another origin, "api_url": shown to users, "environment": "local" | "aws"}.
export async function loadConfig() {
  try {
    const response = await fetch("config.json", {cache: "no-store"});
    if (response.ok) environment = await response.json();
  } catch {
    environment = {};
  }
  apiBase = String(environment.api_base || "").replace(/\/$/, "");
  return environment;
}

export const config = () => environment;

function isBinary(body) {
  return body instanceof Blob || body instanceof ArrayBuffer || ArrayBuffer.isView(body);
}

export async function request(method, path, {body, contentType, headers = {}, signal} = {}) {
  const key = getKey();
  if (!key) throw new ApiError(403, "no_key", "Enter an API key first.");
  const sent = {"x-api-key": key, ...headers};
  let payload = body;
  if (body !== undefined && !isBinary(body)) {
    payload = JSON.stringify(body);
    sent["content-type"] = "application/json";
  } else if (contentType) {
    sent["content-type"] = contentType;
  }
  let response;
  try {
    response = await fetch(apiBase + path, {method, headers: sent, body: payload, signal, cache: "no-store"});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", `The API could not be reached (${error.message}).`);
  }
  const text = await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = null;
  }
  if (!response.ok) {
    const error = (document && document.error) || {};
    const message = error.message || (document && (document.message || document.Message)) ||
      `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, error.code || `http_${response.status}`, message, error.reference || null);
  }
  return document;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, body, options = {}) => request("POST", path, {...options, body});
export const patch = (path, body) => request("PATCH", path, {body});
export const del = (path) => request("DELETE", path);

// Path segments are user data (dataset names): always encoded.
export const seg = (value) => encodeURIComponent(String(value));

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
