//! # async-flow client
//!
//! Reliable one-shot messaging for Internet Computer canisters through the
//! async-flow broker canister. This crate holds:
//!
//! - the wire types shared with the broker ([`protocol`], and the broker's
//!   own API types such as [`EnqueueArgs`]);
//! - [`sender`]: `enqueue` a message through the broker (safe to retry) and
//!   receive its acknowledgement or failure as a callback, each at most once;
//! - [`receiver`]: the receiving canister's half of the handshake, which runs
//!   the application's handler at most once per message and takes care of
//!   ACKs, FINs and deduplication.
//!
//! Each side is a pure core ([`receiver::ReceiverCore`], [`sender::SenderCore`])
//! over `ic-stable-structures` in one memory the application hands over,
//! plus thin functions that the application calls from its own
//! `#[ic_cdk::update]` methods and `#[init]`/`#[post_upgrade]` hooks. No macro
//! generates endpoints: the application declares them, so they appear in its
//! Candid interface like any other method.
//!
//! ```
//! use async_flow_client::{payload_hash, MsgId};
//! assert_eq!(payload_hash(b""), 0xe3b0_c442);
//! assert_eq!(MsgId::from_parts(1, 0).timestamp_ms(), 1);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broker_api;
mod hash;
mod msg_id;
pub mod protocol;
pub mod receiver;
pub mod sender;
pub mod storage;
mod timer;

pub use broker_api::*;
pub use hash::payload_hash;
pub use msg_id::{InvalidMsgId, MsgId};
pub use protocol::{Ack, AckAck, CorruptionReport, DeliveryError, FailureReason, NewMessage, SenderAck, SenderFailed};
