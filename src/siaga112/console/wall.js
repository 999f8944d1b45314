// The supervisor's wall: the queue in serving order, the operators, today's KPIs, what is
// overdue, the blocklist and the referrals (block and unblock for the admin role). Live from
// the stream; the records' figures are read again when a call ends or a mark changes them.

import { h, clock, dateTime, since, pct, duration } from "./dom.js";
import { t, agencyName } from "./i18n.js";

const ALERTS_SHOWN = 8; // the newest on the wall; the count says how many in all

export class WallView {
  constructor(ctx) {
    this.ctx = ctx;
    this.onCallSince = {}; // call id -> when its operator answered (from the stream)
    this.kpis = null;
    this.alerts = null;
    this.blocks = null;
    this.referrals = null;
    this.timers = [];
    this.queueEl = h("section", { id: "wall-queue", class: "panel" });
    this.opsEl = h("section", { id: "wall-operators", class: "panel" });
    this.kpiEl = h("section", { id: "wall-kpis", class: "panel" });
    this.alertsEl = h("section", { id: "wall-alerts", class: "panel" });
    this.blocksEl = h("section", { id: "wall-blocklist", class: "panel" });
    this.el = h("div", { class: "wall" }, this.queueEl, this.opsEl, this.kpiEl, this.alertsEl,
      this.blocksEl);
    this.renderQueue();
    this.renderOperators();
    this.loadRecords();
  }

  destroy() { this.timers.forEach(clearTimeout); }

  onMessage(kind, data) {
    if (kind === "queue") this.renderQueue();
    else if (kind === "operators") this.renderOperators();
    else if (kind === "call") {
      if (data.type === "connected") {
        this.onCallSince[data.call_id] = data.at;
        this.renderOperators();
      }
      // The records change after these: read them again (twice: the writer's batch may land
      // after the first read).
      if (["ended", "disposition", "category", "overdue", "team_moving"].includes(data.type)) {
        this.later(() => this.loadRecords(), 800);
        this.later(() => this.loadRecords(), 3000);
      }
    }
  }

  // A call that was on before the wall opened: when its operator answered, from its card.
  async callStart(callId) {
    this.onCallSince[callId] = null;
    try {
      const card = await this.ctx.api.get(`/console/calls/${encodeURIComponent(callId)}`);
      this.onCallSince[callId] = card.connected_at ?? card.arrived_at;
      this.renderOperators();
    } catch { /* a call that just ended: nothing to show */ }
  }

  later(fn, ms) { this.timers.push(setTimeout(fn, ms)); }

