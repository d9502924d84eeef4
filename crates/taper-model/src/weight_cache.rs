//! The on-disk cache of repacked weights: the Q4_K and Q6_K matrices a load
//! interleaves for our kernels, kept in a file so that the next load of the same
//! model maps them from the page cache instead of writing them into fresh memory.
//!
//! One file per model file, named after it, in the directory the caller chose. It
//! holds a header (magic, format and layout versions, the model file's size and
//! modification time, where the index lies), each matrix's bytes at a page
//! boundary, and an index (name, type, shape, offset, length and CRC-32 of each
//! matrix). A file is written under a temporary name and renamed into place, so
//! no reader sees one half-written (and a crash before the kernel wrote it back
//! leaves pages the checksums reject); one that does not match the
//! model file, is truncated or whose bytes fail their checksum is ignored and
//! written again. No problem with the cache fails a load: it is logged and the
//! matrices are interleaved as without one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use memmap2::{Mmap, MmapOptions};

use crate::gguf::TensorType;
use crate::weights::Mapped;

/// The first bytes of every cache file.
const MAGIC: &[u8; 8] = b"TAPERWC\0";
/// The version of this file format.
const FORMAT: u32 = 1;
/// The version of the interleaved group layouts (`kernels::Q4KX16`, `Q6KX16`):
/// raise it whenever one changes, so that older caches are written again.
const LAYOUT: u32 = 1;
/// Every matrix starts at a multiple of this (a page), so its groups are aligned.
const ALIGN: u64 = 4096;
/// Bytes of the fixed header, before the first matrix.
const HEADER: u64 = ALIGN;

/// The identity of a model file: a cache made from it is valid while it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

impl Identity {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ino: m.ino(),
        })
    }
}

/// One matrix in a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    rows: u64,
    cols: u64,
    offset: u64,
    len: u64,
    crc: u32,
}

/// A repacked matrix a load asks the cache for.
pub(crate) struct Wanted<'a> {
    /// The tensor's name in the model file.
    pub name: &'a str,
    /// Its block type as stored.
    pub kind: TensorType,
    /// Its rows (output columns).
    pub rows: usize,
    /// Its columns (inputs).
    pub cols: usize,
    /// Bytes of the repacked matrix.
    pub len: usize,
}

impl Wanted<'_> {
    /// Its index entry, for bytes at `offset` with checksum `crc`.
    fn entry(&self, offset: u64, crc: u32) -> Entry {
        Entry {
            kind: self.kind.name().to_owned(),
            rows: self.rows as u64,
            cols: self.cols as u64,
            offset,
            len: self.len as u64,
            crc,
        }
    }
}

/// A matrix mapped from the cache file found, kept for the file that replaces it
/// if another matrix was missing.
struct Hit {
    name: String,
    entry: Entry,
    data: Mapped,
}

/// The cache file this load writes, under a temporary name until it is complete.
struct Writer {
    tmp: PathBuf,
    file: File,
    /// Where the next matrix starts.
    at: u64,
    index: Vec<(String, Entry)>,
}

impl Writer {
    fn create(path: &Path) -> std::io::Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = partial_name(path, std::process::id());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        Ok(Self {
            tmp,
            file,
            at: HEADER,
            index: Vec::new(),
        })
    }

    /// Appends `len` bytes that `fill` writes in place, through a shared map of
    /// the file (the page cache's pages: no copy in memory of our own); the same
    /// bytes mapped read-only.
    fn append(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> std::io::Result<(Mapped, u32)> {
        let at = self.at.next_multiple_of(ALIGN);
        // The disk blocks are taken now: a full disk is this error, not a SIGBUS
        // when the map is written.
        reserve(&self.file, at, len as u64)?;
        let mut options = MmapOptions::new();
        options.offset(at).len(len.max(1));
        // SAFETY: the temporary file is this writer's own (its name holds our
        // process id) and no one else writes it; the range was just allocated.
        let mut out = unsafe { options.map_mut(&self.file) }?;
        fill(&mut out[..len]);
        let crc = crc32fast::hash(&out[..len]);
        drop(out);
        // SAFETY: as above; nothing writes this range again.
        let map = Arc::new(unsafe { options.map(&self.file) }?);
        self.at = at + len as u64;
        Ok((Mapped::file_range(&map, 0, len), crc))
    }

    /// Appends a copy of `bytes` (a matrix found in the old cache file).
    fn copy(&mut self, bytes: &[u8]) -> std::io::Result<u64> {
        let at = self.at.next_multiple_of(ALIGN);
        self.file.write_all_at(bytes, at)?;
        self.at = at + bytes.len() as u64;
        Ok(at)
    }

    /// Writes the index and the header and renames the file into place.
    fn finish(self, path: &Path, identity: Identity) -> std::io::Result<u64> {
        let mut index = Vec::new();
        index.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        for (name, e) in &self.index {
            for s in [name.as_str(), e.kind.as_str()] {
                index.extend_from_slice(&(s.len() as u32).to_le_bytes());
                index.extend_from_slice(s.as_bytes());
            }
            for v in [e.rows, e.cols, e.offset, e.len] {
                index.extend_from_slice(&v.to_le_bytes());
            }
            index.extend_from_slice(&e.crc.to_le_bytes());
        }
        self.file.write_all_at(&index, self.at)?;
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT.to_le_bytes());
        header.extend_from_slice(&LAYOUT.to_le_bytes());
        for v in [
            identity.len,
            identity.mtime as u64,
            identity.mtime_nsec as u64,
            identity.ino,
            self.at,
            index.len() as u64,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        std::fs::rename(&self.tmp, path)?;
        Ok(self.at + index.len() as u64)
    }
}

