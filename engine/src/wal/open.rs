//! Opening the redo log (module doc, "Recovery"): listing and checking the segments, cutting a
//! torn tail, adopting or deleting spares; and replaying the records from an LSN.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::validate_page_size;
use crate::sync::{Arc, Condvar, Mutex};
use crate::types::Lsn;
use crate::vfs::{OpenMode, Vfs, VfsFile};

use super::segment::{
    encode_header, header_first_lsn, parse_segment_file_name, segment_file_name, verify_header,
    Frame, FrameReader, SegmentName, SEGMENT_HEADER_SIZE,
};
use super::{
    corrupted, create_segment, fsync, Record, Segment, State, TailCut, Wal, WalConfig,
    WalOpenReport, HEADER_BYTES,
};

impl Wal {
    /// Opens the log in `dir`, or creates it with a first segment at `first_lsn_if_empty` if `dir`
    /// holds no segment. Validates every segment's name and header, checks the segments are
    /// contiguous, scans the last one for its valid end and truncates a torn or corrupt tail there
    /// (reported in [`WalOpenReport::tail_cut`] and as a `tracing` warning). The log is then ready
    /// to append at its end, and everything in it is durable.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: WalConfig,
        first_lsn_if_empty: Lsn,
    ) -> Result<(Wal, WalOpenReport)> {
        validate_page_size(config.page_size)?;
        if config.segment_bytes_max <= HEADER_BYTES {
            return Err(Error::InvalidArgument(format!(
                "segment_bytes_max {} leaves no room after the {HEADER_BYTES}-byte segment header",
                config.segment_bytes_max
            )));
        }
        let dir_existed = vfs.is_dir(dir).ctx("stat redo log directory", dir)?;
        if !dir_existed {
            vfs.create_dir_all(dir)
                .ctx("create redo log directory", dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                vfs.sync_dir(parent)
                    .ctx("fsync parent of redo log directory", parent)?;
            }
        }
        let (mut sealed, spares) = list_segments(vfs.as_ref(), dir)?;
        let Some(mut last) = sealed.pop() else {
            // No segment was ever named here, so no spare can continue one.
            remove_spares(vfs.as_ref(), &spares)?;
            let segment = create_segment(vfs.as_ref(), dir, config.page_size, first_lsn_if_empty)?;
            tracing::info!(dir = %dir.display(), first_lsn = first_lsn_if_empty, "created redo log");
            let wal = Wal::from_parts(
                vfs,
                dir,
                config,
                VecDeque::from([segment]),
                first_lsn_if_empty,
            );
            let report = WalOpenReport {
                end_lsn: first_lsn_if_empty,
                tail_cut: None,
                segments: 1,
            };
            return Ok((wal, report));
        };
        check_sealed_segments(vfs.as_ref(), &sealed, &last, config.page_size)?;
        let (mut file, mut end_lsn, mut tail_cut) =
            recover_last_segment(vfs.as_ref(), &last, config.page_size)?;
        // Rolled segments that were never named (module docs, "Recovery").
        let mut spares = read_spare_headers(vfs.as_ref(), spares, config.page_size);
        while tail_cut.is_none() {
            let Some(position) = spares
                .iter()
                .position(|(_, first_lsn)| *first_lsn == Some(end_lsn))
            else {
                break;
            };
            let (spare_path, _) = spares.swap_remove(position);
            // The same order as a sync leader's: the segment before is durable, then the name.
            fsync(file.as_ref(), &last.path)?;
            let path = dir.join(segment_file_name(end_lsn));
            vfs.rename(&spare_path, &path)
                .ctx("name redo segment", &path)?;
            vfs.sync_dir(dir).ctx("fsync redo log directory", dir)?;
            tracing::info!(segment = %path.display(), "adopted a rolled redo segment that was never named");
            metrics::counter!("deltasnap_wal_segments_adopted_total").increment(1);
            sealed.push(last);
            last = Segment {
                first_lsn: end_lsn,
                path,
                spare_path: None,
                file: None,
            };
            (file, end_lsn, tail_cut) =
                recover_last_segment(vfs.as_ref(), &last, config.page_size)?;
        }
        let spare_paths: Vec<PathBuf> = spares.into_iter().map(|(path, _)| path).collect();
        remove_spares(vfs.as_ref(), &spare_paths)?;
        // Bytes a crashed process wrote may sit unsynced in the page cache, and the last
        // segment's name may not be durable yet: make both durable before reporting them.
        fsync(file.as_ref(), &last.path)?;
        vfs.sync_dir(dir).ctx("fsync redo log directory", dir)?;
        if let Some(cut) = &tail_cut {
            tracing::warn!(
                segment = %cut.segment.display(),
                lsn = cut.lsn,
                bytes_dropped = cut.bytes_dropped,
                reason = %cut.reason,
                "cut torn tail off the redo log"
            );
            metrics::counter!("deltasnap_wal_tail_cuts_total").increment(1);
        }
        last.file = Some(file);
        let mut segments: VecDeque<Segment> = sealed.into();
        segments.push_back(last);
        let report = WalOpenReport {
            end_lsn,
            tail_cut,
            segments: segments.len(),
        };
        tracing::info!(dir = %dir.display(), end_lsn, segments = segments.len(), "opened redo log");
        Ok((Wal::from_parts(vfs, dir, config, segments, end_lsn), report))
    }

    /// `segments.back()` is the active segment and has its file.
    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: WalConfig,
        segments: VecDeque<Segment>,
        end_lsn: Lsn,
    ) -> Wal {
        let active = Arc::clone(
            segments
                .back()
                .and_then(|segment| segment.file.as_ref())
                .expect("the active segment is open"),
        );
        Wal {
            vfs,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                active,
                spare: None,
                spare_next: 0,
                buffer: Vec::with_capacity(config.buffer_bytes_max),
                recycled: Vec::with_capacity(config.buffer_bytes_max),
                written_lsn: end_lsn,
                writing: false,
                write_behind: false,
                write_behind_stop: false,
                end_lsn,
                durable_lsn: end_lsn,
                sync_leader_active: false,
                failed: None,
            }),
            config,
            sync_done: Condvar::new(),
            write_done: Condvar::new(),
            buffer_full: Condvar::new(),
            purge_lock: Mutex::new(()),
        }
    }

    /// Calls `apply` for each record with LSN `>= from`, in LSN order, and returns how many it
    /// applied. `from` must be a record boundary (an end LSN the log reported) no earlier than the
    /// first retained segment; records appended before the call are included.
    ///
    /// Any frame that does not verify is [`Error::Corrupted`] naming the segment and the LSN: the
    /// torn tail was cut at open, so what remains must be whole.
    pub fn replay(
        &self,
        from: Lsn,
        mut apply: impl FnMut(Lsn, Record) -> Result<()>,
    ) -> Result<u64> {
        let (segments, end_lsn) = {
            let mut state = self.wait_for_write(self.state.lock());
            if !state.buffer.is_empty() {
                // Make buffered records visible to the file reads below (a write, not an fsync).
                state.check_not_failed()?;
                if let Err(error) = state.write_buffer() {
                    return Err(state.fail(error));
                }
            }
            (Vec::from(state.segments.clone()), state.end_lsn)
        };
        let oldest = segments.first().expect("the log always has a segment");
        if from < oldest.first_lsn {
            return Err(corrupted(
                &self.dir,
                format!(
                    "redo log missing: replay must start at LSN {from}, but the oldest retained \
                     segment starts at LSN {}",
                    oldest.first_lsn
                ),
            ));
        }
        if from > end_lsn {
            return Err(Error::InvalidArgument(format!(
                "replay from LSN {from} is past the end of the redo log at LSN {end_lsn}"
            )));
        }
        let start = segments.partition_point(|segment| segment.first_lsn <= from) - 1;
        let mut applied = 0u64;
        for (index, segment) in segments.iter().enumerate().skip(start) {
            let segment_end_lsn = segments
                .get(index + 1)
                .map_or(end_lsn, |next| next.first_lsn);
            let end_offset = HEADER_BYTES + (segment_end_lsn - segment.first_lsn);
            let file = match &segment.file {
                Some(file) => Arc::clone(file),
                None => self
                    .vfs
                    .open(&segment.path, OpenMode::Read)
                    .ctx("open redo segment for replay", &segment.path)?,
            };
            let len = file.len().ctx("stat redo segment", segment.location())?;
            let is_last = index + 1 == segments.len();
            // A sealed segment ends exactly where the next begins; the active one may have grown
            // since the snapshot of `end_lsn` above.
            if len < end_offset || (!is_last && len != end_offset) {
                return Err(corrupted(
                    &segment.path,
                    format!(
                        "segment is {len} bytes, but its records must end at LSN {segment_end_lsn} \
                         (file offset {end_offset})"
                    ),
                ));
            }
            let mut reader = FrameReader::new(
                file.as_ref(),
                segment.location(),
                segment.first_lsn,
                self.config.page_size,
                end_offset,
            );
            loop {
                match reader.next_frame()? {
                    Frame::End => break,
                    Frame::Invalid { lsn, reason } => {
                        return Err(corrupted(
                            &segment.path,
                            format!("record at LSN {lsn}: {reason}"),
                        ))
                    }
                    Frame::Record {
                        lsn,
                        record,
                        frame_bytes,
                    } => {
                        if lsn >= from {
                            apply(lsn, record)?;
                            applied += 1;
                        } else if lsn + frame_bytes > from {
                            return Err(Error::InvalidArgument(format!(
                                "replay from LSN {from}: not a record boundary (the record at LSN \
                                 {lsn} spans it)"
                            )));
                        }
                    }
                }
            }
        }
        Ok(applied)
    }
}

