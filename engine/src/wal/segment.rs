//! One redo segment file (`engine/docs/format.md` §3): its name, its 32-byte header and a reader
//! that walks its frames.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::format::Reader;
use crate::types::Lsn;
use crate::vfs::VfsFile;

use super::record::{decode_body, frame_crc, Record, FRAME_HEADER_SIZE, RECORD_BODY_BYTES_MAX};

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"DSWAL\0\0\x01";
pub(crate) const SEGMENT_VERSION: u32 = 1;

const MAGIC_OFFSET: usize = 0;
const MAGIC_SIZE: usize = 8;
const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC_SIZE;
const VERSION_SIZE: usize = 4;
const PAGE_SIZE_OFFSET: usize = VERSION_OFFSET + VERSION_SIZE;
const PAGE_SIZE_SIZE: usize = 4;
const FIRST_LSN_OFFSET: usize = PAGE_SIZE_OFFSET + PAGE_SIZE_SIZE;
const FIRST_LSN_SIZE: usize = 8;
const RESERVED_OFFSET: usize = FIRST_LSN_OFFSET + FIRST_LSN_SIZE;
const RESERVED_SIZE: usize = 4;
const HEADER_CRC_OFFSET: usize = RESERVED_OFFSET + RESERVED_SIZE;
const HEADER_CRC_SIZE: usize = 4;
/// Records start here; the byte at this offset has LSN `first_lsn`.
pub(crate) const SEGMENT_HEADER_SIZE: usize = HEADER_CRC_OFFSET + HEADER_CRC_SIZE;
const _: () = assert!(
    SEGMENT_HEADER_SIZE == 32,
    "format.md §3 fixes the header at 32 bytes"
);

const NAME_DIGITS: usize = 20;
const NAME_SUFFIX: &str = ".log";

/// `<first-lsn as 20 decimal digits>.log`: fixed width, so sorting names sorts LSNs.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:0NAME_DIGITS$}{NAME_SUFFIX}")
}

const SPARE_PREFIX: &str = ".spare-";

/// `.spare-<n as 20 decimal digits>`: a file created ahead of a roll, or a rolled segment that is
/// not named yet (format.md §3). Not a `.log` name, so never read as a segment.
pub(crate) fn spare_file_name(n: u64) -> String {
    format!("{SPARE_PREFIX}{n:0NAME_DIGITS$}")
}

/// What a directory entry's name says.
pub(crate) enum SegmentName {
    Segment(Lsn),
    /// Ends in `.log` but is not 20 digits that fit a `u64`.
    Malformed,
    /// A spare file ([`spare_file_name`]; any `.spare-` name, whatever follows).
    Spare,
    NotASegment,
}

pub(crate) fn parse_segment_file_name(name: &str) -> SegmentName {
    if name.starts_with(SPARE_PREFIX) {
        return SegmentName::Spare;
    }
    let Some(stem) = name.strip_suffix(NAME_SUFFIX) else {
        return SegmentName::NotASegment;
    };
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return SegmentName::Malformed;
    }
    match stem.parse() {
        Ok(lsn) => SegmentName::Segment(lsn),
        Err(_) => SegmentName::Malformed,
    }
}

