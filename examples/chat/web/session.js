// Sessions, shared by the chat page and the dashboard. The session token
// lives in an HttpOnly cookie that scripts never see: the browser sends it
// with every request, the WebSocket and EventSource included.

/** An error from the API, with the form field it is about (if any). */
export class APIError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || "";
  }
}

async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
    });
  } catch {
    throw new APIError(0, "The server cannot be reached. Check your connection and try again.");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  if (!res.ok) throw new APIError(res.status, data?.error || `The server answered ${res.status}.`, data?.field);
  return data;
}

/** The signed-in user ({handle, name, email, role, noMail, ttl}), or null. */
export async function currentSession() {
  try {
    return await api("GET", "/api/session");
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

export const signIn = (handle, password) => api("POST", "/api/login", { handle, password });
export const register = (fields) => api("POST", "/api/register", fields);
export const signOut = () => api("POST", "/api/logout");
export const refresh = () => api("POST", "/api/refresh");

/** Refreshes the session every ttl/2 seconds; calls lost() when it is gone. */
export function keepAlive(session, lost) {
  const every = Math.max(30, session.ttl / 2) * 1000;
  const timer = setInterval(async () => {
    try {
      await refresh();
    } catch (err) {
      if (err.status === 401) {
        clearInterval(timer);
        lost();
      }
    }
  }, every);
  return () => clearInterval(timer);
}