/// The segments in `dir`, by first LSN, and the spare files (module docs). Other files are
/// ignored; a `.log` file that is not named like a segment is an error (it would be a segment
/// this code cannot place).
fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<(Vec<Segment>, Vec<PathBuf>)> {
    let mut segments = Vec::new();
    let mut spares = Vec::new();
    for name in vfs.read_dir(dir).ctx("list redo log directory", dir)? {
        match parse_segment_file_name(&name) {
            SegmentName::Segment(first_lsn) => segments.push(Segment {
                first_lsn,
                path: dir.join(name),
                spare_path: None,
                file: None,
            }),
            SegmentName::Spare => spares.push(dir.join(name)),
            SegmentName::Malformed => {
                return Err(corrupted(
                    &dir.join(&name),
                    "a redo segment is named by 20 decimal digits (its first LSN) and `.log`"
                        .into(),
                ))
            }
            SegmentName::NotASegment => {
                tracing::debug!(dir = %dir.display(), name, "ignoring non-segment file in redo log directory");
            }
        }
    }
    // `read_dir` sorts names, and fixed-width names sort like their LSNs; sort anyway so that
    // correctness does not rest on a `Vfs` detail.
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok((segments, spares))
}

/// Each spare with the first LSN its header names, if the header is whole and valid (the spare
/// was rolled to); `None` for an empty spare or any other content, which cannot be adopted.
fn read_spare_headers(
    vfs: &dyn Vfs,
    spares: Vec<PathBuf>,
    page_size: u32,
) -> Vec<(PathBuf, Option<Lsn>)> {
    spares
        .into_iter()
        .map(|path| {
            let first_lsn = (|| -> Result<Option<Lsn>> {
                let file = vfs
                    .open(&path, OpenMode::Read)
                    .ctx("open spare redo segment", &path)?;
                if file.len().ctx("stat spare redo segment", &path)? < HEADER_BYTES {
                    return Ok(None);
                }
                let mut header = [0u8; SEGMENT_HEADER_SIZE];
                file.read_exact_at(&mut header, 0)
                    .ctx("read spare redo segment header", &path)?;
                let first_lsn = header_first_lsn(&header);
                Ok(verify_header(&header, &path, first_lsn, page_size)
                    .is_ok()
                    .then_some(first_lsn))
            })();
            let first_lsn = first_lsn.unwrap_or_else(|error| {
                tracing::warn!(spare = %path.display(), %error, "unreadable spare redo segment");
                None
            });
            (path, first_lsn)
        })
        .collect()
}

