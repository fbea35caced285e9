use super::*;
use crate::{EnqueueArgs, EnqueueError, EnqueueResult, FailureReason};
use ic_stable_structures::VectorMemory;
use std::cell::RefCell;
use std::future::Future;

const SEC: u64 = 1_000_000_000;

fn broker() -> Principal {
    Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap()
}

fn target() -> Principal {
    Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap()
}

fn open(memory: VectorMemory) -> SenderCore<VectorMemory> {
    SenderCore::open(memory, SenderConfig::new(broker()))
}

fn ack(id: u128) -> SenderAck {
    SenderAck {
        msg_id: MsgId(id),
        hash: Some(1),
        payload: b"reply".to_vec(),
        target: Some(target()),
        sent_payload: None,
    }
}

fn failed(id: u128) -> SenderFailed {
    SenderFailed {
        msg_id: MsgId(id),
        target: target(),
        reason: FailureReason::MaxAttemptsExceeded { last_error: None },
        attempts: 10,
        sent_payload: None,
    }
}

#[test]
fn should_hand_over_an_acknowledgement_once() {
    let mut core = open(VectorMemory::default());
    assert_eq!(core.on_ack(broker(), ack(1), 0), Ok(Some(ack(1))));
    assert_eq!(core.on_ack(broker(), ack(1), SEC), Ok(None));
    assert_eq!(core.on_ack(broker(), ack(2), SEC), Ok(Some(ack(2))));
    assert!(core.was_handled(MsgId(1), CallbackKind::Ack));
    assert_eq!(core.len(), 2);
}

#[test]
fn should_hand_over_a_failure_once() {
    let mut core = open(VectorMemory::default());
    assert_eq!(core.on_failed(broker(), failed(1), 0), Ok(Some(failed(1))));
    assert_eq!(core.on_failed(broker(), failed(1), 1), Ok(None));
}

#[test]
fn should_reject_callbacks_from_a_principal_other_than_the_broker() {
    let mut core = open(VectorMemory::default());
    for caller in [target(), Principal::anonymous(), Principal::management_canister()] {
        assert_eq!(core.on_ack(caller, ack(1), 0), Err(SenderError::NotBroker { caller }));
        assert_eq!(core.on_failed(caller, failed(1), 0), Err(SenderError::NotBroker { caller }));
    }
    assert!(core.is_empty());
    // The spoofed callbacks did not mark the message: the broker's own still counts.
    assert_eq!(core.on_ack(broker(), ack(1), 0), Ok(Some(ack(1))));
}

#[test]
fn should_hand_over_a_late_acknowledgement_after_a_failure_but_never_a_failure_after_an_acknowledgement() {
    let mut core = open(VectorMemory::default());
    // Dead letter first, then the target acknowledged after all.
    assert!(core.on_failed(broker(), failed(1), 0).unwrap().is_some());
    assert!(core.on_ack(broker(), ack(1), 1).unwrap().is_some());
    assert!(core.on_failed(broker(), failed(1), 2).unwrap().is_none());
    assert!(core.on_ack(broker(), ack(1), 3).unwrap().is_none());
    // Acknowledged first: a failure for it is dropped.
    assert!(core.on_ack(broker(), ack(2), 0).unwrap().is_some());
    assert!(core.on_failed(broker(), failed(2), 1).unwrap().is_none());
    assert!(!core.was_handled(MsgId(2), CallbackKind::Failed));
}

