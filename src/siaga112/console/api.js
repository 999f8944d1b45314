// The console's only way to the daemon: its HTTP API with the signed-in token. The live
// stream (GET /console/events) is read with fetch, so the token travels in the Authorization
// header and never in a URL.

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(`${status} ${error}: ${describe(detail)}`);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

function describe(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }
  return detail == null ? "" : String(detail);
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async call(method, path, body) {
    const init = { method, headers: this.headers() };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, "unreachable", String(exc));
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!resp.ok) {
      throw new ApiError(resp.status, data?.error ?? "error", data?.detail ?? text);
    }
    return data;
  }

  get(path) { return this.call("GET", path); }
  post(path, body) { return this.call("POST", path, body); }
  del(path) { return this.call("DELETE", path); }

  // Read the server-sent events until the stream ends or `signal` aborts; each message is
  // handed to onMessage(kind, data). Throws when the stream cannot be opened.
  async stream(onMessage, signal) {
    const resp = await fetch("/console/events", { headers: this.headers(), signal });
    if (!resp.ok) {
      let data = null;
      try { data = await resp.json(); } catch { /* not JSON */ }
      throw new ApiError(resp.status, data?.error ?? "error", data?.detail);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let kind = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) onMessage(kind, JSON.parse(data.join("\n")));
      }
    }
  }
}
