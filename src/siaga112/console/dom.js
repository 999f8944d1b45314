// A few DOM helpers. Text goes in as text (never as HTML): a caller's number or a note can
// hold nothing that runs.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clock(at) {
  return at ? new Date(at).toLocaleTimeString("en-GB") : "—";
}

export function dateTime(at) {
  if (!at) return "—";
  const d = new Date(at);
  return `${d.toLocaleDateString("en-GB")} ${d.toLocaleTimeString("en-GB").slice(0, 5)}`;
}

export function since(at, now = Date.now()) {
  if (!at) return "—";
  return duration((now - new Date(at).getTime()) / 1000);
}

export function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m}:${String(s % 60).padStart(2, "0")}` : `${s} s`;
}

export function pct(v) {
  return v == null ? "—" : `${v.toFixed(1)} %`;
}

// Time left until `at` (m:ss), or the overdue word once it has passed.
export function countdown(at, now = Date.now(), overdue = "—") {
  const left = (new Date(at).getTime() - now) / 1000;
  return left > 0 ? duration(left) : overdue;
}
