//! Byte formats of the client's stable records.
//!
//! Every record is fixed-size and big-endian, so keys sort like their fields
//! and a record never moves when it changes. Principals take one length byte
//! and 29 bytes, zero-padded (the broker's format). The golden tests beside
//! each type freeze the formats: a failing golden test means existing stable
//! memory would become unreadable, so add a new type instead of editing one.

use candid::Principal;
use ic_stable_structures::storable::Bound;
use ic_stable_structures::Storable;
use std::borrow::Cow;

pub(crate) const PRINCIPAL_MAX: usize = 29;
pub(crate) const PRINCIPAL_BYTES: usize = 1 + PRINCIPAL_MAX;

/// Writes fixed-layout records; [`Reader`] mirrors it.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u128(mut self, v: u128) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn principal(mut self, p: &Principal) -> Self {
        let raw = p.as_slice();
        self.0.push(raw.len() as u8);
        self.0.extend_from_slice(raw);
        self.0.resize(self.0.len() + (PRINCIPAL_MAX - raw.len()), 0);
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at returned N bytes")
    }
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    pub fn u128(&mut self) -> u128 {
        u128::from_be_bytes(self.take())
    }
    pub fn principal(&mut self) -> Principal {
        let len = self.u8() as usize;
        let raw: [u8; PRINCIPAL_MAX] = self.take();
        Principal::from_slice(&raw[..len.min(PRINCIPAL_MAX)])
    }
}

/// Implements a fixed-size `Storable` from an encoder and a decoder.
macro_rules! fixed_storable {
    ($ty:ty, $size:expr, |$s:ident| $encode:expr, |$r:ident| $decode:expr) => {
        impl ic_stable_structures::Storable for $ty {
            fn to_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
                let $s = self;
                std::borrow::Cow::Owned($encode)
            }
            fn into_bytes(self) -> Vec<u8> {
                let $s = &self;
                $encode
            }
            fn from_bytes(bytes: std::borrow::Cow<[u8]>) -> Self {
                let mut $r = $crate::storage::Reader::new(bytes.as_ref());
                $decode
            }
            const BOUND: ic_stable_structures::storable::Bound =
                ic_stable_structures::storable::Bound::Bounded { max_size: $size, is_fixed_size: true };
        }
    };
}
pub(crate) use fixed_storable;

/// An opaque byte string (a cached reply). Unbounded: its size is whatever
/// the application's handler returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Blob(pub Vec<u8>);

impl Storable for Blob {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        Blob(bytes.into_owned())
    }
    const BOUND: Bound = Bound::Unbounded;
}

#[cfg(test)]
pub(crate) mod golden {
    //! Helpers of the golden-bytes tests.
    use super::*;

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `ryjl3-tyaaa-aaaaa-aaaba-cai`, whose raw bytes are `00000000000000020101`.
    pub fn principal() -> Principal {
        Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap()
    }

    /// The encoding of [`principal`]: length byte, 10 bytes, 19 zero bytes.
    pub fn principal_hex() -> String {
        format!("0a00000000000000020101{}", "00".repeat(19))
    }

    pub fn assert_golden<T: Storable + PartialEq + std::fmt::Debug + Clone>(value: T, expected_hex: &str) {
        let bytes = value.to_bytes().into_owned();
        assert_eq!(hex(&bytes), expected_hex, "format of {value:?} changed");
        assert_eq!(T::from_bytes(Cow::Owned(bytes.clone())), value);
        if let Bound::Bounded { max_size, is_fixed_size } = T::BOUND {
            assert!(bytes.len() as u32 <= max_size);
            if is_fixed_size {
                assert_eq!(bytes.len() as u32, max_size);
            }
        }
        assert_eq!(value.into_bytes(), bytes);
    }

    #[test]
    fn should_keep_the_blob_format() {
        assert_golden(Blob(vec![1, 2, 3]), "010203");
    }

    #[test]
    fn should_order_encoded_principals_like_principals_of_equal_length() {
        let a = Writer::with_capacity(30).principal(&Principal::from_slice(&[1, 2])).finish();
        let b = Writer::with_capacity(30).principal(&Principal::from_slice(&[1, 3])).finish();
        assert!(a < b);
        assert_eq!(Reader::new(&a).principal(), Principal::from_slice(&[1, 2]));
    }
}
