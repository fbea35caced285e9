//! What a run looks like: its parties, its traffic and its faults.

use crate::rng::Rng;

/// Probabilities and counts of the faults injected in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Any inter-canister message (NEW, ACK, FIN, callback request or reply) is lost.
    pub drop: f64,
    /// A one-way message arrives twice (the IC never does this; it stresses dedup).
    pub duplicate: f64,
    /// Extra delay of a message, up to this many seconds (order per pair of canisters is kept).
    pub max_delay_secs: u64,
    /// `call_perform` refuses a send synchronously (full queue, low cycles).
    pub refuse: f64,
    /// A NEW's payload arrives altered (the hash check must catch it).
    pub corrupt: f64,
    /// A receiver's handler traps: its whole execution is rolled back.
    pub receiver_trap: f64,
    /// At most this many receiver traps in the run.
    pub max_receiver_traps: u32,
    /// A sender's callback traps: rolled back, the broker sees CANISTER_ERROR.
    pub callback_trap: f64,
    /// A bounded-wait call is rejected SYS_TRANSIENT without being delivered.
    pub call_transient: f64,
    /// Broker upgrades at random moments (heap dropped, state reopened from stable memory).
    pub broker_upgrades: u32,
    /// Broker upgrades at these moments (seconds after the start).
    pub broker_upgrades_at_secs: Vec<u64>,
    /// Receiver upgrades at random moments.
    pub receiver_upgrades: u32,
    /// ACKs sent by a spoofing canister for other canisters' messages.
    pub spoofed_acks: u32,
    /// Enqueue calls repeated with the same idempotency key, as after an outcome in doubt.
    pub repeated_enqueues: f64,
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan {
            drop: 0.0,
            duplicate: 0.0,
            max_delay_secs: 0,
            refuse: 0.0,
            corrupt: 0.0,
            receiver_trap: 0.0,
            max_receiver_traps: u32::MAX,
            callback_trap: 0.0,
            call_transient: 0.0,
            broker_upgrades: 0,
            broker_upgrades_at_secs: vec![],
            receiver_upgrades: 0,
            spoofed_acks: 0,
            repeated_enqueues: 0.0,
        }
    }

    /// A plan drawn from the seed: every fault on, with varying intensity.
    pub fn random(rng: &mut Rng) -> Self {
        FaultPlan {
            drop: rng.float(0.0, 0.3),
            duplicate: rng.float(0.0, 0.15),
            max_delay_secs: rng.between(0, 400),
            refuse: rng.float(0.0, 0.15),
            corrupt: rng.float(0.0, 0.03),
            receiver_trap: rng.float(0.0, 0.15),
            max_receiver_traps: u32::MAX,
            callback_trap: rng.float(0.0, 0.2),
            call_transient: rng.float(0.0, 0.15),
            broker_upgrades: rng.between(0, 4) as u32,
            broker_upgrades_at_secs: vec![],
            receiver_upgrades: rng.between(0, 4) as u32,
            spoofed_acks: rng.between(0, 20) as u32,
            repeated_enqueues: rng.float(0.0, 0.2),
        }
    }
}

/// One run: parties, traffic, faults.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub senders: usize,
    /// Senders (by index) whose callback endpoint does not exist.
    pub senders_without_endpoint: Vec<usize>,
    pub receivers: usize,
    pub messages: usize,
    /// Enqueues are spread over this many seconds.
    pub enqueue_window_secs: u64,
    /// The broker's `max_in_flight_per_target`.
    pub window: u32,
    /// Cancels by senders at random moments.
    pub cancels: u32,
    pub faults: FaultPlan,
}

impl Scenario {
    /// The CI scenario for a seed: the parties and the plan vary with the seed.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0xA24B_AED4_963E_E407));
        let senders = rng.between(1, 4) as usize;
        let senders_without_endpoint = if rng.chance(0.2) { vec![senders] } else { vec![] };
        Scenario {
            senders: senders + senders_without_endpoint.len(),
            senders_without_endpoint,
            receivers: rng.between(1, 4) as usize,
            messages: rng.between(5, 40) as usize,
            enqueue_window_secs: rng.between(1, 3600),
            window: rng.between(1, 5) as u32,
            cancels: rng.between(0, 3) as u32,
            faults: FaultPlan::random(&mut rng),
        }
    }
}
