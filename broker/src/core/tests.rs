use super::*;
use async_flow_client::{Ack, EnqueueOptions};
use ic_stable_structures::VectorMemory;

const T0: u64 = 1_700_000_000 * NS;

pub(super) fn canister(n: u8) -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, n, 1, 1])
}

fn broker_id() -> Principal {
    canister(200)
}
fn sender() -> Principal {
    canister(1)
}
fn target() -> Principal {
    canister(2)
}
fn intruder() -> Principal {
    canister(3)
}
fn user() -> Principal {
    // A self-authenticating principal (29 bytes, class 0x02): a user, not a canister.
    let mut raw = [7u8; 29];
    raw[28] = 2;
    Principal::from_slice(&raw)
}

struct Harness {
    memory: VectorMemory,
    broker: Broker<VectorMemory>,
    now: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(ConfigUpdate::default())
    }

    fn with_config(update: ConfigUpdate) -> Self {
        let memory = VectorMemory::default();
        let broker = Broker::open(memory.clone(), broker_id(), Some(update), T0).unwrap();
        Harness { memory, broker, now: T0 }
    }

    /// Drops every heap value and reopens from the same stable memory, as an upgrade does.
    fn upgrade(&mut self) {
        let reopened = Broker::open(self.memory.clone(), broker_id(), None, self.now).unwrap();
        self.broker = reopened;
    }

    fn enqueue_from(
        &mut self,
        from: Principal,
        payload: &[u8],
        options: Option<EnqueueOptions>,
    ) -> (MsgId, Vec<Effect>) {
        let args = EnqueueArgs { target: target(), payload: payload.to_vec(), options };
        let (accepted, effects) = self.broker.enqueue(from, args, 0, self.now).expect("enqueue accepted");
        (accepted.msg_id, effects)
    }

    fn enqueue(&mut self, payload: &[u8]) -> (MsgId, Vec<Effect>) {
        self.enqueue_from(sender(), payload, None)
    }

    fn ack(&mut self, id: MsgId, payload: &[u8], reply: &[u8]) -> Vec<Effect> {
        let ack = Ack { msg_id: id, hash: Some(payload_hash(payload)), payload: reply.to_vec() };
        let (result, effects) = self.broker.on_ack(target(), ack, self.now);
        result.expect("ACK accepted");
        effects
    }

    fn advance(&mut self, secs: u64) -> Vec<Effect> {
        self.now += secs * NS;
        self.broker.on_timer(self.now, &Unlimited)
    }

    /// Runs the timer at every deadline up to `now + secs`.
    fn run_until(&mut self, secs: u64) -> Vec<Effect> {
        let end = self.now + secs * NS;
        let mut effects = Vec::new();
        while let Some(at) = self.broker.next_deadline().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            effects.extend(self.broker.on_timer(self.now, &Unlimited));
        }
        self.now = end;
        effects
    }

    fn state(&self, id: MsgId) -> MessageState {
        self.broker.record(id).expect("record exists").state
    }

    fn status(&self, id: MsgId) -> MessageStatus {
        self.broker.status(sender(), false, id).expect("sender sees its message")
    }

    fn confirm_callback(&mut self, effects: &[Effect]) {
        for e in effects {
            if let Effect::Callback { callback, serial, .. } = e {
                self.broker.on_callback_result(callback.msg_id(), *serial, Ok(()), self.now);
            }
        }
    }
}

fn news(effects: &[Effect]) -> Vec<(MsgId, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendNew { message, .. } => Some((message.msg_id, message.attempt.unwrap())),
            _ => None,
        })
        .collect()
}

fn fins(effects: &[Effect]) -> Vec<MsgId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendFin { fin, .. } => Some(fin.msg_id),
            _ => None,
        })
        .collect()
}

fn callbacks(effects: &[Effect]) -> Vec<&Callback> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Callback { callback, .. } => Some(callback),
            _ => None,
        })
        .collect()
}

