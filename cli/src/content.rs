//! Deterministic page content: what the demo writes, and what it expects to read back.
//!
//! A page's content is a pure function of `(partition, index, version)`, so the demo never keeps
//! page copies: per page it remembers only the last [`Version`] (see `demo::reference`).
//!
//! Payload layout of `fill(partition, index, version)` (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | `[0, 4)` | magic `DSDM` |
//! | `[4, 8)` | partition |
//! | `[8, 12)` | page index |
//! | `[12, 20)` | version (0: the build phase's content; else writer and sequence number) |
//! | `[20, ..)` | a SplitMix64 stream seeded from the three fields above |
//!
//! The build phase writes the whole payload of `fill(p, i, INITIAL)`. A load write of version
//! `v` writes only the first `write_bytes` of `fill(p, i, v)`, the header included. Every write
//! covers the same range, so the page depends only on the last version written:
//! `expected(p, i, v) = fill(p, i, v)[..write_bytes] ++ fill(p, i, INITIAL)[write_bytes..]`.

use std::fmt;

use deltasnap::PageId;

/// Bytes of the header at the start of every page (and of every write).
pub const HEADER_BYTES: usize = 20;
const MAGIC: [u8; 4] = *b"DSDM";
/// Sequence numbers fit in the low 48 bits of a version; the writer takes the high 16.
const SEQ_BITS: u32 = 48;

/// Which write made a page's content: the build phase ([`Version::INITIAL`]) or writer `w`'s
/// write number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    pub const INITIAL: Version = Version(0);

    pub fn new(writer: u16, seq: u64) -> Version {
        assert!(writer < u16::MAX, "writer {writer} does not fit a version");
        assert!(seq < 1 << SEQ_BITS, "sequence number {seq} does not fit");
        Version(((writer as u64 + 1) << SEQ_BITS) | seq)
    }

    /// The writer and its sequence number; `None` for the initial content.
    pub fn writer_seq(self) -> Option<(u16, u64)> {
        let writer = self.0 >> SEQ_BITS;
        (writer != 0).then(|| ((writer - 1) as u16, self.0 & ((1 << SEQ_BITS) - 1)))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.writer_seq() {
            None => write!(f, "initial content"),
            Some((writer, seq)) => write!(f, "writer {writer} write #{seq}"),
        }
    }
}

/// What a page header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub page: PageId,
    pub version: Version,
}

impl Header {
    /// Reads the header at the start of `payload`; `None` if the magic is not there.
    pub fn decode(payload: &[u8]) -> Option<Header> {
        let header = payload.get(..HEADER_BYTES)?;
        if header[0..4] != MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        Some(Header {
            page: PageId::new(deltasnap::PartitionId(u32_at(4)), u32_at(8)),
            version: Version(u64::from_le_bytes(header[12..20].try_into().unwrap())),
        })
    }
}

/// SplitMix64: tiny, fast, and good enough for content and for picking pages; every stream is
/// reproducible from its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (Lemire's multiply-shift; the bias is below 2^-32 for the bounds
    /// the demo uses).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// Fills `out` with the first `out.len()` bytes of `fill(page, version)` (see the module doc).
pub fn fill(page: PageId, version: Version, out: &mut [u8]) {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&page.partition.0.to_le_bytes());
    header[8..12].copy_from_slice(&page.index.to_le_bytes());
    header[12..20].copy_from_slice(&version.0.to_le_bytes());
    let header_len = out.len().min(HEADER_BYTES);
    out[..header_len].copy_from_slice(&header[..header_len]);
    let mix = |value: u64| SplitMix64::new(value).next_u64();
    let seed = mix(mix(mix(page.partition.0 as u64) ^ page.index as u64) ^ version.0);
    let mut stream = SplitMix64::new(seed);
    for chunk in out[header_len..].chunks_mut(8) {
        let word = stream.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Fills `payload` with what page `page` holds after `version` was its last write, for load
/// writes of `write_bytes` (see the module doc).
pub fn expected(page: PageId, version: Version, write_bytes: usize, payload: &mut [u8]) {
    fill(page, Version::INITIAL, payload);
    if version != Version::INITIAL {
        fill(page, version, &mut payload[..write_bytes]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltasnap::PartitionId;

    const PAGE: PageId = PageId::new(PartitionId(3), 77);

    #[test]
    fn versions_round_trip() {
        assert_eq!(Version::INITIAL.writer_seq(), None);
        assert_eq!(Version::new(0, 0).writer_seq(), Some((0, 0)));
        assert_eq!(Version::new(7, 123_456).writer_seq(), Some((7, 123_456)));
        assert_ne!(Version::new(0, 0), Version::INITIAL);
    }

    #[test]
    fn content_is_deterministic_and_distinct() {
        let mut a = vec![0u8; 4000];
        let mut b = vec![0u8; 4000];
        fill(PAGE, Version::new(1, 5), &mut a);
        fill(PAGE, Version::new(1, 5), &mut b);
        assert_eq!(a, b);
        fill(PAGE, Version::new(1, 6), &mut b);
        assert_ne!(a[HEADER_BYTES..], b[HEADER_BYTES..]);
        fill(PageId::new(PartitionId(3), 78), Version::new(1, 5), &mut b);
        assert_ne!(a[HEADER_BYTES..], b[HEADER_BYTES..]);
    }

    #[test]
    fn a_prefix_is_the_prefix_of_the_whole() {
        let mut whole = vec![0u8; 4000];
        let mut prefix = vec![0u8; 131];
        fill(PAGE, Version::new(2, 9), &mut whole);
        fill(PAGE, Version::new(2, 9), &mut prefix);
        assert_eq!(whole[..131], prefix[..]);
    }

    #[test]
    fn expected_is_the_last_write_over_the_initial_content() {
        let mut page = vec![0u8; 4000];
        fill(PAGE, Version::INITIAL, &mut page);
        let version = Version::new(0, 42);
        let mut write = vec![0u8; 128];
        fill(PAGE, version, &mut write);
        page[..128].copy_from_slice(&write);
        let mut expect = vec![0u8; 4000];
        expected(PAGE, version, 128, &mut expect);
        assert_eq!(page, expect);
        let header = Header::decode(&page).unwrap();
        assert_eq!(header.page, PAGE);
        assert_eq!(header.version, version);
        assert_eq!(Header::decode(&[0u8; 64]), None);
    }
}
