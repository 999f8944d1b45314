// The operator's view: the desk's state and its buttons, and the call card of the desk's call
// (from the moment the desk phone rings, through the conversation, to the wrap-up).

import { h, clock, countdown, dateTime, duration } from "./dom.js";
import { t, agencyName } from "./i18n.js";

const CODES = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"];

export class OperatorView {
  constructor(ctx) {
    this.ctx = ctx;
    this.desk = ctx.me.desk;
    this.callId = null;
    this.card = null;
    this.refreshing = null;
    this.again = false;
    // The desk's state is drawn again at every operators' event (any desk's change); its
    // buttons and the pause reason are made once and never leave the page, so what the
    // operator types there keeps its text and its focus (a detached input loses both).
    this.reasonEl = h("input", { id: "pause-reason", placeholder: t("pause_reason"),
                                 maxlength: 200 });
    this.infoEl = h("div", { class: "desk-info" });
    this.stateEl = h("section", { id: "desk-state", class: "panel" }, this.infoEl,
                     this.buttons());
    this.cardEl = h("section", { id: "card", class: "panel" }, t("no_call"));
    this.el = h("div", { class: "operator" }, this.stateEl, this.cardEl);
    this.renderState();
  }

  myDesk() {
    return this.ctx.store.operators.find((o) => o.operator === this.desk) || null;
  }

  onMessage(kind, data) {
    if (kind === "operators") {
      this.renderState();
      const op = this.myDesk();
      if (op && op.call_id && op.call_id !== this.callId) this.open(op.call_id);
    } else if (kind === "call" && data.call_id === this.callId) {
      this.refresh();
    }
  }

  // -- the desk's state ------------------------------------------------------------------

  buttons() {
    const act = this.ctx.me.may_act;
    const set = (state) => async () => {
      const body = { state };
      const reason = this.reasonEl.value.trim();
      if (state === "paused" && reason) body.reason = reason;
      try {
        await this.ctx.api.post(`/operators/${encodeURIComponent(this.desk)}/state`, body);
      } catch (exc) { this.ctx.fail(exc); }
    };
    return h("div", { class: "buttons" },
      h("button", { type: "button", disabled: !act, onclick: set("available") },
        t("set_available")),
      this.reasonEl,
      h("button", { type: "button", disabled: !act, onclick: set("paused") }, t("set_paused")),
      h("button", { type: "button", disabled: !act, onclick: set("logged_out") },
        t("set_logged_out")));
  }

  renderState() {
    const op = this.myDesk();
    this.infoEl.replaceChildren(
      h("h2", {}, `${t("desk")} ${this.desk}`),
      h("p", {}, `${t("state")}: `,
        h("strong", { id: "desk-state-value", class: `state-${op?.state ?? "unknown"}` },
          op ? t(op.state) : "—"),
        op?.reason ? ` (${op.reason})` : "",
        op && op.reachable === false ? " ⚠" : ""),
    );
  }

  // -- the card ----------------------------------------------------------------------------

  open(callId) {
    this.callId = callId;
    this.card = null;
    this.actions = null;
    this.refresh();
  }

  async refresh() {
    if (this.refreshing) { this.again = true; return; }
    const id = this.callId;
    this.refreshing = this.ctx.api.get(`/console/calls/${encodeURIComponent(id)}`);
    try {
      const card = await this.refreshing;
      if (id === this.callId) {
        this.card = card;
        this.renderCard();
      }
    } catch (exc) {
      this.ctx.fail(exc);
    } finally {
      this.refreshing = null;
    }
    if (this.again) { this.again = false; this.refresh(); }
  }

