from prometheus_client.parser import text_string_to_metric_families

from siaga112.metrics import CONTENT_TYPE, Metrics
from siaga112.model import Disposition, OperatorState


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_render_holds_every_metric_with_its_values() -> None:
    m = Metrics(process=False)
    m.call_ended(Disposition.GENUINE)
    m.call_ended(Disposition.GENUINE)
    m.call_ended(Disposition.PRANK)
    m.queue_length(3)
    m.call_waited(4.0)
    m.ari_request("post", 0.003)
    m.ari_request("post", 0.001, "socket")
    m.ari_request("post", 0.002, "socket")
    m.ari_reconnected()
    m.watch_journal_backlog(lambda: 42)
    m.watch_mqtt_pending(lambda: 9)
    m.mqtt_dropped(5)
    m.operators({OperatorState.AVAILABLE: 2, OperatorState.ON_CALL: 1})
    m.call_answered(0.02)
    m.desk_phone_lost("op6")

    s = samples(m)
    assert s[("siaga112_calls_total", (("outcome", "genuine"),))] == 2
    assert s[("siaga112_calls_total", (("outcome", "prank"),))] == 1
    assert s[("siaga112_queue_length", ())] == 3
    assert s[("siaga112_wait_seconds_bucket", (("le", "5.0"),))] == 1
    assert s[("siaga112_wait_seconds_bucket", (("le", "2.0"),))] == 0
    assert s[("siaga112_ari_request_seconds_count", (("method", "POST"), ("via", "http")))] == 1
    assert s[("siaga112_ari_request_seconds_count", (("method", "POST"), ("via", "socket")))] == 2
    assert s[("siaga112_ari_reconnects_total", ())] == 1
    assert s[("siaga112_journal_backlog", ())] == 42
    assert s[("siaga112_mqtt_pending", ())] == 9
    assert s[("siaga112_mqtt_dropped_total", ())] == 5
    assert s[("siaga112_operators", (("state", "available"),))] == 2
    assert s[("siaga112_operators", (("state", "on_call"),))] == 1
    assert s[("siaga112_operators", (("state", "paused"),))] == 0
    assert s[("siaga112_answer_latency_seconds_sum", ())] == 0.02
    assert s[("siaga112_desk_phones_lost_total", (("operator", "op6"),))] == 1
    assert CONTENT_TYPE.startswith("text/plain")


def test_operator_counts_reset_states_no_longer_present() -> None:
    m = Metrics(process=False)
    m.operators({OperatorState.PAUSED: 4})
    m.operators({OperatorState.AVAILABLE: 1})
    s = samples(m)
    assert s[("siaga112_operators", (("state", "paused"),))] == 0
    assert s[("siaga112_operators", (("state", "available"),))] == 1


def test_two_metrics_objects_keep_separate_figures() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.ari_reconnected()
    assert samples(a)[("siaga112_ari_reconnects_total", ())] == 1
    assert samples(b)[("siaga112_ari_reconnects_total", ())] == 0


def test_process_metrics_are_included_by_default() -> None:
    assert b"process_cpu_seconds_total" in Metrics().render()


class RecordsNow:
    """Stands in for the records writer (metrics.RecordsState)."""

    def __init__(self) -> None:
        self.dropped = 0
        self.quarantined = 0
        self.journal_bytes = 0
        self.problems: list[str] = []


def test_records_are_read_from_the_writer_at_each_scrape() -> None:
    m = Metrics(process=False)
    writer = RecordsNow()
    m.watch_records(writer)
    s = samples(m)
    assert s[("siaga112_records_dropped_total", ())] == 0
    assert s[("siaga112_records_degraded", ())] == 0
    assert not [k for k in s if k[0] == "siaga112_records_problem"]

    writer.dropped, writer.quarantined, writer.journal_bytes = 3, 2, 4096
    writer.problems = ["journal_full", "quarantine_unwritable"]
    s = samples(m)
    assert s[("siaga112_records_dropped_total", ())] == 3
    assert s[("siaga112_records_quarantined_total", ())] == 2
    assert s[("siaga112_journal_bytes", ())] == 4096
    assert s[("siaga112_records_degraded", ())] == 1
    assert s[("siaga112_records_problem", (("problem", "journal_full"),))] == 1
    assert s[("siaga112_records_problem", (("problem", "quarantine_unwritable"),))] == 1

    writer.problems = []
    assert samples(m)[("siaga112_records_degraded", ())] == 0


def test_ari_events_are_counted_by_type_with_bounded_labels() -> None:
    m = Metrics(process=False)
    m.ari_event("StasisStart")
    m.ari_event("StasisStart")
    m.ari_event("Bad Type\n{}")  # not plain letters: "other"
    m.ari_event("X" * 65)  # too long: "other"
    for i in range(100):  # a flood of new names stops at the cap
        m.ari_event("Made" + "".join(chr(ord("a") + int(d)) for d in str(i)))
    s = samples(m)
    assert s[("siaga112_ari_events_total", (("type", "StasisStart"),))] == 2
    types = {dict(k[1])["type"] for k in s if k[0] == "siaga112_ari_events_total"}
    assert len(types) <= 65  # 64 names and "other"
    assert s[("siaga112_ari_events_total", (("type", "other"),))] == 2 + 100 - 63
