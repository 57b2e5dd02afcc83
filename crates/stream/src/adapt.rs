//! The target voice adapted to the source's: `--contrast` pushes it away from the source's own
//! voice, `--spectrum` matches the conversion's long-term average spectrum to the references'.
//! Offline, both are measured on the source's first seconds ([`measure_source`], then
//! [`adapt`]); live, the [`Engine`](crate::Engine) measures them on the talker's past and
//! updates the voice as more of it is heard ([`Adaptation`] in
//! [`EngineConfig`](crate::EngineConfig)).

use voxswap_audio::{speech_level, LogMel, Mel};
use voxswap_model::{SpeakerEmbedding, VoiceConverter};

use crate::Result;

/// The level (dBFS, RMS over speech frames) that voices are measured at: that of the synthetic
/// training corpus (peak-normalised to −3 dBFS, speech at about −18 dBFS RMS), so that a quiet
/// or loud recording gives the voice a loud one would.
pub const REFERENCE_SPEECH_DB: f64 = -18.0;

/// Scales `x` so that its speech sits at [`REFERENCE_SPEECH_DB`]; leaves it as it is when it
/// holds no speech at all.
pub fn normalise_source(x: &mut [f32], sample_rate_hz: u32) {
    let s = speech_level(x, sample_rate_hz);
    if s.speech_db.is_finite() {
        let gain = 10f64.powf((REFERENCE_SPEECH_DB - s.speech_db) / 20.0) as f32;
        x.iter_mut().for_each(|v| *v *= gain);
    }
}

/// How far the target voice adapts to the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptation {
    /// Contrast: the voice used is target + S·(target − source), the source's own voice
    /// measured on its speech. 0 is the plain target.
    pub contrast: f32,
    /// Spectrum matching: the fraction (0 to 2) of the gap between the references' average
    /// spectrum and the conversion's that a per-band correction closes.
    pub spectrum: f32,
}

impl Adaptation {
    /// `convert`'s defaults.
    pub const DEFAULT: Self = Self {
        contrast: 0.5,
        spectrum: 1.0,
    };
    /// No adaptation: the target voice with its references' own spectrum correction, if any.
    pub const NONE: Self = Self {
        contrast: 0.0,
        spectrum: 0.0,
    };

    /// Whether anything here depends on the source.
    pub fn measures_source(&self) -> bool {
        self.contrast > 0.0 || self.spectrum > 0.0
    }
}

/// What adaptation needs to know of a source: its own voice (measured at the corpus's level)
/// and its log-mel at its own level (what the model will convert).
#[derive(Debug, Clone)]
pub struct SourceVoice {
    /// The source speaker's embedding.
    pub voice: SpeakerEmbedding,
    /// The source's log-mel.
    pub mel: Mel,
}

/// Measures the source from `audio` (mono, at the model's sample rate): `None` when it is too
/// short for the speaker encoder.
///
/// # Errors
/// From the model.
pub fn measure_source(conv: &VoiceConverter, audio: &[f32]) -> Result<Option<SourceVoice>> {
    let fe = &conv.config().frontend;
    let mut logmel = LogMel::new(fe)?;
    // What the source's conversion reads (with its pitch, for a model that reads it).
    let mel = conv.features(audio)?;
    if mel.frames < conv.min_frames() {
        return Ok(None);
    }
    let mut x = audio.to_vec();
    normalise_source(&mut x, fe.sample_rate);
    let voice = conv.speaker_vector(&[logmel.compute(&x)])?;
    Ok(Some(SourceVoice { voice, mel }))
}

/// `target` adapted to `source` by `how`: contrast first, then the spectrum matched on the
/// conversion of the source's mel into the contrasted voice. Without a source, the target with
/// its references' own spectrum correction scaled by `how.spectrum`.
///
/// # Errors
/// Strengths out of range; a voice of the wrong size.
pub fn adapt(
    conv: &VoiceConverter,
    target: &SpeakerEmbedding,
    source: Option<&SourceVoice>,
    how: Adaptation,
) -> Result<SpeakerEmbedding> {
    let Some(src) = source else {
        return Ok(target.spectrum_strength(how.spectrum)?);
    };
    let voice = if how.contrast > 0.0 {
        target.contrast(&src.voice, how.contrast)?
    } else {
        target.clone()
    };
    Ok(conv.match_spectrum(&src.mel, &voice, how.spectrum)?)
}