#[test]
fn should_deliver_through_new_ack_fin_and_callback_then_collect_after_retention() {
    let mut h = Harness::new();
    let (id, effects) = h.enqueue(b"hello");
    let Effect::SendNew { target: to, message } = &effects[0] else { panic!("expected NEW, got {effects:?}") };
    assert_eq!(*to, target());
    assert_eq!(
        *message,
        NewMessage { msg_id: id, payload: b"hello".to_vec(), sender: Some(sender()), attempt: Some(1) }
    );
    assert_eq!(h.state(id), MessageState::AwaitingAck);

    let effects = h.ack(id, b"hello", b"reply");
    assert_eq!(fins(&effects), vec![id]);
    let [Callback::Ack(ack)] = callbacks(&effects)[..] else { panic!("expected one ack callback: {effects:?}") };
    assert_eq!(ack.payload, b"reply");
    assert_eq!(ack.hash, Some(payload_hash(b"hello")));
    assert_eq!(ack.target, Some(target()));
    assert_eq!(ack.sent_payload, None);
    assert_eq!(h.state(id), MessageState::Acked);

    h.confirm_callback(&effects);
    let status = h.status(id);
    assert_eq!(status.state, MessageState::Delivered);
    assert_eq!(status.sender_notification, SenderNotification::Confirmed);
    assert_eq!(status.acked_at_ns, Some(T0));
    assert_eq!(h.broker.stats(h.now).stored_bytes, 0, "payload and reply dropped once delivered");
    assert_eq!(h.broker.stats(h.now).totals.delivered, 1);

    // The tombstone answers status for the retention period, then goes.
    h.run_until(24 * 3600 - 1);
    assert!(h.broker.record(id).is_some());
    h.run_until(1);
    assert!(h.broker.record(id).is_none());
    assert!(h.broker.is_empty(), "every index returns to empty");
}

#[test]
fn should_resend_new_only_once_the_ack_timeout_has_passed() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    assert!(news(&h.advance(329)).is_empty(), "no resend before 330 s");
    assert_eq!(news(&h.advance(1)), vec![(id, 2)], "resend at 330 s");
    assert!(news(&h.advance(329)).is_empty());
    assert_eq!(news(&h.advance(1)), vec![(id, 3)]);
    assert_eq!(h.broker.stats(h.now).totals.retries, 2);
}

#[test]
fn should_dead_letter_after_max_attempts_and_tell_the_sender() {
    let mut h = Harness::new();
    let options = EnqueueOptions { max_attempts: Some(3), include_sent_payload: Some(true), ..Default::default() };
    let (id, first) = h.enqueue_from(sender(), b"p", Some(options));
    let mut sent = news(&first);
    let effects = h.run_until(3 * 330);
    sent.extend(news(&effects));
    assert_eq!(sent, vec![(id, 1), (id, 2), (id, 3)], "exactly max_attempts NEWs");
    let [Callback::Failed(failed)] = callbacks(&effects)[..] else { panic!("expected a failure callback") };
    assert_eq!(failed.reason, FailureReason::MaxAttemptsExceeded { last_error: None });
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.sent_payload.as_deref().map(|b| b.as_slice()), Some(&b"p"[..]));
    assert_eq!(h.state(id), MessageState::Failed);
    assert_eq!(h.broker.stats(h.now).totals.dead_lettered, 1);
    assert!(news(&h.run_until(10 * 330)).is_empty(), "no NEW after the dead letter");
}

#[test]
fn should_back_off_after_a_refused_send_without_spending_attempts() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    h.broker.on_new_refused(id, 1, DeliveryError::SendRefused, h.now);
    assert_eq!(h.broker.record(id).unwrap().attempts, 0);
    assert_eq!(h.broker.next_deadline(), Some(h.now + NS), "first retry after 1 s");
    assert_eq!(news(&h.advance(1)), vec![(id, 1)], "the same attempt again");
    h.broker.on_new_refused(id, 1, DeliveryError::SendRefused, h.now);
    assert_eq!(h.broker.next_deadline(), Some(h.now + 2 * NS), "then 2 s");
    assert_eq!(h.status(id).last_error, Some(DeliveryError::SendRefused));
    // The backoff is capped at the ACK timeout.
    for _ in 0..20 {
        let at = h.broker.next_deadline().unwrap();
        h.now = at;
        h.broker.on_timer(h.now, &Unlimited);
        h.broker.on_new_refused(id, 1, DeliveryError::SendRefused, h.now);
    }
    assert_eq!(h.broker.next_deadline(), Some(h.now + 330 * NS));
}

