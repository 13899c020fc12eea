//! The snapshot manifest (format.md §5.2): what a published snapshot holds and the crc of every
//! page, so that `verify` can recheck it without the store.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::protocol::DeltaPolicy;
use crate::types::{Epoch, Lsn, PartitionId};

pub const MANIFEST_FILE_NAME: &str = "manifest.json";
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// A manifest larger than this is refused before it is parsed.
pub(crate) const MANIFEST_BYTES_MAX: u64 = 1 << 30;

/// One partition of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPartition {
    pub id: u32,
    /// Relative path of the partition file; must be `partitions/part-<id>.dat`.
    pub file: String,
    pub page_count: u32,
    /// Footer crc of every page, by index.
    pub page_crcs: Vec<u32>,
}

/// One metadata entry, hex-encoded so any bytes survive JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMetadata {
    pub key_hex: String,
    pub value_hex: String,
}

/// The manifest of a published snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub created_unix_ms: u64,
    /// The snapshot holds exactly the writes whose receipt epoch is `<= cut_epoch`.
    pub cut_epoch: Epoch,
    /// The redo position of the cut (the cut checkpoint's replay-start LSN).
    pub cut_lsn: Lsn,
    pub page_size: u32,
    pub delta_policy: DeltaPolicy,
    /// Pages taken from delta files by the merge.
    pub delta_pages: u64,
    pub partitions: Vec<ManifestPartition>,
    pub metadata: Vec<ManifestMetadata>,
}

/// The only file name a manifest may give partition `id`.
pub fn partition_file_name(id: u32) -> String {
    format!("partitions/part-{id}.dat")
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
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks a manifest: version, page size, partition names (no escaping the
    /// snapshot directory), page counts, hex.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Manifest> {
        let corrupted = |reason: String| Error::Corrupted {
            file: file.to_path_buf(),
            page: None,
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| corrupted(format!("not a manifest: {e}")))?;
        if manifest.format_version != MANIFEST_FORMAT_VERSION {
            return Err(corrupted(format!(
                "unsupported format version {}",
                manifest.format_version
            )));
        }
        crate::format::validate_page_size(manifest.page_size)
            .map_err(|e| corrupted(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for partition in &manifest.partitions {
            if partition.file != partition_file_name(partition.id) {
                return Err(corrupted(format!(
                    "partition {} names file {:?}; only {:?} is allowed",
                    partition.id,
                    partition.file,
                    partition_file_name(partition.id)
                )));
            }
            if !seen.insert(partition.id) {
                return Err(corrupted(format!(
                    "partition {} listed twice",
                    partition.id
                )));
            }
            if partition.page_crcs.len() != partition.page_count as usize {
                return Err(corrupted(format!(
                    "partition {} has page_count {} but {} page crcs",
                    partition.id,
                    partition.page_count,
                    partition.page_crcs.len()
                )));
            }
        }
        for entry in &manifest.metadata {
            unhex(&entry.key_hex).map_err(&corrupted)?;
            unhex(&entry.value_hex).map_err(&corrupted)?;
        }
        Ok(manifest)
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

    pub fn partition_ids(&self) -> Vec<PartitionId> {
        self.partitions.iter().map(|p| PartitionId(p.id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: 1,
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
        assert_eq!(Manifest::parse(&m.to_json(), Path::new("m")).unwrap(), m);
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
