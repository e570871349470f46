// The console's HTTP API, seen from the page: JSON in and out, one-line errors.

/** An API answer that was not a success; `message` is the one line the page shows. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What the page says once its session is gone (a restart on another data directory, or
 * `fleetmind console --forget-sessions`). */
export const SESSION_LOST = "session expired: open the URL that `fleetmind console` printed";

/**
 * Call the API. POSTs carry the header the server asks of every change (its CSRF guard).
 * @param {string} path relative to the page, e.g. "api/tasks"
 * @param {{method?: string, body?: unknown}} [options]
 */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Fleetmind-Console"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "the console server cannot be reached");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    if (response.status === 401) throw new ApiError(401, SESSION_LOST);
    const line = payload && typeof payload.error === "string" ? payload.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, line.split("\n")[0]);
  }
  return payload;
}
