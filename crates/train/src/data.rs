//! Corpora, the feature cache and batches.
//!
//! A corpus is a folder of speaker folders of audio files (any depth below the speaker folder,
//! any format the frontend reads). Log-mels are computed once, in parallel, into the feature
//! store ([`crate::store`]) under `cache/<frontend hash>/`, so a changed frontend never reads
//! stale features; the store records each source's size and modification time and computes it
//! again when they change. Training reads its segments from the store, a batch at a time.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::Rng;
use voxswap_audio::{read_mono, resample, ChannelMix, FrontendConfig, LogMel, Mel, MelWarp};

use crate::error::file_err;
use crate::store::{FeatureStore, UpdateReport};
use crate::{Error, Result};

/// Audio file extensions a corpus may hold.
pub use voxswap_audio::decode::AUDIO_EXTENSIONS;

/// One utterance of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// Speaker (the folder name).
    pub speaker: String,
    /// The audio file.
    pub path: PathBuf,
}

/// Lists `root/<speaker>/**/<file>.<audio ext>`, sorted, so that every run sees the same order.
///
/// # Errors
/// [`Error::Corpus`] when `root` is not a folder or holds no speaker with audio.
pub fn scan_corpus(root: &Path) -> Result<Vec<Utterance>> {
    let corpus_err = |detail: String| Error::Corpus {
        path: root.to_path_buf(),
        detail,
    };
    let entries = std::fs::read_dir(root).map_err(|e| corpus_err(format!("cannot read folder: {e}")))?;
    let mut speakers: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    speakers.sort();
    let mut out = Vec::new();
    for dir in speakers {
        let speaker = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files = Vec::new();
        collect_audio(&dir, &mut files);
        files.sort();
        out.extend(files.into_iter().map(|path| Utterance {
            speaker: speaker.clone(),
            path,
        }));
    }
    if out.is_empty() {
        return Err(corpus_err(
            "no audio files in speaker folders (expected <corpus>/<speaker>/<file>.wav)".into(),
        ));
    }
    Ok(out)
}

fn collect_audio(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_audio(&p, out);
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(x)))
        {
            out.push(p);
        }
    }
}

/// A short stable hash (FNV-1a, 64 bits) of the frontend configuration: the cache folder name.
pub fn frontend_hash(cfg: &FrontendConfig) -> String {
    voxswap_model::bank::fnv1a64(serde_json::to_string(cfg).unwrap_or_default().as_bytes())
}

const MAGIC: &[u8; 8] = b"VXMEL01\n";

/// A source's size and modification time (ns since the epoch).
pub(crate) fn source_stamp(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), mtime))
}

/// A file of the per-file cache of earlier voxswap versions (`<speaker>/<name>.mel`), when it is
/// current for a source of `stamp`.
pub(crate) fn read_legacy(path: &Path, stamp: (u64, u64)) -> Option<Mel> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 32];
    f.read_exact(&mut head).ok()?;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    if &head[..8] != MAGIC || (word(8), word(16)) != stamp {
        return None;
    }
    let n_mels = u32::from_le_bytes(head[24..28].try_into().ok()?) as usize;
    let frames = u32::from_le_bytes(head[28..32].try_into().ok()?) as usize;
    let mut bytes = Vec::with_capacity(n_mels * frames * 4);
    f.read_to_end(&mut bytes).ok()?;
    if bytes.len() != n_mels * frames * 4 {
        return None;
    }
    let data = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(Mel { n_mels, frames, data })
}

/// The features of one file for a model that reads the source's pitch: its log-mel's
/// `n_mels` rows, then the [`voxswap_audio::pitch::PITCH_CHANNELS`] rows of
/// [`voxswap_audio::pitch::pitch_features`] (normalised log-F0, voicing); `pitch` false gives
/// the log-mel alone ([`compute_mel`]).
pub fn compute_features(path: &Path, cfg: &FrontendConfig, pitch: bool) -> Result<Mel> {
    let audio = read_mono(path, ChannelMix::Downmix)?;
    let x = resample(&audio.samples, audio.sample_rate, cfg.sample_rate)?;
    let mut mel = LogMel::new(cfg)?.compute(&x);
    if pitch {
        voxswap_audio::pitch::append_pitch_rows(&mut mel, &x, cfg).map_err(|e| file_err(path, e.to_string()))?;
    }
    Ok(mel)
}

/// Log-mel of one file at the frontend's rate.
pub fn compute_mel(path: &Path, cfg: &FrontendConfig) -> Result<Mel> {
    compute_features(path, cfg, false)
}

