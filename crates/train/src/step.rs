//! Forward, loss and backward of one training batch, split across the CPU's threads by batch
//! shards.
//!
//! Parallelising a step op by op (each product, each elementwise map split across threads)
//! synchronises the threads hundreds of times per step and leaves the serial pieces between
//! them on one core: on two cores that gained only 1.5×. Here each thread takes a contiguous
//! shard of the batch and runs the whole forward and backward pass over it alone; the shards'
//! gradients are then added. Nothing in AdaIN-VC mixes batch items (instance norms are per
//! item), so the result is the gradient of the whole batch's loss, up to float rounding.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use voxswap_model::AdaInVc;

use crate::adversary::SpeakerAdversary;
use crate::discriminator::MelDiscriminator;
use crate::loss::ae_loss;
use crate::phonetic::PhoneHead;
use crate::Result;

/// The gradients of a batch's loss, and the loss's parts as numbers.
#[derive(Debug)]
pub struct StepGrads {
    /// Gradients of `total` for every parameter that has one.
    pub grads: GradStore,
    /// λ_rec · rec + λ_kl · kl, the batch mean.
    pub total: f32,
    /// Mean absolute reconstruction error.
    pub rec: f32,
    /// Mean KL term.
    pub kl: f32,
    /// The speaker adversary's cross-entropy (0 without one).
    pub adv: f32,
    /// The speaker-consistency loss (0 without it): 1 − cosine between the speaker vector
    /// conversions are rendered in and what the speaker encoder hears in them.
    pub cons: f32,
    /// The mel discriminator's loss for the decoder, `(D(made) − 1)²` (0 without one).
    pub gen: f32,
    /// The mel discriminator's own loss (0 without one).
    pub disc: f32,
    /// The VQ loss of a vector-quantised code (0 without one).
    pub vq: f32,
}

/// What one training step reads: the segments to reconstruct and what each encoder sees of them.
#[derive(Debug, Clone)]
pub struct StepBatch {
    /// The segments the loss asks for, `[B, mels, T]`.
    pub target: Tensor,
    /// What the content encoder reads: `target` itself, or `target` perturbed (see
    /// [`AdaInVc::forward_split`]); shaped like `target`.
    pub content: Tensor,
    /// What the speaker encoder reads: `target` itself, or other segments of the same voices
    /// (`[B, mels, T']`).
    pub speaker: Tensor,
    /// The VAE noise, `[B, code, T / frame multiple]`.
    pub noise: Tensor,
    /// Each segment's training speaker (`[B]`, u32), for the speaker adversary.
    pub speakers: Option<Tensor>,
    /// The segments' pitch (`[B, 2, T]`), for a model with `decoder.f0`.
    pub pitch: Option<Tensor>,
}

impl StepBatch {
    /// Every encoder reads `x` itself.
    pub fn plain(x: &Tensor, noise: &Tensor) -> Self {
        Self {
            target: x.clone(),
            content: x.clone(),
            speaker: x.clone(),
            noise: noise.clone(),
            speakers: None,
            pitch: None,
        }
    }

    fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            target: self.target.narrow(0, start, len)?,
            content: self.content.narrow(0, start, len)?,
            speaker: self.speaker.narrow(0, start, len)?,
            noise: self.noise.narrow(0, start, len)?,
            speakers: self.speakers.as_ref().map(|s| s.narrow(0, start, len)).transpose()?,
            pitch: self.pitch.as_ref().map(|s| s.narrow(0, start, len)).transpose()?,
        })
    }
}

/// Forward, loss ([`ae_loss`]) and backward over `batch` ([`StepBatch`]), one batch shard per
/// thread ([`voxswap_model::par::threads`]; one shard on one thread). `params` are the trained
/// variables: their gradients are summed over the shards.
pub fn forward_backward(
    model: &AdaInVc,
    params: &[Var],
    batch: &StepBatch,
    lambda_rec: f64,
    lambda_kl: f64,
) -> Result<StepGrads> {
    forward_backward_with(model, params, batch, lambda_rec, lambda_kl, Extras::default())
}

