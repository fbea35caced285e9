//! `enqueue` with retries under one idempotency key, over any transport.

use crate::{EnqueueArgs, EnqueueError, EnqueueOptions, EnqueueResult, MsgId};
use candid::CandidType;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;

/// IC reject code `SYS_TRANSIENT`: the call was not executed; it may succeed later.
pub(crate) const SYS_TRANSIENT: u32 = 2;
/// IC reject code `SYS_UNKNOWN`: the call may or may not have been executed.
pub(crate) const SYS_UNKNOWN: u32 = 6;

/// How [`enqueue_with`](super::enqueue_with) calls the broker.
///
/// ```
/// use async_flow_client::sender::CallPolicy;
/// let policy = CallPolicy { max_attempts: 5, ..CallPolicy::default() };
/// assert_eq!(policy.timeout_seconds, 120);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPolicy {
    /// Calls made at most, all with the same idempotency key (default 3).
    pub max_attempts: u32,
    /// Timeout of each bounded-wait call, in seconds (default 120).
    pub timeout_seconds: u32,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, timeout_seconds: 120 }
    }
}

/// How one call to the broker failed, as the transport saw it.
///
/// ```
/// use async_flow_client::sender::CallError;
/// let e = CallError::Rejected { reject_code: 6, message: "timeout".into() };
/// assert!(e.is_in_doubt());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The IC did not send the call (`call_perform` failed, or too few
    /// cycles): the broker never saw it.
    NotSent {
        /// What the IC said.
        message: String,
    },
    /// The call came back rejected.
    Rejected {
        /// The IC reject code (2 `SYS_TRANSIENT`, 3 `DESTINATION_INVALID`,
        /// 4 `CANISTER_REJECT`, 5 `CANISTER_ERROR`, 6 `SYS_UNKNOWN`).
        reject_code: u32,
        /// The reject message.
        message: String,
    },
    /// The broker replied, but the reply did not decode as an `EnqueueResult`.
    InvalidReply {
        /// The decoding error.
        message: String,
    },
}

impl CallError {
    /// Whether the broker may have executed the call.
    ///
    /// ```
    /// use async_flow_client::sender::CallError;
    /// assert!(!CallError::NotSent { message: String::new() }.is_in_doubt());
    /// ```
    pub fn is_in_doubt(&self) -> bool {
        match self {
            CallError::NotSent { .. } => false,
            CallError::Rejected { reject_code, .. } => *reject_code == SYS_UNKNOWN,
            CallError::InvalidReply { .. } => true,
        }
    }

    fn is_retryable(&self) -> bool {
        matches!(self, CallError::Rejected { reject_code, .. } if *reject_code == SYS_UNKNOWN || *reject_code == SYS_TRANSIENT)
    }

    fn reject_code(&self) -> Option<u32> {
        match self {
            CallError::Rejected { reject_code, .. } => Some(*reject_code),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            CallError::NotSent { message }
            | CallError::Rejected { message, .. }
            | CallError::InvalidReply { message } => message.clone(),
        }
    }
}

/// Why a send did not return a `MsgId`.
///
/// ```
/// use async_flow_client::sender::SendError;
/// use async_flow_client::EnqueueError;
/// let e = SendError::Refused(EnqueueError::Busy);
/// assert!(!e.is_in_doubt());
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The broker refused the message; it is not stored.
    Refused(EnqueueError),
    /// The broker could not be reached; the message is not stored. Try later.
    Unavailable {
        /// The last reject code, if the call came back rejected.
        reject_code: Option<u32>,
        /// What the IC said.
        message: String,
    },
    /// Every attempt ended in doubt: the broker may hold the message. Call
    /// `enqueue_with` again with this idempotency key to learn its `MsgId`
    /// (or to send it, if it was not stored), never with a new key.
    InDoubt {
        /// The key all attempts used.
        idempotency_key: String,
        /// Calls made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// The value could not be Candid-encoded; nothing was sent.
    Encode {
        /// The encoding error.
        message: String,
    },
}

impl SendError {
    /// Whether the broker may hold the message.
    ///
    /// ```
    /// use async_flow_client::sender::SendError;
    /// let e = SendError::InDoubt { idempotency_key: "k".into(), attempts: 3, message: "timeout".into() };
    /// assert!(e.is_in_doubt());
    /// ```
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, SendError::InDoubt { .. })
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Refused(e) => write!(f, "the broker refused the message: {e:?}"),
            SendError::Unavailable { reject_code, message } => {
                write!(f, "the broker could not be reached (reject code {reject_code:?}): {message}")
            }
            SendError::InDoubt { idempotency_key, attempts, message } => write!(
                f,
                "after {attempts} attempts it is unknown whether the broker holds the message \
                 (retry with idempotency key {idempotency_key:?}): {message}"
            ),
            SendError::Encode { message } => write!(f, "the payload could not be encoded: {message}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Calls `enqueue` through `call` with `idempotency_key`, re-issuing the
/// same call on `SYS_UNKNOWN` and `SYS_TRANSIENT` rejects, at most
/// `max_attempts` calls in all. The transport-independent heart of
/// [`enqueue_with`](super::enqueue_with), usable with a fake transport.
///
/// The broker answers a repeated key with the first `MsgId`, so however many
/// calls reach it, at most one message is stored.
///
/// ```
/// use async_flow_client::sender::{enqueue_via, CallError};
/// use async_flow_client::{EnqueueArgs, MsgId};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// let args = EnqueueArgs { target: candid::Principal::anonymous(), payload: vec![], options: None };
/// let mut calls = 0;
/// let result = block_on(enqueue_via(args, "key-1".into(), 3, |args: EnqueueArgs| {
///     calls += 1;
///     let first = calls == 1;
///     async move {
///         assert_eq!(args.options.unwrap().idempotency_key.as_deref(), Some("key-1"));
///         if first { Err(CallError::Rejected { reject_code: 6, message: "timeout".into() }) } else { Ok(Ok(MsgId(9))) }
///     }
/// }));
/// assert_eq!(result, Ok(MsgId(9)));
/// ```
pub async fn enqueue_via<F, Fut>(
    mut args: EnqueueArgs,
    idempotency_key: String,
    max_attempts: u32,
    mut call: F,
) -> Result<MsgId, SendError>
where
    F: FnMut(EnqueueArgs) -> Fut,
    Fut: Future<Output = Result<EnqueueResult, CallError>>,
{
    let options = args.options.get_or_insert_with(EnqueueOptions::default);
    options.idempotency_key = Some(idempotency_key.clone());
    let mut in_doubt = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match call(args.clone()).await {
            Ok(Ok(msg_id)) => return Ok(msg_id),
            // A definite answer: had an earlier attempt stored the message,
            // the broker would have returned its id for this key.
            Ok(Err(e)) => return Err(SendError::Refused(e)),
            Err(e) => e,
        };
        in_doubt |= error.is_in_doubt();
        if error.is_retryable() && attempts < max_attempts {
            continue;
        }
        return Err(if in_doubt {
            SendError::InDoubt { idempotency_key, attempts, message: error.message() }
        } else {
            SendError::Unavailable { reject_code: error.reject_code(), message: error.message() }
        });
    }
}
