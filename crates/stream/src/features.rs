//! What the model reads, frame by frame, as samples at its rate arrive: the streaming log-mel
//! and, for a model that reads the source's pitch, the pitch channels of the same frames
//! (`voxswap_audio::pitch::PitchFeatures`, which needs no sample the mel frame does not).

use voxswap_audio::pitch::{PitchFeatures, PITCH_CHANNELS};
use voxswap_audio::{FrontendConfig, StreamingLogMel};

use crate::Result;

/// The log-mel frames, and the pitch frames when the model reads them, of a stream at the
/// model's rate, waiting for the model: frame-major, pushed and drained together.
#[derive(Debug)]
pub struct FeatureFrames {
    logmel: StreamingLogMel,
    pitch: Option<PitchFeatures>,
    n_mels: usize,
    /// Frame-major log-mel frames (`n_mels` each).
    mel: Vec<f32>,
    /// Frame-major pitch frames ([`PITCH_CHANNELS`] each), with a pitch model.
    pitch_frames: Vec<f32>,
    samples: usize,
}

impl FeatureFrames {
    /// Features for `fe`, with the pitch channels when `pitch`; buffers for `capacity_frames`
    /// frames waiting (more grow them).
    ///
    /// # Errors
    /// A frontend the log-mel refuses.
    pub fn new(fe: &FrontendConfig, pitch: bool, capacity_frames: usize) -> Result<Self> {
        Ok(Self {
            logmel: StreamingLogMel::new(fe)?,
            pitch: pitch.then(|| PitchFeatures::new(fe)),
            n_mels: fe.n_mels,
            mel: Vec::with_capacity(capacity_frames * fe.n_mels),
            pitch_frames: Vec::with_capacity(if pitch { capacity_frames * PITCH_CHANNELS } else { 0 }),
            samples: 0,
        })
    }

    /// The log-mel's look-ahead in samples (the pitch track needs none beyond it).
    pub fn latency_samples(&self) -> usize {
        self.logmel.latency_samples()
    }

    /// Pitch values per frame: [`PITCH_CHANNELS`] or 0.
    pub fn pitch_channels(&self) -> usize {
        if self.pitch.is_some() {
            PITCH_CHANNELS
        } else {
            0
        }
    }

    /// Takes samples at the model's rate. Real-time safe while the frames waiting fit the
    /// capacity.
    pub fn push(&mut self, x: &[f32]) {
        let mel = &mut self.mel;
        self.logmel.push(x, |f| mel.extend_from_slice(f));
        if let Some(p) = &mut self.pitch {
            for &v in x {
                if let Some(f) = p.push(v) {
                    self.pitch_frames.extend_from_slice(&f);
                }
            }
        }
        self.samples += x.len();
    }

    /// Ends the stream: its last frames (the log-mel's trailing padding; pitch read with
    /// zeros past the end).
    pub fn finish(&mut self) {
        let mel = &mut self.mel;
        self.logmel.finish(|f| mel.extend_from_slice(f));
        if let Some(p) = &mut self.pitch {
            let out = &mut self.pitch_frames;
            p.finish(self.samples, |f| out.extend_from_slice(&f));
        }
    }

    /// Frames complete on every side, waiting.
    pub fn ready(&self) -> usize {
        let m = self.mel.len() / self.n_mels;
        match self.pitch_channels() {
            0 => m,
            p => m.min(self.pitch_frames.len() / p),
        }
    }

    /// The first `n` waiting frames: log-mel (`n · n_mels`, frame-major) and pitch
    /// (`n · pitch_channels`, empty without pitch).
    pub fn frames(&self, n: usize) -> (&[f32], &[f32]) {
        (
            &self.mel[..n * self.n_mels],
            &self.pitch_frames[..n * self.pitch_channels()],
        )
    }

    /// Drops the first `n` waiting frames.
    pub fn drain(&mut self, n: usize) {
        self.mel.drain(..n * self.n_mels);
        let p = self.pitch_channels();
        self.pitch_frames.drain(..n * p);
    }
}

/// `n` frames of log-mel (frame-major) and pitch (frame-major, maybe empty) as the model's
/// features: a [`voxswap_audio::Mel`] of the mel bands, then the pitch rows.
pub fn features_mel(n_mels: usize, mel: &[f32], pitch: &[f32]) -> voxswap_audio::Mel {
    let mut m = voxswap_audio::Mel::from_frames(n_mels, mel);
    let n = m.frames;
    if n > 0 && !pitch.is_empty() {
        let p = pitch.len() / n;
        for c in 0..p {
            m.data.extend((0..n).map(|t| pitch[t * p + c]));
        }
        m.n_mels += p;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushed in pieces, the frames are the offline features of the whole signal: the log-mel
    /// of `voxswap_audio::LogMel` and the pitch of `pitch_features`.
    #[test]
    fn streamed_features_equal_the_offline_ones() {
        let fe = FrontendConfig::speech_16k();
        let x: Vec<f32> = (0..9000)
            .map(|i| {
                let f = 130.0 + 40.0 * (i as f64 / 3000.0).sin();
                (0.3 * (2.0 * std::f64::consts::PI * f * i as f64 / 16000.0).sin()) as f32
            })
            .collect();
        let mut s = FeatureFrames::new(&fe, true, 16).unwrap();
        for c in x.chunks(333) {
            s.push(c);
        }
        s.finish();
        let n = s.ready();
        let (mel, pitch) = s.frames(n);
        let got = features_mel(fe.n_mels, mel, pitch);
        let mut want = voxswap_audio::LogMel::new(&fe).unwrap().compute(&x);
        assert_eq!(n, want.frames);
        want.data.extend(voxswap_audio::pitch::pitch_features(&x, &fe));
        want.n_mels += PITCH_CHANNELS;
        assert_eq!(got.n_mels, want.n_mels);
        let worst = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{worst}");
        // The voiced frames say so, and the pitch rows are there.
        let voiced = (0..n).filter(|&t| got.data[(fe.n_mels + 1) * n + t] == 1.0).count();
        assert!(voiced > n / 2, "{voiced} of {n}");
        s.drain(n);
        assert_eq!(s.ready(), 0);
    }
}