#[test]
fn should_mark_corrupted_on_hash_mismatch_send_fin_and_report_everything() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"original");
    let ack = Ack { msg_id: id, hash: Some(payload_hash(b"tampered")), payload: b"r".to_vec() };
    let (result, effects) = h.broker.on_ack(target(), ack, h.now);
    assert_eq!(result, Ok(()));
    assert_eq!(fins(&effects), vec![id], "the receiver is told to stop re-sending its ACK");
    let report = CorruptionReport {
        expected_hash: payload_hash(b"original"),
        received_hash: payload_hash(b"tampered"),
        reply: b"r".to_vec(),
    };
    let [Callback::Failed(failed)] = callbacks(&effects)[..] else { panic!("expected a failure callback") };
    assert_eq!(failed.reason, FailureReason::Corrupted(report.clone()));
    h.confirm_callback(&effects);
    let status = h.status(id);
    assert_eq!(status.state, MessageState::Corrupted);
    assert_eq!(status.corruption, Some(report));
    assert_eq!(h.broker.stats(h.now).totals.corrupted, 1);
}

#[test]
fn should_accept_an_ack_without_hash_as_unchecked() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    let (result, effects) = h.broker.on_ack(target(), Ack { msg_id: id, hash: None, payload: vec![] }, h.now);
    assert_eq!(result, Ok(()));
    assert!(matches!(callbacks(&effects)[..], [Callback::Ack(_)]));
}

#[test]
fn should_ignore_a_spoofed_ack_and_count_it() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    let before = h.broker.record(id);
    let ack = Ack { msg_id: id, hash: Some(payload_hash(b"p")), payload: vec![] };
    let (result, effects) = h.broker.on_ack(intruder(), ack.clone(), h.now);
    assert_eq!(result, Err(AckRejected::NotTarget));
    assert!(effects.is_empty());
    assert_eq!(h.broker.record(id), before, "a spoofed ACK changes nothing");
    let (result, _) = h.broker.on_ack(sender(), ack, h.now);
    assert_eq!(result, Err(AckRejected::NotTarget), "not even from the sender");
    assert_eq!(h.broker.stats(h.now).totals.spoofed_acks, 2);
}

#[test]
fn should_ignore_an_ack_for_an_unknown_message() {
    let mut h = Harness::new();
    let (result, effects) = h.broker.on_ack(target(), Ack { msg_id: MsgId(42), hash: None, payload: vec![] }, h.now);
    assert_eq!(result, Err(AckRejected::UnknownMessage));
    assert!(effects.is_empty());
    assert_eq!(h.broker.stats(h.now).totals.unknown_acks, 1);
    assert_eq!(h.broker.message_count(), 0);
}

#[test]
fn should_send_fin_again_for_a_duplicate_ack_after_delivery() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    let effects = h.ack(id, b"p", b"r");
    h.confirm_callback(&effects);
    let before = h.broker.record(id);
    let again = h.ack(id, b"p", b"r");
    assert_eq!(fins(&again), vec![id]);
    assert!(callbacks(&again).is_empty(), "the sender is told once");
    assert_eq!(h.broker.record(id), before);
}

