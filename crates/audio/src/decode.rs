//! Decoding audio files to mono `f32`.
//!
//! WAV goes through hound (8/16/24/32-bit integer PCM and 32-bit float, any channel count up to
//! [`MAX_CHANNELS`]); FLAC, MP3 and Ogg Vorbis (and WAV codecs hound does not know: A-law,
//! mu-law, IMA and MS ADPCM, 64-bit float) go through Symphonia. The format is recognised from the file's first bytes, not from
//! its name, so a text file named `.wav` is reported as what it is.
//!
//! [`AudioReader`] reads in chunks, so a caller that works chunk by chunk holds one chunk in
//! memory however long the file is; [`read_mono`] reads a whole file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::{Error, Result};

/// File name extensions of the audio files voxswap reads (folders are filtered by them; a file
/// given by name is recognised by its content).
pub const AUDIO_EXTENSIONS: [&str; 4] = ["wav", "flac", "mp3", "ogg"];

/// Whether `path`'s extension is one of [`AUDIO_EXTENSIONS`] (any case).
pub fn has_audio_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(x)))
}

/// Lowest sample rate accepted from a file, in Hz (below this nothing is speech).
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Highest sample rate accepted from a file, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// Most channels accepted from a file.
pub const MAX_CHANNELS: usize = 8;

/// How several channels become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMix {
    /// The mean of all channels.
    #[default]
    Downmix,
    /// One channel, counted from 0.
    Select(usize),
}

/// What a file holds, known after opening it and before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Container and codec in words, such as "WAV, 16-bit integer PCM" or "FLAC".
    pub format: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels in the file (before mixing to mono).
    pub channels: usize,
    /// Length in frames, where the container says it up front.
    pub frames: Option<u64>,
}

/// Mono audio in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Reads a whole file as mono.
///
/// # Errors
/// Any problem with the file, named with its path: see [`Error`].
pub fn read_mono(path: impl AsRef<Path>, mix: ChannelMix) -> Result<Audio> {
    let mut reader = AudioReader::open(path, mix)?;
    let mut samples = Vec::with_capacity(reader.info.frames.unwrap_or(0).min(1 << 28) as usize);
    while reader.read(&mut samples, 1 << 16)? > 0 {}
    Ok(Audio {
        samples,
        sample_rate: reader.info.sample_rate,
    })
}

/// A chunked reader of mono samples from a file.
pub struct AudioReader {
    path: PathBuf,
    info: AudioInfo,
    mix: ChannelMix,
    inner: Inner,
    /// Interleaved frames decoded but not yet handed out.
    pending: Vec<f32>,
    pending_pos: usize,
    frames_read: u64,
    finished: bool,
}

enum Inner {
    Wav(hound::WavReader<BufReader<File>>, WavKind),
    Symphonia {
        format: Box<dyn FormatReader>,
        decoder: Box<dyn AudioDecoder>,
        track_id: u32,
    },
}

