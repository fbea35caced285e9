//! Byte formats of stable records, shared by the client's stores and the broker.
//!
//! Every record is fixed-size and big-endian, so a record never moves when it
//! changes. Principals take one length byte and 29 bytes, zero-padded. The golden tests beside
//! each type freeze the formats: a failing golden test means existing stable
//! memory would become unreadable, so add a new type instead of editing one.

use candid::Principal;
pub use ic_stable_structures::storable::Bound;
pub use ic_stable_structures::Storable;
use std::borrow::Cow;

/// Longest principal, in bytes.
///
/// ```
/// assert_eq!(async_flow_client::storage::PRINCIPAL_MAX, 29);
/// ```
pub const PRINCIPAL_MAX: usize = 29;

/// A stored principal: one length byte and [`PRINCIPAL_MAX`] bytes, zero-padded.
///
/// ```
/// assert_eq!(async_flow_client::storage::PRINCIPAL_BYTES, 30);
/// ```
pub const PRINCIPAL_BYTES: usize = 1 + PRINCIPAL_MAX;

/// Writes a fixed-layout, big-endian record; [`Reader`] reads it back in the same order.
///
/// ```
/// use async_flow_client::storage::{Reader, Writer};
/// let p = candid::Principal::from_slice(&[1, 2, 3]);
/// let bytes = Writer::with_capacity(64)
///     .u8(1).u32(2).u64(3).u128(4).bytes(&[5, 6]).principal(&p)
///     .finish();
/// assert_eq!(bytes.len(), 1 + 4 + 8 + 16 + 2 + 30);
/// let mut r = Reader::new(&bytes);
/// assert_eq!((r.u8(), r.u32(), r.u64(), r.u128()), (1, 2, 3, 4));
/// assert_eq!(r.array::<2>(), [5, 6]);
/// assert_eq!(r.principal(), p);
/// ```
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty record with room for `n` bytes.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert!(Writer::with_capacity(8).finish().is_empty());
    /// ```
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    /// Appends one byte.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(1).u8(7).finish(), [7]);
    /// ```
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    /// Appends a big-endian `u32`.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(4).u32(1).finish(), [0, 0, 0, 1]);
    /// ```
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian `u64`.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(8).u64(1).finish()[7], 1);
    /// ```
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian `u128`.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(16).u128(1).finish()[15], 1);
    /// ```
    pub fn u128(mut self, v: u128) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends raw bytes (of a length fixed by the format).
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(2).bytes(&[1, 2]).finish(), [1, 2]);
    /// ```
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    /// Appends a principal as [`PRINCIPAL_BYTES`] bytes.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// let bytes = Writer::with_capacity(30).principal(&candid::Principal::from_slice(&[9])).finish();
    /// assert_eq!((bytes.len(), bytes[0], bytes[1]), (30, 1, 9));
    /// ```
    pub fn principal(mut self, p: &Principal) -> Self {
        let raw = p.as_slice();
        self.0.push(raw.len() as u8);
        self.0.extend_from_slice(raw);
        self.0.resize(self.0.len() + (PRINCIPAL_MAX - raw.len()), 0);
        self
    }
    /// The encoded record.
    ///
    /// ```
    /// # use async_flow_client::storage::Writer;
    /// assert_eq!(Writer::with_capacity(1).u8(1).finish(), vec![1]);
    /// ```
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads what a [`Writer`] wrote, field by field. It panics on a short
/// record: stored bytes always have their type's fixed size.
///
/// ```
/// use async_flow_client::storage::Reader;
/// let mut r = Reader::new(&[0, 0, 0, 5, 9]);
/// assert_eq!((r.u32(), r.u8()), (5, 9));
/// ```
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Starts at the first byte of `bytes`.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&[3]).u8(), 3);
    /// ```
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at returned N bytes")
    }
    /// One byte.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&[3]).u8(), 3);
    /// ```
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    /// A big-endian `u32`.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&[0, 0, 1, 0]).u32(), 256);
    /// ```
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    /// A big-endian `u64`.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&[0, 0, 0, 0, 0, 0, 0, 2]).u64(), 2);
    /// ```
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    /// A big-endian `u128`.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&1u128.to_be_bytes()).u128(), 1);
    /// ```
    pub fn u128(&mut self) -> u128 {
        u128::from_be_bytes(self.take())
    }
    /// `N` raw bytes.
    ///
    /// ```
    /// # use async_flow_client::storage::Reader;
    /// assert_eq!(Reader::new(&[1, 2, 3]).array::<2>(), [1, 2]);
    /// ```
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take()
    }
    /// A principal written by [`Writer::principal`].
    ///
    /// ```
    /// # use async_flow_client::storage::{Reader, Writer};
    /// let p = candid::Principal::anonymous();
    /// assert_eq!(Reader::new(&Writer::with_capacity(30).principal(&p).finish()).principal(), p);
    /// ```
    pub fn principal(&mut self) -> Principal {
        let len = self.u8() as usize;
        let raw: [u8; PRINCIPAL_MAX] = self.take();
        Principal::from_slice(&raw[..len.min(PRINCIPAL_MAX)])
    }
}

