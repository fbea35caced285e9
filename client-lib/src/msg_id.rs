//! Message identifiers: ULIDs carried on the wire as a Candid `nat`.

use candid::types::{Serializer, Type, TypeInner};
use candid::{CandidType, Nat};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// The identifier of one message: a [ULID](https://github.com/ulid/spec)
/// (48-bit millisecond timestamp, then 80 random bits) held as a `u128`.
///
/// On the wire it is a Candid `nat`, as the original async-flow specification
/// asks; a `nat` that does not fit in 128 bits fails to decode. Identifiers
/// sort by creation time, and a broker never issues the same one twice.
/// Receivers must key their dedup state by `(broker, msg_id)`: two brokers
/// may issue equal identifiers.
///
/// ```
/// use async_flow_client::MsgId;
///
/// let id = MsgId::from_parts(1_700_000_000_000, 42);
/// assert_eq!(id.timestamp_ms(), 1_700_000_000_000);
/// let text = id.to_string(); // 26-character Crockford base32, as every ULID
/// assert_eq!(text.parse::<MsgId>().unwrap(), id);
/// assert_eq!(MsgId::try_from(candid::Nat::from(id)).unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MsgId(pub u128);

impl MsgId {
    /// Builds an identifier from a millisecond timestamp (only its low 48
    /// bits are kept) and 80 random bits (higher bits are ignored).
    ///
    /// ```
    /// # use async_flow_client::MsgId;
    /// assert_eq!(MsgId::from_parts(1, 2).0, (1u128 << 80) | 2);
    /// ```
    pub const fn from_parts(timestamp_ms: u64, random: u128) -> Self {
        Self(ulid::Ulid::from_parts(timestamp_ms, random).0)
    }

    /// The creation time in milliseconds since the Unix epoch.
    ///
    /// ```
    /// # use async_flow_client::MsgId;
    /// assert_eq!(MsgId::from_parts(7, 0).timestamp_ms(), 7);
    /// ```
    pub const fn timestamp_ms(self) -> u64 {
        ulid::Ulid(self.0).timestamp_ms()
    }

    /// The identifier as a `ulid::Ulid`.
    ///
    /// ```
    /// # use async_flow_client::MsgId;
    /// assert_eq!(MsgId(5).to_ulid().0, 5);
    /// ```
    pub const fn to_ulid(self) -> ulid::Ulid {
        ulid::Ulid(self.0)
    }
}

impl From<u128> for MsgId {
    fn from(value: u128) -> Self {
        Self(value)
    }
}

impl From<MsgId> for u128 {
    fn from(value: MsgId) -> Self {
        value.0
    }
}

impl From<ulid::Ulid> for MsgId {
    fn from(value: ulid::Ulid) -> Self {
        Self(value.0)
    }
}

impl From<MsgId> for Nat {
    fn from(value: MsgId) -> Self {
        Nat::from(value.0)
    }
}

/// The error for a `nat` or a text that is not a valid [`MsgId`].
///
/// ```
/// # use async_flow_client::{MsgId, InvalidMsgId};
/// assert_eq!("not a ulid".parse::<MsgId>(), Err(InvalidMsgId));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidMsgId;

impl fmt::Display for InvalidMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a valid message id: expected a ULID (a nat below 2^128, or 26 characters of Crockford base32)")
    }
}

impl std::error::Error for InvalidMsgId {}

impl TryFrom<Nat> for MsgId {
    type Error = InvalidMsgId;
    fn try_from(value: Nat) -> Result<Self, Self::Error> {
        MsgId::try_from(&value)
    }
}

impl TryFrom<&Nat> for MsgId {
    type Error = InvalidMsgId;
    fn try_from(value: &Nat) -> Result<Self, Self::Error> {
        u128::try_from(&value.0).map(MsgId).map_err(|_| InvalidMsgId)
    }
}

impl FromStr for MsgId {
    type Err = InvalidMsgId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(MsgId::from).map_err(|_| InvalidMsgId)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ulid().to_string())
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({self})")
    }
}

impl CandidType for MsgId {
    fn _ty() -> Type {
        TypeInner::Nat.into()
    }
    fn idl_serialize<S: Serializer>(&self, serializer: S) -> Result<(), S::Error> {
        serializer.serialize_nat(&Nat::from(self.0))
    }
}

impl<'de> Deserialize<'de> for MsgId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let nat = Nat::deserialize(deserializer)?;
        MsgId::try_from(&nat).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for MsgId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Nat::from(self.0).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{decode_one, encode_one};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn should_round_trip_through_nat_text_and_candid(raw in any::<u128>()) {
            let id = MsgId(raw);
            prop_assert_eq!(MsgId::try_from(Nat::from(id)).unwrap(), id);
            prop_assert_eq!(id.to_string().parse::<MsgId>().unwrap(), id);
            let bytes = encode_one(id).unwrap();
            prop_assert_eq!(decode_one::<MsgId>(&bytes).unwrap(), id);
            // It is a plain nat on the wire.
            prop_assert_eq!(decode_one::<Nat>(&bytes).unwrap(), Nat::from(raw));
        }
    }

    #[test]
    fn should_reject_nat_above_u128() {
        let too_big = Nat::from(u128::MAX) + Nat::from(1u8);
        assert_eq!(MsgId::try_from(&too_big), Err(InvalidMsgId));
        let bytes = encode_one(too_big).unwrap();
        assert!(decode_one::<MsgId>(&bytes).is_err());
    }

    #[test]
    fn should_sort_by_creation_time() {
        let earlier = MsgId::from_parts(1_000, u128::MAX);
        let later = MsgId::from_parts(1_001, 0);
        assert!(earlier < later);
    }
}