#[test]
fn should_return_the_first_msg_id_for_a_repeated_idempotency_key() {
    let mut h = Harness::new();
    let keyed = || Some(EnqueueOptions { idempotency_key: Some("order-17".into()), ..Default::default() });
    let (first, effects) = h.enqueue_from(sender(), b"p", keyed());
    assert_eq!(news(&effects).len(), 1);
    let (again, effects) = h.enqueue_from(sender(), b"p", keyed());
    assert_eq!(again, first);
    assert!(effects.is_empty(), "nothing is sent twice");
    assert_eq!(h.broker.message_count(), 1);
    assert_eq!(h.broker.stats(h.now).totals.dedup_hits, 1);
    let (other_sender, _) = h.enqueue_from(canister(9), b"p", keyed());
    assert_ne!(other_sender, first, "keys are per sender");

    // After the message is collected, the key is free again.
    for id in [first, other_sender] {
        let effects = h.ack(id, b"p", b"");
        h.confirm_callback(&effects);
    }
    h.run_until(24 * 3600);
    assert!(h.broker.is_empty());
    let (later, _) = h.enqueue_from(sender(), b"p", keyed());
    assert_ne!(later, first);
}

#[test]
fn should_reject_bad_enqueues_with_typed_errors_and_change_nothing() {
    let mut h = Harness::with_config(ConfigUpdate {
        max_payload_bytes: Some(10),
        max_pending_per_sender: Some(1),
        ..Default::default()
    });
    let (kept, _) = h.enqueue(b"first");
    let snapshot = (h.broker.message_count(), h.broker.record(kept), h.broker.next_deadline());
    let args = |target, payload: &[u8], options| EnqueueArgs { target, payload: payload.to_vec(), options };
    let cases: Vec<(Principal, EnqueueArgs, EnqueueError)> = vec![
        (Principal::anonymous(), args(target(), b"p", None), EnqueueError::AnonymousCaller),
        (canister(9), args(Principal::anonymous(), b"p", None), EnqueueError::InvalidTarget),
        (canister(9), args(Principal::management_canister(), b"p", None), EnqueueError::InvalidTarget),
        (canister(9), args(broker_id(), b"p", None), EnqueueError::InvalidTarget),
        (canister(9), args(user(), b"p", None), EnqueueError::InvalidTarget),
        (canister(9), args(target(), &[0; 11], None), EnqueueError::PayloadTooLarge { size: 11, max: 10 }),
        (
            canister(9),
            args(target(), b"p", Some(EnqueueOptions { max_attempts: Some(0), ..Default::default() })),
            EnqueueError::InvalidOption { field: "max_attempts".into(), reason: "must be 1..=100".into() },
        ),
        (
            canister(9),
            args(target(), b"p", Some(EnqueueOptions { ack_timeout_seconds: Some(59), ..Default::default() })),
            EnqueueError::InvalidOption { field: "ack_timeout_seconds".into(), reason: "must be 60..=86400".into() },
        ),
        (
            canister(9),
            args(target(), b"p", Some(EnqueueOptions { idempotency_key: Some("k".repeat(65)), ..Default::default() })),
            EnqueueError::InvalidOption { field: "idempotency_key".into(), reason: "must be 1..=64 bytes".into() },
        ),
        (
            sender(),
            args(target(), b"p", None),
            EnqueueError::SenderQuotaExceeded { pending_messages: 1, pending_bytes: 5 },
        ),
    ];
    for (caller, args, expected) in cases {
        assert_eq!(h.broker.enqueue(caller, args, 0, h.now), Err(expected));
    }
    assert_eq!((h.broker.message_count(), h.broker.record(kept), h.broker.next_deadline()), snapshot);
    assert_eq!(h.broker.stats(h.now).totals.rejected_enqueues, 10);
    assert_eq!(h.broker.stats(h.now).totals.enqueued, 1);
}

#[test]
fn should_answer_busy_at_the_global_cap_and_charge_the_fee() {
    let mut h = Harness::with_config(ConfigUpdate {
        max_stored_messages: Some(1),
        fee_cycles_per_message: Some(1_000),
        ..Default::default()
    });
    let args = || EnqueueArgs { target: target(), payload: b"p".to_vec(), options: None };
    assert_eq!(
        h.broker.enqueue(sender(), args(), 999, h.now),
        Err(EnqueueError::InsufficientCycles { required: 1_000, attached: 999 })
    );
    let (accepted, _) = h.broker.enqueue(sender(), args(), 5_000, h.now).unwrap();
    assert_eq!(accepted.fee_cycles, 1_000, "only the fee is taken");
    assert_eq!(h.broker.enqueue(canister(9), args(), 5_000, h.now), Err(EnqueueError::Busy));
}