/// Extends `file` to hold `len` bytes at `at`, with disk blocks allocated for them.
fn reserve(file: &File, at: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "cache too large");
    let at = libc::off_t::try_from(at).map_err(|_| too_big())?;
    let len = libc::off_t::try_from(len.max(1)).map_err(|_| too_big())?;
    // SAFETY: a plain system call on a descriptor the `File` keeps open.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), at, len) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// The cache of one model file for one load: the valid cache file found, if any,
/// and the one this load writes where a matrix was missing from it.
pub(crate) struct WeightCache {
    path: PathBuf,
    identity: Identity,
    found: Option<(Arc<Mmap>, HashMap<String, Entry>)>,
    hits: RefCell<Vec<Hit>>,
    /// `None` until a matrix is missing; `Some(None)` once writing has failed.
    writer: RefCell<Option<Option<Writer>>>,
}

impl WeightCache {
    /// The cache in `dir` for the model file at `model`, with the file found there
    /// if it is valid for it. `None` (logged) where the model file's metadata
    /// cannot be read.
    pub fn open(dir: &Path, model: &Path) -> Option<Self> {
        let identity = match Identity::of(model) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(model = %model.display(), error = %e, "weight cache not used");
                return None;
            }
        };
        let path = dir.join(file_name(model));
        remove_orphans(&path);
        let found = match read(&path, identity) {
            Ok(found) => Some(found),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %e, "weight cache ignored, to be written again");
                None
            }
        };
        Some(Self {
            path,
            identity,
            found,
            hits: RefCell::new(Vec::new()),
            writer: RefCell::new(None),
        })
    }

    /// The repacked bytes of the matrix `want`: mapped from the cache file found
    /// where it holds them (checked against their checksum), else written by
    /// `fill` into the new cache file. `None` where that file cannot be written:
    /// the caller repacks into memory of its own.
    pub fn get(&self, want: &Wanted, fill: impl FnOnce(&mut [u8])) -> Option<Mapped> {
        if let Some((data, entry)) = self.lookup(want) {
            self.hits.borrow_mut().push(Hit {
                name: want.name.to_owned(),
                entry,
                data: data.clone(),
            });
            return Some(data);
        }
        let mut writer = self.writer.borrow_mut();
        let writer = writer.get_or_insert_with(|| {
            Writer::create(&self.path)
                .map_err(|e| tracing::warn!(cache = %self.path.display(), error = %e, "weight cache not written"))
                .ok()
        });
        let w = writer.as_mut()?;
        match w.append(want.len, fill) {
            Ok((data, crc)) => {
                let entry = want.entry(w.at - want.len as u64, crc);
                w.index.push((want.name.to_owned(), entry));
                data.populate(0..want.len);
                Some(data)
            }
            Err(e) => {
                tracing::warn!(cache = %self.path.display(), error = %e, "weight cache not written");
                // Dropping the writer removes its file.
                *writer = None;
                None
            }
        }
    }

    /// The cached bytes of the matrix `want` and their entry, read in and checked.
    fn lookup(&self, want: &Wanted) -> Option<(Mapped, Entry)> {
        let (map, entries) = self.found.as_ref()?;
        let e = entries.get(want.name)?;
        if *e != want.entry(e.offset, e.crc) {
            return None;
        }
        let data = Mapped::file_range(map, e.offset as usize, want.len);
        data.populate(0..want.len);
        if crc32fast::hash(data.bytes()) != e.crc {
            tracing::warn!(cache = %self.path.display(), tensor = want.name, "weight cache checksum mismatch: repacking");
            return None;
        }
        Some((data, e.clone()))
    }

    /// After the load: completes the new cache file if one was begun (the matrices
    /// found in the old one copied in), and renames it into place. A failure is
    /// logged, never returned: the model is loaded either way.
    pub fn finish(self) {
        let Some(Some(mut writer)) = self.writer.into_inner() else {
            return;
        };
        let start = Instant::now();
        let done = self
            .hits
            .into_inner()
            .into_iter()
            .try_for_each(|hit| {
                let offset = writer.copy(hit.data.bytes())?;
                writer.index.push((
                    hit.name,
                    Entry {
                        offset,
                        ..hit.entry
                    },
                ));
                Ok(())
            })
            .and_then(|()| writer.finish(&self.path, self.identity));
        match done {
            Ok(bytes) => tracing::info!(
                cache = %self.path.display(),
                mib = bytes >> 20,
                secs = start.elapsed().as_secs_f32(),
                "weight cache written"
            ),
            // Dropping the writer has removed its file.
            Err(e) => {
                tracing::warn!(cache = %self.path.display(), error = %e, "weight cache not written")
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Gone already where `finish` renamed it.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The temporary name under which process `pid` writes the cache file `path`.
fn partial_name(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".partial-{pid}"));
    PathBuf::from(name)
}

/// Removes the temporary files of `path` left by processes that no longer run
/// (killed while writing it).
fn remove_orphans(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    for e in entries.flatten() {
        let file = e.file_name();
        let pid = file
            .to_string_lossy()
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The cache's file name for the model file at `model`: its name and a hash of
/// its full path (two models of one name in different places get two caches).
fn file_name(model: &Path) -> String {
    let full = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_owned());
    // FNV-1a, stable across builds (the std hasher is not).
    let hash = full
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let stem = model
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy());
    format!("{stem}.{hash:016x}.taper-weights")
}

fn invalid(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// Little-endian fields read in order from a byte slice.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(invalid("index ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("took 4 bytes")))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }
    fn string(&mut self) -> std::io::Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| invalid("name is not UTF-8"))
    }
}

