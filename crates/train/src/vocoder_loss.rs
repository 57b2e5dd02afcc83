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
        let (re, im) = self.complex(audio)?;
        Ok(((re.sqr()? + im.sqr()?)? + 1e-12)?.sqrt()?)
    }

    /// Audio `[B, L]` → real and imaginary parts `[B, bins, frames]`.
    ///
    /// # Errors
    /// Wrongly shaped audio.
    pub fn complex(&self, audio: &Tensor) -> Result<(Tensor, Tensor)> {
        let pad = self.n_fft / 2;
        let x = audio.unsqueeze(1)?.pad_with_zeros(2, pad, pad)?;
        let y = conv1d_full(&x, &self.kernel, None, self.hop, 0)?;
        let bins = self.n_fft / 2 + 1;
        Ok((y.narrow(1, 0, bins)?, y.narrow(1, bins, bins)?))
    }

    /// The phases `[B, frames, bins]` of audio `[B, L]` (atan2 of the parts; not differentiable:
    /// a target).
    ///
    /// # Errors
    /// Wrongly shaped audio.
    pub fn phase(&self, audio: &Tensor) -> Result<Tensor> {
        let (re, im) = self.complex(&audio.detach())?;
        let (re, im) = (re.transpose(1, 2)?.contiguous()?, im.transpose(1, 2)?.contiguous()?);
        let shape = re.shape().clone();
        let re = re.flatten_all()?.to_vec1::<f32>()?;
        let im = im.flatten_all()?.to_vec1::<f32>()?;
        let p: Vec<f32> = im.iter().zip(&re).map(|(i, r)| i.atan2(*r)).collect();
        Ok(Tensor::from_vec(p, shape, audio.device())?)
    }
}

/// `|x − 2π·round(x / 2π)|`: the distance of an angle difference from the nearest multiple of a
/// full turn (the anti-wrapping function of Ai & Ling's APNet); the rounding is a constant for
/// the gradient.
fn anti_wrap(x: &Tensor) -> Result<Tensor> {
    let turn = 2.0 * std::f64::consts::PI;
    let k = x.detach().affine(1.0 / turn, 0.0)?.round()?;
    Ok((x - k.affine(turn, 0.0)?)?.abs()?)
}

/// The phase loss of APNet (Ai & Ling 2023) between predicted and target phases
/// `[B, T, bins]`: anti-wrapped instantaneous phase, group delay (differences along frequency)
/// and instantaneous angular frequency (differences along time), each averaged, summed. The
/// first and last frames are left out (their target is cut by the segment's edges).
///
/// With `frequency_only`, the instantaneous frequency term alone: for integrated phases
/// (`PhaseMode::Integrated`), whose running sums start from an arbitrary point of the audio, so
/// that only their advance from frame to frame (the head's output) can match the target's.
///
/// # Errors
/// Differently shaped inputs, or fewer than 4 frames.
pub fn phase_loss(pred: &Tensor, target: &Tensor, frequency_only: bool) -> Result<Tensor> {
    let t = pred.dim(1)?;
    if t < 4 || pred.dims() != target.dims() {
        return Err(candle_core::Error::Msg(format!(
            "phase loss: shapes {:?} and {:?} (at least 4 frames)",
            pred.dims(),
            target.dims()
        ))
        .into());
    }
    let (p, q) = (pred.narrow(1, 1, t - 2)?, target.narrow(1, 1, t - 2)?);
    let d = (&p - &q)?;
    let iaf = anti_wrap(&(d.narrow(1, 1, t - 3)? - d.narrow(1, 0, t - 3)?)?)?.mean_all()?;
    if frequency_only {
        return Ok(iaf);
    }
    let ip = anti_wrap(&d)?.mean_all()?;
    let f = d.dim(2)?;
    let gd = anti_wrap(&(d.narrow(2, 1, f - 1)? - d.narrow(2, 0, f - 1)?)?)?.mean_all()?;
    Ok(((ip + gd)? + iaf)?)
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
    /// Weight of the phase loss ([`phase_loss`]; 0: none).
    pub lambda_phase: f64,
    /// The phase loss's instantaneous frequency term alone (for integrated phases).
    pub phase_frequency_only: bool,
    /// The STFT whose phases the vocoder's synthesis frames are compared with (its `n_fft`,
    /// the frontend's hop, a Hann window of `n_fft`).
    phase_stft: DiffStft,
}

