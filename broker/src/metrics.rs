//! `/metrics` in the Prometheus text format.

use async_flow_client::Stats;
use ic_metrics_encoder::MetricsEncoder;

pub fn encode(stats: &Stats, now_ns: u64) -> std::io::Result<Vec<u8>> {
    let mut w = MetricsEncoder::new(Vec::new(), (now_ns / 1_000_000) as i64);
    let mut by_state = w.gauge_vec("async_flow_messages", "Message records by state (tombstones included).")?;
    for (state, count) in &stats.messages_by_state {
        by_state = by_state.value(&[("state", &format!("{state:?}"))], *count as f64)?;
    }
    w.encode_gauge("async_flow_stored_bytes", stats.stored_bytes as f64, "Payload and reply bytes stored.")?;
    w.encode_gauge(
        "async_flow_oldest_pending_age_seconds",
        stats.oldest_pending_age_seconds.unwrap_or(0) as f64,
        "Age of the oldest message not yet terminal.",
    )?;
    let t = &stats.totals;
    for (name, value, help) in [
        ("async_flow_enqueued_total", t.enqueued, "Messages accepted."),
        ("async_flow_delivered_total", t.delivered, "Messages delivered."),
        ("async_flow_retries_total", t.retries, "NEWs re-sent."),
        ("async_flow_dead_lettered_total", t.dead_lettered, "Messages given up."),
        ("async_flow_corrupted_total", t.corrupted, "ACKs with a wrong hash."),
        ("async_flow_spoofed_acks_total", t.spoofed_acks, "ACKs from a principal other than the target."),
        ("async_flow_unknown_acks_total", t.unknown_acks, "ACKs for unknown message ids."),
        ("async_flow_dedup_hits_total", t.dedup_hits, "Enqueues answered from the idempotency index."),
        ("async_flow_rejected_enqueues_total", t.rejected_enqueues, "Enqueues refused."),
        ("async_flow_send_failures_total", t.send_failures, "Synchronous send failures."),
        ("async_flow_callback_failures_total", t.callback_failures, "Failed sender callbacks."),
        ("async_flow_cancelled_total", t.cancelled, "Messages cancelled."),
        ("async_flow_garbage_collected_total", t.garbage_collected, "Tombstones removed."),
    ] {
        w.encode_counter(name, value as f64, help)?;
    }
    let mut in_flight = w.gauge_vec("async_flow_target_in_flight", "NEWs awaiting ACK per target (busiest 100).")?;
    for load in &stats.targets {
        in_flight = in_flight.value(&[("target", &load.target.to_text())], load.in_flight as f64)?;
    }
    Ok(w.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_render_counters_in_prometheus_format() {
        let mut stats = Stats::default();
        stats.totals.delivered = 3;
        let text = String::from_utf8(encode(&stats, 5_000_000).unwrap()).unwrap();
        assert!(text.contains("async_flow_delivered_total 3 5"), "{text}");
        assert!(text.contains("# TYPE async_flow_delivered_total counter"));
    }
}
