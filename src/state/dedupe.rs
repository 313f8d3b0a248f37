//! The dedupe window: 64-bit fingerprints of an instance's most recent
//! eventIds.
//!
//! The engine clones an instance's state for every event it decides, so the
//! window is a fixed array of `u64`s held inline: cloning it is a plain copy
//! with no allocation, where a window of eventId strings cost one allocation
//! per id. It also stores in a third of the space of the UUID eventIds it
//! replaces (16 hex digits per entry, see [`super::codec`]).
//!
//! # The fingerprint
//!
//! [`fingerprint`] is persisted (every stored instance holds up to
//! [`DEDUPE_WINDOW`] of them), so it must give the same value in every
//! process, build, platform and Rust release: std's `DefaultHasher` and
//! `RandomState` promise none of that. It is FNV-1a 64 over the UTF-8 bytes
//! followed by MurmurHash3's 64-bit finalizer (`fmix64`), both fixed,
//! published algorithms written out here; `tests::pinned_outputs` pins
//! values so that a change cannot go unnoticed. Changing it would need a
//! new [`FORMAT_VERSION`](super::FORMAT_VERSION) and a migration — old
//! fingerprints cannot be recomputed from the ids they came from.
//!
//! # Collisions
//!
//! A collision matters only when a *new* eventId has the fingerprint of one
//! of the at most 32 ids its own instance remembers: the event would be
//! skipped as a duplicate. Taking the fingerprints as uniformly
//! distributed, that is at most 32 / 2^64 ≈ 1.7e-18 per event — below
//! 2e-6 over a trillion events. Both steps are bijections on the running
//! 64-bit state (xor with a byte, multiplication by the odd FNV prime, and
//! each step of `fmix64`), so two ids of the same length that differ in a
//! single byte — sequence numbers, derived `topic-partition-offset` ids —
//! never collide; the finalizer spreads FNV's weak high bits over the word.
//! The hash is not keyed: someone who can write arbitrary events to the
//! topic could craft an id colliding with a known one, but can already send
//! any transition; eventIds come from the workflow engine, not from users.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::DEDUPE_WINDOW;

/// The stable 64-bit fingerprint of an eventId (see the module doc).
pub const fn fingerprint(event_id: &str) -> u64 {
    fmix64(fnv1a64(event_id.as_bytes()))
}

/// FNV-1a, 64-bit (Fowler, Noll, Vo; offset basis and prime as published).
const fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(PRIME);
        i += 1;
    }
    h
}

/// MurmurHash3's 64-bit finalizer (Appleby): a bijection that makes every
/// input bit affect every output bit.
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Fingerprints of the most recent eventIds, oldest first, at most
/// [`DEDUPE_WINDOW`].
///
/// Held inline (no heap), so cloning is a copy. Serialized as a JSON array
/// of 16-digit lowercase hex strings — not numbers, which JSON tools (jq,
/// JavaScript) round above 2^53.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DedupeWindow {
    /// `ids[..len]` are the entries, oldest first; `ids[len..]` stay zero so
    /// the derived equality compares entries only.
    ids: [u64; DEDUPE_WINDOW],
    len: u8,
}

const _: () = assert!(
    DEDUPE_WINDOW <= u8::MAX as usize,
    "the window length must fit a u8"
);

impl DedupeWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            ids: [0; DEDUPE_WINDOW],
            len: 0,
        }
    }

    /// The fingerprints, oldest first.
    pub fn as_slice(&self) -> &[u64] {
        &self.ids[..usize::from(self.len)]
    }

    /// How many fingerprints the window holds.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the window holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `fingerprint` is in the window.
    pub fn contains(&self, fingerprint: u64) -> bool {
        self.as_slice().contains(&fingerprint)
    }

    /// Appends `fingerprint`, forgetting the oldest when the window is full.
    pub fn push(&mut self, fingerprint: u64) {
        let len = usize::from(self.len);
        if len < DEDUPE_WINDOW {
            self.ids[len] = fingerprint;
            self.len += 1;
        } else {
            self.ids.copy_within(1.., 0);
            self.ids[DEDUPE_WINDOW - 1] = fingerprint;
        }
    }
}

impl Default for DedupeWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DedupeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.as_slice().iter().map(|fp| Hex(*fp)))
            .finish()
    }
}

/// Debug-prints a fingerprint as it is stored.
struct Hex(u64);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(encode_hex(self.0, &mut [0; 16]))
    }
}

