//! Byte layouts of `engine/docs/format.md`, as constants chained from one another, and the page
//! footer's encode and verify (the redo log's records live in `wal::record`, the control file in
//! `control`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::types::Lsn;

/// Smallest and largest page sizes a store may be created with.
pub const PAGE_SIZE_MIN: u32 = 512;
pub const PAGE_SIZE_MAX: u32 = 65536;
pub const PAGE_SIZE_DEFAULT: u32 = 4096;

/// The page footer: `page_index: u32, lsn: u64, crc: u32` at the end of every page.
pub const FOOTER_PAGE_INDEX_SIZE: usize = 4;
pub const FOOTER_LSN_SIZE: usize = 8;
pub const FOOTER_CRC_SIZE: usize = 4;
pub const FOOTER_SIZE: usize = FOOTER_PAGE_INDEX_SIZE + FOOTER_LSN_SIZE + FOOTER_CRC_SIZE;

/// xor'ed into the page crc so that an all-zero page never verifies.
const PAGE_CRC_XOR: u32 = 0x5041_4745;

/// Bytes of a page that applications can write.
pub const fn payload_size(page_size: usize) -> usize {
    page_size - FOOTER_SIZE
}

const fn footer_index_offset(page_size: usize) -> usize {
    page_size - FOOTER_SIZE
}
const fn footer_lsn_offset(page_size: usize) -> usize {
    footer_index_offset(page_size) + FOOTER_PAGE_INDEX_SIZE
}
const fn footer_crc_offset(page_size: usize) -> usize {
    footer_lsn_offset(page_size) + FOOTER_LSN_SIZE
}

/// Checks that `page_size` is a power of two within the supported range.
pub fn validate_page_size(page_size: u32) -> Result<()> {
    if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
        return Err(Error::InvalidArgument(format!(
            "page size {page_size} must be a power of two in {PAGE_SIZE_MIN}..={PAGE_SIZE_MAX}"
        )));
    }
    Ok(())
}

/// Fills in the footer of `page` (whose payload is already in place) for page `index`.
pub fn seal_page(page: &mut [u8], index: u32, lsn: Lsn) {
    let size = page.len();
    page[footer_index_offset(size)..footer_lsn_offset(size)].copy_from_slice(&index.to_le_bytes());
    page[footer_lsn_offset(size)..footer_crc_offset(size)].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&page[..footer_crc_offset(size)]) ^ PAGE_CRC_XOR;
    page[footer_crc_offset(size)..].copy_from_slice(&crc.to_le_bytes());
}

/// What a verified page footer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFooter {
    pub index: u32,
    pub lsn: Lsn,
    pub crc: u32,
}

/// Verifies the footer of `page`, read as page `index` of `file`. An all-zero page is reported as
/// a hole ("never written").
pub fn verify_page(page: &[u8], index: u32, file: &Path) -> Result<PageFooter> {
    let size = page.len();
    let stored_crc =
        u32::from_le_bytes(page[footer_crc_offset(size)..].try_into().expect("4 bytes"));
    let actual_crc = crc32c::crc32c(&page[..footer_crc_offset(size)]) ^ PAGE_CRC_XOR;
    if stored_crc != actual_crc {
        if page.iter().all(|&b| b == 0) {
            return Err(Error::Corrupted {
                file: file.to_path_buf(),
                page: Some(index as u64),
                reason: "page was never written (all zero)".into(),
            });
        }
        return Err(Error::ChecksumMismatch {
            file: file.to_path_buf(),
            page: Some(index as u64),
            expected: stored_crc,
            actual: actual_crc,
        });
    }
    let stored_index = u32::from_le_bytes(
        page[footer_index_offset(size)..footer_lsn_offset(size)]
            .try_into()
            .expect("4 bytes"),
    );
    if stored_index != index {
        return Err(Error::Corrupted {
            file: file.to_path_buf(),
            page: Some(index as u64),
            reason: format!("footer names page {stored_index}"),
        });
    }
    let lsn = u64::from_le_bytes(
        page[footer_lsn_offset(size)..footer_crc_offset(size)]
            .try_into()
            .expect("8 bytes"),
    );
    Ok(PageFooter {
        index,
        lsn,
        crc: stored_crc,
    })
}

/// Little-endian readers over a byte slice that fail with a `Corrupted` error instead of
/// panicking when the input is short.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn take(&mut self, len: usize) -> std::result::Result<&'a [u8], String> {
        if self.remaining() < len {
            return Err(format!(
                "needs {len} bytes at offset {}, only {} left",
                self.position,
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_verifies_and_a_flipped_bit_does_not() {
        let mut page = vec![0u8; 4096];
        page[..5].copy_from_slice(b"hello");
        seal_page(&mut page, 7, 42);
        let footer = verify_page(&page, 7, Path::new("p")).unwrap();
        assert_eq!((footer.index, footer.lsn), (7, 42));
        assert!(matches!(
            verify_page(&page, 8, Path::new("p")),
            Err(Error::Corrupted { .. })
        ));
        page[100] ^= 1;
        assert!(matches!(
            verify_page(&page, 7, Path::new("p")),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn zero_page_is_a_hole_not_a_valid_page() {
        let page = vec![0u8; 512];
        let err = verify_page(&page, 0, Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("never written"), "{err}");
    }
}