/// Implements a fixed-size [`Storable`] from an encoder (over `&Self`) and a
/// decoder (over a [`Reader`]); `$size` is the exact encoded size.
///
/// ```
/// use async_flow_client::fixed_storable;
/// use async_flow_client::storage::{Storable, Writer};
///
/// #[derive(Debug, PartialEq)]
/// struct Pair(u32, u64);
/// fixed_storable!(Pair, 12, |s| Writer::with_capacity(12).u32(s.0).u64(s.1).finish(), |r| Pair(r.u32(), r.u64()));
///
/// let bytes = Pair(1, 2).to_bytes().into_owned();
/// assert_eq!(Pair::from_bytes(bytes.into()), Pair(1, 2));
/// ```
#[macro_export]
macro_rules! fixed_storable {
    ($ty:ty, $size:expr, |$s:ident| $encode:expr, |$r:ident| $decode:expr) => {
        impl $crate::storage::Storable for $ty {
            fn to_bytes(&self) -> ::std::borrow::Cow<'_, [u8]> {
                let $s = self;
                ::std::borrow::Cow::Owned($encode)
            }
            fn into_bytes(self) -> Vec<u8> {
                let $s = &self;
                $encode
            }
            fn from_bytes(bytes: ::std::borrow::Cow<[u8]>) -> Self {
                let mut $r = $crate::storage::Reader::new(bytes.as_ref());
                $decode
            }
            const BOUND: $crate::storage::Bound =
                $crate::storage::Bound::Bounded { max_size: $size, is_fixed_size: true };
        }
    };
}

/// An opaque, unbounded byte string (a payload or a cached reply).
///
/// ```
/// use async_flow_client::storage::{Blob, Storable};
/// assert_eq!(Blob(vec![1, 2]).to_bytes().as_ref(), &[1, 2]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

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

/// Golden-bytes check: `value` encodes to `expected_hex`, decodes back, and
/// respects its declared [`Bound`]. A failing check means stored data would
/// no longer read back: add a new format version instead of editing one.
///
/// ```
/// use async_flow_client::storage::{assert_golden, Blob};
/// assert_golden(Blob(vec![0xab]), "ab");
/// ```
pub fn assert_golden<T: Storable + PartialEq + std::fmt::Debug + Clone>(value: T, expected_hex: &str) {
    let bytes = value.to_bytes().into_owned();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected_hex, "format of {value:?} changed");
    assert_eq!(T::from_bytes(Cow::Owned(bytes.clone())), value);
    if let Bound::Bounded { max_size, is_fixed_size } = T::BOUND {
        assert!(bytes.len() as u32 <= max_size);
        if is_fixed_size {
            assert_eq!(bytes.len() as u32, max_size);
        }
    }
    assert_eq!(value.into_bytes(), bytes);
}

#[cfg(test)]
pub(crate) mod golden {
    //! Helpers of the golden-bytes tests.
    use super::*;

    /// `ryjl3-tyaaa-aaaaa-aaaba-cai`, whose raw bytes are `00000000000000020101`.
    pub fn principal() -> Principal {
        Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap()
    }

    /// The encoding of [`principal`]: length byte, 10 bytes, 19 zero bytes.
    pub fn principal_hex() -> String {
        format!("0a00000000000000020101{}", "00".repeat(19))
    }

    pub use super::assert_golden;

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
