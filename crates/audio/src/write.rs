//! Writing WAV files atomically.
//!
//! Samples go to a temporary file in the output's folder, which is renamed over the output only
//! when everything is written ([`WavWriter::finish`]). A run that fails or is interrupted leaves
//! no half-written output: dropping an unfinished writer deletes the temporary file.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::partial::PartialFile;
use crate::{Error, Result};

/// Sample format of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit integer PCM; samples outside [-1, 1] are clipped and counted.
    #[default]
    Pcm16,
    /// 32-bit IEEE float; samples are written as they are.
    Float32,
}

/// What a finished write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// Samples written.
    pub samples: u64,
    /// Samples that were outside [-1, 1] and clipped (always 0 for float output).
    pub clipped: u64,
}

/// A mono WAV writer that renames its temporary file into place on [`finish`](Self::finish).
pub struct WavWriter {
    path: PathBuf,
    format: WavFormat,
    writer: Option<hound::WavWriter<BufWriter<std::fs::File>>>,
    tmp: Option<PartialFile>,
    /// Frames written.
    samples: u64,
    clipped: u64,
    /// Identical channels each sample is written to.
    channels: u16,
}

impl std::fmt::Debug for WavWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavWriter")
            .field("path", &self.path)
            .field("samples", &self.samples)
            .finish()
    }
}

impl WavWriter {
    /// Creates the temporary file beside `path`.
    ///
    /// # Errors
    /// [`Error::Write`] when the folder does not exist or is not writable, or `path` is a folder.
    pub fn create(path: impl AsRef<Path>, sample_rate: u32, format: WavFormat) -> Result<Self> {
        Self::create_copies(path, sample_rate, format, 1)
    }

    /// [`create`](Self::create) for a file of `channels` identical channels: every sample
    /// written goes to each of them (a mono signal in a source's channel layout).
    ///
    /// # Errors
    /// As [`create`](Self::create); [`Error::Config`] for no channel or more than 8.
    pub fn create_copies(path: impl AsRef<Path>, sample_rate: u32, format: WavFormat, channels: u16) -> Result<Self> {
        if !(1..=8).contains(&channels) {
            return Err(Error::Config(format!("{channels} output channels (1 to 8)")));
        }
        let path = path.as_ref().to_path_buf();
        let werr = |source| Error::Write {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            return Err(werr(std::io::Error::other("is a directory")));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = PartialFile::create(&dir, ".voxswap-", ".wav.part").map_err(werr)?;
        let spec = hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: match format {
                WavFormat::Pcm16 => 16,
                WavFormat::Float32 => 32,
            },
            sample_format: match format {
                WavFormat::Pcm16 => hound::SampleFormat::Int,
                WavFormat::Float32 => hound::SampleFormat::Float,
            },
        };
        let file = tmp.as_file().try_clone().map_err(werr)?;
        let writer = hound::WavWriter::new(BufWriter::new(file), spec).map_err(|e| werr(hound_io(e)))?;
        Ok(Self {
            path,
            format,
            writer: Some(writer),
            tmp: Some(tmp),
            samples: 0,
            clipped: 0,
            channels,
        })
    }

    /// Appends samples.
    ///
    /// # Errors
    /// [`Error::NonFiniteInput`] for a NaN or infinite sample (nothing of this call is written);
    /// [`Error::Write`] when the disk fails.
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        if let Some((i, &v)) = samples.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteInput {
                index: self.samples as usize + i,
                value: v,
            });
        }
        let path = &self.path;
        let w = self.writer.as_mut().ok_or_else(|| Error::Write {
            path: path.clone(),
            source: std::io::Error::other("writer already finished"),
        })?;
        let werr = |e| Error::Write {
            path: path.clone(),
            source: hound_io(e),
        };
        match self.format {
            WavFormat::Pcm16 => {
                for &v in samples {
                    if !(-1.0..=1.0).contains(&v) {
                        self.clipped += 1;
                    }
                    let q = (v.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                    for _ in 0..self.channels {
                        w.write_sample(q).map_err(werr)?;
                    }
                }
            }
            WavFormat::Float32 => {
                for &v in samples {
                    for _ in 0..self.channels {
                        w.write_sample(v).map_err(werr)?;
                    }
                }
            }
        }
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Completes the header and renames the file into place.
    ///
    /// # Errors
    /// [`Error::Write`]; the output path is then left untouched.
    pub fn finish(mut self) -> Result<WriteReport> {
        let path = self.path.clone();
        let werr = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let w = self
            .writer
            .take()
            .ok_or_else(|| werr(std::io::Error::other("writer already finished")))?;
        w.finalize().map_err(|e| werr(hound_io(e)))?;
        let tmp = self
            .tmp
            .take()
            .ok_or_else(|| werr(std::io::Error::other("writer already finished")))?;
        tmp.persist(&path).map_err(werr)?;
        Ok(WriteReport {
            samples: self.samples,
            clipped: self.clipped,
        })
    }
}

fn hound_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Writes mono samples to `path` atomically.
///
/// # Errors
/// See [`WavWriter::create`], [`WavWriter::write`] and [`WavWriter::finish`].
pub fn write_wav(path: impl AsRef<Path>, samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<WriteReport> {
    let mut w = WavWriter::create(path, sample_rate, format)?;
    w.write(samples)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_mono, ChannelMix};

    #[test]
    fn pcm16_round_trip_counts_clipping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.wav");
        let x: Vec<f32> = vec![0.0, 0.5, -0.5, 1.5, -2.0, 0.25];
        let r = write_wav(&p, &x, 16000, WavFormat::Pcm16).unwrap();
        assert_eq!(r, WriteReport { samples: 6, clipped: 2 });
        let y = read_mono(&p, ChannelMix::Downmix).unwrap();
        assert_eq!(y.sample_rate, 16000);
        let want = [0.0, 0.5, -0.5, 1.0, -1.0, 0.25];
        for (a, b) in y.samples.iter().zip(want) {
            assert!((a - b).abs() < 1.0 / 32000.0, "{a} vs {b}");
        }
        // Only the output is left in the folder: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // With the mode a new file gets under the umask (0644 under 022), not tempfile's 0600,
        // also when it replaces a file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let probe = dir.path().join("probe");
            std::fs::write(&probe, b"").unwrap();
            let want = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
            write_wav(&p, &x, 16000, WavFormat::Pcm16).unwrap();
            let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, want, "mode {got:o}");
        }
    }

    #[test]
    fn float_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.wav");
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin() * 1.3).collect();
        let r = write_wav(&p, &x, 22050, WavFormat::Float32).unwrap();
        assert_eq!(r.clipped, 0);
        let y = read_mono(&p, ChannelMix::Downmix).unwrap();
        assert_eq!(y.samples, x);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.wav");
        let err = write_wav(&p, &[0.1, f32::NAN], 16000, WavFormat::Pcm16).unwrap_err();
        assert!(matches!(err, Error::NonFiniteInput { index: 1, .. }), "{err}");
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_folder_is_an_error() {
        let err = write_wav("/nonexistent-dir/x.wav", &[0.0], 16000, WavFormat::Pcm16).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.wav"), "{err}");
    }
}
