//! Redo records: their bodies (`engine/docs/format.md` §3.2) and the length + crc frame around
//! each body (§3.1).
//!
//! Encoding is infallible for a record that passed [`Record::validate`]; decoding never panics on
//! any bytes: a body that does not parse is a `String` reason that the segment reader turns into
//! an error naming the segment and the LSN.

use crate::error::{Error, Result};
use crate::format::{payload_size, Reader};
use crate::types::{Epoch, PageId, PartitionId};

/// Frame: `len: u32`, then `crc: u32` over `len` and the body.
pub(crate) const FRAME_LEN_OFFSET: usize = 0;
pub(crate) const FRAME_LEN_SIZE: usize = 4;
pub(crate) const FRAME_CRC_OFFSET: usize = FRAME_LEN_OFFSET + FRAME_LEN_SIZE;
pub(crate) const FRAME_CRC_SIZE: usize = 4;
pub(crate) const FRAME_HEADER_SIZE: usize = FRAME_CRC_OFFSET + FRAME_CRC_SIZE;

/// The largest body a frame may carry (format.md §3.1). A `len` above it, or 0, ends the log.
pub const RECORD_BODY_BYTES_MAX: usize = 16 << 20;

/// Every body starts with `kind: u8, epoch: u64`.
const KIND_SIZE: usize = 1;
const EPOCH_SIZE: usize = 8;
const BODY_PREFIX_SIZE: usize = KIND_SIZE + EPOCH_SIZE;
const U32_SIZE: usize = 4;

const KIND_PAGE_IMAGE: u8 = 1;
const KIND_PAGE_DELTA: u8 = 2;
const KIND_ALLOCATE: u8 = 3;
const KIND_CREATE_PARTITION: u8 = 4;
const KIND_DROP_PARTITION: u8 = 5;
const KIND_METADATA_PUT: u8 = 6;

