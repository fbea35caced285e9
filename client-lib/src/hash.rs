//! The payload hash of the protocol.

use sha2::{Digest, Sha256};

/// The protocol's payload hash: the first four bytes of SHA-256(payload),
/// read as a big-endian `u32`.
///
/// The receiver puts the hash of the NEW payload *as it received it* into
/// its ACK; the broker compares it with the hash of what it sent.
///
/// ```
/// use async_flow_client::payload_hash;
/// // SHA-256("") = e3b0c442...
/// assert_eq!(payload_hash(b""), 0xe3b0_c442);
/// ```
pub fn payload_hash(payload: &[u8]) -> u32 {
    let digest = Sha256::digest(payload);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_match_known_sha256_prefixes() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(payload_hash(b"abc"), 0xba78_16bf);
        assert_ne!(payload_hash(b"abc"), payload_hash(b"abd"));
    }
}