/// Deletes spares that recovery did not adopt: they hold no record a `sync` reported durable.
fn remove_spares(vfs: &dyn Vfs, spares: &[PathBuf]) -> Result<()> {
    for path in spares {
        vfs.remove_file(path)
            .ctx("remove spare redo segment", path)?;
        tracing::debug!(spare = %path.display(), "removed spare redo segment");
    }
    Ok(())
}

/// Checks the header of every sealed segment and that each ends where the next begins. Their
/// records are checked when `replay` reads them.
fn check_sealed_segments(
    vfs: &dyn Vfs,
    sealed: &[Segment],
    last: &Segment,
    page_size: u32,
) -> Result<()> {
    for (index, segment) in sealed.iter().enumerate() {
        let file = vfs
            .open(&segment.path, OpenMode::Read)
            .ctx("open redo segment", &segment.path)?;
        let len = file.len().ctx("stat redo segment", &segment.path)?;
        if len < HEADER_BYTES {
            return Err(corrupted(
                &segment.path,
                format!(
                    "sealed segment is {len} bytes, shorter than its {HEADER_BYTES}-byte header"
                ),
            ));
        }
        let mut header = [0u8; SEGMENT_HEADER_SIZE];
        file.read_exact_at(&mut header, 0)
            .ctx("read redo segment header", &segment.path)?;
        verify_header(&header, &segment.path, segment.first_lsn, page_size)?;
        check_contiguous(segment, len, sealed.get(index + 1).unwrap_or(last))?;
    }
    Ok(())
}