  renderCard() {
    const c = this.card;
    if (!this.actions) this.actions = this.buildActions(c);
    this.lineStates(c);
    this.cardEl.dataset.callId = c.call_id;
    this.cardEl.dataset.state = c.state;
    this.cardEl.replaceChildren(
      h("h2", {}, t("card"), " ", h("span", { class: `badge st-${c.state}`, id: "card-state" },
        t(`st_${c.state}`))),
      h("dl", { class: "facts" },
        h("dt", {}, t("number")), h("dd", { id: "card-number", class: "number" },
          c.caller ?? c.caller_raw ?? t("unknown")),
        h("dt", {}, t("line_type")), h("dd", { id: "card-line-type" },
          t(c.line_type ?? "unknown")),
        h("dt", {}, t("waited")), h("dd", { id: "card-waited",
          dataset: c.connected_at || c.ended_at ? {} : { since: c.arrived_at } },
          duration(c.waited_seconds)),
        h("dt", {}, t("flags")), h("dd", { id: "card-flags" },
          c.priority ? h("span", { class: "flag" }, t("priority")) : "",
          c.flags.map((f) => h("span", { class: "flag" }, t(f))),
          c.priority || c.flags.length ? "" : "—"),
        h("dt", {}, t("operator")), h("dd", {}, c.operator ?? "—"),
        h("dt", {}, t("disposition")), h("dd", { id: "card-disposition" },
          c.disposition ? t(c.disposition) : "—"),
        h("dt", {}, t("category")), h("dd", { id: "card-category" },
          c.category ? `${c.category} ${t(`cat_${c.category}`)}` : "—"),
        h("dt", {}, t("note")), h("dd", { id: "card-note" }, c.note ?? "—"),
        h("dt", {}, t("location")), h("dd", { id: "card-location" }, location(c.location)),
      ),
      this.history(c.history),
      this.agencies(c),
      this.actions,
      h("button", { type: "button", class: "close", onclick: () => this.close() },
        t("close_card")),
    );
    window.__siaga112CardShown ??= {};
    window.__siaga112CardShown[c.call_id] ??= Date.now();
  }

  // Each agency's button says where its duty line is on this call (the latest dispatch).
  lineStates(c) {
    const latest = Object.fromEntries(c.agencies.map((a) => [a.agency, a]));
    for (const b of this.actions.querySelectorAll("button.agency")) {
      const a = latest[b.dataset.agency];
      const badge = b.querySelector(".line-state");
      badge.className = a ? `badge line-state line-${a.state}` : "badge line-state";
      badge.textContent = a ? t(`line_${a.state}`) + (a.failed_lines.length && a.state !== "failed"
        ? ` (${t("fallback_tried")})` : "") : "";
    }
  }

  close() {
    this.callId = null;
    this.card = null;
    this.actions = null;
    delete this.cardEl.dataset.callId;
    this.cardEl.replaceChildren(t("no_call"));
  }

