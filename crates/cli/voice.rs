//! Where models and speaker banks are found, and voices made from reference recordings: what
//! `convert`, `embed`, `speakers` and `eval` share.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use voxswap_audio::speech_level;
use voxswap_model::bank::{self, BankEntry, SpeakerBank};
use voxswap_model::{SpeakerEmbedding, VoiceConverter};

use voxswap_stream::adapt::REFERENCE_SPEECH_DB;

use crate::io::{data_dir, read_at_rate};

/// Where the model comes from.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model folder (config.json, model.safetensors). Default: $VOXSWAP_MODEL, else the first of
    /// ./pretrained, pretrained/ beside the voxswap binary or of the checkout it was built in,
    /// and $XDG_DATA_HOME/voxswap/model (~/.local/share/voxswap/model) that has one.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

impl ModelArgs {
    /// The folders searched for a model when neither `--model` nor `$VOXSWAP_MODEL` names one.
    fn candidates() -> Vec<PathBuf> {
        let mut c = vec![PathBuf::from("pretrained")];
        if let Ok(exe) = std::env::current_exe() {
            if let Some(bin) = exe.parent() {
                c.push(bin.join("pretrained"));
                // target/release/voxswap → the checkout's pretrained/
                if let Some(root) = bin.parent().and_then(Path::parent) {
                    c.push(root.join("pretrained"));
                }
            }
        }
        if let Some(d) = data_dir() {
            c.push(d.join("model"));
        }
        c
    }

    /// The model folder to use.
    ///
    /// # Errors
    /// When no folder with a model is found, naming the places searched.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.model {
            return Ok(d.clone());
        }
        // An empty VOXSWAP_MODEL= counts as unset.
        if let Some(d) = std::env::var_os("VOXSWAP_MODEL").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        let candidates = Self::candidates();
        if let Some(d) = candidates
            .iter()
            .find(|d| d.join(voxswap_model::io::CONFIG_FILE).is_file())
        {
            return Ok(d.clone());
        }
        let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no model found (looked in {}): pass --model DIR, set VOXSWAP_MODEL, or install the shipped \
             model with `cp -r pretrained ~/.local/share/voxswap/model` from the voxswap checkout",
            looked.join(", ")
        )
    }

    /// Loads the model, its weights' fingerprint and its folder.
    ///
    /// # Errors
    /// No model found, or one that cannot be read.
    pub fn load(&self) -> anyhow::Result<(VoiceConverter, String, PathBuf)> {
        let dir = self.dir()?;
        let conv = VoiceConverter::load(&dir, &Device::Cpu)?;
        let fp = bank::fingerprint(&voxswap_model::io::weights_path(&dir))?;
        Ok((conv, fp, dir))
    }
}

/// The user's own speaker bank: `$XDG_DATA_HOME/voxswap/speakers`
/// (`~/.local/share/voxswap/speakers`), where `embed` adds speakers by default.
pub fn user_bank_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("speakers"))
}

/// The banks that `--speaker` and `speakers` read, in order: `--bank DIR` alone, or the user's
/// bank (if it exists) and then the model's `speakers/`.
pub fn banks(explicit: Option<&Path>, model_dir: &Path) -> Vec<PathBuf> {
    match explicit {
        Some(d) => vec![d.to_path_buf()],
        None => user_bank_dir()
            .filter(|d| d.is_dir())
            .into_iter()
            .chain(std::iter::once(model_dir.join("speakers")))
            .collect(),
    }
}

/// The entry called `name` in the first of `banks` that has it.
///
/// # Errors
/// No bank exists, or none has the name (the nearest names are suggested).
pub fn find_speaker(banks: &[PathBuf], name: &str) -> anyhow::Result<BankEntry> {
    bank::check_name(name)?;
    let mut open = Vec::new();
    for dir in banks {
        if let Ok(b) = SpeakerBank::open(dir) {
            if b.contains(name) {
                return Ok(b.get(name)?);
            }
            open.push(b);
        }
    }
    if open.is_empty() {
        // Names the missing bank and how to make one.
        SpeakerBank::open(banks.first().map_or(Path::new("speakers"), PathBuf::as_path))?;
    }
    let mut known = Vec::new();
    for b in &open {
        known.extend(b.names()?);
    }
    let dirs: Vec<&Path> = open.iter().map(SpeakerBank::dir).collect();
    bail!("{}", bank::unknown_speaker(name, &dirs, &known))
}

