//! The snapshot manifest (format.md §5.2): what a published snapshot holds and the crc of every
//! page, so that `verify` can recheck it without the store.
//!
//! A manifest carries its own crc32c (over its canonical bytes, format.md §5.2), and every
//! number in it is range-checked at [`Manifest::parse`], before `verify` or `restore` uses it:
//! a changed byte is refused, and no value read from a manifest can overflow later (in the
//! restored store's open included: its epoch and LSN start from the manifest's).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bugs::{self, Bug};
use crate::config::{METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX};
use crate::error::{Error, Result};
use crate::snapshot::protocol::DeltaPolicy;
use crate::types::{Epoch, Lsn, PartitionId};

pub use crate::layout::MANIFEST_FILE_NAME;
/// 2: the manifest carries `crc32c`. Version 1 (no crc) is refused: no store released with it.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
/// The largest `cut_epoch` (and `cut_lsn`) a manifest may hold: a restored store counts its
/// epochs and LSNs on from there, so a value near `u64::MAX` would overflow; no real store gets
/// within 2^62 of either.
pub const CUT_EPOCH_MAX: Epoch = 1 << 62;
/// See [`CUT_EPOCH_MAX`].
pub const CUT_LSN_MAX: Lsn = 1 << 62;
/// A manifest larger than this is refused before it is parsed.
pub(crate) const MANIFEST_BYTES_MAX: u64 = 1 << 30;

/// One partition of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPartition {
    /// The partition's id ([`PartitionId`]'s number); strictly increasing along
    /// [`Manifest::partitions`].
    pub id: u32,
    /// Relative path of the partition file; must be `partitions/part-<id>.dat`.
    pub file: String,
    /// The partition's logical page count at the cut: its file holds exactly this many pages.
    pub page_count: u32,
    /// Footer crc of every page, by index.
    pub page_crcs: Vec<u32>,
}

/// One metadata entry, hex-encoded so any bytes survive JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMetadata {
    /// The key, in hex: `1 ..=` [`METADATA_KEY_BYTES_MAX`] bytes once decoded; keys
    /// strictly increasing along [`Manifest::metadata`].
    pub key_hex: String,
    /// The value, in hex: at most [`METADATA_VALUE_BYTES_MAX`] bytes once decoded.
    pub value_hex: String,
}

/// The manifest of a published snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format version. [`Manifest::to_json`] always writes the current one,
    /// [`MANIFEST_FORMAT_VERSION`] (the file it writes carries a crc), whatever this says.
    pub format_version: u32,
    /// The snapshot's name, the last component of its directory (`SnapshotOptions::name`).
    pub name: String,
    /// When the manifest was written, in milliseconds since the Unix epoch (informational).
    pub created_unix_ms: u64,
    /// The snapshot holds exactly the writes whose receipt epoch is `<= cut_epoch` (S1). Range
    /// `1 ..=` [`CUT_EPOCH_MAX`].
    pub cut_epoch: Epoch,
    /// The redo position of the cut (the cut checkpoint's replay-start LSN).
    /// Range `0 ..=` [`CUT_LSN_MAX`].
    pub cut_lsn: Lsn,
    /// The store's page size in bytes (a power of two in `512 ..= 65536`); a restore creates a
    /// store of this page size.
    pub page_size: u32,
    /// The policy the write hook captured by (informational: both give the same pages).
    pub delta_policy: DeltaPolicy,
    /// Pages taken from delta files by the merge.
    /// At most the snapshot's total page count.
    pub delta_pages: u64,
    /// Every partition that existed at the cut, in increasing id order.
    pub partitions: Vec<ManifestPartition>,
    /// The metadata map at the cut, in increasing key order.
    pub metadata: Vec<ManifestMetadata>,
}

/// The file's JSON: the manifest's fields, then its crc (format.md §5.2).
#[derive(Serialize)]
struct ManifestFile<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    crc32c: u32,
}

/// The name of the crc field in the file.
const CRC_FIELD: &str = "crc32c";