/// Opens the last segment for appending, finds its valid end and truncates anything after it.
/// Returns the file, the log's end LSN and the cut, if one was made.
fn recover_last_segment(
    vfs: &dyn Vfs,
    last: &Segment,
    page_size: u32,
) -> Result<(Arc<dyn VfsFile>, Lsn, Option<TailCut>)> {
    let file = vfs
        .open(&last.path, OpenMode::ReadWrite)
        .ctx("open redo segment", &last.path)?;
    let len = file.len().ctx("stat redo segment", &last.path)?;
    let (valid_len, tail_cut) = match read_header_of_last(file.as_ref(), last, len)? {
        Some(header) => {
            verify_header(&header, &last.path, last.first_lsn, page_size)?;
            let mut reader =
                FrameReader::new(file.as_ref(), &last.path, last.first_lsn, page_size, len);
            // Each valid frame moves the reader forward by at least one frame header, so this
            // loop ends within `len / FRAME_HEADER_SIZE` rounds.
            let cut = loop {
                match reader.next_frame()? {
                    Frame::Record { .. } => {}
                    Frame::End => break None,
                    Frame::Invalid { lsn, reason } => {
                        break Some(TailCut {
                            segment: last.path.clone(),
                            lsn,
                            bytes_dropped: len - reader.offset(),
                            reason,
                        })
                    }
                }
            };
            (reader.offset(), cut)
        }
        None => {
            // A crash between creating the segment and its header's fsync (roll step 3): no
            // record can have been synced into it, so it restarts empty.
            file.write_all_at(&encode_header(page_size, last.first_lsn), 0)
                .ctx("rewrite redo segment header", &last.path)?;
            let cut = TailCut {
                segment: last.path.clone(),
                lsn: last.first_lsn,
                bytes_dropped: len,
                reason: format!(
                    "segment header never became durable ({len} bytes): a crash while the \
                     segment was being created"
                ),
            };
            (HEADER_BYTES, Some(cut))
        }
    };
    if valid_len != len {
        file.set_len(valid_len)
            .ctx("truncate torn redo tail", &last.path)?;
    }
    debug_assert!(valid_len >= HEADER_BYTES);
    Ok((file, last.first_lsn + (valid_len - HEADER_BYTES), tail_cut))
}

/// A sealed segment must end exactly where the next one begins (format.md §3).
fn check_contiguous(segment: &Segment, len: u64, next: &Segment) -> Result<()> {
    let end_lsn = segment.first_lsn + (len - HEADER_BYTES);
    if end_lsn != next.first_lsn {
        return Err(corrupted(
            &next.path,
            format!(
                "redo segments are not contiguous: the previous segment {} ends at LSN {end_lsn}, \
                 this one starts at LSN {}",
                segment.path.display(),
                next.first_lsn
            ),
        ));
    }
    Ok(())
}

/// Reads the last segment's header; `None` if it never became durable, which a crash before the
/// header's fsync (roll step 3) leaves as a file shorter than a header, or as exactly a header of
/// zeros. No record is appended before that fsync, so a longer file's header was durable, and any
/// damage to it is corruption that [`verify_header`] reports: resetting the segment would drop
/// records that may have been synced.
fn read_header_of_last(
    file: &dyn VfsFile,
    segment: &Segment,
    len: u64,
) -> Result<Option<[u8; SEGMENT_HEADER_SIZE]>> {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    let readable = len.min(HEADER_BYTES) as usize;
    file.read_exact_at(&mut header[..readable], 0)
        .ctx("read redo segment header", &segment.path)?;
    if len < HEADER_BYTES || (len == HEADER_BYTES && header.iter().all(|&b| b == 0)) {
        return Ok(None);
    }
    Ok(Some(header))
}