/// Seconds of speech a reference must hold.
const MIN_SPEECH_S: f64 = 0.3;

/// A reference voice from files: the mean embedding (with its spectrum correction when
/// `spectrum`, see `VoiceConverter::embed`) and the seconds of audio it came from. Each file must
/// hold speech (noise and near-silence are refused) and is brought to the training corpus's
/// speech level first. `channel` picks one channel of every file (`embed --channel`); `None`
/// mixes to mono.
///
/// # Errors
/// No files, a file that cannot be read, holds no speech or is too short.
pub fn embed_files(
    conv: &VoiceConverter,
    files: &[PathBuf],
    channel: Option<usize>,
    spectrum: bool,
) -> anyhow::Result<(SpeakerEmbedding, f64)> {
    if files.is_empty() {
        bail!("no reference given: pass -t REF (a few seconds of the target voice)");
    }
    let fe = conv.config().frontend.clone();
    let mut embeddings = Vec::new();
    let mut seconds = 0.0;
    for f in files {
        let (audio, mut x) = read_at_rate(f, channel, fe.sample_rate)?;
        // Too short for the model is said as such (below); long enough, it must hold speech.
        if x.len() >= conv.min_frames() * fe.hop_length {
            normalise_speech(&mut x, fe.sample_rate)
                .with_context(|| format!("{}: reference (a few seconds of the voice speaking)", f.display()))?;
        }
        seconds += audio.duration_s();
        // Each reference on its own (a too-short one is named); the mean of their vectors is
        // what `embed` of all of them gives (each spectrum correction is measured with its own
        // reference's vector, then averaged).
        let mel = [conv.features(&x)?];
        let e = if spectrum {
            conv.embed(&mel)
        } else {
            conv.speaker_vector(&mel)
        };
        let e = e.with_context(|| format!("{}: reference", f.display()))?;
        embeddings.push(e);
    }
    let parts: Vec<(f32, &SpeakerEmbedding)> = embeddings.iter().map(|e| (1.0, e)).collect();
    Ok((SpeakerEmbedding::mix(&parts)?, seconds))
}

/// Scales a reference `x` so that its speech sits at the training corpus's level.
///
/// # Errors
/// When it holds less than [`MIN_SPEECH_S`] of speech (see [`speech_level`]).
pub fn normalise_speech(x: &mut [f32], sample_rate_hz: u32) -> anyhow::Result<()> {
    let s = speech_level(x, sample_rate_hz);
    if s.speech_s < MIN_SPEECH_S {
        let range = (s.top_db - s.floor_db).max(0.0);
        let what = if s.top_db < -50.0 {
            format!("it is near-silent (loudest frames {:.0} dBFS)", s.top_db.max(-120.0))
        } else if range < 15.0 {
            format!("its level varies by only {range:.0} dB, as noise does")
        } else {
            format!(
                "{:.1} s of it sounds like speech, at least {MIN_SPEECH_S} s is needed",
                s.speech_s
            )
        };
        bail!("no speech found: {what}");
    }
    let gain = 10f64.powf((REFERENCE_SPEECH_DB - s.speech_db) / 20.0) as f32;
    x.iter_mut().for_each(|v| *v *= gain);
    Ok(())
}

/// `--speaker`'s value, checked when the command line is parsed (a bad mix is a bad flag:
/// exit status 2, before any model loads): `alice`, or `alice:0.7,bob:0.3`.
///
/// # Errors
/// What [`voxswap_model::bank::parse_mix`] finds wrong.
pub fn parse_speaker_spec(s: &str) -> Result<String, String> {
    voxswap_model::bank::parse_mix(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}