/// The loss of one batch and its parts (scalar tensors).
#[derive(Debug, Clone)]
pub struct VocoderLossParts {
    /// `lambda_mel · mel + stft + lambda_phase · phase`.
    pub total: Tensor,
    /// Mean absolute log-mel difference.
    pub mel: Tensor,
    /// Spectral convergence plus log-magnitude distance, averaged over the resolutions.
    pub stft: Tensor,
    /// The phase loss (0 without predicted phases).
    pub phase: Tensor,
}

impl VocoderLoss {
    /// The loss for frontend `fe`.
    ///
    /// # Errors
    /// An invalid frontend.
    pub fn new(fe: &FrontendConfig, lambda_mel: f64, device: &Device) -> Result<Self> {
        Self::with_phase(fe, lambda_mel, 0.0, fe.n_fft, device)
    }

    /// The loss with a phase term of weight `lambda_phase` for a vocoder of `n_fft` points.
    ///
    /// # Errors
    /// An invalid frontend.
    pub fn with_phase(
        fe: &FrontendConfig,
        lambda_mel: f64,
        lambda_phase: f64,
        n_fft: usize,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            lambda_phase,
            phase_frequency_only: false,
            phase_stft: DiffStft::new(n_fft, fe.hop_length, n_fft, device)?,
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
        self.forward_with_phase(pred, None, target, target_mel)
    }

