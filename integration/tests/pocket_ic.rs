//! The canisters on a real replica (PocketIC): a message from the example
//! sender through the broker to the example receiver, a retry after the
//! receiver was unreachable, an upgrade mid-flight, and a spoofed ACK.
//!
//! They need a PocketIC server binary (`POCKET_IC_BIN`) and the wasms of
//! `scripts/build.sh`. scripts/test.sh enables the `pocket-ic` feature only
//! when `POCKET_IC_BIN` is set; otherwise the test below says why it skipped.

#[cfg(not(feature = "pocket-ic"))]
#[test]
fn should_run_the_canisters_on_pocket_ic() {
    eprintln!(
        "SKIPPED: the PocketIC tests need a PocketIC server binary; set POCKET_IC_BIN to its path and \
         run scripts/test.sh (it builds the wasms and enables the `pocket-ic` feature)"
    );
}

#[cfg(feature = "pocket-ic")]
mod replica {
    use async_flow_client::{Ack, ConfigUpdate, MessageState, MessageStatus, MsgId, Stats};
    use candid::{decode_one, encode_args, encode_one, CandidType, Principal};
    use pocket_ic::PocketIc;
    use serde::Deserialize;
    use std::path::Path;
    use std::time::Duration;

    struct Env {
        pic: PocketIc,
        broker: Principal,
        sender: Principal,
        receiver: Principal,
    }

    fn wasm(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/canisters").join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|_| panic!("{} is missing: run scripts/build.sh", path.display()))
    }

    #[derive(CandidType)]
    struct SenderInit {
        broker: Option<Principal>,
    }

    #[derive(CandidType)]
    struct ReceiverInit {
        allowed_brokers: Option<Vec<Principal>>,
    }

    #[derive(CandidType, Deserialize)]
    struct ReceiverState {
        count: u64,
    }

    /// The example sender's `outcomes` entries, with only the fields checked here.
    #[derive(CandidType, Deserialize)]
    struct OutcomeEntry {
        outcome: Outcome,
    }

    #[derive(CandidType, Deserialize)]
    enum Outcome {
        Acknowledged { msg_id: MsgId },
        Failed(candid::Reserved),
    }

    fn setup() -> Option<Env> {
        if std::env::var_os("POCKET_IC_BIN").is_none() {
            eprintln!("SKIPPED: POCKET_IC_BIN is not set");
            return None;
        }
        let pic = PocketIc::new();
        let install = |wasm_name: &str, arg: Vec<u8>| {
            let id = pic.create_canister();
            pic.add_cycles(id, 100_000_000_000_000);
            pic.install_canister(id, wasm(wasm_name), arg, None);
            id
        };
        let broker = install("broker", encode_one(None::<ConfigUpdate>).unwrap());
        let receiver =
            install("receiver", encode_one(Some(ReceiverInit { allowed_brokers: Some(vec![broker]) })).unwrap());
        let sender = install("sender", encode_one(Some(SenderInit { broker: Some(broker) })).unwrap());
        Some(Env { pic, broker, sender, receiver })
    }

    impl Env {
        fn send(&self, text: &str) -> MsgId {
            let reply = self
                .pic
                .update_call(self.sender, Principal::anonymous(), "send", encode_args((self.receiver, text)).unwrap())
                .expect("send replies");
            let result: Result<MsgId, candid::Reserved> = decode_one(&reply).expect("send result");
            result.expect("the broker accepted the message")
        }

        fn status(&self, id: MsgId) -> MessageStatus {
            // The canisters' controller is the anonymous principal, so it may read any status.
            let reply =
                self.pic.query_call(self.broker, Principal::anonymous(), "status", encode_one(id).unwrap()).unwrap();
            decode_one::<Option<MessageStatus>>(&reply).unwrap().expect("known message")
        }

        fn received(&self) -> u64 {
            let reply = self.pic.query_call(self.receiver, Principal::anonymous(), "state", encode_args(()).unwrap());
            decode_one::<ReceiverState>(&reply.unwrap()).unwrap().count
        }

        fn stats(&self) -> Stats {
            let reply = self.pic.query_call(self.broker, Principal::anonymous(), "stats", encode_args(()).unwrap());
            decode_one(&reply.unwrap()).unwrap()
        }

        fn run_until_delivered(&self, id: MsgId, max_ticks: usize) -> MessageStatus {
            for _ in 0..max_ticks {
                let status = self.status(id);
                if status.state == MessageState::Delivered {
                    return status;
                }
                self.pic.tick();
            }
            panic!("not delivered: {:?}", self.status(id));
        }
    }

    #[test]
    fn should_deliver_once_and_confirm_to_the_sender() {
        let Some(env) = setup() else { return };
        let id = env.send("hello");
        let status = env.run_until_delivered(id, 50);
        assert_eq!(status.attempts, 1);
        assert_eq!(status.sender_notification, async_flow_client::SenderNotification::Confirmed);
        assert_eq!(env.received(), 1, "the receiver processed it once");
        let outcomes = env.pic.query_call(env.sender, Principal::anonymous(), "outcomes", encode_args(()).unwrap());
        let outcomes: Vec<OutcomeEntry> = decode_one(&outcomes.unwrap()).unwrap();
        let acknowledged: Vec<MsgId> = outcomes
            .iter()
            .filter_map(|e| match e.outcome {
                Outcome::Acknowledged { msg_id } => Some(msg_id),
                Outcome::Failed(_) => None,
            })
            .collect();
        assert_eq!(acknowledged, vec![id], "the sender recorded the acknowledgement once");
    }

    #[test]
    fn should_resend_after_the_ack_timeout_when_the_receiver_was_stopped() {
        let Some(env) = setup() else { return };
        env.pic.stop_canister(env.receiver, None).unwrap();
        let id = env.send("while stopped");
        for _ in 0..10 {
            env.pic.tick();
        }
        assert_eq!(env.status(id).state, MessageState::AwaitingAck);
        env.pic.start_canister(env.receiver, None).unwrap();
        env.pic.advance_time(Duration::from_secs(331));
        let status = env.run_until_delivered(id, 50);
        assert_eq!(status.attempts, 2, "delivered by the resend after 330 s");
        assert_eq!(env.received(), 1);
    }

    #[test]
    fn should_finish_a_message_in_flight_across_a_broker_upgrade() {
        let Some(env) = setup() else { return };
        env.pic.stop_canister(env.receiver, None).unwrap();
        let id = env.send("across an upgrade");
        env.pic.tick();
        env.pic.upgrade_canister(env.broker, wasm("broker"), encode_one(None::<ConfigUpdate>).unwrap(), None).unwrap();
        env.pic.start_canister(env.receiver, None).unwrap();
        // Only the timer re-armed by post_upgrade can send the NEW again.
        env.pic.advance_time(Duration::from_secs(331));
        env.run_until_delivered(id, 50);
        assert_eq!(env.received(), 1);
    }

    #[test]
    fn should_ignore_a_spoofed_ack_and_count_it() {
        let Some(env) = setup() else { return };
        env.pic.stop_canister(env.receiver, None).unwrap();
        let id = env.send("spoof me");
        env.pic.tick();
        let before = env.status(id);
        let spoofer = Principal::from_slice(&[9; 29]);
        let ack = Ack { msg_id: id, hash: None, payload: vec![] };
        env.pic.update_call(env.broker, spoofer, "com_asyncFlow_ack", encode_one(ack).unwrap()).unwrap();
        assert_eq!(env.status(id), before, "a spoofed ACK changes nothing");
        assert_eq!(env.stats().totals.spoofed_acks, 1);
    }
}