/// Opens and checks the cache file at `path` against the model file's identity:
/// its header, its index and every matrix's bounds (the bytes are checked when
/// looked up).
fn read(path: &Path, identity: Identity) -> std::io::Result<(Arc<Mmap>, HashMap<String, Entry>)> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    if file_len < HEADER {
        return Err(invalid("shorter than its header"));
    }
    let mut header = vec![0u8; HEADER as usize];
    file.read_exact_at(&mut header, 0)?;
    if &header[..8] != MAGIC {
        return Err(invalid("not a weight cache"));
    }
    let mut f = Fields(&header[8..]);
    let (format, layout) = (f.u32()?, f.u32()?);
    if (format, layout) != (FORMAT, LAYOUT) {
        return Err(invalid(format!(
            "format {format} layout {layout}, this version writes {FORMAT} {LAYOUT}"
        )));
    }
    let found = Identity {
        len: f.u64()?,
        mtime: f.u64()? as i64,
        mtime_nsec: f.u64()? as i64,
        ino: f.u64()?,
    };
    if found != identity {
        return Err(invalid("made from another version of the model file"));
    }
    let (index_at, index_len, index_crc) = (f.u64()?, f.u64()?, f.u32()?);
    if index_at.checked_add(index_len) != Some(file_len) {
        return Err(invalid("truncated"));
    }
    let mut index = vec![0u8; index_len as usize];
    file.read_exact_at(&mut index, index_at)?;
    if crc32fast::hash(&index) != index_crc {
        return Err(invalid("index checksum mismatch"));
    }
    let mut f = Fields(&index);
    let count = f.u32()?;
    let mut entries = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let name = f.string()?;
        let e = Entry {
            kind: f.string()?,
            rows: f.u64()?,
            cols: f.u64()?,
            offset: f.u64()?,
            len: f.u64()?,
            crc: f.u32()?,
        };
        let inside = e
            .offset
            .checked_add(e.len)
            .is_some_and(|end| end <= index_at);
        if !e.offset.is_multiple_of(ALIGN) || e.offset < HEADER || !inside {
            return Err(invalid(format!("{name} lies outside the file")));
        }
        entries.insert(name, e);
    }
    // SAFETY: the map is read-only; the cache is only ever replaced by renaming a
    // new file over it, never rewritten in place, so the mapped inode's bytes do
    // not change while it is mapped.
    let map = unsafe { Mmap::map(&file) }?;
    Ok((Arc::new(map), entries))
}