/// One redo record. Replay is physical and idempotent (format.md §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The full payload of a page: the first write to the page in `epoch` (torn-page protection).
    /// `payload` is exactly `page_size - 16` bytes.
    PageImage {
        epoch: Epoch,
        page: PageId,
        payload: Vec<u8>,
    },
    /// A later write to the page in the same epoch: `bytes` at `offset` of the payload.
    PageDelta {
        epoch: Epoch,
        page: PageId,
        offset: u32,
        bytes: Vec<u8>,
    },
    /// The partition's logical page count after an allocation.
    Allocate {
        epoch: Epoch,
        partition: PartitionId,
        page_count: u32,
    },
    CreatePartition {
        epoch: Epoch,
        partition: PartitionId,
    },
    DropPartition {
        epoch: Epoch,
        partition: PartitionId,
    },
    /// Sets (`Some`) or deletes (`None`) a metadata entry.
    MetadataPut {
        epoch: Epoch,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

impl Record {
    /// The epoch of the writer that logged this record.
    pub fn epoch(&self) -> Epoch {
        match self {
            Record::PageImage { epoch, .. }
            | Record::PageDelta { epoch, .. }
            | Record::Allocate { epoch, .. }
            | Record::CreatePartition { epoch, .. }
            | Record::DropPartition { epoch, .. }
            | Record::MetadataPut { epoch, .. } => *epoch,
        }
    }

    /// Bytes of the body (§3.2), without the frame.
    fn body_len(&self) -> usize {
        BODY_PREFIX_SIZE
            + match self {
                Record::PageImage { payload, .. } => 2 * U32_SIZE + payload.len(),
                Record::PageDelta { bytes, .. } => 4 * U32_SIZE + bytes.len(),
                Record::Allocate { .. } => 2 * U32_SIZE,
                Record::CreatePartition { .. } | Record::DropPartition { .. } => U32_SIZE,
                Record::MetadataPut { key, value, .. } => {
                    U32_SIZE + key.len() + 1 + U32_SIZE + value.as_ref().map_or(0, Vec::len)
                }
            }
    }

    /// Bytes this record takes in the log, frame included.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_SIZE + self.body_len()
    }

    /// Checks that the record can be logged for a store of `page_size`: a page image is exactly
    /// one payload, a delta lies inside the payload, and the body fits a frame.
    pub fn validate(&self, page_size: u32) -> Result<()> {
        let payload_size = payload_size(page_size as usize);
        match self {
            Record::PageImage { page, payload, .. } if payload.len() != payload_size => {
                return Err(Error::InvalidArgument(format!(
                    "page image of {page} has {} bytes, the page payload is {payload_size}",
                    payload.len()
                )));
            }
            Record::PageDelta { offset, bytes, .. }
                if (*offset as usize).saturating_add(bytes.len()) > payload_size =>
            {
                return Err(Error::OutOfPage {
                    offset: *offset as usize,
                    len: bytes.len(),
                    payload_size,
                });
            }
            _ => {}
        }
        let body_len = self.body_len();
        if body_len > RECORD_BODY_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "redo record body of {body_len} bytes exceeds the limit of {RECORD_BODY_BYTES_MAX}"
            )));
        }
        Ok(())
    }

    /// Appends the framed record (`len`, `crc`, body) to `out`.
    ///
    /// # Panics
    /// If the body exceeds [`RECORD_BODY_BYTES_MAX`]: [`Record::validate`] rejects such records,
    /// and `Wal::append` calls it first, so this is a caller bug.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let body_len = self.body_len();
        assert!(
            body_len <= RECORD_BODY_BYTES_MAX,
            "redo record body of {body_len} bytes exceeds {RECORD_BODY_BYTES_MAX}; validate first"
        );
        // Every length below is at most `body_len`, so the `as u32` casts cannot truncate.
        let frame_start = out.len();
        out.reserve(FRAME_HEADER_SIZE + body_len);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; FRAME_CRC_SIZE]);
        let body_start = out.len();
        match self {
            Record::PageImage {
                epoch,
                page,
                payload,
            } => {
                put_prefix(out, KIND_PAGE_IMAGE, *epoch);
                put_page(out, *page);
                out.extend_from_slice(payload);
            }
            Record::PageDelta {
                epoch,
                page,
                offset,
                bytes,
            } => {
                put_prefix(out, KIND_PAGE_DELTA, *epoch);
                put_page(out, *page);
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Record::Allocate {
                epoch,
                partition,
                page_count,
            } => {
                put_prefix(out, KIND_ALLOCATE, *epoch);
                out.extend_from_slice(&partition.0.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
            }
            Record::CreatePartition { epoch, partition } => {
                put_prefix(out, KIND_CREATE_PARTITION, *epoch);
                out.extend_from_slice(&partition.0.to_le_bytes());
            }
            Record::DropPartition { epoch, partition } => {
                put_prefix(out, KIND_DROP_PARTITION, *epoch);
                out.extend_from_slice(&partition.0.to_le_bytes());
            }
            Record::MetadataPut { epoch, key, value } => {
                put_prefix(out, KIND_METADATA_PUT, *epoch);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                match value {
                    Some(value) => {
                        out.push(1);
                        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                        out.extend_from_slice(value);
                    }
                    None => {
                        out.push(0);
                        out.extend_from_slice(&0u32.to_le_bytes());
                    }
                }
            }
        }
        debug_assert_eq!(
            out.len() - body_start,
            body_len,
            "body_len() disagrees with encode"
        );
        let crc = frame_crc(
            &out[frame_start..frame_start + FRAME_LEN_SIZE],
            &out[body_start..],
        );
        out[frame_start + FRAME_CRC_OFFSET..body_start].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The frame crc: crc32c of the 4 `len` bytes followed by the body.
pub(crate) fn frame_crc(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

fn put_prefix(out: &mut Vec<u8>, kind: u8, epoch: Epoch) {
    out.push(kind);
    out.extend_from_slice(&epoch.to_le_bytes());
}

fn put_page(out: &mut Vec<u8>, page: PageId) {
    out.extend_from_slice(&page.partition.0.to_le_bytes());
    out.extend_from_slice(&page.index.to_le_bytes());
}

/// Decodes a body whose frame crc already matched. Every field is bounds-checked; the body must
/// be consumed exactly.
pub(crate) fn decode_body(body: &[u8], page_size: u32) -> std::result::Result<Record, String> {
    let payload_size = payload_size(page_size as usize);
    let mut reader = Reader::new(body);
    let kind = reader.u8()?;
    let epoch = reader.u64()?;
    let record = match kind {
        KIND_PAGE_IMAGE => {
            let page = read_page(&mut reader)?;
            let payload = reader
                .take(payload_size)
                .map_err(|e| format!("page image payload: {e}"))?
                .to_vec();
            Record::PageImage {
                epoch,
                page,
                payload,
            }
        }
        KIND_PAGE_DELTA => {
            let page = read_page(&mut reader)?;
            let offset = reader.u32()?;
            let len = reader.u32()?;
            if u64::from(offset) + u64::from(len) > payload_size as u64 {
                return Err(format!(
                    "page delta of {len} bytes at offset {offset} runs past the payload of \
                     {payload_size} bytes"
                ));
            }
            let bytes = reader.take(len as usize)?.to_vec();
            Record::PageDelta {
                epoch,
                page,
                offset,
                bytes,
            }
        }
        KIND_ALLOCATE => Record::Allocate {
            epoch,
            partition: PartitionId(reader.u32()?),
            page_count: reader.u32()?,
        },
        KIND_CREATE_PARTITION => Record::CreatePartition {
            epoch,
            partition: PartitionId(reader.u32()?),
        },
        KIND_DROP_PARTITION => Record::DropPartition {
            epoch,
            partition: PartitionId(reader.u32()?),
        },
        KIND_METADATA_PUT => {
            let key_len = reader.u32()?;
            let key = reader.take(key_len as usize)?.to_vec();
            let present = reader.u8()?;
            let value_len = reader.u32()?;
            let value = match present {
                1 => Some(reader.take(value_len as usize)?.to_vec()),
                0 if value_len == 0 => None,
                0 => {
                    return Err(format!(
                        "metadata delete carries value_len {value_len}, not 0"
                    ))
                }
                other => return Err(format!("metadata present flag is {other}, not 0 or 1")),
            };
            Record::MetadataPut { epoch, key, value }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    if reader.remaining() != 0 {
        return Err(format!(
            "{} trailing bytes after a {} byte record body",
            reader.remaining(),
            reader.position()
        ));
    }
    Ok(record)
}

fn read_page(reader: &mut Reader<'_>) -> std::result::Result<PageId, String> {
    Ok(PageId::new(PartitionId(reader.u32()?), reader.u32()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE_SIZE: u32 = 512;

    fn every_kind() -> Vec<Record> {
        let page = PageId::new(PartitionId(3), 9);
        vec![
            Record::PageImage {
                epoch: 1,
                page,
                payload: (0..payload_size(PAGE_SIZE as usize))
                    .map(|i| i as u8)
                    .collect(),
            },
            Record::PageDelta {
                epoch: 2,
                page,
                offset: 17,
                bytes: b"delta".to_vec(),
            },
            Record::Allocate {
                epoch: 3,
                partition: PartitionId(3),
                page_count: 10,
            },
            Record::CreatePartition {
                epoch: 4,
                partition: PartitionId(u32::MAX),
            },
            Record::DropPartition {
                epoch: u64::MAX,
                partition: PartitionId(0),
            },
            Record::MetadataPut {
                epoch: 5,
                key: b"schema".to_vec(),
                value: Some(b"v1".to_vec()),
            },
            Record::MetadataPut {
                epoch: 6,
                key: Vec::new(),
                value: None,
            },
            Record::MetadataPut {
                epoch: 7,
                key: b"k".to_vec(),
                value: Some(Vec::new()),
            },
        ]
    }

    fn split_frame(frame: &[u8]) -> (u32, u32, &[u8]) {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(frame[4..8].try_into().unwrap());
        (len, crc, &frame[FRAME_HEADER_SIZE..])
    }

    #[test]
    fn every_kind_roundtrips_through_its_frame() {
        for record in every_kind() {
            record.validate(PAGE_SIZE).unwrap();
            let mut frame = Vec::new();
            record.encode_into(&mut frame);
            assert_eq!(frame.len(), record.encoded_len());
            let (len, crc, body) = split_frame(&frame);
            assert_eq!(len as usize, body.len());
            assert_eq!(crc, frame_crc(&frame[..4], body));
            assert_eq!(decode_body(body, PAGE_SIZE).unwrap(), record);
        }
    }

    #[test]
    fn body_layout_matches_format_md() {
        let record = Record::PageDelta {
            epoch: 0x0102_0304_0506_0708,
            page: PageId::new(PartitionId(7), 8),
            offset: 9,
            bytes: vec![0xAA, 0xBB],
        };
        let mut frame = Vec::new();
        record.encode_into(&mut frame);
        let body = &frame[FRAME_HEADER_SIZE..];
        #[rustfmt::skip]
        let expected: &[u8] = &[
            2,                                       // kind
            8, 7, 6, 5, 4, 3, 2, 1,                  // epoch
            7, 0, 0, 0, 8, 0, 0, 0,                  // partition, index
            9, 0, 0, 0, 2, 0, 0, 0,                  // offset, len
            0xAA, 0xBB,                              // bytes
        ];
        assert_eq!(body, expected);
        assert_eq!(&frame[..4], &(expected.len() as u32).to_le_bytes());
    }

    #[test]
    fn validate_rejects_wrong_image_size_and_delta_past_payload() {
        let page = PageId::new(PartitionId(1), 0);
        let image = Record::PageImage {
            epoch: 1,
            page,
            payload: vec![0; 10],
        };
        assert!(matches!(
            image.validate(PAGE_SIZE),
            Err(Error::InvalidArgument(_))
        ));
        let delta = Record::PageDelta {
            epoch: 1,
            page,
            offset: payload_size(PAGE_SIZE as usize) as u32 - 1,
            bytes: vec![1, 2],
        };
        assert!(matches!(
            delta.validate(PAGE_SIZE),
            Err(Error::OutOfPage { .. })
        ));
        let huge = Record::MetadataPut {
            epoch: 1,
            key: vec![0; RECORD_BODY_BYTES_MAX],
            value: None,
        };
        assert!(matches!(
            huge.validate(PAGE_SIZE),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn every_truncation_of_every_body_is_an_error() {
        for record in every_kind() {
            let mut frame = Vec::new();
            record.encode_into(&mut frame);
            let body = &frame[FRAME_HEADER_SIZE..];
            for cut in 0..body.len() {
                assert!(
                    decode_body(&body[..cut], PAGE_SIZE).is_err(),
                    "{record:?} cut at {cut}"
                );
            }
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(decode_body(&longer, PAGE_SIZE).is_err());
        }
    }

    #[test]
    fn image_decoded_with_another_page_size_is_an_error() {
        let record = &every_kind()[0];
        let mut frame = Vec::new();
        record.encode_into(&mut frame);
        assert!(decode_body(&frame[FRAME_HEADER_SIZE..], PAGE_SIZE * 2).is_err());
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let payload = payload_size(PAGE_SIZE as usize);
        let page = (any::<u32>(), any::<u32>()).prop_map(|(p, i)| PageId::new(PartitionId(p), i));
        prop_oneof![
            (
                any::<u64>(),
                page.clone(),
                proptest::collection::vec(any::<u8>(), payload)
            )
                .prop_map(|(epoch, page, payload)| Record::PageImage {
                    epoch,
                    page,
                    payload
                }),
            (
                any::<u64>(),
                page,
                0..payload,
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(move |(epoch, page, offset, mut bytes)| {
                    bytes.truncate(payload - offset);
                    Record::PageDelta {
                        epoch,
                        page,
                        offset: offset as u32,
                        bytes,
                    }
                }),
            (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(epoch, p, page_count)| {
                Record::Allocate {
                    epoch,
                    partition: PartitionId(p),
                    page_count,
                }
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(epoch, p)| Record::CreatePartition {
                epoch,
                partition: PartitionId(p)
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(epoch, p)| Record::DropPartition {
                epoch,
                partition: PartitionId(p)
            }),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..32),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32))
            )
                .prop_map(|(epoch, key, value)| Record::MetadataPut {
                    epoch,
                    key,
                    value
                }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_records_roundtrip(record in arb_record()) {
            record.validate(PAGE_SIZE).unwrap();
            let mut frame = Vec::new();
            record.encode_into(&mut frame);
            prop_assert_eq!(decode_body(&frame[FRAME_HEADER_SIZE..], PAGE_SIZE).unwrap(), record);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_body(&body, PAGE_SIZE);
        }
    }
}
