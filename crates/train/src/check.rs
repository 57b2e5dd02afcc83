//! Corpus check: what a corpus holds and what is wrong with it, before hours go into training.
//!
//! Every file is decoded once, chunk by chunk (constant memory per file), on all cores. Measured
//! on the mono mix: duration, sample rate, peak, RMS, clipping (runs of samples at full scale)
//! and the share of silent 20 ms windows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use voxswap_audio::{AudioReader, ChannelMix};

use crate::data::scan_corpus;
use crate::Result;

/// A sample at or above this magnitude is at full scale.
pub const FULL_SCALE: f32 = 0.999;
/// This many consecutive full-scale samples make a clip.
pub const CLIP_RUN: usize = 3;
/// A 20 ms window quieter than this (dBFS RMS) is silent.
pub const SILENCE_DBFS: f64 = -50.0;
/// A file with a larger share of silent windows is reported as silent.
pub const SILENT_SHARE: f64 = 0.9;
/// A file shorter than this (seconds) is reported as too short to train on.
pub const SHORT_S: f64 = 0.5;

/// What one readable file holds.
#[derive(Debug, Clone, Serialize)]
pub struct FileStats {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels in the file.
    pub channels: usize,
    /// Seconds.
    pub duration_s: f64,
    /// Largest magnitude of the mono mix.
    pub peak: f32,
    /// Samples inside runs of at least [`CLIP_RUN`] full-scale samples.
    pub clipped_samples: u64,
    /// Share of 20 ms windows quieter than [`SILENCE_DBFS`].
    pub silent_share: f64,
}

/// Measures one file.
///
/// # Errors
/// The decoder's error, for an unreadable file.
pub fn check_file(path: &Path) -> std::result::Result<FileStats, voxswap_audio::Error> {
    let mut reader = AudioReader::open(path, ChannelMix::Downmix)?;
    let rate = reader.info().sample_rate;
    let channels = reader.info().channels;
    let window = (rate as usize / 50).max(1);
    let silence_power = 10f64.powf(SILENCE_DBFS / 10.0);
    let (mut peak, mut clipped, mut run) = (0f32, 0u64, 0usize);
    let (mut win_sum, mut win_len, mut windows, mut silent) = (0f64, 0usize, 0u64, 0u64);
    let frames = reader.for_each_chunk(|buf| {
        for &v in buf {
            let a = v.abs();
            peak = peak.max(a);
            if a >= FULL_SCALE {
                run += 1;
                if run == CLIP_RUN {
                    clipped += CLIP_RUN as u64;
                } else if run > CLIP_RUN {
                    clipped += 1;
                }
            } else {
                run = 0;
            }
            win_sum += f64::from(v) * f64::from(v);
            win_len += 1;
            if win_len == window {
                windows += 1;
                silent += u64::from(win_sum / window as f64 <= silence_power);
                win_sum = 0.0;
                win_len = 0;
            }
        }
    })?;
    Ok(FileStats {
        sample_rate: rate,
        channels,
        duration_s: frames as f64 / f64::from(rate),
        peak,
        clipped_samples: clipped,
        silent_share: if windows == 0 {
            1.0
        } else {
            silent as f64 / windows as f64
        },
    })
}

/// One speaker's share.
#[derive(Debug, Clone, Serialize)]
pub struct SpeakerSummary {
    /// Folder name.
    pub name: String,
    /// Readable files.
    pub utterances: usize,
    /// Seconds of audio.
    pub seconds: f64,
}

/// The whole corpus.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    /// The corpus folder.
    pub root: PathBuf,
    /// Per speaker, sorted by name.
    pub speakers: Vec<SpeakerSummary>,
    /// Readable audio files.
    pub utterances: usize,
    /// Hours of readable audio.
    pub hours: f64,
    /// Files per sample rate.
    pub sample_rates: BTreeMap<u32, usize>,
    /// Files per channel count.
    pub channels: BTreeMap<usize, usize>,
    /// Share of silent 20 ms windows over the corpus.
    pub silent_share: f64,
    /// Files with clipping.
    pub clipped: Vec<PathBuf>,
    /// Files that are (almost) all silence.
    pub silent: Vec<PathBuf>,
    /// Files shorter than [`SHORT_S`].
    pub short: Vec<PathBuf>,
    /// Files that cannot be decoded, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl CorpusReport {
    /// True when nothing would stop or spoil training: every file decodes.
    pub fn ok(&self) -> bool {
        self.unreadable.is_empty()
    }
}