pub(crate) fn encode_header(page_size: u32, first_lsn: Lsn) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    header[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
    header[VERSION_OFFSET..PAGE_SIZE_OFFSET].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[PAGE_SIZE_OFFSET..FIRST_LSN_OFFSET].copy_from_slice(&page_size.to_le_bytes());
    header[FIRST_LSN_OFFSET..RESERVED_OFFSET].copy_from_slice(&first_lsn.to_le_bytes());
    // reserved stays 0
    let crc = crc32c::crc32c(&header[..HEADER_CRC_OFFSET]);
    header[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The `first_lsn` field of `header`, unchecked (a spare file's header names the LSN its file
/// name does not; [`verify_header`] with this LSN checks the rest).
pub(crate) fn header_first_lsn(header: &[u8; SEGMENT_HEADER_SIZE]) -> Lsn {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[FIRST_LSN_OFFSET..RESERVED_OFFSET]);
    Lsn::from_le_bytes(bytes)
}

/// Checks a header read from `path`, whose name says `name_lsn`, against the store's page size.
/// Order: magic (is this a segment at all?), crc (are the fields trustworthy?), then the fields.
pub(crate) fn verify_header(
    header: &[u8; SEGMENT_HEADER_SIZE],
    path: &Path,
    name_lsn: Lsn,
    page_size: u32,
) -> Result<()> {
    let corrupted = |reason: String| Error::Corrupted {
        file: path.to_path_buf(),
        page: None,
        reason,
    };
    let mut reader = Reader::new(header);
    // The reader cannot run short on a fixed-size array; the map keeps this path panic-free.
    let field_error = |e: String| corrupted(format!("segment header: {e}"));
    let magic = reader.take(MAGIC_SIZE).map_err(field_error)?;
    if magic != SEGMENT_MAGIC {
        return Err(corrupted(format!(
            "not a deltasnap redo segment: magic is {magic:02x?}, expected {SEGMENT_MAGIC:02x?}"
        )));
    }
    let version = reader.u32().map_err(field_error)?;
    let on_disk_page_size = reader.u32().map_err(field_error)?;
    let first_lsn = reader.u64().map_err(field_error)?;
    let reserved = reader.u32().map_err(field_error)?;
    let stored_crc = reader.u32().map_err(field_error)?;
    debug_assert_eq!(reader.position(), SEGMENT_HEADER_SIZE);
    let actual_crc = crc32c::crc32c(&header[..HEADER_CRC_OFFSET]);
    if stored_crc != actual_crc {
        return Err(Error::ChecksumMismatch {
            file: path.to_path_buf(),
            page: None,
            expected: stored_crc,
            actual: actual_crc,
        });
    }
    if version != SEGMENT_VERSION {
        return Err(corrupted(format!(
            "segment format version {version}, this build reads version {SEGMENT_VERSION}"
        )));
    }
    if on_disk_page_size != page_size {
        return Err(Error::PageSizeMismatch {
            dir: path.to_path_buf(),
            on_disk: on_disk_page_size,
            configured: page_size,
        });
    }
    if first_lsn != name_lsn {
        return Err(corrupted(format!(
            "header says first LSN {first_lsn}, the file name says {name_lsn}"
        )));
    }
    if reserved != 0 {
        return Err(corrupted(format!(
            "reserved header field is {reserved:#x}, not 0"
        )));
    }
    Ok(())
}

/// What [`FrameReader::next_frame`] found at the current offset.
pub(crate) enum Frame {
    /// A frame whose crc matched and whose body decoded.
    Record {
        lsn: Lsn,
        record: Record,
        frame_bytes: u64,
    },
    /// The readable range ends exactly here.
    End,
    /// The frame here is not whole or not valid (format.md §3.1's stop rule). In the last segment
    /// this is the torn tail; anywhere else it is corruption.
    Invalid { lsn: Lsn, reason: String },
}

/// Reads frames of one segment from `SEGMENT_HEADER_SIZE` up to `end_offset`, through a chunk
/// buffer so that small records do not cost a read each.
pub(crate) struct FrameReader<'a> {
    file: &'a dyn VfsFile,
    path: &'a Path,
    first_lsn: Lsn,
    page_size: u32,
    /// Bytes past this offset are not read (file length, or the end LSN a replay was bounded to).
    end_offset: u64,
    /// File offset of the next frame.
    offset: u64,
    chunk: Vec<u8>,
    chunk_offset: u64,
}

const CHUNK_BYTES: usize = 1 << 20;

impl<'a> FrameReader<'a> {
    pub(crate) fn new(
        file: &'a dyn VfsFile,
        path: &'a Path,
        first_lsn: Lsn,
        page_size: u32,
        end_offset: u64,
    ) -> Self {
        FrameReader {
            file,
            path,
            first_lsn,
            page_size,
            end_offset,
            offset: SEGMENT_HEADER_SIZE as u64,
            chunk: Vec::new(),
            chunk_offset: 0,
        }
    }

    /// File offset of the next frame: after an `Invalid`, where the valid part ends.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    fn lsn_at(&self, offset: u64) -> Lsn {
        self.first_lsn + (offset - SEGMENT_HEADER_SIZE as u64)
    }

    /// The `len` bytes at `offset`, which the caller has checked lie before `end_offset`.
    fn bytes_at(&mut self, offset: u64, len: usize) -> Result<&[u8]> {
        let chunk_end = self.chunk_offset + self.chunk.len() as u64;
        if offset < self.chunk_offset || offset + len as u64 > chunk_end {
            let want = (self.end_offset - offset).min(len.max(CHUNK_BYTES) as u64) as usize;
            self.chunk.resize(want, 0);
            self.file
                .read_exact_at(&mut self.chunk, offset)
                .ctx("read redo segment", self.path)?;
            self.chunk_offset = offset;
        }
        let start = (offset - self.chunk_offset) as usize;
        Ok(&self.chunk[start..start + len])
    }

    /// Reads the frame at the current offset and, if it is valid, moves past it. A body whose
    /// crc matched but which does not decode is an error, never a tail: a torn write does not
    /// produce a matching crc, so such a record was written whole by a writer we do not
    /// understand, and cutting it would silently drop it.
    pub(crate) fn next_frame(&mut self) -> Result<Frame> {
        let offset = self.offset;
        let lsn = self.lsn_at(offset);
        let left = self.end_offset.saturating_sub(offset);
        if left == 0 {
            return Ok(Frame::End);
        }
        let invalid = |reason: String| Ok(Frame::Invalid { lsn, reason });
        if left < FRAME_HEADER_SIZE as u64 {
            return invalid(format!(
                "{left} bytes left, a frame header needs {FRAME_HEADER_SIZE}"
            ));
        }
        let header = self.bytes_at(offset, FRAME_HEADER_SIZE)?;
        let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_len = u32::from_le_bytes(len_bytes) as usize;
        if body_len == 0 || body_len > RECORD_BODY_BYTES_MAX {
            return invalid(format!(
                "frame length {body_len} is outside 1..={RECORD_BODY_BYTES_MAX}"
            ));
        }
        let frame_bytes = (FRAME_HEADER_SIZE + body_len) as u64;
        if frame_bytes > left {
            return invalid(format!(
                "frame of {frame_bytes} bytes runs past the end ({left} bytes left)"
            ));
        }
        let page_size = self.page_size;
        let body = self.bytes_at(offset + FRAME_HEADER_SIZE as u64, body_len)?;
        let actual_crc = frame_crc(&len_bytes, body);
        if actual_crc != stored_crc {
            return invalid(format!(
                "frame crc mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
            ));
        }
        let record = decode_body(body, page_size).map_err(|reason| Error::Corrupted {
            file: self.path.to_path_buf(),
            page: None,
            reason: format!("record at LSN {lsn} has a valid crc but does not decode: {reason}"),
        })?;
        self.offset += frame_bytes;
        Ok(Frame::Record {
            lsn,
            record,
            frame_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fixed_width_and_parse_back() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.log");
        assert!(matches!(
            parse_segment_file_name("00000000000000000042.log"),
            SegmentName::Segment(42)
        ));
        for malformed in [
            "42.log",
            "99999999999999999999.log",
            "0000000000000000004x.log",
        ] {
            assert!(matches!(
                parse_segment_file_name(malformed),
                SegmentName::Malformed
            ));
        }
        assert!(matches!(
            parse_segment_file_name("CONTROL"),
            SegmentName::NotASegment
        ));
    }

    #[test]
    fn header_roundtrips_and_each_field_is_checked() {
        let path = Path::new("00000000000000000100.log");
        let header = encode_header(4096, 100);
        verify_header(&header, path, 100, 4096).unwrap();
        assert!(matches!(
            verify_header(&header, path, 100, 8192),
            Err(Error::PageSizeMismatch {
                on_disk: 4096,
                configured: 8192,
                ..
            })
        ));
        assert!(matches!(
            verify_header(&header, path, 101, 4096),
            Err(Error::Corrupted { .. })
        ));
        let mut flipped = header;
        flipped[FIRST_LSN_OFFSET] ^= 1;
        assert!(matches!(
            verify_header(&flipped, path, 100, 4096),
            Err(Error::ChecksumMismatch { .. })
        ));
        let mut bad_magic = header;
        bad_magic[0] = b'X';
        let err = verify_header(&bad_magic, path, 100, 4096).unwrap_err();
        assert!(
            err.to_string().contains("not a deltasnap redo segment"),
            "{err}"
        );
    }
}