#[test]
fn should_only_accept_allowed_senders_when_an_allow_list_is_set() {
    let mut h =
        Harness::with_config(ConfigUpdate { allowed_senders: Some(Some(vec![sender()])), ..Default::default() });
    let args = EnqueueArgs { target: target(), payload: vec![], options: None };
    assert_eq!(h.broker.enqueue(canister(9), args.clone(), 0, h.now), Err(EnqueueError::NotAllowed));
    assert!(h.broker.enqueue(sender(), args, 0, h.now).is_ok());
}

#[test]
fn should_keep_at_most_the_window_in_flight_per_target_in_fifo_order() {
    let mut h = Harness::with_config(ConfigUpdate { max_in_flight_per_target: Some(1), ..Default::default() });
    let (a, ea) = h.enqueue(b"a");
    let (b, eb) = h.enqueue(b"b");
    let (c, ec) = h.enqueue(b"c");
    assert_eq!(news(&ea), vec![(a, 1)]);
    assert!(eb.is_empty() && ec.is_empty(), "b and c wait for the window");
    assert_eq!((h.state(b), h.state(c)), (MessageState::Queued, MessageState::Queued));
    let load = &h.broker.stats(h.now).targets[0];
    assert_eq!((load.in_flight, load.queued), (1, 2));

    // Retries of `a` do not let `b` overtake it.
    assert_eq!(news(&h.run_until(330)), vec![(a, 2)]);
    assert_eq!(news(&h.ack(a, b"a", b"")), vec![(b, 1)], "b goes when a is acknowledged");
    assert_eq!(news(&h.ack(b, b"b", b"")), vec![(c, 1)]);
    h.ack(c, b"c", b"");
    assert!(h.broker.stats(h.now).targets.is_empty());
}

#[test]
fn should_retry_a_failed_callback_with_backoff_then_give_up() {
    let mut h = Harness::with_config(ConfigUpdate { max_callback_attempts: Some(3), ..Default::default() });
    let (id, _) = h.enqueue(b"p");
    let effects = h.ack(id, b"p", b"r");
    let reject = Err(DeliveryError::CallRejected { reject_code: 5 });
    let mut serial = match &effects[1] {
        Effect::Callback { serial, .. } => *serial,
        other => panic!("expected a callback, got {other:?}"),
    };
    for (attempt, backoff) in [(1, 1), (2, 2)] {
        h.broker.on_callback_result(id, serial, reject, h.now);
        assert_eq!(h.broker.next_deadline(), Some(h.now + backoff * NS), "backoff after attempt {attempt}");
        let effects = h.advance(backoff);
        let [Effect::Callback { serial: next, callback: Callback::Ack(_), .. }] = effects[..] else {
            panic!("expected the ack callback again: {effects:?}")
        };
        serial = next;
    }
    h.broker.on_callback_result(id, serial, reject, h.now);
    let status = h.status(id);
    assert_eq!(status.state, MessageState::Delivered, "the target has it, even if the sender could not be told");
    assert_eq!(status.sender_notification, SenderNotification::GaveUp);
    assert_eq!(h.broker.stats(h.now).totals.callback_failures, 3);
}

#[test]
fn should_stop_calling_back_a_sender_that_no_longer_exists() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    let effects = h.ack(id, b"p", b"");
    let Effect::Callback { serial, .. } = effects[1] else { panic!() };
    h.broker.on_callback_result(id, serial, Err(DeliveryError::CallRejected { reject_code: 3 }), h.now);
    assert_eq!(h.status(id).sender_notification, SenderNotification::GaveUp);
}

#[test]
fn should_call_back_again_when_a_callback_result_is_lost() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    h.ack(id, b"p", b"");
    // No result arrives (say, the call was lost in an upgrade): after the call
    // timeout plus grace, it counts as failed and is retried.
    let effects = h.run_until(300 + 60 + 1);
    assert_eq!(callbacks(&effects).len(), 1, "one new callback: {effects:?}");
    assert_eq!(h.status(id).last_error, Some(DeliveryError::CallRejected { reject_code: 6 }));
}