/// Checks every audio file of `root/<speaker>/**`; `progress(done, total)` is called as files finish.
///
/// # Errors
/// [`crate::Error::Corpus`] when `root` is not a corpus (no speaker folder with audio).
pub fn check_corpus(root: &Path, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<CorpusReport> {
    let utts = scan_corpus(root)?;
    let total = utts.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<_> = utts
        .par_iter()
        .map(|u| {
            let r = check_file(&u.path);
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            r
        })
        .collect();
    let mut speakers: BTreeMap<&str, SpeakerSummary> = BTreeMap::new();
    let mut report = CorpusReport {
        root: root.to_path_buf(),
        speakers: Vec::new(),
        utterances: 0,
        hours: 0.0,
        sample_rates: BTreeMap::new(),
        channels: BTreeMap::new(),
        silent_share: 0.0,
        clipped: Vec::new(),
        silent: Vec::new(),
        short: Vec::new(),
        unreadable: Vec::new(),
    };
    let (mut silent_s, mut total_s) = (0.0, 0.0);
    for (u, r) in utts.iter().zip(results) {
        let s = speakers.entry(&u.speaker).or_insert_with(|| SpeakerSummary {
            name: u.speaker.clone(),
            utterances: 0,
            seconds: 0.0,
        });
        match r {
            Err(e) => {
                // The decoder's message names the file; the report keeps the path beside it.
                let text = e.to_string();
                let prefix = format!("{}: ", u.path.display());
                let problem = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
                report.unreadable.push((u.path.clone(), problem));
            }
            Ok(st) => {
                s.utterances += 1;
                s.seconds += st.duration_s;
                report.utterances += 1;
                total_s += st.duration_s;
                silent_s += st.duration_s * st.silent_share;
                *report.sample_rates.entry(st.sample_rate).or_default() += 1;
                *report.channels.entry(st.channels).or_default() += 1;
                if st.clipped_samples > 0 {
                    report.clipped.push(u.path.clone());
                }
                if st.silent_share > SILENT_SHARE {
                    report.silent.push(u.path.clone());
                }
                if st.duration_s < SHORT_S {
                    report.short.push(u.path.clone());
                }
            }
        }
    }
    report.hours = total_s / 3600.0;
    report.silent_share = if total_s > 0.0 { silent_s / total_s } else { 0.0 };
    report.speakers = speakers.into_values().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxswap_audio::{write_wav, WavFormat};

    fn tone(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * (i as f32 * 0.07).sin()).collect()
    }

    #[test]
    fn finds_clips_silence_short_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b/chapter");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_wav(a.join("ok.wav"), &tone(16000, 0.5), 16000, WavFormat::Pcm16).unwrap();
        let mut clip = tone(16000, 0.5);
        clip[100..110].fill(1.0);
        write_wav(a.join("clip.wav"), &clip, 16000, WavFormat::Pcm16).unwrap();
        write_wav(b.join("quiet.wav"), &vec![0.0; 24000], 24000, WavFormat::Pcm16).unwrap();
        write_wav(b.join("short.wav"), &tone(1000, 0.5), 16000, WavFormat::Pcm16).unwrap();
        std::fs::write(b.join("broken.wav"), b"RIFF nonsense").unwrap();
        let r = check_corpus(dir.path(), &|_, _| {}).unwrap();
        assert_eq!(r.speakers.len(), 2);
        assert_eq!((r.speakers[0].utterances, r.speakers[1].utterances), (2, 2));
        assert_eq!(r.utterances, 4);
        assert!((r.hours * 3600.0 - (1.0 + 1.0 + 1.0 + 1000.0 / 16000.0)).abs() < 1e-9);
        assert_eq!(r.sample_rates.get(&16000), Some(&3));
        assert_eq!(r.sample_rates.get(&24000), Some(&1));
        assert_eq!(r.clipped, vec![a.join("clip.wav")]);
        assert_eq!(r.silent, vec![b.join("quiet.wav")]);
        assert_eq!(r.short, vec![b.join("short.wav")]);
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].0, b.join("broken.wav"));
        // The problem without the path again (the report prints them side by side).
        assert!(!r.unreadable[0].1.contains("broken.wav"), "{}", r.unreadable[0].1);
        assert!(r.unreadable[0].1.contains("malformed"), "{}", r.unreadable[0].1);
        assert!(!r.ok());
        assert!((r.silent_share - 1.0 / 3.0625).abs() < 0.02, "{}", r.silent_share);
    }

    #[test]
    fn clip_needs_a_run_of_full_scale_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        let mut x = tone(8000, 0.3);
        x[10] = 1.0;
        x[11] = 1.0; // two in a row: a peak, not a clip
        write_wav(&p, &x, 16000, WavFormat::Float32).unwrap();
        assert_eq!(check_file(&p).unwrap().clipped_samples, 0);
        x[12] = -1.0;
        x[13] = 1.0;
        write_wav(&p, &x, 16000, WavFormat::Float32).unwrap();
        assert_eq!(check_file(&p).unwrap().clipped_samples, 4);
    }
}
