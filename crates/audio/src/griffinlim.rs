//! Griffin-Lim phase reconstruction, the fast variant with momentum (Perraudin, Balazs &
//! Søndergaard 2013), as librosa's `griffinlim` runs it; and mel-to-wave resynthesis built on it.

use realfft::num_complex::Complex32;

use crate::frontend::{FrontendConfig, Mel};
use crate::stft::{Spectrogram, Stft};
use crate::Result;

/// Iterations and momentum of fast Griffin-Lim.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GriffinLimConfig {
    /// Iterations (each is one inverse and one forward STFT).
    pub n_iter: usize,
    /// Momentum; 0 gives the original Griffin-Lim, 0.99 is librosa's default.
    pub momentum: f32,
}

impl Default for GriffinLimConfig {
    fn default() -> Self {
        Self { n_iter: 32, momentum: 0.99 }
    }
}

/// Reconstructs a signal of `length` samples whose STFT magnitude approaches `magnitude`
/// (frame-major, `frames * n_bins`). Starts from zero phase, as librosa's `init=None`.
pub fn griffin_lim(stft: &mut Stft, magnitude: &[f32], frames: usize, length: usize, cfg: GriffinLimConfig) -> Vec<f32> {
    let n_bins = stft.config().n_bins();
    debug_assert_eq!(magnitude.len(), frames * n_bins);
    let mut angles = vec![Complex32::new(1.0, 0.0); frames * n_bins];
    let mut spec = Spectrogram { n_bins, frames, data: vec![Complex32::default(); frames * n_bins] };
    let mut rebuilt = Spectrogram { n_bins, frames, data: vec![Complex32::default(); frames * n_bins] };
    let mut tprev = rebuilt.clone();
    let mut y = Vec::with_capacity(length);
    let beta = cfg.momentum / (1.0 + cfg.momentum);
    let eps = 1e-16f32;
    for _ in 0..cfg.n_iter {
        std::mem::swap(&mut tprev, &mut rebuilt);
        for ((s, &m), &a) in spec.data.iter_mut().zip(magnitude).zip(&angles) {
            *s = a * m;
        }
        stft.inverse_into(&spec, Some(length), &mut y);
        stft.forward_into(&y, &mut rebuilt);
        for ((a, &r), &p) in angles.iter_mut().zip(&rebuilt.data).zip(&tprev.data) {
            let v = r - p * beta;
            *a = v / (v.norm() + eps);
        }
    }
    for ((s, &m), &a) in spec.data.iter_mut().zip(magnitude).zip(&angles) {
        *s = a * m;
    }
    stft.inverse_into(&spec, Some(length), &mut y);
    y
}

/// Spectral convergence `‖S − |STFT(y)|‖_F / ‖S‖_F`: how far `y`'s magnitude is from the target.
pub fn spectral_convergence(stft: &mut Stft, magnitude: &[f32], y: &[f32]) -> f64 {
    let got = stft.forward(y).magnitude();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&s, &g) in magnitude.iter().zip(&got) {
        num += f64::from(s - g).powi(2);
        den += f64::from(s).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Log-mel back to a waveform: mel magnitudes, then a linear magnitude by NNLS through the
/// filterbank, then Griffin-Lim. Hears what the frontend keeps.
///
/// # Errors
/// [`crate::Error::Config`] for an invalid frontend.
pub fn mel_to_audio(cfg: &FrontendConfig, mel: &Mel, gl: GriffinLimConfig) -> Result<Vec<f32>> {
    let fb = cfg.filterbank()?;
    let mut stft = Stft::new(cfg.stft())?;
    let n_bins = fb.n_bins();
    let mut mag = vec![0.0f32; mel.frames * n_bins];
    let mut col = vec![0.0f32; mel.n_mels];
    for t in 0..mel.frames {
        for (m, c) in col.iter_mut().enumerate() {
            // Values at the floor carry no information: treat them as silence.
            let v = mel.at(m, t);
            *c = if v <= cfg.log_floor.ln() + 1e-6 { 0.0 } else { v.exp() };
        }
        fb.invert(&col, 30, &mut mag[t * n_bins..(t + 1) * n_bins]);
    }
    let length = mel.frames.saturating_sub(1) * cfg.hop_length;
    Ok(griffin_lim(&mut stft, &mag, mel.frames, length, gl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::LogMel;
    use crate::stft::StftConfig;

    fn chirp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 16000.0;
                0.5 * (2.0 * std::f32::consts::PI * (200.0 * t + 400.0 * t * t)).sin()
            })
            .collect()
    }

    #[test]
    fn more_iterations_converge_further() {
        let cfg = StftConfig { n_fft: 400, win_length: 400, hop_length: 160, center: true };
        let mut stft = Stft::new(cfg).unwrap();
        let x = chirp(16000);
        let spec = stft.forward(&x);
        let mag = spec.magnitude();
        let few = griffin_lim(&mut stft, &mag, spec.frames, x.len(), GriffinLimConfig { n_iter: 4, momentum: 0.99 });
        let many = griffin_lim(&mut stft, &mag, spec.frames, x.len(), GriffinLimConfig { n_iter: 64, momentum: 0.99 });
        let sc_few = spectral_convergence(&mut stft, &mag, &few);
        let sc_many = spectral_convergence(&mut stft, &mag, &many);
        assert!(sc_many < sc_few, "{sc_many} !< {sc_few}");
        assert!(sc_many < 0.15, "spectral convergence after 64 iterations: {sc_many}");
    }

    #[test]
    fn mel_resynthesis_keeps_the_mel() {
        let fcfg = FrontendConfig::speech_16k();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/speech_m.wav");
        let x = crate::read_mono(path, crate::ChannelMix::Downmix).unwrap().samples;
        let mut lm = LogMel::new(&fcfg).unwrap();
        let mel = lm.compute(&x);
        let y = mel_to_audio(&fcfg, &mel, GriffinLimConfig::default()).unwrap();
        assert_eq!(y.len(), (mel.frames - 1) * 160);
        let mel2 = lm.compute(&y);
        // Mean absolute log-mel difference over bands with energy.
        let (mut d, mut n) = (0.0f32, 0);
        for (a, b) in mel.data.iter().zip(&mel2.data) {
            if *a > -5.0 {
                d += (a - b).abs();
                n += 1;
            }
        }
        eprintln!("mean log-mel distance {}", d / n as f32);
        assert!(d / (n as f32) < 0.15, "mean log-mel distance {}", d / n as f32);
    }
}