    /// [`Self::forward`] with the phase term when `pred_phase` (`[B, T, bins]`, the vocoder's
    /// synthesis frames) is given and `lambda_phase` is not 0.
    ///
    /// # Errors
    /// Wrongly or differently shaped inputs.
    pub fn forward_with_phase(
        &self,
        pred: &Tensor,
        pred_phase: Option<&Tensor>,
        target: &Tensor,
        target_mel: &Tensor,
    ) -> Result<VocoderLossParts> {
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
        let mut total = (mel.affine(self.lambda_mel, 0.0)? + &stft)?;
        let phase = match pred_phase {
            Some(p) if self.lambda_phase != 0.0 => {
                let want = self.phase_stft.phase(target)?.narrow(1, 0, p.dim(1)?)?;
                let l = phase_loss(p, &want, self.phase_frequency_only)?;
                total = (total + l.affine(self.lambda_phase, 0.0)?)?;
                l
            }
            _ => Tensor::zeros((), pred.dtype(), pred.device())?,
        };
        Ok(VocoderLossParts {
            total,
            mel,
            stft,
            phase,
        })
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

    /// The phase loss is 0 at the target and for phases a whole number of turns away, grows
    /// with a shift, and its gradient reaches the prediction.
    #[test]
    fn phase_loss_wraps_and_is_differentiable() {
        let dev = Device::Cpu;
        let (t, f) = (12, 9);
        let want: Vec<f32> = (0..t * f)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 6.0)
            .collect();
        let target = Tensor::from_vec(want.clone(), (1, t, f), &dev).unwrap();
        let zero = phase_loss(&target, &target, false).unwrap().to_scalar::<f32>().unwrap();
        assert!(zero.abs() < 1e-6, "{zero}");
        let turns: Vec<f32> = want
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 3) as f32 * 2.0 * std::f32::consts::PI)
            .collect();
        let wrapped = Tensor::from_vec(turns, (1, t, f), &dev).unwrap();
        let l = phase_loss(&wrapped, &target, false)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l < 1e-4, "whole turns cost {l}");
        // A constant shift of 0.3 rad: 0.3 of instantaneous phase, nothing in the differences.
        let shifted = candle_core::Var::from_tensor(&target.affine(1.0, 0.3).unwrap()).unwrap();
        let l = phase_loss(shifted.as_tensor(), &target, false).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 0.3).abs() < 1e-4);
        let g = l.backward().unwrap();
        let g = g.get(shifted.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap();
        assert!(g.to_scalar::<f32>().unwrap() > 0.0);
        assert!(phase_loss(
            &target.narrow(1, 0, 3).unwrap(),
            &target.narrow(1, 0, 3).unwrap(),
            false
        )
        .is_err());

        // The instantaneous frequency alone: a different start for every bin (integrated phases)
        // costs nothing, which the whole loss charges for; a faster advance costs its excess.
        let starts: Vec<f32> = (0..t * f).map(|i| (i % f) as f32 * 0.7).collect();
        let started = (&target + Tensor::from_vec(starts, (1, t, f), &dev).unwrap()).unwrap();
        let free = phase_loss(&started, &target, true).unwrap().to_scalar::<f32>().unwrap();
        let full = phase_loss(&started, &target, false)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(free < 1e-4 && full > 0.5, "frequency only {free}, whole {full}");
        let ramp: Vec<f32> = (0..t * f).map(|i| (i / f) as f32 * 0.2).collect();
        let faster = (&target + Tensor::from_vec(ramp, (1, t, f), &dev).unwrap()).unwrap();
        let l = phase_loss(&faster, &target, true).unwrap().to_scalar::<f32>().unwrap();
        assert!((l - 0.2).abs() < 1e-4, "{l}");
    }

    /// The target phases follow the vocoder's convention: speech's own STFT (magnitudes and
    /// phases of `n_fft` = 320 points, the vocoder's hop) put through the vocoder's synthesis
    /// gives the speech back, up to the windows' gain; with the phases of the neighbouring frame
    /// it does not.
    #[test]
    fn target_phases_resynthesise_the_target() {
        use candle_nn::{VarBuilder, VarMap};
        use voxswap_model::vocoder::{NeuralVocoder, VocoderConfig};
        let fe = FrontendConfig::speech_16k();
        let dev = Device::Cpu;
        let cfg = VocoderConfig::tiny(&fe);
        let vars = VarMap::new();
        let v = NeuralVocoder::new(&cfg, VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev)).unwrap();
        let x = clip();
        let n = 160 * 100;
        let audio = Tensor::from_slice(&x[4000..4000 + n], (1, n), &dev).unwrap();
        let stft = DiffStft::new(cfg.n_fft, fe.hop_length, cfg.n_fft, &dev).unwrap();
        let frames = n / fe.hop_length;
        let phase = stft.phase(&audio).unwrap().narrow(1, 0, frames).unwrap();
        let log_mag = stft
            .magnitude(&audio)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .narrow(1, 0, frames)
            .unwrap()
            .log()
            .unwrap();
        let corr = |p: &Tensor| {
            let y = v
                .from_spectrum(&log_mag, p)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let z = &x[4000..4000 + n];
            // Away from the edges.
            let (a, b) = (1000, n - 1000);
            let dot: f64 = (a..b).map(|i| f64::from(y[i]) * f64::from(z[i])).sum();
            let yy: f64 = (a..b).map(|i| f64::from(y[i]).powi(2)).sum();
            let zz: f64 = (a..b).map(|i| f64::from(z[i]).powi(2)).sum();
            dot / (yy * zz).sqrt()
        };
        let right = corr(&phase);
        assert!(right > 0.95, "correlation with the target's own phases {right}");
        let late = Tensor::cat(
            &[
                phase.narrow(1, 1, frames - 1).unwrap(),
                phase.narrow(1, frames - 1, 1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let wrong = corr(&late);
        assert!(wrong < 0.5, "correlation with the next frame's phases {wrong}");
    }
}