  history(hist) {
    if (!hist) return h("div", { id: "card-history" }, t("history_unavailable"));
    const rows = hist.calls.map((c) => h("tr", { class: "history-row" },
      h("td", {}, dateTime(c.arrived_at)), h("td", {}, c.disposition ? t(c.disposition) : "—"),
      h("td", {}, c.category ? `${c.category} ${t(`cat_${c.category}`)}` : "—"),
      h("td", {}, c.operator ?? "—"),
      h("td", {}, c.flags.map((f) => h("span", { class: "flag" }, t(f))))));
    return h("div", { id: "card-history" },
      h("h3", {}, `${t("history")} (${hist.total})`),
      h("p", {},
        h("span", { id: "card-marks", class: hist.marks_in_window ? "warn" : "" },
          `${t("marks", { h: hist.window_hours })}: ${hist.marks_in_window}`),
        hist.blocked ? h("span", { class: "flag alarm", id: "card-blocked" },
          `${t("blocked_now")} (${t("until")} ${hist.blocked_until ? dateTime(hist.blocked_until)
            : t("forever")})`) : "",
        hist.referred_at ? h("span", { class: "flag alarm", id: "card-referred" },
          t("referred_now")) : ""),
      rows.length
        ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("date")),
            h("th", {}, t("disposition")), h("th", {}, t("category")),
            h("th", {}, t("operator")), h("th", {}, t("flags")))), h("tbody", {}, rows))
        : h("p", {}, t("history_none")));
  }

  agencies(c) {
    if (!c.agencies.length) return "";
    const names = Object.fromEntries(this.ctx.me.agencies.map((a) => [a.code, a.name]));
    return h("div", { id: "card-agencies" }, h("h3", {}, t("agency_on_call")),
      h("ul", {}, c.agencies.map((a) => h("li", { class: "dispatch", dataset: {
        agency: a.agency, state: a.state } },
        h("strong", {}, agencyName(names[a.agency] ?? a.agency)), " ",
        h("span", { class: `badge line-${a.state}` }, t(`line_${a.state}`)),
        a.failed_lines.length && a.state !== "failed" ? ` (${t("fallback_tried")})` : "",
        " ", t("requested"), " ", clock(a.requested_at),
        a.state === "failed" ? "" : h("span", { class: a.overdue ? "clock alarm" : "clock" },
          ` ${t("moving_clock")}: `,
          a.moving_at ? `${t("line_moving")} ${clock(a.moving_at)}`
            : h("span", { dataset: { countdown: a.moving_due } }, countdown(a.moving_due, Date.now(), t("overdue")))),
        !a.moving_at && a.state !== "failed" && this.ctx.me.may_act
          ? h("button", { type: "button", onclick: () => this.moving(a) }, t("team_moving"))
          : ""))));
  }

  buildActions() {
    const act = this.ctx.me.may_act;
    const cat = h("select", { id: "category", disabled: !act },
      h("option", { value: "" }, t("choose_category")),
      CODES.map((code) => h("option", { value: code }, `${code} ${t(`cat_${code}`)}`)));
    const mark = (disposition) => h("button", { type: "button", disabled: !act,
      class: `mark-${disposition}`, onclick: () => this.mark(disposition, cat.value) },
    t(disposition));
    const note = h("textarea", { id: "note", rows: 3, maxlength: 2000, disabled: !act });
    const agencyButtons = this.ctx.me.agencies.map((a) => h("button", {
      type: "button", class: "agency", disabled: !act, dataset: { agency: a.code },
      onclick: () => this.bringIn(a.code) }, agencyName(a.name), " ",
    h("span", { class: "badge line-state" })));
    return h("div", { id: "card-actions" },
      h("h3", {}, t("mark")),
      h("div", { class: "buttons" }, cat, mark("genuine"), mark("prank"), mark("ghost")),
      h("h3", {}, t("note")),
      note,
      h("div", { class: "buttons" }, h("button", { type: "button", id: "save-note",
        disabled: !act, onclick: () => this.saveNote(note.value) }, t("save_note"))),
      h("h3", {}, t("agencies")),
      h("div", { class: "agency-grid" }, agencyButtons));
  }

  async mark(disposition, category) {
    const body = { disposition };
    if (category) body.category = category;
    await this.act(`/calls/${encodeURIComponent(this.callId)}/disposition`, body);
  }

  async saveNote(text) {
    await this.act(`/calls/${encodeURIComponent(this.callId)}/note`, { text });
  }

  async bringIn(code) {
    await this.act(`/calls/${encodeURIComponent(this.callId)}/agencies`, { agency: code },
      false);
  }

  async moving(a) {
    await this.act(`/dispatches/${encodeURIComponent(a.dispatch_id)}/moving`,
      { call_id: this.callId, agency: a.agency });
  }

  async act(path, body, sayDone = true) {
    try {
      await this.ctx.api.post(path, body);
      if (sayDone) this.ctx.toast(t("saved"));
      this.refresh();
    } catch (exc) {
      this.ctx.fail(exc);
    }
  }
}

function location(loc) {
  if (!loc) return t("no_location");
  const lat = loc.latitude ?? loc.lat;
  const lon = loc.longitude ?? loc.lon;
  const r = loc.radius_m ?? loc.radius;
  if (lat == null || lon == null) return JSON.stringify(loc);
  return `${lat}, ${lon}${r != null ? ` ± ${Math.round(r)} m` : ""}` +
    `${loc.source ? ` (${loc.source}${loc.at ? `, ${clock(loc.at)}` : ""})` : ""}`;
}