/// Each segment's content code (its mean, quantised if the model quantises, as at conversion)
/// decoded in the voice of the next segment of the shard (the batch rolled by one, mostly
/// another speaker): the global vectors used (held fixed) and the conversions. `None` for a
/// shard of one segment.
///
/// # Errors
/// Shape errors from the tensors.
pub fn conversions(model: &AdaInVc, out: &voxswap_model::AeOutput) -> Result<Option<(Tensor, Tensor)>> {
    let n = out.speaker.dim(0)?;
    if n < 2 {
        return Ok(None);
    }
    let rolled = Tensor::cat(&[out.speaker.narrow(0, 1, n - 1)?, out.speaker.narrow(0, 0, 1)?], 0)?.detach();
    let converted = model
        .decoder
        .forward(&model.with_pitch(&out.code, out.pitch.as_ref())?, &rolled)?;
    Ok(Some((rolled, converted)))
}

/// Speaker consistency (`train.lambda_cons`): the [`conversions`] re-encoded by the speaker
/// encoder, and the loss is 1 − the cosine between the global vector each was rendered with and
/// the one heard in it, both taken from the shard's mean vector, averaged over the shard. `None`
/// for a shard of one segment.
///
/// # Errors
/// Shape errors from the tensors.
pub fn consistency_loss(model: &AdaInVc, out: &voxswap_model::AeOutput) -> Result<Option<Tensor>> {
    match conversions(model, out)? {
        Some((rolled, converted)) => consistency_of(model, &rolled, &converted).map(Some),
        None => Ok(None),
    }
}

fn consistency_of(model: &AdaInVc, rolled: &Tensor, converted: &Tensor) -> Result<Tensor> {
    let c = model.config().speaker.c_out;
    // Around the shard's mean voice: the global vectors share a large common part (their raw
    // cosines are all near 1 from the start), which would hide what tells voices apart.
    let want = rolled.narrow(1, 0, c)?;
    let centre = want.mean_keepdim(0)?;
    let heard = model
        .speaker
        .forward(converted)?
        .narrow(1, 0, c)?
        .broadcast_sub(&centre)?;
    let want = want.broadcast_sub(&centre)?;
    let dot = (&heard * &want)?.sum(1)?;
    let norms = (heard.sqr()?.sum(1)?.sqrt()? * want.sqr()?.sum(1)?.sqrt()?)?;
    let cos = (dot / (norms + 1e-8)?)?;
    Ok(cos.mean_all()?.affine(-1.0, 1.0)?)
}

