//! The stat cache: what a source folder's files looked like (size, times,
//! inode, mode) when they were last stored, and their hashes, so that a
//! redeployment reads only the files that changed.
//!
//! It is kept per slot (`statcache.bin`) and read on every deployment of a
//! folder, so it is laid out for that: every path in one string, the rows
//! in one vector, and an index from a 64-bit hash of the path to the row,
//! built once. A lookup hashes the path and compares it once; nothing is
//! allocated per file, to read it or to look a file up.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::store::{Digest, MODE_FILE};

/// The stat cache's file name in a slot's folder.
pub(crate) const STAT_CACHE_FILE: &str = "statcache.bin";

const STAT_CACHE_MAGIC: &[u8; 8] = b"fnhsc04\n";

/// What a file's `stat` says, as far as telling a changed file goes.
///
/// Times are nanoseconds since the epoch in 64 bits (until the year 2262;
/// beyond, they saturate). Whatever a file's modification time says, its
/// change time is the clock's when it was last written, which no program
/// can set: a write is always seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) ino: u64,
    /// [`MODE_FILE`] and the permission bits, as a manifest has them.
    pub(crate) mode: u32,
}

impl FileStat {
    /// From `fstatat(2)`'s answer for a regular file.
    pub(crate) fn from_stat(st: &nix::sys::stat::FileStat) -> FileStat {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileStat {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            mode: MODE_FILE | (st.st_mode & 0o777),
        }
    }
}

/// A file as the stat cache remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachedFile {
    pub(crate) stat: FileStat,
    pub(crate) hash: Digest,
}

#[derive(Debug, Clone)]
struct Row {
    /// The path's place in [`StatCache::paths`].
    start: u32,
    end: u32,
    file: CachedFile,
}

/// A hasher that passes on the 64-bit key it is given: the index's keys
/// are already hashes ([`path_key`]).
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Index = HashMap<u64, usize, BuildHasherDefault<KeyHasher>>;

/// A 64-bit hash of a path (XXH3). Two paths with the same key cost only
/// a re-read: the index keeps one of them, and the other is not found
/// (treated as changed).
fn path_key(path: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(path.as_bytes())
}

/// A stat cache: a source folder's files as last stored, by path.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatCache {
    /// The source folder it describes.
    pub(crate) source: PathBuf,
    /// When it was taken (ns since the epoch); entries changed within the
    /// clock's granularity of this instant are not trusted.
    pub(crate) taken_ns: i64,
    /// The deployment whose manifest lists every hash of the cache (while
    /// that manifest exists, the blobs exist).
    pub(crate) deployment: String,
    /// Every path, one after the other.
    paths: String,
    rows: Vec<Row>,
    /// Path key to row, made at the first lookup.
    index: OnceLock<Index>,
}

impl StatCache {
    /// An empty cache of `source`, taken at `taken_ns`, with room for
    /// `files` files.
    pub(crate) fn new(source: PathBuf, taken_ns: i64, files: usize) -> StatCache {
        StatCache {
            source,
            taken_ns,
            deployment: String::new(),
            paths: String::with_capacity(files * 32),
            rows: Vec::with_capacity(files),
            index: OnceLock::new(),
        }
    }

    /// Adds a file (a path added twice: the later entry is the one found).
    /// Past 4 GiB of paths, files are left out (and read again next time).
    pub(crate) fn push(&mut self, path: &str, file: CachedFile) {
        let (Ok(start), Ok(end)) = (
            u32::try_from(self.paths.len()),
            u32::try_from(self.paths.len() + path.len()),
        ) else {
            return;
        };
        self.paths.push_str(path);
        self.rows.push(Row { start, end, file });
        self.index = OnceLock::new();
    }