/// Checks a snapshot's name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`.
pub(crate) fn validate_snapshot_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "snapshot name {name:?} must be 1..=128 of [A-Za-z0-9._-] and not start with '.'"
        )))
    }
}

/// The only file name a manifest may give partition `id`.
pub fn partition_file_name(id: u32) -> String {
    crate::layout::snapshot_partition_file(id)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> std::result::Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd-length hex string {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex at {i} in {text:?}"))
        })
        .collect()
}

impl Manifest {
    /// The canonical bytes: the manifest (at the current version, without its crc) as pretty
    /// JSON in field order, then a newline. The crc is computed over these.
    fn canonical(&self) -> Vec<u8> {
        let current = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            ..self.clone()
        };
        let mut bytes = serde_json::to_vec_pretty(&current).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The file's bytes (format version [`MANIFEST_FORMAT_VERSION`]): the manifest's fields and
    /// `crc32c`, the crc32c of its canonical bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let current = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            ..self.clone()
        };
        let file = ManifestFile {
            manifest: &current,
            crc32c: crc32c::crc32c(&current.canonical()),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks a manifest: version, crc, then the range of every number (page size,
    /// cut epoch and LSN, partition ids, names and page counts, delta pages, metadata sizes and
    /// order) and the hex, so that nothing read from it can escape the snapshot directory,
    /// overflow or panic later.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Manifest> {
        let corrupted = |reason: String| Error::Corrupted {
            file: file.to_path_buf(),
            page: None,
            reason,
        };
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| corrupted(format!("not a manifest: {e}")))?;
        match fields.get("format_version").and_then(|v| v.as_u64()) {
            Some(version) if version == u64::from(MANIFEST_FORMAT_VERSION) => {}
            Some(1) => {
                return Err(corrupted(
                    "manifest format version 1 has no checksum (version 2 added it), so it cannot be trusted; make the snapshot again".into(),
                ))
            }
            Some(other) => return Err(corrupted(format!("unsupported format version {other}"))),
            None => return Err(corrupted("not a manifest: no format_version".into())),
        }
        let stored = fields
            .remove(CRC_FIELD)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupted(format!("no {CRC_FIELD} (a u32)")))?;
        let manifest: Manifest = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| corrupted(format!("not a manifest: {e}")))?;
        let unchecked = bugs::active(Bug::ManifestUnchecked);
        let actual = crc32c::crc32c(&manifest.canonical());
        if actual != stored && !unchecked {
            return Err(Error::ChecksumMismatch {
                file: file.to_path_buf(),
                page: None,
                expected: stored,
                actual,
            });
        }
        manifest.check_ranges(!unchecked).map_err(corrupted)?;
        Ok(manifest)
    }

    /// The ranges of format.md §5.2; the reason of the first value out of range. `strict` false
    /// (only under the seeded bug `ManifestUnchecked`) keeps just the checks of version 1: page
    /// size, file names, page crc counts, hex.
    fn check_ranges(&self, strict: bool) -> std::result::Result<(), String> {
        crate::format::validate_page_size(self.page_size).map_err(|e| e.to_string())?;
        if strict {
            self.check_numbers()?;
        }
        let mut previous_id = None;
        for partition in &self.partitions {
            if previous_id.is_some_and(|previous| partition.id <= previous) {
                return Err(format!(
                    "partition {} is listed after partition {}: ids must be strictly increasing",
                    partition.id,
                    previous_id.unwrap_or_default()
                ));
            }
            previous_id = Some(partition.id);
            if partition.file != partition_file_name(partition.id) {
                return Err(format!(
                    "partition {} names file {:?}; only {:?} is allowed",
                    partition.id,
                    partition.file,
                    partition_file_name(partition.id)
                ));
            }
            if partition.page_crcs.len() != partition.page_count as usize {
                return Err(format!(
                    "partition {} has page_count {} but {} page crcs",
                    partition.id,
                    partition.page_count,
                    partition.page_crcs.len()
                ));
            }
        }
        let mut previous_key: Option<Vec<u8>> = None;
        for entry in &self.metadata {
            let key = unhex(&entry.key_hex)?;
            let value = unhex(&entry.value_hex)?;
            if !strict {
                continue;
            }
            if key.is_empty() || key.len() > METADATA_KEY_BYTES_MAX {
                return Err(format!(
                    "metadata key {:?} has {} bytes, out of range 1..={METADATA_KEY_BYTES_MAX}",
                    entry.key_hex,
                    key.len()
                ));
            }
            if value.len() > METADATA_VALUE_BYTES_MAX {
                return Err(format!(
                    "metadata value of key {:?} has {} bytes, over {METADATA_VALUE_BYTES_MAX}",
                    entry.key_hex,
                    value.len()
                ));
            }
            if previous_key
                .as_ref()
                .is_some_and(|previous| key <= *previous)
            {
                return Err(format!(
                    "metadata key {:?} is out of order or listed twice: keys must be strictly increasing",
                    entry.key_hex
                ));
            }
            previous_key = Some(key);
        }
        Ok(())
    }

    /// Name, cut epoch and LSN, delta pages.
    fn check_numbers(&self) -> std::result::Result<(), String> {
        validate_snapshot_name(&self.name).map_err(|e| e.to_string())?;
        if !(1..=CUT_EPOCH_MAX).contains(&self.cut_epoch) {
            return Err(format!(
                "cut_epoch {} is out of range 1..={CUT_EPOCH_MAX}",
                self.cut_epoch
            ));
        }
        if self.cut_lsn > CUT_LSN_MAX {
            return Err(format!(
                "cut_lsn {} is out of range 0..={CUT_LSN_MAX}",
                self.cut_lsn
            ));
        }
        let pages_total: u64 = self
            .partitions
            .iter()
            .map(|p| u64::from(p.page_count))
            .sum();
        // Each page of a partition is taken from its delta at most once.
        if self.delta_pages > pages_total {
            return Err(format!(
                "delta_pages {} is more than the {pages_total} pages of the snapshot",
                self.delta_pages
            ));
        }
        Ok(())
    }

    /// The metadata map.
    pub fn metadata_map(&self) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        self.metadata
            .iter()
            .map(|e| {
                (
                    unhex(&e.key_hex).expect("checked at parse"),
                    unhex(&e.value_hex).expect("checked at parse"),
                )
            })
            .collect()
    }

    /// The ids of the snapshot's partitions, in increasing order.
    pub fn partition_ids(&self) -> Vec<PartitionId> {
        self.partitions.iter().map(|p| PartitionId(p.id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            name: "s".into(),
            created_unix_ms: 1,
            cut_epoch: 3,
            cut_lsn: 99,
            page_size: 4096,
            delta_policy: DeltaPolicy::CursorAware,
            delta_pages: 2,
            partitions: vec![ManifestPartition {
                id: 1,
                file: partition_file_name(1),
                page_count: 2,
                page_crcs: vec![5, 6],
            }],
            metadata: vec![ManifestMetadata {
                key_hex: hex(b"k"),
                value_hex: hex(b"\x00\xff"),
            }],
        }
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        let bytes = m.to_json();
        let parsed = Manifest::parse(&bytes, Path::new("m")).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.to_json(), bytes, "the canonical bytes round-trip");
        assert_eq!(m.metadata_map()[&b"k"[..]], b"\x00\xff");
    }

    #[test]
    fn names_escaping_the_directory_are_refused() {
        for bad in [
            "../part-1.dat",
            "/etc/passwd",
            "partitions/../../x",
            "partitions/part-2.dat",
        ] {
            let mut m = sample();
            m.partitions[0].file = bad.into();
            let err = Manifest::parse(&m.to_json(), Path::new("m")).unwrap_err();
            assert!(err.to_string().contains("only"), "{bad}: {err}");
        }
    }
}
