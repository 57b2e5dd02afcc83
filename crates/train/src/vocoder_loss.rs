//! Losses for training the neural vocoder, differentiable end to end: the L1 distance between
//! the log-mel of the generated audio (the frontend's own, as a product with DFT and filterbank
//! matrices, so that it equals `voxswap_audio::LogMel`) and the target's, and the
//! multi-resolution STFT loss (spectral convergence and log-magnitude distance at several
//! resolutions, Yamamoto et al. 2020).

use candle_core::{Device, Tensor};
use voxswap_audio::FrontendConfig;
use voxswap_model::conv::conv1d_full;

use crate::Result;

/// A centred STFT as a strided convolution with windowed DFT kernels: `n_fft / 2` zeros padded
/// on both sides (librosa's `center=True, pad_mode="constant"`), periodic Hann of `win_length`
/// centred in `n_fft`.
#[derive(Debug, Clone)]
pub struct DiffStft {
    n_fft: usize,
    hop: usize,
    /// `[2·bins, 1, n_fft]`: the real parts' kernels, then the imaginary parts'.
    kernel: Tensor,
}

impl DiffStft {
    /// The transform.
    ///
    /// # Errors
    /// A tensor that cannot be made.
    pub fn new(n_fft: usize, hop: usize, win_length: usize, device: &Device) -> Result<Self> {
        let bins = n_fft / 2 + 1;
        let off = (n_fft - win_length) / 2;
        let mut k = vec![0f32; 2 * bins * n_fft];
        for j in 0..win_length {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / win_length as f64).cos();
            let n = off + j;
            for b in 0..bins {
                let p = 2.0 * std::f64::consts::PI * (b * n % n_fft) as f64 / n_fft as f64;
                k[b * n_fft + n] = (w * p.cos()) as f32;
                k[(bins + b) * n_fft + n] = (-w * p.sin()) as f32;
            }
        }
        Ok(Self {
            n_fft,
            hop,
            kernel: Tensor::from_vec(k, (2 * bins, 1, n_fft), device)?,
        })
    }

    /// Audio `[B, L]` → magnitudes `[B, bins, frames]` (`frames = 1 + L / hop`); a tiny
    /// constant under the square root keeps the gradient finite at silence.
    ///
    /// # Errors
    /// Wrongly shaped audio.
    pub fn magnitude(&self, audio: &Tensor) -> Result<Tensor> {
        let pad = self.n_fft / 2;
        let x = audio.unsqueeze(1)?.pad_with_zeros(2, pad, pad)?;
        let y = conv1d_full(&x, &self.kernel, None, self.hop, 0)?;
        let bins = self.n_fft / 2 + 1;
        let re = y.narrow(1, 0, bins)?;
        let im = y.narrow(1, bins, bins)?;
        Ok(((re.sqr()? + im.sqr()?)? + 1e-12)?.sqrt()?)
    }
}

/// The frontend's log-mel, differentiable: `ln(max(W · |STFT(x)|, floor))`.
#[derive(Debug, Clone)]
pub struct DiffLogMel {
    stft: DiffStft,
    /// `[n_mels, bins]`.
    filterbank: Tensor,
    floor: f64,
}

impl DiffLogMel {
    /// The log-mel of frontend `fe`.
    ///
    /// # Errors
    /// An invalid frontend.
    pub fn new(fe: &FrontendConfig, device: &Device) -> Result<Self> {
        let fb = fe.filterbank()?;
        let bins = fe.n_fft / 2 + 1;
        // The dense matrix, column by column: the filterbank applied to each unit spectrum.
        let mut dense = vec![0f32; fe.n_mels * bins];
        let mut unit = vec![0f32; bins];
        let mut col = vec![0f32; fe.n_mels];
        for b in 0..bins {
            unit[b] = 1.0;
            fb.apply(&unit, &mut col);
            unit[b] = 0.0;
            for m in 0..fe.n_mels {
                dense[m * bins + b] = col[m];
            }
        }
        Ok(Self {
            stft: DiffStft::new(fe.n_fft, fe.hop_length, fe.win_length, device)?,
            filterbank: Tensor::from_vec(dense, (fe.n_mels, bins), device)?,
            floor: f64::from(fe.log_floor),
        })
    }

    /// Audio `[B, L]` → log-mel `[B, n_mels, 1 + L / hop]`.
    ///
    /// # Errors
    /// Wrongly shaped audio.
    pub fn forward(&self, audio: &Tensor) -> Result<Tensor> {
        let mag = self.stft.magnitude(audio)?;
        let mel = self.filterbank.broadcast_matmul(&mag)?;
        Ok(mel.maximum(self.floor)?.log()?)
    }
}

/// The resolutions of the multi-resolution STFT loss at 16 kHz: (n_fft, hop, window).
pub const STFT_RESOLUTIONS: [(usize, usize, usize); 3] = [(512, 128, 512), (1024, 256, 1024), (256, 64, 256)];