    /// How many files it describes.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    fn path(&self, row: &Row) -> &str {
        self.paths
            .get(row.start as usize..row.end as usize)
            .unwrap_or_default()
    }

    /// Every file, in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &CachedFile)> {
        self.rows.iter().map(|r| (self.path(r), &r.file))
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let mut index = Index::with_capacity_and_hasher(self.rows.len(), Default::default());
            for (i, r) in self.rows.iter().enumerate() {
                index.insert(path_key(self.path(r)), i);
            }
            index
        })
    }

    /// Makes the index now (on a thread with time to spare) rather than at
    /// the first lookup.
    pub(crate) fn build_index(&self) {
        self.index();
    }

    /// The entry at `row` (as [`StatCache::unchanged_row`] found it).
    pub(crate) fn at(&self, row: usize) -> Option<&CachedFile> {
        self.rows.get(row).map(|r| &r.file)
    }

    /// The row of `path`, trying the row at `next` first, and setting
    /// `next` to the row after the one found: files looked up in the order
    /// the cache was written (a folder listed as it was last time) are
    /// found one after the other, without the index.
    fn find_row(&self, path: &str, next: &mut usize) -> Option<usize> {
        let i = match self.rows.get(*next) {
            Some(r) if self.path(r) == path => *next,
            _ => {
                let i = *self.index().get(&path_key(path))?;
                if self.path(&self.rows[i]) != path {
                    return None;
                }
                i
            }
        };
        *next = i + 1;
        Some(i)
    }

    /// The row of a file that is as the cache remembers it (same size,
    /// times, inode and mode, and old enough that a change within the same
    /// clock tick as the cache was taken cannot hide), looking at row
    /// `next` first (see [`StatCache::find_row`]).
    pub(crate) fn unchanged_row(
        &self,
        path: &str,
        stat: &FileStat,
        next: &mut usize,
    ) -> Option<usize> {
        self.find_row(path, next).filter(|&i| {
            self.at(i).is_some_and(|e| {
                e.stat == *stat && e.stat.mtime_ns < self.taken_ns.saturating_sub(1_000_000_000)
            })
        })
    }

    /// A compact binary form (about 90 bytes a file) sealed with a
    /// checksum ([`crate::codec`]), so that a torn or damaged file is
    /// recognised and ignored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(
            STAT_CACHE_MAGIC,
            64 + self.paths.len() + self.rows.len() * 96,
        );
        w.str(self.source.as_os_str().as_encoded_bytes());
        w.bytes(&self.taken_ns.to_le_bytes());
        w.str(self.deployment.as_bytes());
        w.bytes(&(self.rows.len() as u64).to_le_bytes());
        for (path, f) in self.iter() {
            w.str(path.as_bytes());
            w.bytes(&f.stat.size.to_le_bytes());
            w.bytes(&f.stat.mtime_ns.to_le_bytes());
            w.bytes(&f.stat.ctime_ns.to_le_bytes());
            w.bytes(&f.stat.ino.to_le_bytes());
            w.bytes(&f.stat.mode.to_le_bytes());
            w.bytes(f.hash.as_bytes());
        }
        w.finish()
    }

    /// Reads [`StatCache::encode`]'s form; `None` when damaged.
    pub(crate) fn decode(data: &[u8]) -> Option<StatCache> {
        let mut r = Reader::open(data, STAT_CACHE_MAGIC)?;
        let source = PathBuf::from(r.string()?);
        let taken_ns = r.i64()?;
        let deployment = r.string()?;
        let count = r.u64()? as usize;
        // At least 68 bytes a row: a bad count fails below, without a
        // huge allocation first.
        let mut cache = StatCache::new(source, taken_ns, count.min(data.len() / 68));
        cache.deployment = deployment;
        for _ in 0..count {
            let path = r.str()?;
            let stat = FileStat {
                size: r.u64()?,
                mtime_ns: r.i64()?,
                ctime_ns: r.i64()?,
                ino: r.u64()?,
                mode: r.u32()?,
            };
            let hash = Digest::from_bytes(r.arr()?);
            cache.push(path, CachedFile { stat, hash });
        }
        r.is_done().then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(i: u64) -> CachedFile {
        CachedFile {
            stat: FileStat {
                size: i * 10,
                mtime_ns: -5 + i as i64,
                ctime_ns: 7,
                ino: 1000 + i,
                mode: MODE_FILE | 0o644,
            },
            hash: Digest::of(&i.to_le_bytes()),
        }
    }

    #[test]
    fn stat_cache_round_trips_and_refuses_damage() {
        let mut c = StatCache::new(PathBuf::from("/src/app"), 1_700_000_000_123_456_789, 0);
        c.deployment = "20260101T000000Z-abcdef".into();
        for i in 0..50u64 {
            c.push(&format!("lib/f{i}.js"), file(i));
        }
        let data = c.encode();
        let back = StatCache::decode(&data).expect("decodes");
        assert_eq!(back.source, c.source);
        assert_eq!(back.taken_ns, c.taken_ns);
        assert_eq!(back.deployment, c.deployment);
        assert_eq!(back.len(), 50);
        assert!(back.iter().eq(c.iter()));
        for cut in [0, 1, 8, data.len() / 2, data.len() - 1] {
            assert!(StatCache::decode(&data[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = data.clone();
        flipped[20] ^= 1;
        assert!(StatCache::decode(&flipped).is_none());
    }

    fn find<'c>(c: &'c StatCache, path: &str, next: &mut usize) -> Option<&'c CachedFile> {
        c.find_row(path, next).and_then(|i| c.at(i))
    }

    fn unchanged<'c>(c: &'c StatCache, stat: &FileStat) -> Option<&'c CachedFile> {
        let row = c.unchanged_row("a", stat, &mut { usize::MAX })?;
        c.at(row)
    }

    fn get<'c>(c: &'c StatCache, path: &str) -> Option<&'c CachedFile> {
        find(c, path, &mut { usize::MAX })
    }

    #[test]
    fn every_path_is_found_and_no_other() {
        let mut c = StatCache::new(PathBuf::from("/a"), 0, 0);
        let paths: Vec<String> = (0..5000u64)
            .map(|i| format!("d{}/{}f{i}.bin", i % 37, "x".repeat((i % 19) as usize)))
            .collect();
        for (i, p) in paths.iter().enumerate() {
            c.push(p, file(i as u64));
        }
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(get(&c, p), Some(&file(i as u64)), "{p}");
        }
        // Prefixes, extensions and near-misses of every length are absent.
        for p in [
            "",
            "d0",
            "d0/",
            "d0/f0.bi",
            "d0/f0.bin2",
            "D0/f0.bin",
            "d0/f0.bin/",
        ] {
            assert_eq!(get(&c, p), None, "{p:?}");
        }
        // Looked up in order, each file is found from the one before; out
        // of order, or at a wrong guess, from the index.
        let mut next = 0;
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(find(&c, p, &mut next), Some(&file(i as u64)), "{p}");
            assert_eq!(next, i + 1);
        }
        let mut next = 17;
        assert_eq!(find(&c, &paths[3], &mut next), Some(&file(3)));
        assert_eq!(next, 4);
        assert_eq!(find(&c, "d0/nothing", &mut next), None);
        assert_eq!(next, 4, "unchanged when nothing is found");
        // A path added again: the later entry wins.
        c.push("d0/f0.bin", file(9));
        assert_eq!(get(&c, "d0/f0.bin"), Some(&file(9)));
    }

    #[test]
    fn a_file_is_unchanged_only_when_every_field_matches_and_it_is_old_enough() {
        let mut c = StatCache::new(PathBuf::from("/a"), 10_000_000_000, 0);
        let f = file(3);
        c.push("a", f);
        assert!(unchanged(&c, &f.stat).is_some());
        let changes: [fn(&mut FileStat); 5] = [
            |s| s.size += 1,
            |s| s.mtime_ns += 1,
            |s| s.ctime_ns += 1,
            |s| s.ino += 1,
            |s| s.mode |= 0o100,
        ];
        for change in changes {
            let mut s = f.stat;
            change(&mut s);
            assert!(unchanged(&c, &s).is_none(), "{s:?}");
        }
        // Written within a second of the cache being taken: not trusted.
        let mut recent = c.clone();
        recent.taken_ns = f.stat.mtime_ns + 999_999_999;
        assert!(unchanged(&recent, &f.stat).is_none());
    }
}