#[derive(Clone, Copy)]
enum WavKind {
    Int { scale: f32 },
    Float,
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

impl AudioReader {
    /// Opens a file and reads its header.
    ///
    /// # Errors
    /// Missing or unreadable file, a directory, an empty file, a malformed header, an unsupported
    /// codec, an absurd sample rate, too many channels, or `mix` naming a missing channel.
    pub fn open(path: impl AsRef<Path>, mix: ChannelMix) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(io_err)?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path });
        }
        if meta.len() == 0 {
            return Err(Error::EmptyFile { path });
        }
        let mut magic = [0u8; 4];
        let n = File::open(&path)
            .and_then(|mut f| read_up_to(&mut f, &mut magic))
            .map_err(io_err)?;
        let is_riff = n == 4 && (&magic == b"RIFF" || &magic == b"RIFX" || &magic == b"RF64");
        let (inner, info) = if is_riff {
            match open_wav(&path) {
                Ok(x) => x,
                // hound reads integer PCM and 32-bit float only, and calls an ADPCM or 64-bit
                // float header malformed; Symphonia knows A-law, mu-law, IMA and MS ADPCM and
                // 64-bit float. If neither can read it, hound's diagnosis stands.
                Err(e @ (Error::Unsupported { .. } | Error::Malformed { .. })) => {
                    open_symphonia(&path).map_err(|_| e)?
                }
                Err(e) => return Err(e),
            }
        } else {
            open_symphonia(&path)?
        };
        check_info(&path, &info)?;
        if let ChannelMix::Select(channel) = mix {
            if channel >= info.channels {
                return Err(Error::ChannelOutOfRange {
                    path,
                    channel,
                    channels: info.channels,
                });
            }
        }
        if info.frames == Some(0) {
            return Err(Error::NoAudio { path });
        }
        Ok(Self {
            path,
            info,
            mix,
            inner,
            pending: Vec::new(),
            pending_pos: 0,
            frames_read: 0,
            finished: false,
        })
    }

    /// What the file holds.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames handed out so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Reads the rest of the file in chunks of up to 65,536 frames, handing each to `f`: a whole
    /// file in constant memory. Returns the frames read.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn for_each_chunk(&mut self, mut f: impl FnMut(&[f32])) -> Result<u64> {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut total = 0u64;
        loop {
            buf.clear();
            if self.read(&mut buf, 1 << 16)? == 0 {
                return Ok(total);
            }
            total += buf.len() as u64;
            f(&buf);
        }
    }

    /// Appends up to `max_frames` mono samples to `out`; returns how many, 0 at the end.
    ///
    /// Allocating (decoders allocate); not for a real-time thread.
    ///
    /// # Errors
    /// A file that ends before its header says, a corrupt packet, or a NaN or infinite sample.
    pub fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize> {
        let channels = self.info.channels;
        let mut written = 0;
        while written < max_frames {
            if self.pending_pos >= self.pending.len() {
                if self.finished || !self.refill()? {
                    self.finished = true;
                    break;
                }
                continue;
            }
            let avail = (self.pending.len() - self.pending_pos) / channels;
            let take = avail.min(max_frames - written);
            let block = &self.pending[self.pending_pos..self.pending_pos + take * channels];
            for (i, frame) in block.chunks_exact(channels).enumerate() {
                for (c, &v) in frame.iter().enumerate() {
                    if !v.is_finite() {
                        return Err(Error::NonFinite {
                            path: self.path.clone(),
                            frame: self.frames_read + i as u64,
                            channel: c,
                            value: v,
                        });
                    }
                }
                out.push(match self.mix {
                    ChannelMix::Downmix => frame.iter().sum::<f32>() / channels as f32,
                    ChannelMix::Select(c) => frame[c],
                });
            }
            self.pending_pos += take * channels;
            self.frames_read += take as u64;
            written += take;
        }
        if written == 0 && self.frames_read == 0 {
            return Err(Error::NoAudio {
                path: self.path.clone(),
            });
        }
        Ok(written)
    }

    /// Decodes the next block into `pending`; false at the end of the stream.
    fn refill(&mut self) -> Result<bool> {
        self.pending.clear();
        self.pending_pos = 0;
        let path = &self.path;
        match &mut self.inner {
            Inner::Wav(reader, kind) => {
                const BLOCK: usize = 8192;
                let want = BLOCK * self.info.channels;
                let expected = reader.duration();
                // hound reports a short read either as an I/O error or as "failed to read
                // enough bytes"; both mean the data stops before its header says.
                let malformed = |e: hound::Error, at: u64| Error::Malformed {
                    path: path.clone(),
                    detail: format!(
                        "data is cut short or corrupt near frame {at} of the {expected} its header announces ({e})"
                    ),
                };
                match *kind {
                    WavKind::Int { scale } => {
                        for s in reader.samples::<i32>().take(want) {
                            let s = s.map_err(|e| malformed(e, self.frames_read))?;
                            self.pending.push(s as f32 * scale);
                        }
                    }
                    WavKind::Float => {
                        for s in reader.samples::<f32>().take(want) {
                            self.pending.push(s.map_err(|e| malformed(e, self.frames_read))?);
                        }
                    }
                }
                if self.pending.len() % self.info.channels != 0 {
                    return Err(Error::Malformed {
                        path: path.clone(),
                        detail: "data ends in the middle of a frame".into(),
                    });
                }
                Ok(!self.pending.is_empty())
            }
            Inner::Symphonia {
                format,
                decoder,
                track_id,
            } => loop {
                let packet = match format.next_packet() {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(false),
                    Err(symphonia::core::errors::Error::IoError(e))
                        if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        return Ok(false)
                    }
                    Err(e) => return Err(symphonia_error(path, e)),
                };
                if packet.track_id != *track_id {
                    continue;
                }
                let buf = decoder.decode(&packet).map_err(|e| symphonia_error(path, e))?;
                if buf.frames() == 0 {
                    continue;
                }
                let ch = buf.spec().channels().count();
                if ch != self.info.channels {
                    return Err(Error::Unsupported {
                        path: path.clone(),
                        detail: format!("channel count changes mid-stream ({} to {ch})", self.info.channels),
                    });
                }
                self.pending.resize(buf.samples_interleaved(), 0.0);
                buf.copy_to_slice_interleaved(&mut self.pending);
                return Ok(true);
            },
        }
    }
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn check_info(path: &Path, info: &AudioInfo) -> Result<()> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&info.sample_rate) {
        return Err(Error::SampleRate {
            path: path.to_path_buf(),
            rate: info.sample_rate,
            min: MIN_SAMPLE_RATE,
            max: MAX_SAMPLE_RATE,
        });
    }
    if info.channels == 0 || info.channels > MAX_CHANNELS {
        return Err(Error::Channels {
            path: path.to_path_buf(),
            channels: info.channels,
            max: MAX_CHANNELS,
        });
    }
    Ok(())
}

