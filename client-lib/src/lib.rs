//! # async-flow client
//!
//! Reliable one-shot messaging for Internet Computer canisters. This crate
//! holds the wire types shared with the async-flow broker canister.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broker_api;
mod hash;
mod msg_id;
pub mod protocol;

pub use broker_api::*;
pub use hash::payload_hash;
pub use msg_id::{InvalidMsgId, MsgId};
pub use protocol::{Ack, AckAck, CorruptionReport, DeliveryError, FailureReason, NewMessage, SenderAck, SenderFailed};