/// The vocoder's training loss: mel L1 plus the multi-resolution STFT loss.
#[derive(Debug, Clone)]
pub struct VocoderLoss {
    mel: DiffLogMel,
    stfts: Vec<DiffStft>,
    /// Weight of the mel L1 term.
    pub lambda_mel: f64,
}

/// The loss of one batch and its parts (scalar tensors).
#[derive(Debug, Clone)]
pub struct VocoderLossParts {
    /// `lambda_mel · mel + stft`.
    pub total: Tensor,
    /// Mean absolute log-mel difference.
    pub mel: Tensor,
    /// Spectral convergence plus log-magnitude distance, averaged over the resolutions.
    pub stft: Tensor,
}

impl VocoderLoss {
    /// The loss for frontend `fe`.
    ///
    /// # Errors
    /// An invalid frontend.
    pub fn new(fe: &FrontendConfig, lambda_mel: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            mel: DiffLogMel::new(fe, device)?,
            stfts: STFT_RESOLUTIONS
                .iter()
                .map(|&(n, h, w)| DiffStft::new(n, h, w, device))
                .collect::<Result<_>>()?,
            lambda_mel,
        })
    }

    /// The differentiable log-mel.
    pub fn log_mel(&self) -> &DiffLogMel {
        &self.mel
    }

    /// The loss of `pred` against `target` (audio `[B, L]` each); `target_mel` is the target's
    /// log-mel (`[B, n_mels, 1 + L / hop]`, the frontend's).
    ///
    /// # Errors
    /// Wrongly or differently shaped inputs.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, target_mel: &Tensor) -> Result<VocoderLossParts> {
        let mel = (self.mel.forward(pred)? - target_mel)?.abs()?.mean_all()?;
        let mut stft: Option<Tensor> = None;
        for s in &self.stfts {
            let p = s.magnitude(pred)?;
            let t = s.magnitude(target)?;
            let sc = ((&t - &p)?.sqr()?.sum_all()?.sqrt()? / t.sqr()?.sum_all()?.sqrt()?)?;
            let mag = (t.log()? - p.log()?)?.abs()?.mean_all()?;
            let part = (sc + mag)?;
            stft = Some(match stft {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let stft = match stft {
            Some(s) => (s / self.stfts.len() as f64)?,
            None => Tensor::zeros((), pred.dtype(), pred.device())?,
        };
        let total = (mel.affine(self.lambda_mel, 0.0)? + &stft)?;
        Ok(VocoderLossParts { total, mel, stft })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxswap_audio::{read_mono, ChannelMix, LogMel};

    fn clip() -> Vec<f32> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/speech_m.wav");
        read_mono(p, ChannelMix::Downmix).unwrap().samples
    }

    /// The differentiable log-mel equals the frontend's (librosa-parity) log-mel.
    #[test]
    fn differentiable_log_mel_equals_the_frontend() {
        let fe = FrontendConfig::speech_16k();
        let x = clip();
        let want = LogMel::new(&fe).unwrap().compute(&x);
        let audio = Tensor::from_slice(&x, (1, x.len()), &Device::Cpu).unwrap();
        let got = DiffLogMel::new(&fe, &Device::Cpu).unwrap().forward(&audio).unwrap();
        assert_eq!(got.dims(), [1, fe.n_mels, want.frames]);
        let got = got.squeeze(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Where the mel is above the floor by a margin (near it, float32 DFT rounding shows on
        // the log scale): within 1e-3 nats.
        let mut worst = 0f32;
        for (g, w) in got.iter().zip(&want.data) {
            if *w > fe.log_floor.ln() + 3.0 {
                worst = worst.max((g - w).abs());
            }
        }
        assert!(worst < 1e-3, "largest difference {worst}");
    }

    /// The loss is zero for the target itself, positive otherwise, and its gradient reaches the
    /// prediction (and is finite at silence).
    #[test]
    fn loss_is_zero_at_the_target_and_differentiable() {
        let fe = FrontendConfig::speech_16k();
        let x = clip();
        let n = 8000;
        let target = Tensor::from_slice(&x[4000..4000 + n], (1, n), &Device::Cpu).unwrap();
        let loss = VocoderLoss::new(&fe, 45.0, &Device::Cpu).unwrap();
        let tmel = loss.log_mel().forward(&target).unwrap();
        let same = loss.forward(&target, &target, &tmel).unwrap();
        assert!(same.total.to_scalar::<f32>().unwrap().abs() < 1e-4);
        let pred = candle_core::Var::from_tensor(&(target.affine(0.5, 0.0).unwrap())).unwrap();
        let l = loss.forward(pred.as_tensor(), &target, &tmel).unwrap();
        assert!(l.mel.to_scalar::<f32>().unwrap() > 0.1);
        assert!(l.stft.to_scalar::<f32>().unwrap() > 0.1);
        let g = l.total.backward().unwrap();
        let g = g
            .get(pred.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
        let silent = candle_core::Var::zeros((1, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let l = loss.forward(silent.as_tensor(), &target, &tmel).unwrap();
        let g = l.total.backward().unwrap();
        let g = g
            .get(silent.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()));
    }
}