  renderQueue() {
    const q = this.ctx.store.queue;
    const entries = q ? q.entries : [];
    this.queueEl.replaceChildren(
      h("h2", {}, `${t("queue")} `, h("span", { id: "queue-length", class: "big" },
        String(q ? q.length : 0))),
      entries.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"),
        h("th", {}, t("number")), h("th", {}, t("line_type")), h("th", {}, t("waited")),
        h("th", {}, t("flags")))),
      h("tbody", {}, entries.map((e, i) => h("tr", { class: e.priority ? "queue-row priority"
        : "queue-row", dataset: { callId: e.call_id } },
        h("td", {}, String(i + 1)), h("td", { class: "number" }, e.caller ?? t("unknown")),
        h("td", {}, t(e.line_type)), h("td", { dataset: { since: e.since } }, since(e.since)),
        h("td", {}, e.priority ? h("span", { class: "flag" }, t("priority")) : "",
          e.flags.map((f) => h("span", { class: "flag" }, t(f))))))))
        : h("p", {}, t("queue_empty")));
  }

  renderOperators() {
    const ops = this.ctx.store.operators;
    for (const o of ops) {
      if (o.call_id && !(o.call_id in this.onCallSince)) this.callStart(o.call_id);
    }
    this.opsEl.replaceChildren(h("h2", {}, t("operators")), h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, t("operator")), h("th", {}, t("state")),
        h("th", {}, t("call")), h("th", {}, t("since")))),
      h("tbody", {}, ops.map((o) => {
        const at = o.call_id ? this.onCallSince[o.call_id] : o.idle_since;
        return h("tr", { class: `op-row state-${o.state}`, dataset: { operator: o.operator } },
          h("td", {}, o.operator, o.reachable ? "" : " ⚠"),
          h("td", {}, t(o.state), o.reason ? ` (${o.reason})` : ""),
          h("td", { class: "number" }, o.call_id ?? "—"),
          h("td", {}, at ? h("span", { dataset: { since: at } }, since(at)) : "—",
            !o.call_id && o.idle_since ? ` (${t("idle_since")} ${clock(o.idle_since)})` : ""));
      }))));
  }

  async loadRecords() {
    const api = this.ctx.api;
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    const kpiPath = `/kpis?since=${encodeURIComponent(midnight.toISOString())}`;
    const [kpis, alerts, blocks, refs] = await Promise.allSettled([
      api.get(kpiPath), api.get("/console/alerts"), api.get("/blocklist"),
      api.get("/referrals")]);
    for (const r of [kpis, alerts, blocks, refs]) {
      if (r.status === "rejected") this.ctx.fail(r.reason);
    }
    if (kpis.status === "fulfilled") this.kpis = kpis.value;
    if (alerts.status === "fulfilled") this.alerts = alerts.value;
    if (blocks.status === "fulfilled") this.blocks = blocks.value.blocks;
    if (refs.status === "fulfilled") this.referrals = refs.value.referrals;
    this.renderRecords();
  }

  renderRecords() {
    const k = this.kpis;
    const tile = (id, label, value) => h("div", { class: "kpi", id },
      h("div", { class: "kpi-value" }, value), h("div", { class: "kpi-label" }, label));
    this.kpiEl.replaceChildren(h("h2", {}, t("kpis")), k ? h("div", { class: "kpis" },
      tile("kpi-calls", t("calls"), String(k.calls)),
      tile("kpi-answered", t("answered"), String(k.answered)),
      tile("kpi-within10", t("within10"), pct(k.answered_within_10s_pct)),
      tile("kpi-p90", t("p90"), k.p90_wait_seconds == null ? "—"
        : duration(k.p90_wait_seconds)),
      tile("kpi-abandoned", t("abandoned_pct"), pct(k.abandoned_pct)),
      tile("kpi-prank", t("prank_pct"), pct(k.prank_pct))) : "—");
    this.renderAlerts();
    this.renderBlocks();
  }

  renderAlerts() {
    const a = this.alerts;
    const names = Object.fromEntries(this.ctx.me.agencies.map((x) => [x.code, x.name]));
    const list = (rows, head, row) => {
      if (!rows || !rows.length) return h("p", {}, t("none"));
      return h("table", {}, h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, t(x))))),
        h("tbody", {}, rows.slice(0, ALERTS_SHOWN).map((r) => h("tr", { class: "alarm-row" },
          row(r).map((x) => h("td", {}, x))))),
        rows.length > ALERTS_SHOWN ? h("caption", {}, `+${rows.length - ALERTS_SHOWN}`) : "");
    };
    this.alertsEl.replaceChildren(h("h2", {}, t("alerts")),
      h("h3", {}, `${t("overdue_dispatches")} (${a ? a.overdue_dispatches.length : "—"})`),
      list(a?.overdue_dispatches, ["agency", "call", "requested"], (d) => [
        agencyName(names[d.agency] ?? d.agency ?? "?"), d.call_id, dateTime(d.requested_at)]),
      h("h3", {}, `${t("overdue_complaints")} (${a ? a.overdue_complaints.length : "—"})`),
      list(a?.overdue_complaints, ["complaint", "filed", "note"], (c) => [
        `#${c.id} ${c.caller}`, dateTime(c.filed_at), c.text]));
  }

  // The admin's block form, built once (the list beside it is drawn again on every change).
  blockForm() {
    const api = this.ctx.api;
    const number = h("input", { id: "block-number", placeholder: t("number"), maxlength: 64 });
    const hours = h("input", { id: "block-hours", placeholder: t("hours"), inputmode: "decimal",
                               maxlength: 10 });
    const reason = h("input", { id: "block-reason", placeholder: t("reason"), maxlength: 200 });
    const block = async () => {
      const raw = hours.value.trim();
      const body = { number: number.value.trim(), hours: raw === "" ? null : Number(raw),
                     reason: reason.value.trim() };
      try {
        await api.post("/blocklist", body);
        this.ctx.toast(t("saved"));
        this.loadRecords();
      } catch (exc) { this.ctx.fail(exc); }
    };
    return h("div", { class: "buttons" }, number, hours, reason,
      h("button", { type: "button", id: "block-button", onclick: block }, t("block")));
  }

  renderBlocks() {
    const admin = this.ctx.me.may_block;
    const api = this.ctx.api;
    if (admin && !this.form) this.form = this.blockForm();
    const unblock = (n) => async () => {
      const why = window.prompt(t("unblock_reason"));
      if (!why) return;
      try {
        await api.del(`/blocklist/${encodeURIComponent(n)}?reason=${encodeURIComponent(why)}`);
        this.ctx.toast(t("saved"));
        this.loadRecords();
      } catch (exc) { this.ctx.fail(exc); }
    };
    const blocks = this.blocks ?? [];
    const refs = this.referrals ?? [];
    this.blocksEl.replaceChildren(
      h("h2", {}, t("blocklist")),
      admin ? this.form : "",
      blocks.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("number")),
        h("th", {}, t("until_col")), h("th", {}, t("reason")), h("th", {}, t("by")), h("th", {}))),
      h("tbody", {}, blocks.map((b) => h("tr", { class: "block-row",
        dataset: { number: b.number } },
        h("td", { class: "number" }, b.number),
        h("td", {}, b.blocked_until ? dateTime(b.blocked_until) : t("forever")),
        h("td", {}, b.reason), h("td", {}, b.by),
        h("td", {}, admin ? h("button", { type: "button", onclick: unblock(b.number) },
          t("unblock")) : "")))))
        : h("p", {}, t("none")),
      h("h2", {}, t("referrals")),
      refs.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("number")),
        h("th", {}, t("count")), h("th", {}, t("referred")))),
      h("tbody", {}, refs.map((r) => h("tr", {}, h("td", { class: "number" }, r.number),
        h("td", {}, String(r.count)), h("td", {}, dateTime(r.referred_at))))))
        : h("p", {}, t("none")));
  }
}