/// The feature store of `utts` for frontend `cfg` in `cache` (`cache/<frontend hash>/`),
/// brought up to date (see [`FeatureStore::update`]), and each utterance's entry.
///
/// # Errors
/// The first unreadable file, named; a store that cannot be written.
pub fn load_store(
    corpus: &Path,
    utts: &[Utterance],
    cache: &Path,
    cfg: &FrontendConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(FeatureStore, Vec<usize>, UpdateReport)> {
    let mut store = FeatureStore::open(&cache.join(frontend_hash(cfg)), cfg.n_mels)?;
    let (ids, report) = store.update(corpus, utts, cfg, progress)?;
    Ok((store, ids, report))
}

/// [`load_store`] for a model that reads the source's pitch: a store of its own
/// (`cache/<frontend hash>-f0v<version>/`) whose frames hold the log-mel, then the pitch channels
/// ([`compute_features`]).
///
/// # Errors
/// As [`load_store`].
pub fn load_pitch_store(
    corpus: &Path,
    utts: &[Utterance],
    cache: &Path,
    cfg: &FrontendConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(FeatureStore, Vec<usize>, UpdateReport)> {
    let bands = cfg.n_mels + voxswap_audio::pitch::PITCH_CHANNELS;
    let dir = format!(
        "{}-f0v{}",
        frontend_hash(cfg),
        voxswap_audio::pitch::PITCH_FEATURES_VERSION
    );
    let mut store = FeatureStore::open(&cache.join(dir), bands)?;
    let compute = |u: &Utterance, _: &str, _: (u64, u64)| -> Result<(Mel, bool)> {
        Ok((compute_features(&u.path, cfg, true)?, false))
    };
    let (ids, report) = store.update_with(corpus, utts, &compute, progress)?;
    Ok((store, ids, report))
}

/// Where a training segment comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index into [`Dataset::train`].
    pub speaker: usize,
    /// Index into the speaker's utterances.
    pub utt: usize,
    /// First frame.
    pub offset: usize,
}

/// Where a dataset's frames are: in memory, or in a feature store on disk.
#[derive(Debug)]
enum Features {
    Memory(Vec<Mel>),
    Store(FeatureStore),
}

/// A training utterance: its place in the dataset's features and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utt {
    /// Index into the features (a mel in memory, or a store entry).
    id: usize,
    /// Index into the scanned utterances the dataset was made from.
    src: usize,
    /// Frames.
    pub frames: usize,
}

/// A training utterance with its phoneme transcript (classes of
/// [`crate::phonetic::Transcripts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneUtt {
    /// Index into [`Dataset::train`].
    pub speaker: usize,
    /// Index into the speaker's utterances.
    pub utt: usize,
    /// The phonemes.
    pub labels: Vec<u32>,
}

/// Training and validation utterances, grouped by speaker.
#[derive(Debug)]
pub struct Dataset {
    features: Features,
    /// Per speaker: its name and its training utterances (those long enough for a segment).
    pub train: Vec<(String, Vec<Utt>)>,
    /// The first segment of each validation utterance (held out from training).
    pub valid: Vec<Mel>,
    /// Frames per training segment.
    pub segment_frames: usize,
    /// Each scanned utterance's path relative to the corpus, with `/` (what [`Utt`]'s `src`
    /// indexes): the key of its transcript.
    keys: Vec<String>,
}