/// `fp` as 16 lowercase hex digits, written into `buf` (no allocation).
fn encode_hex(fp: u64, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((fp >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}

/// Exactly 16 lowercase hex digits back to the fingerprint.
fn decode_hex(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

impl Serialize for DedupeWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        let mut buf = [0u8; 16];
        for fp in self.as_slice() {
            seq.serialize_element(encode_hex(*fp, &mut buf))?;
        }
        seq.end()
    }
}

/// One serialized fingerprint (accepts borrowed and owned strings alike).
struct Fingerprint(u64);

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Fingerprint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an eventId fingerprint: 16 lowercase hex digits")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Fingerprint, E> {
                decode_hex(s)
                    .map(Fingerprint)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for DedupeWindow {
    /// Reads what [`Serialize`] wrote; of a longer list (a writer with a
    /// larger window) the newest [`DEDUPE_WINDOW`] are kept, as
    /// [`DedupeWindow::push`] would.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DedupeWindow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of eventId fingerprints")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DedupeWindow, A::Error> {
                let mut window = DedupeWindow::new();
                while let Some(Fingerprint(fp)) = seq.next_element()? {
                    window.push(fp);
                }
                Ok(window)
            }
        }
        deserializer.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv, fnv-1a 64).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// The fingerprint is stored: these values must never change. (They
    /// were computed with an independent implementation of FNV-1a 64 +
    /// fmix64, not with this one.)
    #[test]
    fn pinned_outputs() {
        assert_eq!(fingerprint(""), 0xefd0_1f60_ba99_2926);
        assert_eq!(fingerprint("e-1001"), 0xa3fe_a203_f291_e145);
        assert_eq!(
            fingerprint("0c4bd3b0-7d3c-4f5e-9a1b-5b1f0e9c2d11"),
            0xdbaf_df1d_2fed_39ca
        );
        // Non-ASCII ids hash their UTF-8 bytes.
        assert_eq!(fingerprint("事件-1"), 0x3d00_7226_0256_7728);
        // Usable in constants.
        const AT_COMPILE_TIME: u64 = fingerprint("e-1001");
        assert_eq!(AT_COMPILE_TIME, 0xa3fe_a203_f291_e145);
    }

    #[test]
    fn the_window_keeps_the_newest_in_order() {
        let mut w = DedupeWindow::new();
        assert!(w.is_empty());
        for i in 0..40u64 {
            w.push(i + 1);
        }
        assert_eq!(w.len(), DEDUPE_WINDOW);
        let want: Vec<u64> = (9..=40).collect();
        assert_eq!(w.as_slice(), &want[..]);
        assert!(w.contains(40) && w.contains(9) && !w.contains(8));
    }

    #[test]
    fn equality_compares_entries_only() {
        let mut a = DedupeWindow::new();
        let mut b = DedupeWindow::new();
        for i in 0..DEDUPE_WINDOW as u64 + 3 {
            a.push(i);
        }
        for i in 3..DEDUPE_WINDOW as u64 + 3 {
            b.push(i);
        }
        assert_eq!(a, b);
        b.push(99);
        assert_ne!(a, b);
        assert_ne!(DedupeWindow::new(), {
            let mut z = DedupeWindow::new();
            z.push(0);
            z
        });
    }

    #[test]
    fn serializes_as_lowercase_hex_strings() {
        let mut w = DedupeWindow::new();
        w.push(0);
        w.push(0x0123_4567_89ab_cdef);
        w.push(u64::MAX);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"["0000000000000000","0123456789abcdef","ffffffffffffffff"]"#
        );
        assert_eq!(serde_json::from_str::<DedupeWindow>(&json).unwrap(), w);
        // Owned strings (a serde_json::Value) read the same.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<DedupeWindow>(value).unwrap(), w);
        assert_eq!(
            format!("{w:?}"),
            "[0000000000000000, 0123456789abcdef, ffffffffffffffff]"
        );
    }

    #[test]
    fn rejects_anything_but_16_lowercase_hex_digits() {
        for bad in [
            r#"["0123456789ABCDEF"]"#,
            r#"["123456789abcdef"]"#,
            r#"["00123456789abcdef"]"#,
            r#"["+123456789abcdef"]"#,
            r#"["e-1"]"#,
            r#"[81985529216486895]"#,
            r#""0123456789abcdef""#,
        ] {
            assert!(serde_json::from_str::<DedupeWindow>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_longer_list_keeps_the_newest() {
        let ids: Vec<String> = (0..DEDUPE_WINDOW as u64 + 2)
            .map(|i| format!("{i:016x}"))
            .collect();
        let w: DedupeWindow = serde_json::from_value(serde_json::json!(ids)).unwrap();
        assert_eq!(w.len(), DEDUPE_WINDOW);
        assert_eq!(w.as_slice()[0], 2);
    }
}
