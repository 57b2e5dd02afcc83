//! The feature store: the log-mel of every utterance of a corpus in one file on disk, read a
//! segment at a time, so that a run's memory is bounded by its batches and not by its corpus
//! (LibriTTS's 585 hours are about 67 GB of float32 mels).
//!
//! A store is a folder (`cache/<frontend hash>/`) holding
//! - `features.f32`: the frames of every utterance back to back, frame-major (a frame's
//!   `n_mels` values together, little-endian float32), so that a segment is one contiguous read;
//! - `index.tsv`: a header line, then one line per utterance appended after its frames:
//!   `first frame, frames, source size, source modification time (ns), path in the corpus`.
//!
//! Both files only grow: an utterance whose source changed is computed again and appended, and
//! the newest line of a path wins. A build that is interrupted leaves at worst frames without an
//! index line, which the next build cuts off; builds of one store by two processes take turns
//! (a lock file). Segments are read with positioned reads (`pread`), not memory-mapped: the
//! operating system's page cache keeps what is read often, and none of it counts as the
//! process's own memory. Values are stored as float32, exactly as computed (no f16), so a run
//! reads the very numbers an in-memory run would.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use voxswap_audio::{FrontendConfig, Mel};

use crate::data::{compute_mel, read_legacy, source_stamp, Utterance};
use crate::error::file_err;
use crate::Result;

/// The frames file of a store.
pub const DATA_FILE: &str = "features.f32";
/// The index file of a store.
pub const INDEX_FILE: &str = "index.tsv";
const LOCK_FILE: &str = "lock";
const HEADER: &str = "voxswap-features\t1\tn_mels";
/// Utterances computed in parallel between two appends (and two flushes to disk).
const CHUNK: usize = 256;

/// One utterance in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path relative to the corpus.
    pub rel: String,
    /// Its source's size in bytes and modification time (ns since the epoch) when computed.
    pub stamp: (u64, u64),
    /// Its first frame in the frames file.
    pub start: u64,
    /// Its frames.
    pub frames: usize,
}

/// What [`FeatureStore::update`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Utterances already in the store.
    pub cached: usize,
    /// Utterances computed from their audio.
    pub computed: usize,
    /// Utterances taken from the per-file cache of earlier voxswap versions
    /// (`<speaker>/<name>.mel` beside the store).
    pub imported: usize,
}

/// A feature store (see the module docs).
#[derive(Debug)]
pub struct FeatureStore {
    dir: PathBuf,
    n_mels: usize,
    data: File,
    entries: Vec<Entry>,
    /// The newest entry of each path.
    latest: HashMap<String, usize>,
    /// Frames covered by the index (the frames file may hold more after an interrupted build).
    end: u64,
    /// Bytes of the index's complete, valid lines (an interrupted build may leave more).
    index_len: u64,
}