#[test]
fn should_ignore_stale_and_duplicate_callback_results() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue(b"p");
    let effects = h.ack(id, b"p", b"");
    let Effect::Callback { serial, .. } = effects[1] else { panic!() };
    h.broker.on_callback_result(id, serial + 1, Ok(()), h.now);
    assert_eq!(h.state(id), MessageState::Acked, "a result for another serial is ignored");
    h.broker.on_callback_result(id, serial, Ok(()), h.now);
    let delivered = h.broker.record(id);
    h.broker.on_callback_result(id, serial, Err(DeliveryError::SendRefused), h.now);
    assert_eq!(h.broker.record(id), delivered, "a duplicate result changes nothing");
}

#[test]
fn should_cancel_queued_and_awaiting_messages_for_the_sender_or_a_controller_only() {
    let mut h = Harness::with_config(ConfigUpdate { max_in_flight_per_target: Some(1), ..Default::default() });
    let (a, _) = h.enqueue(b"a");
    let (b, _) = h.enqueue(b"b");
    let (c, _) = h.enqueue(b"c");
    assert_eq!(h.broker.cancel(intruder(), false, b, h.now), Err(ManageError::NotAuthorized));
    assert_eq!(h.broker.cancel(sender(), false, MsgId(1), h.now), Err(ManageError::UnknownMessage));
    assert_eq!(h.broker.cancel(sender(), false, b, h.now), Ok(vec![]), "queued: nothing to send");
    let effects = h.broker.cancel(intruder(), true, a, h.now).unwrap();
    assert_eq!(news(&effects), vec![(c, 1)], "cancelling the in-flight one opens the window");
    assert_eq!(h.state(a), MessageState::Cancelled);
    assert_eq!(h.state(b), MessageState::Cancelled);
    assert_eq!(
        h.broker.cancel(sender(), false, a, h.now),
        Err(ManageError::InvalidState { state: MessageState::Cancelled })
    );
    assert!(news(&h.run_until(3000)).iter().all(|(id, _)| *id == c), "cancelled messages are not re-sent");
}

#[test]
fn should_retry_a_failed_message_from_attempt_one() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue_from(sender(), b"p", Some(EnqueueOptions { max_attempts: Some(1), ..Default::default() }));
    let effects = h.run_until(330);
    h.confirm_callback(&effects);
    assert_eq!(h.state(id), MessageState::Failed);
    assert_eq!(h.broker.retry(intruder(), false, id, h.now), Err(ManageError::NotAuthorized));
    let effects = h.broker.retry(sender(), false, id, h.now).unwrap();
    assert_eq!(news(&effects), vec![(id, 1)]);
    let status = h.status(id);
    assert_eq!((status.state, status.attempts), (MessageState::AwaitingAck, 1));
    let effects = h.ack(id, b"p", b"");
    h.confirm_callback(&effects);
    assert_eq!(h.state(id), MessageState::Delivered);
    assert_eq!(
        h.broker.retry(sender(), false, id, h.now),
        Err(ManageError::InvalidState { state: MessageState::Delivered })
    );
}

#[test]
fn should_deliver_when_a_late_ack_follows_the_dead_letter() {
    let mut h = Harness::new();
    let (id, _) = h.enqueue_from(sender(), b"p", Some(EnqueueOptions { max_attempts: Some(1), ..Default::default() }));
    let failed = h.run_until(330);
    assert!(matches!(callbacks(&failed)[..], [Callback::Failed(_)]));
    let effects = h.ack(id, b"p", b"late");
    assert!(matches!(callbacks(&effects)[..], [Callback::Ack(_)]), "the sender learns it was delivered after all");
    // The failure callback's result, arriving now, is stale.
    h.confirm_callback(&failed);
    assert_eq!(h.state(id), MessageState::Acked);
    h.confirm_callback(&effects);
    assert_eq!(h.state(id), MessageState::Delivered);
}