#[test]
fn should_forget_callbacks_after_the_dedup_window() {
    let mut core = open(VectorMemory::default());
    let window = core.config().dedup_window_ns;
    core.on_ack(broker(), ack(1), 0).unwrap();
    core.on_failed(broker(), failed(2), 10 * SEC).unwrap();
    core.on_ack(broker(), ack(2), 20 * SEC).unwrap();
    assert_eq!(core.next_deadline(), Some(window));
    assert_eq!(core.on_timer(window - 1), 0);
    assert_eq!(core.on_timer(window), 1);
    assert!(!core.was_handled(MsgId(1), CallbackKind::Ack));
    assert!(core.was_handled(MsgId(2), CallbackKind::Failed));
    assert_eq!(core.on_timer(window + 20 * SEC), 2);
    assert!(core.is_empty());
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn should_bound_the_work_of_one_gc_run() {
    let config = SenderConfig { gc_batch_limit: 4, ..SenderConfig::new(broker()) };
    let mut core = SenderCore::open(VectorMemory::default(), config);
    for id in 0..10 {
        core.on_ack(broker(), ack(id), 0).unwrap();
    }
    let due = core.next_deadline().unwrap();
    assert_eq!(core.on_timer(due), 4);
    assert_eq!(core.next_deadline(), Some(due));
    assert_eq!(core.on_timer(due), 4);
    assert_eq!(core.on_timer(due), 2);
    assert!(core.is_empty());
}

#[test]
fn should_keep_the_dedup_state_across_an_upgrade() {
    let memory = VectorMemory::default();
    let mut core = open(memory.clone());
    core.on_ack(broker(), ack(1), 0).unwrap();
    core.on_failed(broker(), failed(2), 0).unwrap();
    let key = core.next_idempotency_key(0);
    let deadline = core.next_deadline();
    drop(core);

    let mut core = open(memory);
    assert_eq!(core.next_deadline(), deadline);
    assert_eq!(core.on_ack(broker(), ack(1), SEC), Ok(None));
    assert_eq!(core.on_failed(broker(), failed(2), SEC), Ok(None));
    assert_eq!(core.on_ack(broker(), ack(2), SEC), Ok(Some(ack(2))));
    assert_ne!(core.next_idempotency_key(0), key, "the key counter survives the upgrade");
}

#[test]
fn should_generate_distinct_idempotency_keys_within_the_broker_limit() {
    let mut core = open(VectorMemory::default());
    let keys: std::collections::BTreeSet<String> = (0..100).map(|_| core.next_idempotency_key(u64::MAX)).collect();
    assert_eq!(keys.len(), 100);
    assert!(keys.iter().all(|k| !k.is_empty() && k.len() <= 64));
    assert!(format!("{}h", idempotency_key(u64::MAX, u64::MAX)).len() <= 64, "the heap fallback's suffix fits too");
    // A reinstall (fresh memory) at a later time cannot repeat an old key.
    let mut reinstalled = open(VectorMemory::default());
    assert_ne!(reinstalled.next_idempotency_key(5), open(VectorMemory::default()).next_idempotency_key(6));
}

// ----- enqueue_via: the retry logic over a fake transport -----------------------------------

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn args() -> EnqueueArgs {
    EnqueueArgs { target: target(), payload: b"p".to_vec(), options: None }
}

fn rejected(code: u32) -> Result<EnqueueResult, CallError> {
    Err(CallError::Rejected { reject_code: code, message: format!("code {code}") })
}

/// Runs `enqueue_via` against scripted outcomes; returns the result and the keys of the calls made.
fn run(outcomes: Vec<Result<EnqueueResult, CallError>>, max_attempts: u32) -> (Result<MsgId, SendError>, Vec<String>) {
    let outcomes = RefCell::new(outcomes.into_iter());
    let keys = RefCell::new(Vec::new());
    let result = block_on(enqueue_via(args(), "k-1".into(), max_attempts, |args: EnqueueArgs| {
        keys.borrow_mut().push(args.options.and_then(|o| o.idempotency_key).unwrap());
        assert_eq!(args.payload, b"p");
        let outcome = outcomes.borrow_mut().next().expect("no more calls expected");
        async move { outcome }
    }));
    (result, keys.into_inner())
}

#[test]
fn should_retry_with_the_same_key_on_sys_unknown_and_sys_transient() {
    let (result, keys) = run(vec![rejected(6), rejected(2), Ok(Ok(MsgId(7)))], 3);
    assert_eq!(result, Ok(MsgId(7)));
    assert_eq!(keys, vec!["k-1"; 3]);
}

#[test]
fn should_report_in_doubt_with_the_key_after_the_bound() {
    let (result, keys) = run(vec![rejected(6), rejected(6), rejected(6)], 3);
    assert_eq!(keys.len(), 3);
    match result {
        Err(SendError::InDoubt { idempotency_key, attempts, .. }) => {
            assert_eq!((idempotency_key.as_str(), attempts), ("k-1", 3))
        }
        other => panic!("expected InDoubt, got {other:?}"),
    }
    // In doubt once is in doubt: a later definite failure does not clear it.
    let (result, _) = run(vec![rejected(6), Err(CallError::NotSent { message: "queue full".into() })], 3);
    assert!(result.unwrap_err().is_in_doubt());
    let (result, _) = run(vec![Err(CallError::InvalidReply { message: "bad".into() })], 3);
    assert!(result.unwrap_err().is_in_doubt());
}

#[test]
fn should_report_unavailable_when_the_broker_never_executed_the_call() {
    let (result, keys) = run(vec![Err(CallError::NotSent { message: "queue full".into() })], 3);
    assert_eq!(keys.len(), 1, "a synchronous refusal is not retried");
    assert_eq!(result, Err(SendError::Unavailable { reject_code: None, message: "queue full".into() }));
    let (result, keys) = run(vec![rejected(2), rejected(2)], 2);
    assert_eq!(keys.len(), 2);
    assert_eq!(result, Err(SendError::Unavailable { reject_code: Some(2), message: "code 2".into() }));
    for definite in [3, 4, 5] {
        let (result, keys) = run(vec![rejected(definite)], 3);
        assert_eq!(keys.len(), 1, "reject code {definite} is not retried");
        assert!(matches!(result, Err(SendError::Unavailable { reject_code: Some(c), .. }) if c == definite));
    }
}

#[test]
fn should_return_a_refusal_without_retrying() {
    let (result, keys) = run(vec![rejected(6), Ok(Err(EnqueueError::Busy))], 3);
    assert_eq!(keys.len(), 2);
    assert_eq!(result, Err(SendError::Refused(EnqueueError::Busy)));
}

#[test]
fn should_keep_the_other_options_and_set_the_key() {
    let options = crate::EnqueueOptions { max_attempts: Some(2), ..Default::default() };
    let seen = RefCell::new(None);
    let args = EnqueueArgs { options: Some(options), ..args() };
    let result = block_on(enqueue_via(args, "k-2".into(), 1, |args: EnqueueArgs| {
        *seen.borrow_mut() = args.options;
        async { Ok(Ok(MsgId(1))) }
    }));
    assert_eq!(result, Ok(MsgId(1)));
    let seen = seen.into_inner().unwrap();
    assert_eq!((seen.max_attempts, seen.idempotency_key.as_deref()), (Some(2), Some("k-2")));
}
