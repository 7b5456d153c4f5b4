// renderText turns a message's text into DOM nodes without ever parsing
// it as HTML: plain text nodes, <a> elements for http(s) links (the
// address is the href, checked to be http or https, and the text), and
// highlighted @mentions.
const token = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]}])|(^|[^A-Za-z0-9_@.+-])@([a-z0-9][a-z0-9_-]{2,23})(?![a-z0-9_-])/gi;

export function renderText(text, myHandle) {
  const p = document.createElement("div");
  p.className = "text";
  let last = 0;
  for (const m of text.matchAll(token)) {
    if (m[1]) {
      p.append(text.slice(last, m.index));
      let url;
      try {
        url = new URL(m[1]);
      } catch {
        url = null;
      }
      if (url && (url.protocol === "http:" || url.protocol === "https:")) {
        const a = document.createElement("a");
        a.href = url.href;
        a.textContent = m[1];
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        p.append(a);
      } else {
        p.append(m[1]);
      }
    } else {
      p.append(text.slice(last, m.index) + m[2]);
      const s = document.createElement("span");
      s.className = "mention" + (m[3].toLowerCase() === myHandle ? " mention-me" : "");
      s.textContent = "@" + m[3];
      p.append(s);
    }
    last = m.index + m[0].length;
  }
  p.append(text.slice(last));
  return p;
}