#[test]
fn should_not_call_back_users_or_senders_that_opted_out() {
    let mut h = Harness::new();
    let (from_user, _) = h.enqueue_from(user(), b"p", None);
    let opted_out = Some(EnqueueOptions { notify_sender: Some(false), ..Default::default() });
    let (from_canister, _) = h.enqueue_from(sender(), b"p", opted_out);
    for id in [from_user, from_canister] {
        let effects = h.ack(id, b"p", b"");
        assert!(callbacks(&effects).is_empty());
        assert_eq!(h.state(id), MessageState::Delivered);
        assert_eq!(h.broker.record(id).unwrap().notification, SenderNotification::NotRequested);
    }
}

#[test]
fn should_bound_the_work_of_one_timer_run() {
    let mut h = Harness::with_config(ConfigUpdate { timer_batch_limit: Some(10), ..Default::default() });
    for i in 0..25u8 {
        h.enqueue(&[i]);
    }
    let effects = h.advance(330);
    assert_eq!(news(&effects).len(), 10);
    assert!(h.broker.next_deadline().unwrap() <= h.now, "the rest is due at once, for the next run");
    assert_eq!(news(&h.broker.on_timer(h.now, &Unlimited)).len(), 10);
    assert_eq!(news(&h.broker.on_timer(h.now, &Unlimited)).len(), 5);
    assert!(h.broker.next_deadline().unwrap() > h.now);

    struct Spent;
    impl WorkBudget for Spent {
        fn exhausted(&self) -> bool {
            true
        }
    }
    h.now += 330 * NS;
    assert!(h.broker.on_timer(h.now, &Spent).is_empty(), "an exhausted budget stops the run");
}

#[test]
fn should_carry_on_after_an_upgrade_mid_flight_with_nothing_lost() {
    let mut h = Harness::with_config(ConfigUpdate { max_in_flight_per_target: Some(2), ..Default::default() });
    let ids: Vec<MsgId> = (0..5u8).map(|i| h.enqueue(&[i]).0).collect();
    let effects = h.ack(ids[0], &[0], b"r0");
    let _ = h.ack(ids[1], &[1], b"r1");
    h.confirm_callback(&effects);
    h.advance(10);

    let deadline = h.broker.next_deadline();
    let records: Vec<_> = ids.iter().map(|id| h.broker.record(*id)).collect();
    let stats = h.broker.stats(h.now);
    h.upgrade();
    assert_eq!(h.broker.next_deadline(), deadline, "the timer's next deadline is recovered");
    assert_eq!(ids.iter().map(|id| h.broker.record(*id)).collect::<Vec<_>>(), records);
    assert_eq!(h.broker.stats(h.now), stats);
    assert_eq!(h.broker.config(), &Config { max_in_flight_per_target: 2, ..default_config() });

    // Ids stay unique after the upgrade.
    let (newer, _) = h.enqueue(b"after");
    assert!(newer > *ids.iter().max().unwrap());

    // Carry on: the lost callback result of ids[1] is retried, the rest delivered.
    let mut all = ids.clone();
    all.push(newer);
    for _ in 0..10 {
        let effects = h.run_until(400);
        h.confirm_callback(&effects);
        for (id, _) in news(&effects) {
            let payload =
                if id == newer { b"after".to_vec() } else { vec![ids.iter().position(|x| *x == id).unwrap() as u8] };
            let effects = h.ack(id, &payload, b"");
            h.confirm_callback(&effects);
        }
    }
    for id in &all {
        assert_eq!(h.state(*id), MessageState::Delivered, "{id:?}");
    }
    h.run_until(24 * 3600);
    assert!(h.broker.is_empty());
}

