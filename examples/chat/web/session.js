// Signing in, shared by the chat page and the dashboard: the session token
// is kept in sessionStorage, so the dashboard opened from the chat reuses it.
const key = "rtkit-chat-token";

/** Signs in as name; resolves with {name, token}, or throws the server's reason. */
export async function login(name) {
  const res = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: name.trim() }),
  });
  if (!res.ok) throw new Error(await res.text());
  const session = await res.json();
  sessionStorage.setItem(key, session.token);
  return session;
}

/** The token of this tab's session, or null. */
export function savedToken() {
  return sessionStorage.getItem(key);
}