impl FeatureStore {
    /// Opens (creating it if missing) the store in `dir` for mels of `n_mels` bands.
    ///
    /// # Errors
    /// A folder that cannot be created or read; a store of another format or band count.
    pub fn open(dir: &Path, n_mels: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create the feature store: {e}")))?;
        let index = dir.join(INDEX_FILE);
        if !index.exists() {
            // Written whole under a temporary name, so that a header is never half there.
            let tmp = voxswap_audio::partial::PartialFile::create(dir, ".voxswap-", ".part")
                .map_err(|e| file_err(dir, format!("cannot write: {e}")))?;
            tmp.as_file()
                .write_all(format!("{HEADER}\t{n_mels}\n").as_bytes())
                .map_err(|e| file_err(&index, format!("cannot write: {e}")))?;
            tmp.persist(&index)
                .map_err(|e| file_err(&index, format!("cannot write: {e}")))?;
        }
        let path = dir.join(DATA_FILE);
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| file_err(&path, format!("cannot open: {e}")))?;
        let mut s = Self {
            dir: dir.to_path_buf(),
            n_mels,
            data,
            entries: Vec::new(),
            latest: HashMap::new(),
            end: 0,
            index_len: 0,
        };
        s.reload()?;
        Ok(s)
    }

    /// Reads the index again (another process may have added to it).
    fn reload(&mut self) -> Result<()> {
        let path = self.dir.join(INDEX_FILE);
        let f = File::open(&path).map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
        let data_frames = self.data_len()? / self.frame_bytes();
        let mut lines = BufReader::new(f).split(b'\n');
        let header = lines
            .next()
            .transpose()
            .map_err(|e| file_err(&path, format!("cannot read: {e}")))?
            .unwrap_or_default();
        let want = format!("{HEADER}\t{}", self.n_mels);
        if header != want.as_bytes() {
            return Err(file_err(
                &path,
                format!(
                    "not a feature store of this voxswap for {}-band mels (its first line is `{}`): \
                     delete the folder {} and it is built again",
                    self.n_mels,
                    String::from_utf8_lossy(&header),
                    self.dir.display()
                ),
            ));
        }
        self.entries.clear();
        self.latest.clear();
        self.end = 0;
        let bytes = std::fs::metadata(&path)
            .map_err(|e| file_err(&path, e.to_string()))?
            .len();
        let mut read = (want.len() + 1) as u64;
        self.index_len = read;
        for line in lines {
            let line = line.map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
            read += line.len() as u64 + 1;
            if read > bytes {
                break; // the last line has no newline: cut off by an interruption
            }
            let text = String::from_utf8_lossy(&line);
            let mut f = text.splitn(5, '\t');
            let mut num = || f.next().and_then(|v| v.parse::<u64>().ok());
            let (Some(start), Some(frames), Some(len), Some(mtime)) = (num(), num(), num(), num()) else {
                return Err(file_err(
                    &path,
                    format!("damaged line `{text}`: delete the folder to rebuild it"),
                ));
            };
            let Some(rel) = f.next() else {
                return Err(file_err(
                    &path,
                    format!("damaged line `{text}`: delete the folder to rebuild it"),
                ));
            };
            if start + frames > data_frames {
                break; // frames lost (the data file was cut): what follows is rebuilt
            }
            self.latest.insert(rel.to_string(), self.entries.len());
            self.entries.push(Entry {
                rel: rel.to_string(),
                stamp: (len, mtime),
                start,
                frames: frames as usize,
            });
            self.end = self.end.max(start + frames);
            self.index_len = read;
        }
        Ok(())
    }

    fn frame_bytes(&self) -> u64 {
        self.n_mels as u64 * 4
    }

    fn data_len(&self) -> Result<u64> {
        Ok(self
            .data
            .metadata()
            .map_err(|e| file_err(&self.dir.join(DATA_FILE), e.to_string()))?
            .len())
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bands per frame.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Entry `id`.
    pub fn entry(&self, id: usize) -> &Entry {
        &self.entries[id]
    }

    /// Frames in the store (the newest entry of every path and any older ones).
    pub fn frames(&self) -> u64 {
        self.end
    }

    /// Brings the store up to date with `utts` (whose paths lie under `corpus`): utterances
    /// missing from it, or whose source changed size or time, are computed with the frontend
    /// `cfg` (in parallel, [`CHUNK`] at a time) and appended; files of the per-file cache of
    /// earlier versions beside the store are taken instead of decoding again where current.
    /// Returns each utterance's entry id. `progress` hears (done, total).
    ///
    /// # Errors
    /// A source that cannot be decoded, named; a store that cannot be written.
    pub fn update(
        &mut self,
        corpus: &Path,
        utts: &[Utterance],
        cfg: &FrontendConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Vec<usize>, UpdateReport)> {
        let legacy = self.dir.clone();
        let compute = |u: &Utterance, rel: &str, stamp: (u64, u64)| -> Result<(Mel, bool)> {
            match read_legacy(&legacy.join(rel).with_extension("mel"), stamp) {
                Some(m) => Ok((m, true)),
                None => Ok((compute_mel(&u.path, cfg)?, false)),
            }
        };
        self.update_with(corpus, utts, &compute, progress)
    }

    /// [`Self::update`] with features of its own: `compute(utterance, path in the corpus,
    /// source stamp)` gives an utterance's frames (and whether they were imported rather than
    /// computed). For stores of something else than the frontend's log-mel (a model's
    /// reconstructions of them, for fine-tuning the vocoder).
    ///
    /// # Errors
    /// As [`Self::update`], and whatever `compute` returns.
    #[allow(clippy::type_complexity)]
    pub fn update_with(
        &mut self,
        corpus: &Path,
        utts: &[Utterance],
        compute: &(dyn Fn(&Utterance, &str, (u64, u64)) -> Result<(Mel, bool)> + Sync),
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Vec<usize>, UpdateReport)> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| file_err(&lock_path, format!("cannot create: {e}")))?;
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; released when `lock` closes.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(file_err(&lock_path, format!("cannot lock: {e}")));
            }
        }
        self.reload()?;
        let rels: Vec<String> = utts
            .iter()
            .map(|u| {
                let rel = u
                    .path
                    .strip_prefix(corpus)
                    .unwrap_or(&u.path)
                    .to_string_lossy()
                    .into_owned();
                if rel.contains(['\n', '\r']) {
                    return Err(file_err(&u.path, "a file name with a line break cannot be cached"));
                }
                Ok(rel)
            })
            .collect::<Result<_>>()?;
        let stamps: Vec<(u64, u64)> = utts.par_iter().map(|u| source_stamp(&u.path)).collect::<Result<_>>()?;
        let mut ids = vec![usize::MAX; utts.len()];
        let mut todo = Vec::new();
        for (i, rel) in rels.iter().enumerate() {
            match self.latest.get(rel) {
                Some(&id) if self.entries[id].stamp == stamps[i] => ids[i] = id,
                _ => todo.push(i),
            }
        }
        let mut report = UpdateReport {
            cached: utts.len() - todo.len(),
            ..UpdateReport::default()
        };
        progress(report.cached, utts.len());
        if todo.is_empty() {
            return Ok((ids, report));
        }
        // Frames past the index are an interrupted build's: cut them off.
        let data_path = self.dir.join(DATA_FILE);
        if self.data_len()? > self.end * self.frame_bytes() {
            self.data
                .set_len(self.end * self.frame_bytes())
                .map_err(|e| file_err(&data_path, format!("cannot cut: {e}")))?;
        }
        let index_path = self.dir.join(INDEX_FILE);
        let mut index = self.index_for_append()?;
        for chunk in todo.chunks(CHUNK) {
            let mels: Vec<(Mel, bool)> = chunk
                .par_iter()
                .map(|&i| compute(&utts[i], &rels[i], stamps[i]))
                .collect::<Result<_>>()?;
            let mut bytes = Vec::new();
            let mut lines = String::new();
            let mut start = self.end;
            for (&i, (mel, imported)) in chunk.iter().zip(&mels) {
                if mel.n_mels != self.n_mels {
                    return Err(file_err(
                        &utts[i].path,
                        format!("{} bands, the store holds {}", mel.n_mels, self.n_mels),
                    ));
                }
                for t in 0..mel.frames {
                    for m in 0..mel.n_mels {
                        bytes.extend_from_slice(&mel.at(m, t).to_le_bytes());
                    }
                }
                lines.push_str(&format!(
                    "{start}\t{}\t{}\t{}\t{}\n",
                    mel.frames, stamps[i].0, stamps[i].1, rels[i]
                ));
                ids[i] = self.entries.len();
                self.latest.insert(rels[i].clone(), self.entries.len());
                self.entries.push(Entry {
                    rel: rels[i].clone(),
                    stamp: stamps[i],
                    start,
                    frames: mel.frames,
                });
                start += mel.frames as u64;
                if *imported {
                    report.imported += 1;
                } else {
                    report.computed += 1;
                }
            }
            // The frames on disk before the lines that point at them.
            self.data
                .write_all_at(&bytes, self.end * self.frame_bytes())
                .and_then(|()| self.data.sync_data())
                .map_err(|e| file_err(&data_path, format!("cannot write: {e}")))?;
            index
                .write_all(lines.as_bytes())
                .and_then(|()| index.sync_data())
                .map_err(|e| file_err(&index_path, format!("cannot write: {e}")))?;
            self.end = start;
            self.index_len += lines.len() as u64;
            progress(report.cached + report.computed + report.imported, utts.len());
        }
        drop(lock);
        Ok((ids, report))
    }

    /// Appends `frames` frames of raw values (frame-major) under the path `rel`, without a
    /// source: for building large synthetic stores in tests and benchmarks. A frames value of
    /// `None` leaves the frames as a hole of zeros (a sparse file: no disk used).
    ///
    /// # Errors
    /// A store that cannot be written.
    pub fn append_raw(&mut self, rel: &str, frames: usize, values: Option<&[f32]>) -> Result<usize> {
        let data_path = self.dir.join(DATA_FILE);
        let start = self.end;
        let end_bytes = (start + frames as u64) * self.frame_bytes();
        match values {
            Some(v) => {
                if v.len() != frames * self.n_mels {
                    return Err(file_err(&data_path, "append_raw: values do not fill the frames"));
                }
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                self.data
                    .write_all_at(&bytes, start * self.frame_bytes())
                    .map_err(|e| file_err(&data_path, format!("cannot write: {e}")))?;
            }
            None => {
                if self.data_len()? < end_bytes {
                    self.data
                        .set_len(end_bytes)
                        .map_err(|e| file_err(&data_path, format!("cannot grow: {e}")))?;
                }
            }
        }
        let index_path = self.dir.join(INDEX_FILE);
        let mut index = self.index_for_append()?;
        index
            .write_all(format!("{start}\t{frames}\t0\t0\t{rel}\n").as_bytes())
            .map_err(|e| file_err(&index_path, format!("cannot write: {e}")))?;
        let id = self.entries.len();
        self.latest.insert(rel.to_string(), id);
        self.entries.push(Entry {
            rel: rel.to_string(),
            stamp: (0, 0),
            start,
            frames,
        });
        self.end = start + frames as u64;
        self.index_len = index
            .metadata()
            .map_err(|e| file_err(&index_path, e.to_string()))?
            .len();
        Ok(id)
    }

    /// The index, opened to append, with what follows its last valid line (an interrupted
    /// build's) cut off first.
    fn index_for_append(&self) -> Result<File> {
        let path = self.dir.join(INDEX_FILE);
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| file_err(&path, format!("cannot write: {e}")))?;
        let len = f.metadata().map_err(|e| file_err(&path, e.to_string()))?.len();
        if len > self.index_len {
            f.set_len(self.index_len)
                .map_err(|e| file_err(&path, format!("cannot cut: {e}")))?;
        }
        Ok(f)
    }

    /// The newest entry of path `rel`.
    pub fn find(&self, rel: &str) -> Option<usize> {
        self.latest.get(rel).copied()
    }

    /// Appends frames `offset .. offset + frames` of entry `id` to `out`, band-major (band 0's
    /// frames, then band 1's…, as [`Mel::data`] holds them).
    ///
    /// # Errors
    /// Frames outside the entry; a store that cannot be read.
    pub fn read(&self, id: usize, offset: usize, frames: usize, out: &mut Vec<f32>) -> Result<()> {
        let e = &self.entries[id];
        let path = self.dir.join(DATA_FILE);
        if offset + frames > e.frames {
            return Err(file_err(
                &path,
                format!(
                    "frames {offset}..{} of {} asked, it has {}",
                    offset + frames,
                    e.rel,
                    e.frames
                ),
            ));
        }
        let n = self.n_mels;
        let mut bytes = vec![0u8; frames * n * 4];
        self.data
            .read_exact_at(&mut bytes, (e.start + offset as u64) * self.frame_bytes())
            .map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
        let base = out.len();
        out.resize(base + frames * n, 0.0);
        for (k, b) in bytes.chunks_exact(4).enumerate() {
            let (t, m) = (k / n, k % n);
            out[base + m * frames + t] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// The whole mel of entry `id`.
    ///
    /// # Errors
    /// A store that cannot be read.
    pub fn mel(&self, id: usize) -> Result<Mel> {
        let frames = self.entries[id].frames;
        let mut data = Vec::with_capacity(frames * self.n_mels);
        self.read(id, 0, frames, &mut data)?;
        Ok(Mel {
            n_mels: self.n_mels,
            frames,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utt(dir: &Path, speaker: &str, name: &str, seconds: f32) -> Utterance {
        let p = dir.join(speaker).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let n = (16000.0 * seconds) as usize;
        let x: Vec<f32> = (0..n)
            .map(|i| 0.3 * (i as f32 * 0.05 * (1.0 + name.len() as f32)).sin())
            .collect();
        voxswap_audio::write_wav(&p, &x, 16000, voxswap_audio::WavFormat::Float32).unwrap();
        Utterance {
            speaker: speaker.into(),
            path: p,
        }
    }

    /// The store gives back exactly the mels the frontend computes, keeps them across opens,
    /// recomputes a changed source, and cuts off an interrupted build's frames.
    #[test]
    fn stores_reads_and_updates_mels() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        let cfg = FrontendConfig::speech_16k();
        let utts = vec![
            utt(&corpus, "a", "x.wav", 0.5),
            utt(&corpus, "a", "yy.wav", 0.7),
            utt(&corpus, "b", "zzz.wav", 0.3),
        ];
        let sdir = dir.path().join("store");
        let mut s = FeatureStore::open(&sdir, cfg.n_mels).unwrap();
        let (ids, r) = s.update(&corpus, &utts, &cfg, &|_, _| {}).unwrap();
        assert_eq!((r.cached, r.computed, r.imported), (0, 3, 0));
        for (u, &id) in utts.iter().zip(&ids) {
            let want = compute_mel(&u.path, &cfg).unwrap();
            assert_eq!(s.mel(id).unwrap(), want);
            // A segment is the frames asked for, band-major.
            let mut seg = Vec::new();
            s.read(id, 3, 5, &mut seg).unwrap();
            for m in 0..cfg.n_mels {
                for t in 0..5 {
                    assert_eq!(seg[m * 5 + t], want.at(m, 3 + t));
                }
            }
            assert!(s.read(id, want.frames - 2, 5, &mut seg).is_err());
        }
        // Opened again: nothing to compute.
        let mut s = FeatureStore::open(&sdir, cfg.n_mels).unwrap();
        let (again, r) = s.update(&corpus, &utts, &cfg, &|_, _| {}).unwrap();
        assert_eq!((again.clone(), r.cached, r.computed), (ids.clone(), 3, 0));
        // A changed source is computed again and appended.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let changed = utt(&corpus, "a", "yy.wav", 0.9);
        let (new_ids, r) = s.update(&corpus, &utts, &cfg, &|_, _| {}).unwrap();
        assert_eq!((r.cached, r.computed), (2, 1));
        assert_ne!(new_ids[1], ids[1]);
        assert_eq!(s.mel(new_ids[1]).unwrap(), compute_mel(&changed.path, &cfg).unwrap());
        // An interrupted build: frames written past the index, and a line without its end.
        let frames_before = s.frames();
        let data = OpenOptions::new().append(true).open(sdir.join(DATA_FILE)).unwrap();
        (&data).write_all(&[1u8; 4 * 80 * 7]).unwrap();
        let mut idx = OpenOptions::new().append(true).open(sdir.join(INDEX_FILE)).unwrap();
        idx.write_all(b"99999\t7\t1\t1\tc/half").unwrap();
        let mut s = FeatureStore::open(&sdir, cfg.n_mels).unwrap();
        assert_eq!(s.frames(), frames_before);
        assert_eq!(s.find("c/half"), None);
        let more = vec![utt(&corpus, "c", "w.wav", 0.4)];
        let (ids_c, r) = s.update(&corpus, &more, &cfg, &|_, _| {}).unwrap();
        assert_eq!(r.computed, 1);
        assert_eq!(s.mel(ids_c[0]).unwrap(), compute_mel(&more[0].path, &cfg).unwrap());
        let s = FeatureStore::open(&sdir, cfg.n_mels).unwrap();
        assert_eq!(
            s.mel(s.find("c/w.wav").unwrap()).unwrap(),
            compute_mel(&more[0].path, &cfg).unwrap()
        );
        // Another band count is refused with a message.
        let e = FeatureStore::open(&sdir, 64).unwrap_err().to_string();
        assert!(e.contains("delete the folder"), "{e}");
    }
}