/// `utts`' paths relative to `corpus`, with `/`.
fn keys_of(corpus: &Path, utts: &[Utterance]) -> Vec<String> {
    utts.iter()
        .map(|u| {
            let rel = u.path.strip_prefix(corpus).unwrap_or(&u.path);
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// Groups utterances (sorted by speaker) into training utterances per speaker and validation
/// utterances: the last `valid_per_speaker` of each speaker (in name order) are held out;
/// utterances shorter than `segment_frames` are dropped. Indices into `utts`.
/// Training utterances per speaker (names and indices), and validation utterances (indices).
type Split = (Vec<(String, Vec<usize>)>, Vec<usize>);

fn split(
    corpus: &Path,
    utts: &[Utterance],
    frames: &[usize],
    segment_frames: usize,
    valid_per_speaker: usize,
) -> Result<Split> {
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut i = 0;
    while i < utts.len() {
        let speaker = &utts[i].speaker;
        let end = (i..utts.len())
            .find(|&j| &utts[j].speaker != speaker)
            .unwrap_or(utts.len());
        let mut group: Vec<usize> = (i..end).filter(|&k| frames[k] >= segment_frames).collect();
        let n_valid = valid_per_speaker.min(group.len().saturating_sub(1));
        valid.extend(group.drain(group.len() - n_valid..));
        if !group.is_empty() {
            train.push((speaker.clone(), group));
        }
        i = end;
    }
    if train.is_empty() {
        return Err(Error::Corpus {
            path: corpus.to_path_buf(),
            detail: format!("no utterance is at least {segment_frames} frames long"),
        });
    }
    Ok((train, valid))
}

/// The speakers' groups of utterance indices as [`Utt`]s: `id(k)` is utterance `k`'s place in
/// the features.
fn utts_of(
    groups: Vec<(String, Vec<usize>)>,
    frames: &[usize],
    id: impl Fn(usize) -> usize,
) -> Vec<(String, Vec<Utt>)> {
    groups
        .into_iter()
        .map(|(name, ks)| {
            let utts = ks
                .into_iter()
                .map(|k| Utt {
                    id: id(k),
                    src: k,
                    frames: frames[k],
                })
                .collect();
            (name, utts)
        })
        .collect()
}

impl Dataset {
    /// A dataset of mels held in memory (`mels[i]` is `utts[i]`'s), split as [`Self::from_store`]
    /// does.
    ///
    /// # Errors
    /// [`Error::Corpus`] when no speaker keeps a training utterance.
    pub fn new(
        corpus: &Path,
        utts: &[Utterance],
        mels: Vec<Mel>,
        segment_frames: usize,
        valid_per_speaker: usize,
    ) -> Result<Self> {
        let frames: Vec<usize> = mels.iter().map(|m| m.frames).collect();
        let (groups, held) = split(corpus, utts, &frames, segment_frames, valid_per_speaker)?;
        let valid = held.iter().map(|&k| mels[k].range(0, segment_frames)).collect();
        Ok(Self {
            train: utts_of(groups, &frames, |k| k),
            features: Features::Memory(mels),
            valid,
            segment_frames,
            keys: keys_of(corpus, utts),
        })
    }

    /// A dataset read from a feature store (`ids[i]` is `utts[i]`'s entry): only the index and
    /// the validation segments are held in memory; training segments are read a batch at a time.
    /// The last `valid_per_speaker` utterances (in name order) of each speaker are held out for
    /// validation; utterances shorter than a segment are dropped.
    ///
    /// # Errors
    /// [`Error::Corpus`] when no speaker keeps a training utterance; a store that cannot be read.
    pub fn from_store(
        corpus: &Path,
        utts: &[Utterance],
        store: FeatureStore,
        ids: &[usize],
        segment_frames: usize,
        valid_per_speaker: usize,
    ) -> Result<Self> {
        let frames: Vec<usize> = ids.iter().map(|&id| store.entry(id).frames).collect();
        let (groups, held) = split(corpus, utts, &frames, segment_frames, valid_per_speaker)?;
        let valid = held
            .iter()
            .map(|&k| {
                let mut data = Vec::with_capacity(store.n_mels() * segment_frames);
                store.read(ids[k], 0, segment_frames, &mut data)?;
                Ok(Mel {
                    n_mels: store.n_mels(),
                    frames: segment_frames,
                    data,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            train: utts_of(groups, &frames, |k| ids[k]),
            features: Features::Store(store),
            valid,
            segment_frames,
            keys: keys_of(corpus, utts),
        })
    }

    /// Training speakers (what [`Pick::speaker`] indexes).
    pub fn n_speakers(&self) -> usize {
        self.train.len()
    }

    /// Where a batch of `batch` random segments comes from: a random speaker, a random
    /// utterance of theirs, a random offset (see [`segments`](Self::segments)).
    pub fn pick(&self, rng: &mut impl Rng, batch: usize) -> Vec<Pick> {
        (0..batch)
            .map(|_| {
                let speaker = rng.random_range(0..self.train.len());
                let utts = &self.train[speaker].1;
                let utt = rng.random_range(0..utts.len());
                let offset = rng.random_range(0..=utts[utt].frames - self.segment_frames);
                Pick { speaker, utt, offset }
            })
            .collect()
    }

    /// For each pick, a random segment of ANOTHER utterance of the same speaker (the same one
    /// only when the speaker has no other): a reference of the voice that shares no words with
    /// the segment, as at conversion.
    pub fn references(&self, rng: &mut impl Rng, picks: &[Pick]) -> Vec<Pick> {
        picks
            .iter()
            .map(|p| {
                let utts = &self.train[p.speaker].1;
                let utt = if utts.len() > 1 {
                    let u = rng.random_range(0..utts.len() - 1);
                    u + usize::from(u >= p.utt)
                } else {
                    p.utt
                };
                let offset = rng.random_range(0..=utts[utt].frames - self.segment_frames);
                Pick {
                    speaker: p.speaker,
                    utt,
                    offset,
                }
            })
            .collect()
    }

    /// The picked segments as a batch `[picks, n_mels, segment_frames]`.
    pub fn segments(&self, picks: &[Pick], device: &Device) -> Result<Tensor> {
        let seg = self.segment_frames;
        let n_mels = self.n_mels();
        let mut data = Vec::with_capacity(picks.len() * n_mels * seg);
        for p in picks {
            let u = self.train[p.speaker].1[p.utt];
            match &self.features {
                Features::Memory(mels) => {
                    let mel = &mels[u.id];
                    for m in 0..n_mels {
                        let row = m * mel.frames + p.offset;
                        data.extend_from_slice(&mel.data[row..row + seg]);
                    }
                }
                Features::Store(store) => store.read(u.id, p.offset, seg, &mut data)?,
            }
        }
        Ok(Tensor::from_vec(data, (picks.len(), n_mels, seg), device)?)
    }

    /// The training utterances that `transcripts` transcribes (by their path relative to the
    /// corpus), with their labels, where the content code (`frame_multiple` frames per code
    /// frame) has frames enough for CTC; and how many training utterances have no transcript.
    pub fn transcribed(
        &self,
        transcripts: &crate::phonetic::Transcripts,
        frame_multiple: usize,
    ) -> (Vec<PhoneUtt>, usize) {
        let (mut out, mut missing) = (Vec::new(), 0);
        for (speaker, (_, list)) in self.train.iter().enumerate() {
            for (utt, u) in list.iter().enumerate() {
                match transcripts.by_path.get(&self.keys[u.src]) {
                    Some(labels) if crate::phonetic::min_frames(labels) <= u.frames / frame_multiple => {
                        out.push(PhoneUtt {
                            speaker,
                            utt,
                            labels: labels.clone(),
                        });
                    }
                    Some(_) => {}
                    None => missing += 1,
                }
            }
        }
        (out, missing)
    }

    /// A whole training utterance, `[1, n_mels, frames]` with its frames cut to a multiple of
    /// `multiple`.
    pub fn utterance(&self, speaker: usize, utt: usize, multiple: usize, device: &Device) -> Result<Tensor> {
        let u = self.train[speaker].1[utt];
        let frames = u.frames / multiple * multiple;
        let n_mels = self.n_mels();
        let data = match &self.features {
            Features::Memory(mels) => mels[u.id].range(0, frames).data,
            Features::Store(store) => {
                let mut data = Vec::with_capacity(n_mels * frames);
                store.read(u.id, 0, frames, &mut data)?;
                data
            }
        };
        Ok(Tensor::from_vec(data, (1, n_mels, frames), device)?)
    }

    /// Bands per frame.
    pub fn n_mels(&self) -> usize {
        match &self.features {
            Features::Memory(mels) => mels.first().map_or(0, |m| m.n_mels),
            Features::Store(store) => store.n_mels(),
        }
    }

    /// The validation set as fixed batches: the first segment of each held-out utterance.
    pub fn valid_batches(&self, batch: usize, device: &Device) -> Result<Vec<Tensor>> {
        let seg = self.segment_frames;
        let mut out = Vec::new();
        for chunk in self.valid.chunks(batch.max(1)) {
            let n_mels = chunk[0].n_mels;
            let mut data = Vec::with_capacity(chunk.len() * n_mels * seg);
            for mel in chunk {
                data.extend_from_slice(&mel.data);
            }
            out.push(Tensor::from_vec(data, (chunk.len(), n_mels, seg), device)?);
        }
        Ok(out)
    }
}

/// The batch `x` (`[B, n_mels, T]`) with item `i`'s frequency axis warped by `alphas[i]`
/// ([`MelWarp`] on the frontend's mel bands).
///
/// # Errors
/// A batch that does not match `alphas` or the frontend's bands, or a factor that is not positive.
pub fn warp_batch(x: &Tensor, alphas: &[f64], frontend: &FrontendConfig) -> Result<Tensor> {
    let (b, n_mels, frames) = x.dims3()?;
    if b != alphas.len() || n_mels != frontend.n_mels {
        return Err(voxswap_model::Error::Input(format!(
            "cannot warp a batch of {b} × {n_mels} bands with {} factors and {} bands",
            alphas.len(),
            frontend.n_mels
        ))
        .into());
    }
    let data = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0.0; data.len()];
    let item = n_mels * frames;
    for ((src, dst), &alpha) in data.chunks_exact(item).zip(out.chunks_exact_mut(item)).zip(alphas) {
        MelWarp::new(n_mels, frontend.fmin, frontend.fmax, frontend.mel_scale, alpha)?.apply(src, frames, dst);
    }
    Ok(Tensor::from_vec(out, (b, n_mels, frames), x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Every frame of utterance `u` holds `u`'s number, so a segment tells where it came from.
    fn mel(u: usize, frames: usize) -> Mel {
        Mel {
            n_mels: 2,
            frames,
            data: (0..2 * frames).map(|i| (u * 1000 + i % frames) as f32).collect(),
        }
    }

    fn dataset() -> Dataset {
        // Speaker a has three utterances, speaker b only one; nothing held out.
        let utts: Vec<Utterance> = [("a", "0"), ("a", "1"), ("a", "2"), ("b", "3")]
            .iter()
            .map(|(s, n)| Utterance {
                speaker: (*s).into(),
                path: PathBuf::from(format!("{s}/{n}.wav")),
            })
            .collect();
        let mels = vec![mel(0, 20), mel(1, 30), mel(2, 8), mel(3, 12)];
        Dataset::new(Path::new("."), &utts, mels, 8, 0).unwrap()
    }

    #[test]
    fn references_come_from_another_utterance_of_the_same_voice() {
        let data = dataset();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let picks = data.pick(&mut rng, 200);
        let refs = data.references(&mut rng, &picks);
        let mut seen = [[false; 3]; 3];
        for (p, r) in picks.iter().zip(&refs) {
            assert_eq!(p.speaker, r.speaker);
            if p.speaker == 0 {
                assert_ne!(p.utt, r.utt, "a reference from the segment's own utterance");
                seen[p.utt][r.utt] = true;
            } else {
                assert_eq!(r.utt, 0, "speaker b has no other utterance");
            }
            assert!(r.offset + 8 <= data.train[r.speaker].1[r.utt].frames);
        }
        // Every other utterance is drawn.
        for (u, row) in seen.iter().enumerate() {
            for (v, &hit) in row.iter().enumerate() {
                assert_eq!(hit, u != v, "{u} -> {v}");
            }
        }
        // The segments are the picked frames, band by band.
        let x = data.segments(&refs[..2], &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 2, 8]);
        let x = x.to_vec3::<f32>().unwrap();
        for (r, item) in refs[..2].iter().zip(&x) {
            let u = if r.speaker == 0 { r.utt } else { 3 };
            for band in item {
                let want: Vec<f32> = (0..8).map(|t| (u * 1000 + r.offset + t) as f32).collect();
                assert_eq!(band, &want);
            }
        }
    }

    /// Transcripts are matched by corpus-relative path; an utterance too short for its labels
    /// is left out, one without a transcript counted; a whole utterance is read cut to the
    /// code's frame multiple.
    #[test]
    fn transcribed_utterances_and_whole_utterances() {
        let data = dataset();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tsv");
        std::fs::write(&p, "a/0.wav\tk a t s u\na/2.wav\tk a t\nb/3.wav\tt t\n").unwrap();
        let t = crate::phonetic::Transcripts::read(&p).unwrap();
        let (list, missing) = data.transcribed(&t, 4);
        assert_eq!(missing, 1, "a/1.wav has no transcript");
        let got: Vec<(usize, usize, usize)> = list.iter().map(|u| (u.speaker, u.utt, u.labels.len())).collect();
        // a/0: 20 frames, 5 code frames, 5 labels; a/2: 2 code frames for 3 labels (left out);
        // b/3: 3 code frames for `t t` (a blank between them).
        assert_eq!(got, [(0, 0, 5), (1, 0, 2)]);
        let x = data.utterance(0, 1, 4, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[1, 2, 28]);
        let x = x.to_vec3::<f32>().unwrap();
        let want: Vec<f32> = (0..28).map(|t| (1000 + t) as f32).collect();
        assert_eq!(x[0][1], want);
    }
}
