// The console's start: sign-in with an API token, the live stream, the views (the operator's
// desk, the supervisor's wall), the language switch and the messages to the user.

import { Api } from "./api.js";
import { countdown, h, since } from "./dom.js";
import { t, toggleLanguage, language } from "./i18n.js";
import { OperatorView } from "./operator.js";
import { WallView } from "./wall.js";

const TOKEN_KEY = "siaga112.token";
const ctx = {
  api: null, me: null, store: { queue: null, operators: [] },
  toast, fail: (exc) => toast(`${t("error")}: ${exc.message}`, true),
};
let view = null;
let tab = null;
let abort = null;

const $ = (id) => document.getElementById(id);

function toast(message, bad = false) {
  const el = $("toast");
  el.textContent = message;
  el.className = bad ? "bad" : "good";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 2500);
}

function header() {
  document.documentElement.lang = language();
  $("lang").textContent = t("lang_switch");
  $("signout").textContent = t("sign_out");
  $("signout").hidden = !ctx.me;
  $("who").textContent = ctx.me
    ? `${t("signed_in_as")} ${ctx.me.name} (${ctx.me.role}${ctx.me.desk ? `, ${ctx.me.desk}`
      : ""})` : "";
  const tabs = $("tabs");
  tabs.replaceChildren();
  if (ctx.me && ctx.me.desk) {
    for (const name of ["desk", "wall"]) {
      tabs.append(h("button", { type: "button", class: tab === name ? "tab active" : "tab",
        id: `tab-${name}`, onclick: () => { tab = name; render(); } }, t(name)));
    }
  }
}

function render() {
  header();
  view?.destroy?.();
  view = null;
  if (!ctx.me) {
    signInForm();
    return;
  }
  view = tab === "desk" ? new OperatorView(ctx) : new WallView(ctx);
  $("main").replaceChildren(view.el);
}

function signInForm(message) {
  const token = h("input", { id: "token", type: "password", autocomplete: "off",
                             placeholder: t("token"), required: true });
  const form = h("form", { id: "sign-in", class: "panel", onsubmit: (ev) => {
    ev.preventDefault();
    signIn(token.value.trim());
  } },
  h("h2", {}, t("sign_in")), h("p", {}, t("sign_in_hint")),
  message ? h("p", { class: "bad", id: "sign-in-error" }, message) : "",
  token, h("button", { type: "submit", id: "sign-in-button" }, t("sign_in")));
  $("main").replaceChildren(form);
  token.focus();
}

async function signIn(token) {
  const api = new Api(token);
  try {
    ctx.me = await api.get("/console/me");
  } catch (exc) {
    const agency = exc.status === 403;
    signInForm(agency ? `${t("agency_refused")} (${exc.message})` : exc.message);
    return;
  }
  ctx.api = api;
  sessionStorage.setItem(TOKEN_KEY, token);
  tab = ctx.me.desk ? "desk" : "wall";
  render();
  connect();
}

function signOut() {
  abort?.abort();
  abort = null;
  sessionStorage.removeItem(TOKEN_KEY);
  ctx.me = null;
  ctx.api = null;
  render();
}

function conn(up) {
  const el = $("conn");
  el.textContent = up ? `● ${t("connected")}` : `○ ${t("reconnecting")}`;
  el.className = up ? "conn up" : "conn down";
}

async function connect() {
  abort = new AbortController();
  const mine = abort;
  while (mine === abort) {
    try {
      await ctx.api.stream((kind, data) => {
        conn(true);
        if (kind === "queue") ctx.store.queue = data;
        else if (kind === "operators") ctx.store.operators = data.operators;
        view?.onMessage(kind, data);
      }, mine.signal);
    } catch (exc) {
      if (mine !== abort) return;
      if (exc.status === 401 || exc.status === 403) { signOut(); return; }
    }
    if (mine !== abort) return;
    conn(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// Clocks on screen (waits, idle times, dispatch countdowns) move every second; this reads
// nothing from the daemon.
setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since]")) {
    el.textContent = since(el.dataset.since, now);
  }
  for (const el of document.querySelectorAll("[data-countdown]")) {
    el.textContent = countdown(el.dataset.countdown, now, t("overdue"));
    el.classList.toggle("alarm", new Date(el.dataset.countdown).getTime() <= now);
  }
}, 1000);

$("lang").addEventListener("click", () => { toggleLanguage(); render(); });
$("signout").addEventListener("click", signOut);
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved); else render();