#[test]
fn should_list_messages_with_pagination_and_authorization() {
    let mut h = Harness::new();
    let mine: Vec<MsgId> = (0..5u8).map(|i| h.enqueue(&[i]).0).collect();
    let (theirs, _) = h.enqueue_from(canister(9), b"x", None);
    let page = |h: &Harness, caller, ctl, filter| h.broker.list_messages(caller, ctl, filter);

    let first = page(&h, sender(), false, ListFilter { limit: Some(2), ..Default::default() }).unwrap();
    assert_eq!(first.messages.iter().map(|m| m.msg_id).collect::<Vec<_>>(), mine[..2]);
    let second =
        page(&h, sender(), false, ListFilter { limit: Some(10), start_after: first.next_cursor, ..Default::default() })
            .unwrap();
    assert_eq!(second.messages.iter().map(|m| m.msg_id).collect::<Vec<_>>(), mine[2..]);
    assert_eq!(second.next_cursor, None);

    assert_eq!(
        page(&h, sender(), false, ListFilter { sender: Some(canister(9)), ..Default::default() }),
        Err(ListError::NotAuthorized)
    );
    let to_target = page(&h, target(), false, ListFilter { target: Some(target()), ..Default::default() }).unwrap();
    assert_eq!(to_target.messages.len(), 6, "a target sees what was sent to it");
    let all = page(&h, intruder(), true, ListFilter::default()).unwrap();
    assert_eq!(all.messages.len(), 6, "a controller sees everything");
    let effects = h.ack(theirs, b"x", b"");
    h.confirm_callback(&effects);
    let delivered =
        page(&h, intruder(), true, ListFilter { state: Some(MessageState::Delivered), ..Default::default() }).unwrap();
    assert_eq!(delivered.messages.iter().map(|m| m.msg_id).collect::<Vec<_>>(), vec![theirs]);

    assert!(h.broker.status(intruder(), false, theirs).is_none(), "status is for sender, target and controllers");
    assert!(h.broker.status(target(), false, theirs).is_some());
}

#[test]
fn should_validate_config_updates_and_change_nothing_on_error() {
    let mut h = Harness::new();
    let before = h.broker.config().clone();
    for bad in [
        ConfigUpdate { ack_timeout_seconds: Some(10), ..Default::default() },
        ConfigUpdate { max_in_flight_per_target: Some(0), max_attempts: Some(3), ..Default::default() },
        ConfigUpdate { max_in_flight_per_target: Some(500), ..Default::default() },
        ConfigUpdate { max_attempts: Some(101), ..Default::default() },
        ConfigUpdate { retention_seconds: Some(1), ..Default::default() },
        ConfigUpdate { allowed_senders: Some(Some(vec![sender(); 1001])), ..Default::default() },
    ] {
        assert!(matches!(h.broker.set_config(bad), Err(ManageError::InvalidConfig { .. })));
    }
    assert_eq!(h.broker.config(), &before);
    h.broker.set_config(ConfigUpdate { max_attempts: Some(3), ..Default::default() }).unwrap();
    assert_eq!(h.broker.config().max_attempts, 3);
}

#[test]
fn should_drop_the_payload_at_ack_unless_the_sender_wants_it_back() {
    let mut h = Harness::new();
    let (plain, _) = h.enqueue(&[1; 100]);
    let echo = Some(EnqueueOptions { include_sent_payload: Some(true), ..Default::default() });
    let (echoed, _) = h.enqueue_from(sender(), &[2; 50], echo);
    assert_eq!(h.broker.stats(h.now).stored_bytes, 150);
    let e1 = h.ack(plain, &[1; 100], b"");
    assert_eq!(h.broker.stats(h.now).stored_bytes, 50, "payload gone once the target has it");
    let e2 = h.ack(echoed, &[2; 50], b"");
    let [Callback::Ack(ack)] = callbacks(&e2)[..] else { panic!() };
    assert_eq!(ack.sent_payload.as_deref().map(|b| b.len()), Some(50));
    h.confirm_callback(&e1);
    h.confirm_callback(&e2);
    assert_eq!(h.broker.stats(h.now).stored_bytes, 0);
}

#[test]
fn should_report_the_oldest_pending_message_age() {
    let mut h = Harness::new();
    assert_eq!(h.broker.stats(h.now).oldest_pending_age_seconds, None);
    h.enqueue(b"p");
    h.advance(90);
    assert_eq!(h.broker.stats(h.now).oldest_pending_age_seconds, Some(90));
}

mod model;