/// The terms a step may add to AdaIN-VC's loss, each with its weight (none by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// The speaker adversary and λ_adv: the loss gains λ_adv · its cross-entropy on the content
    /// code's mean, read through a gradient reversal (see [`crate::adversary`]); `params` should
    /// then hold the adversary's weights too, and the batch its speakers.
    pub adversary: Option<(&'a SpeakerAdversary, f64)>,
    /// λ_cons of [`consistency_loss`] (0: left out).
    pub lambda_cons: f64,
    /// The mel discriminator and λ_gan: the loss gains λ_gan · its
    /// [`MelDiscriminator::generator_loss`] on the reconstructions and the [`conversions`]
    /// (gradients to the model only), and the discriminator's own
    /// [`MelDiscriminator::discriminator_loss`] against the segments (gradients to it only);
    /// `params` should then hold its weights too.
    pub gan: Option<(&'a MelDiscriminator, f64)>,
}

/// [`forward_backward`] with the [`Extras`] terms.
///
/// # Errors
/// A batch without speakers for an adversary; shape errors from the tensors.
pub fn forward_backward_with(
    model: &AdaInVc,
    params: &[Var],
    batch: &StepBatch,
    lambda_rec: f64,
    lambda_kl: f64,
    extras: Extras,
) -> Result<StepGrads> {
    let b = batch.target.dim(0)?;
    let (grads, sums) = sharded(b, params, 8, &|start, len| {
        let part = if len == b {
            batch.clone()
        } else {
            batch.narrow(start, len)?
        };
        let xs = &part.target;
        let out = model.forward_pitched(xs, &part.content, &part.speaker, &part.noise, part.pitch.as_ref())?;
        let loss = ae_loss(xs, &out, lambda_rec, lambda_kl)?;
        let (total, adv) = match (extras.adversary, &part.speakers) {
            (Some((a, lambda)), Some(labels)) => {
                let ce = a.loss(&out.mu, labels)?;
                ((&loss.total + ce.affine(lambda, 0.0)?)?, ce.to_scalar::<f32>()?)
            }
            (Some(_), None) => {
                return Err(
                    voxswap_model::Error::Input("a speaker adversary needs each segment's speaker".into()).into(),
                )
            }
            (None, _) => (loss.total.clone(), 0.0),
        };
        let converted = match extras.lambda_cons > 0.0 || extras.gan.is_some() {
            true => conversions(model, &out)?,
            false => None,
        };
        let (total, cons) = match (extras.lambda_cons > 0.0, &converted) {
            (true, Some((rolled, conv))) => {
                let c = consistency_of(model, rolled, conv)?;
                ((total + c.affine(extras.lambda_cons, 0.0)?)?, c.to_scalar::<f32>()?)
            }
            _ => (total, 0.0),
        };
        // The discriminator reads the reconstructions and the conversions as made mels.
        let made = match (&extras.gan, &converted) {
            (Some(_), Some((_, conv))) => Some(Tensor::cat(&[&out.mel, conv], 0)?),
            (Some(_), None) => Some(out.mel.clone()),
            (None, _) => None,
        };
        let (total, gen) = match (&extras.gan, &made) {
            (Some((d, lambda)), Some(made)) => {
                let g = d.generator_loss(made)?;
                ((total + g.affine(*lambda, 0.0)?)?, g.to_scalar::<f32>()?)
            }
            _ => (total, 0.0),
        };
        // Each shard's means, weighted by its share of the batch, add up to the batch's means.
        let share = len as f64 / b as f64;
        let total = total.affine(share, 0.0)?;
        let mut grads = total.backward()?;
        let mut disc = 0.0;
        if let (Some((d, _)), Some(made)) = (&extras.gan, &made) {
            // The decoder's loss does not train the discriminator; its own loss does.
            let own = d.params();
            for p in &own {
                grads.remove(p);
            }
            let l = d.discriminator_loss(xs, made)?;
            disc = l.to_scalar::<f32>()?;
            let mut g = l.affine(share, 0.0)?.backward()?;
            for p in &own {
                if let Some(v) = g.remove(p) {
                    grads.insert(p, v);
                }
            }
        }
        let s = share as f32;
        Ok((
            grads,
            vec![
                total.to_scalar::<f32>()?,
                loss.rec.to_scalar::<f32>()? * s,
                loss.kl.to_scalar::<f32>()? * s,
                adv * s,
                cons * s,
                gen * s,
                disc * s,
                match &out.vq {
                    Some(v) => v.to_scalar::<f32>()? * s,
                    None => 0.0,
                },
            ],
        ))
    })?;
    Ok(StepGrads {
        grads,
        total: sums[0],
        rec: sums[1],
        kl: sums[2],
        adv: sums[3],
        cons: sums[4],
        gen: sums[5],
        disc: sums[6],
        vq: sums[7],
    })
}

/// One piece of a sharded step: the gradients of the shard's share of the loss (the shard's
/// mean times its share of the batch) and `parts` numbers to sum (loss parts, weighted alike).
pub type Shard<'a> = dyn Fn(usize, usize) -> Result<(GradStore, Vec<f32>)> + Sync + 'a;

/// Splits a batch of `b` items into one contiguous shard per CPU thread
/// ([`voxswap_model::par::per_thread`]), runs `shard(start, len)` for each on its own thread,
/// and adds up the gradients of `params` and the `parts` numbers: the gradient of the whole
/// batch's loss, up to float rounding.
///
/// # Errors
/// The first shard's error.
pub fn sharded(b: usize, params: &[Var], parts: usize, shard: &Shard) -> Result<(GradStore, Vec<f32>)> {
    let run = |i: usize, n: usize| -> Result<(GradStore, Vec<f32>)> {
        let n = n.min(b);
        // Shards of b/n items, the first b % n one larger.
        let (size, extra) = (b / n, b % n);
        let start = i * size + i.min(extra);
        let len = size + usize::from(i < extra);
        if i >= n || len == 0 {
            return Ok((GradStore::default(), vec![0.0; parts]));
        }
        shard(start, len)
    };
    let mut shards = voxswap_model::par::per_thread(run).into_iter();
    let (mut grads, mut sums) = match shards.next() {
        Some(first) => first?,
        None => (GradStore::default(), vec![0.0; parts]),
    };
    for s in shards {
        let (g, p) = s?;
        for (acc, v) in sums.iter_mut().zip(p) {
            *acc += v;
        }
        add_grads(&mut grads, g, params)?;
    }
    Ok((grads, sums))
}

/// Adds `other`'s gradients of `params` to `grads`.
///
/// # Errors
/// Gradients of different shapes.
pub fn add_grads(grads: &mut GradStore, mut other: GradStore, params: &[Var]) -> Result<()> {
    for v in params {
        if let Some(o) = other.remove(v.as_tensor()) {
            let sum = match grads.remove(v.as_tensor()) {
                Some(mine) => (mine + o)?,
                None => o,
            };
            grads.insert(v.as_tensor(), sum);
        }
    }
    Ok(())
}

/// The phonetic head's part of a step (`train.lambda_phone`, [`crate::phonetic`]): CTC on the
/// content code of whole utterances (`mels[i]`, `[1, n_mels, T_i]`, transcribed by `labels[i]`),
/// one utterance at a time (no padding: exact for every preset), the utterances split across
/// the threads. Returns the gradients of `weight` times the mean CTC loss (per label) and that
/// mean; utterances without an alignment (none, after [`crate::data::Dataset::transcribed`])
/// count as zero.
///
/// # Errors
/// Shape errors from the tensors.
pub fn phonetic_backward(
    model: &AdaInVc,
    head: &PhoneHead,
    params: &[Var],
    mels: &[Tensor],
    labels: &[Vec<u32>],
    weight: f64,
) -> Result<(GradStore, f32)> {
    let n = mels.len();
    let (grads, sums) = sharded(n, params, 1, &|start, len| {
        let mut total: Option<Tensor> = None;
        let mut loss = 0.0f64;
        for j in start..start + len {
            let (mu, _) = model.content.forward(&mels[j])?;
            if let Some((l, sur)) = head.ctc(&mu.squeeze(0)?, &labels[j], weight / n as f64)? {
                loss += l / n as f64;
                total = Some(match total {
                    Some(t) => (t + sur)?,
                    None => sur,
                });
            }
        }
        let grads = match total {
            Some(t) => t.backward()?,
            None => GradStore::default(),
        };
        Ok((grads, vec![loss as f32]))
    })?;
    Ok((grads, sums[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use voxswap_model::{init, ModelConfig};

    /// Shard by shard (when the machine has several threads) and in one pass over the batch,
    /// the gradients and the loss agree to float rounding; 5 items do not split evenly, and a
    /// batch of 1 leaves threads without a shard.
    #[test]
    fn sharded_gradients_equal_one_pass() {
        let dev = Device::Cpu;
        for (cfg, b) in [
            (ModelConfig::tiny(), 5),
            (ModelConfig::tiny_stream(), 5),
            (ModelConfig::tiny_stream(), 1),
        ] {
            let vars = VarMap::new();
            let model = AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
            init::init_pytorch_like(&vars, 3).unwrap();
            let params = vars.all_vars();
            let x = Tensor::randn(0f32, 1.0, (b, cfg.frontend.n_mels, 32), &dev).unwrap();
            let noise = Tensor::randn(0f32, 1.0, (b, cfg.content.c_out, 32 / cfg.frame_multiple()), &dev).unwrap();
            // Each encoder reads a different batch, as with a perturbed input and references
            // from other segments (longer ones here).
            let content = (x.affine(0.5, 0.1).unwrap() + x.sin().unwrap()).unwrap();
            let speaker = Tensor::randn(0f32, 1.0, (b, cfg.frontend.n_mels, 48), &dev).unwrap();
            let batch = StepBatch {
                target: x.clone(),
                content,
                speaker,
                noise,
                speakers: None,
                pitch: None,
            };
            let sharded = forward_backward(&model, &params, &batch, 10.0, 0.5).unwrap();
            let out = model
                .forward_split(&x, &batch.content, &batch.speaker, &batch.noise)
                .unwrap();
            let loss = ae_loss(&x, &out, 10.0, 0.5).unwrap();
            let whole = loss.total.backward().unwrap();
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(close(sharded.total, loss.total.to_scalar().unwrap()));
            assert!(close(sharded.rec, loss.rec.to_scalar().unwrap()));
            assert!(close(sharded.kl, loss.kl.to_scalar().unwrap()));
            // Against the largest gradient of all: some gradients are zero analytically (a
            // bias right before an instance norm) and only rounding noise in practice.
            let max_abs = |t: &Tensor| {
                t.abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let scale = params
                .iter()
                .map(|v| max_abs(whole.get(v.as_tensor()).unwrap()))
                .fold(0f32, f32::max);
            assert!(scale > 0.0);
            for v in &params {
                let a = sharded.grads.get(v.as_tensor()).unwrap();
                let b = whole.get(v.as_tensor()).unwrap();
                let diff = max_abs(&(a - b).unwrap());
                assert!(
                    diff <= 1e-5 * scale,
                    "{:?}: {diff} vs largest gradient {scale}",
                    v.dims()
                );
            }
        }
    }

    /// The consistency loss is 1 − the cosine between each rolled voice and what the speaker
    /// encoder hears in the conversion (checked by hand), and its gradient lowers it.
    #[test]
    fn consistency_is_one_minus_cosine_and_descends() {
        let dev = Device::Cpu;
        let cfg = ModelConfig::tiny_stream();
        let vars = VarMap::new();
        let model = AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        init::init_pytorch_like(&vars, 5).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, cfg.frontend.n_mels, 32), &dev).unwrap();
        let noise = Tensor::zeros((3, cfg.content.c_out, 32), DType::F32, &dev).unwrap();
        let loss = |model: &AdaInVc| {
            let out = model.forward(&x, &noise).unwrap();
            (consistency_loss(model, &out).unwrap().unwrap(), out)
        };
        let (l, out) = loss(&model);
        let spk = out.speaker.to_vec2::<f32>().unwrap();
        let c = cfg.speaker.c_out;
        let centre: Vec<f32> = (0..c).map(|k| spk.iter().map(|v| v[k]).sum::<f32>() / 3.0).collect();
        let mut want = 0.0;
        for i in 0..3 {
            let j = (i + 1) % 3;
            let v = Tensor::new(spk[j].as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
            let mu = out.mu.narrow(0, i, 1).unwrap();
            let heard = model
                .speaker
                .forward(&model.decoder.forward(&mu, &v).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let a: Vec<f32> = heard[0][..c].iter().zip(&centre).map(|(p, q)| p - q).collect();
            let b: Vec<f32> = spk[j][..c].iter().zip(&centre).map(|(p, q)| p - q).collect();
            let dot: f32 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
            let na: f32 = a.iter().map(|p| p * p).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|p| p * p).sum::<f32>().sqrt();
            want += (1.0 - dot / (na * nb)) / 3.0;
        }
        let got = l.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let g = l.backward().unwrap();
        for v in vars.all_vars() {
            if let Some(d) = g.get(v.as_tensor()) {
                v.set(&(v.as_tensor() - d.affine(0.05, 0.0).unwrap()).unwrap()).unwrap();
            }
        }
        let after = loss(&model).0.to_scalar::<f32>().unwrap();
        assert!(after < got, "{got} -> {after}");
        // One segment has no other voice to be rendered in.
        let out1 = model
            .forward(&x.narrow(0, 0, 1).unwrap(), &noise.narrow(0, 0, 1).unwrap())
            .unwrap();
        assert!(consistency_loss(&model, &out1).unwrap().is_none());
    }
}