fn open_wav(path: &Path) -> Result<(Inner, AudioInfo)> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = hound::WavReader::new(BufReader::new(file)).map_err(|e| match e {
        hound::Error::Unsupported => Error::Unsupported {
            path: path.to_path_buf(),
            detail: "WAV codec not supported (voxswap reads PCM, float, A-law, mu-law and ADPCM WAV)".into(),
        },
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Error::Malformed {
            path: path.to_path_buf(),
            detail: "WAV header is cut short".into(),
        },
        other => Error::Malformed {
            path: path.to_path_buf(),
            detail: format!("bad WAV header: {other}"),
        },
    })?;
    let spec = reader.spec();
    let (kind, format) = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => (WavKind::Float, "WAV, 32-bit float".to_string()),
        (hound::SampleFormat::Int, b @ 1..=32) => (
            WavKind::Int {
                scale: 1.0 / (1u64 << (b - 1)) as f32,
            },
            format!("WAV, {b}-bit integer PCM"),
        ),
        (f, b) => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                detail: format!("WAV with {b}-bit {f:?} samples"),
            })
        }
    };
    let info = AudioInfo {
        format,
        sample_rate: spec.sample_rate,
        channels: usize::from(spec.channels),
        frames: Some(u64::from(reader.duration())),
    };
    Ok((Inner::Wav(reader, kind), info))
}

fn symphonia_error(path: &Path, e: symphonia::core::errors::Error) -> Error {
    use symphonia::core::errors::Error as S;
    match e {
        S::Unsupported(what) => Error::Unsupported {
            path: path.to_path_buf(),
            detail: what.to_string(),
        },
        S::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Error::Malformed {
            path: path.to_path_buf(),
            detail: "file is cut short".into(),
        },
        S::IoError(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Malformed {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn open_symphonia(path: &Path) -> Result<(Inner, AudioInfo)> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let format = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| {
            let is_wav_name = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            match e {
                symphonia::core::errors::Error::IoError(source)
                    if source.kind() != std::io::ErrorKind::UnexpectedEof =>
                {
                    Error::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                }
                _ if is_wav_name => Error::Malformed {
                    path: path.to_path_buf(),
                    detail: "not a WAV file (no RIFF header)".into(),
                },
                _ => Error::Unsupported {
                    path: path.to_path_buf(),
                    detail: "not a recognised audio format (WAV, FLAC, MP3 or Ogg Vorbis)".into(),
                },
            }
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| Error::Unsupported {
            path: path.to_path_buf(),
            detail: "no audio track".into(),
        })?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| Error::Unsupported {
            path: path.to_path_buf(),
            detail: "no audio codec parameters".into(),
        })?
        .clone();
    let track_id = track.id;
    let frames = track.num_frames;
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            symphonia::core::errors::Error::Unsupported(_) => Error::Unsupported {
                path: path.to_path_buf(),
                detail: format!("codec {:?} is not supported", params.codec),
            },
            other => symphonia_error(path, other),
        })?;
    let sample_rate = params.sample_rate.ok_or_else(|| Error::Malformed {
        path: path.to_path_buf(),
        detail: "sample rate not given".into(),
    })?;
    let channels = params
        .channels
        .as_ref()
        .map(|c| c.count())
        .ok_or_else(|| Error::Malformed {
            path: path.to_path_buf(),
            detail: "channel count not given".into(),
        })?;
    let name = format.format_info().short_name.to_string();
    let info = AudioInfo {
        format: format!("{} ({})", name.to_uppercase(), decoder.codec_info().short_name),
        sample_rate,
        channels,
        frames,
    };
    Ok((
        Inner::Symphonia {
            format,
            decoder,
            track_id,
        },
        info,
    ))
}
