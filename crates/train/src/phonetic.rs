//! A training-only phonetic head on the content code (`train.lambda_phone`): a per-frame
//! classifier of phonemes read by CTC (Graves et al. 2006) over whole utterances against their
//! transcripts, so that the content code must carry what is said, frame by frame. Its weights
//! live beside the model's in a checkpoint and never reach a model folder.
//!
//! Transcripts come from a TSV file (`data.phonemes`): a corpus-relative audio path, a tab, the
//! phonemes separated by spaces (`recipes/synth/phonemes.sh` writes it for the synthetic corpus
//! with espeak-ng). The inventory is the sorted set of the file's phonemes; CTC's blank is
//! class 0.
//!
//! CTC's forward-backward runs in f64 on the head's logits (a few hundred frames by a few dozen
//! classes); its gradient (softmax minus the state occupancies) enters the graph through a
//! surrogate `Σ logits · G` whose gradient is exactly the loss's.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::error::file_err;
use crate::Result;

/// Hidden width of the head.
pub const HIDDEN: usize = 256;

/// Phoneme transcripts by corpus-relative path, as class indices (1-based; 0 is the blank).
#[derive(Debug, Clone, PartialEq)]
pub struct Transcripts {
    /// The phoneme inventory; phoneme `inventory[i]` is class `i + 1`.
    pub inventory: Vec<String>,
    /// Corpus-relative path (with `/`) → classes.
    pub by_path: HashMap<String, Vec<u32>>,
}

impl Transcripts {
    /// Reads a transcript file: one `path<TAB>phonemes separated by spaces` line per utterance;
    /// empty lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// [`crate::Error::File`] for an unreadable file, a line without a tab or without phonemes,
    /// a path given twice, or a file without any transcript.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        let mut raw: Vec<(String, Vec<&str>)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, phones) = line.split_once('\t').ok_or_else(|| {
                file_err(
                    path,
                    format!("line {}: no tab between the path and the phonemes", i + 1),
                )
            })?;
            let phones: Vec<&str> = phones.split_whitespace().collect();
            if phones.is_empty() {
                return Err(file_err(path, format!("line {}: no phonemes", i + 1)));
            }
            if !seen.insert(key.to_string()) {
                return Err(file_err(path, format!("line {}: `{key}` is transcribed twice", i + 1)));
            }
            raw.push((key.to_string(), phones));
        }
        if raw.is_empty() {
            return Err(file_err(path, "holds no transcript"));
        }
        let inventory: Vec<String> = raw
            .iter()
            .flat_map(|(_, p)| p.iter().map(|s| (*s).to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let class: HashMap<&str, u32> = inventory
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i as u32 + 1))
            .collect();
        let by_path = raw
            .into_iter()
            .map(|(k, p)| (k, p.iter().map(|s| class[s]).collect()))
            .collect();
        Ok(Self { inventory, by_path })
    }

    /// Classes including the blank.
    pub fn n_classes(&self) -> usize {
        self.inventory.len() + 1
    }
}

/// Frames CTC needs for `labels`: one per label, plus a blank between each repeated pair.
pub fn min_frames(labels: &[u32]) -> usize {
    labels.len() + labels.windows(2).filter(|w| w[0] == w[1]).count()
}

/// Content code → phoneme logits: a per-frame layer with ReLU and a linear layer to one logit
/// per class (blank first).
#[derive(Debug, Clone)]
pub struct PhoneHead {
    hidden: Linear,
    out: Linear,
}

impl PhoneHead {
    /// A head for codes of `c_code` channels and `n_classes` classes (blank included), weights
    /// at `vb`.
    ///
    /// # Errors
    /// A tensor that cannot be made.
    pub fn new(c_code: usize, n_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: candle_nn::linear(c_code, HIDDEN, vb.pp("hidden"))?,
            out: candle_nn::linear(HIDDEN, n_classes, vb.pp("out"))?,
        })
    }

    /// Code `[c_code, T]` (one utterance) → logits `[T, n_classes]`.
    ///
    /// # Errors
    /// A wrongly shaped code.
    pub fn forward(&self, code: &Tensor) -> Result<Tensor> {
        let h = self.hidden.forward(&code.t()?.contiguous()?)?.relu()?;
        Ok(self.out.forward(&h)?)
    }

    /// CTC on `code` (`[c_code, T]`) against `labels`: the loss divided by the number of labels
    /// (PyTorch's `reduction="mean"` for one utterance), and a scalar tensor whose gradient is
    /// `weight` times the loss's. `None` when no alignment fits (fewer frames than
    /// [`min_frames`]).
    ///
    /// # Errors
    /// A wrongly shaped code.
    pub fn ctc(&self, code: &Tensor, labels: &[u32], weight: f64) -> Result<Option<(f64, Tensor)>> {
        let logits = self.forward(code)?;
        let (t, k) = logits.dims2()?;
        let z = logits.to_vec2::<f32>()?;
        let Some((loss, grad)) = ctc_loss_grad(&z, labels) else {
            return Ok(None);
        };
        let scale = weight / labels.len() as f64;
        let g: Vec<f32> = grad.iter().flatten().map(|&v| (v * scale) as f32).collect();
        let g = Tensor::from_vec(g, (t, k), logits.device())?;
        Ok(Some((loss / labels.len() as f64, (logits * g)?.sum_all()?)))
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// CTC's negative log-likelihood of `labels` (classes ≥ 1; 0 is the blank) under the
/// per-frame logits `z` (`[T][K]`, softmax taken here), and its gradient with respect to `z`;
/// `None` when no alignment fits.
pub fn ctc_loss_grad(z: &[Vec<f32>], labels: &[u32]) -> Option<(f64, Vec<Vec<f64>>)> {
    let t_len = z.len();
    if t_len == 0 || labels.is_empty() || t_len < min_frames(labels) {
        return None;
    }
    let k = z[0].len();
    // log-softmax per frame.
    let lp: Vec<Vec<f64>> = z
        .iter()
        .map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let lse = m + row.iter().map(|&v| (f64::from(v) - m).exp()).sum::<f64>().ln();
            row.iter().map(|&v| f64::from(v) - lse).collect()
        })
        .collect();
    // The extended label sequence: blanks around and between the labels.
    let ext: Vec<usize> = std::iter::once(0)
        .chain(labels.iter().flat_map(|&l| [l as usize, 0]))
        .collect();
    let s_len = ext.len();
    let skip = |s: usize| s >= 2 && ext[s] != 0 && ext[s] != ext[s - 2];
    let ninf = f64::NEG_INFINITY;
    let mut alpha = vec![vec![ninf; s_len]; t_len];
    alpha[0][0] = lp[0][ext[0]];
    alpha[0][1] = lp[0][ext[1]];
    for t in 1..t_len {
        for s in 0..s_len {
            let mut a = alpha[t - 1][s];
            if s >= 1 {
                a = log_add(a, alpha[t - 1][s - 1]);
            }
            if skip(s) {
                a = log_add(a, alpha[t - 1][s - 2]);
            }
            alpha[t][s] = if a == ninf { ninf } else { a + lp[t][ext[s]] };
        }
    }
    let mut beta = vec![vec![ninf; s_len]; t_len];
    beta[t_len - 1][s_len - 1] = lp[t_len - 1][ext[s_len - 1]];
    beta[t_len - 1][s_len - 2] = lp[t_len - 1][ext[s_len - 2]];
    for t in (0..t_len - 1).rev() {
        for s in 0..s_len {
            let mut b = beta[t + 1][s];
            if s + 1 < s_len {
                b = log_add(b, beta[t + 1][s + 1]);
            }
            if s + 2 < s_len && skip(s + 2) {
                b = log_add(b, beta[t + 1][s + 2]);
            }
            beta[t][s] = if b == ninf { ninf } else { b + lp[t][ext[s]] };
        }
    }
    let log_p = log_add(alpha[t_len - 1][s_len - 1], alpha[t_len - 1][s_len - 2]);
    if !log_p.is_finite() {
        return None;
    }
    let mut grad: Vec<Vec<f64>> = lp.iter().map(|row| row.iter().map(|v| v.exp()).collect()).collect();
    for t in 0..t_len {
        for s in 0..s_len {
            let g = alpha[t][s] + beta[t][s] - lp[t][ext[s]] - log_p;
            if g > ninf {
                grad[t][ext[s]] -= g.exp();
            }
        }
    }
    debug_assert!(grad.iter().all(|r| r.len() == k));
    Some((-log_p, grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of `t` frames over the classes that collapses (repeats merged, blanks
    /// dropped) to `labels`: the likelihood by brute force.
    fn brute_force(z: &[Vec<f32>], labels: &[u32]) -> f64 {
        let (t, k) = (z.len(), z[0].len());
        let probs: Vec<Vec<f64>> = z
            .iter()
            .map(|r| {
                let e: Vec<f64> = r.iter().map(|&v| f64::from(v).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            })
            .collect();
        let mut total = 0.0;
        for code in 0..k.pow(t as u32) {
            let path: Vec<usize> = (0..t).map(|i| (code / k.pow(i as u32)) % k).collect();
            let mut out = Vec::new();
            let mut prev = usize::MAX;
            for &c in &path {
                if c != prev && c != 0 {
                    out.push(c as u32);
                }
                prev = c;
            }
            if out == labels {
                total += path.iter().enumerate().map(|(i, &c)| probs[i][c]).product::<f64>();
            }
        }
        -total.ln()
    }

    fn logits(t: usize, k: usize, seed: u32) -> Vec<Vec<f32>> {
        (0..t)
            .map(|i| {
                (0..k)
                    .map(|j| (((i * 7 + j * 13 + seed as usize * 5) % 11) as f32 - 5.0) * 0.4)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn loss_equals_the_sum_over_all_alignments() {
        for (labels, t) in [(vec![1u32, 2], 4), (vec![1, 1], 5), (vec![2, 1, 2], 6), (vec![3], 3)] {
            let z = logits(t, 4, labels.len() as u32);
            let (loss, _) = ctc_loss_grad(&z, &labels).unwrap();
            let want = brute_force(&z, &labels);
            assert!((loss - want).abs() < 1e-9, "{labels:?}: {loss} vs {want}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let labels = [2u32, 2, 1];
        let z = logits(7, 3, 1);
        let (_, grad) = ctc_loss_grad(&z, &labels).unwrap();
        let h = 1e-3f32;
        for t in 0..z.len() {
            for k in 0..3 {
                let mut up = z.clone();
                up[t][k] += h;
                let mut down = z.clone();
                down[t][k] -= h;
                let fd = (ctc_loss_grad(&up, &labels).unwrap().0 - ctc_loss_grad(&down, &labels).unwrap().0)
                    / (2.0 * f64::from(h));
                assert!((fd - grad[t][k]).abs() < 1e-4, "({t},{k}): {fd} vs {}", grad[t][k]);
            }
        }
    }

    #[test]
    fn too_few_frames_have_no_alignment() {
        assert_eq!(min_frames(&[1, 1, 2]), 4);
        assert!(ctc_loss_grad(&logits(3, 3, 0), &[1, 1, 2]).is_none());
        assert!(ctc_loss_grad(&logits(4, 3, 0), &[1, 1, 2]).is_some());
    }

    /// The surrogate's gradient through the head is the loss's: a step along it lowers the loss.
    #[test]
    fn head_learns_the_labels() {
        use candle_core::{DType, Device};
        use candle_nn::VarMap;
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let head = PhoneHead::new(4, 4, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        let code = Tensor::randn(0f32, 1.0, (4, 12), &dev).unwrap();
        let labels = [1u32, 3, 2, 3];
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..30 {
            let (loss, sur) = head.ctc(&code, &labels, 1.0).unwrap().unwrap();
            first.get_or_insert(loss);
            last = loss;
            let g = sur.backward().unwrap();
            for v in vars.all_vars() {
                let d = g.get(v.as_tensor()).unwrap();
                v.set(&(v.as_tensor() - d.affine(0.5, 0.0).unwrap()).unwrap()).unwrap();
            }
        }
        assert!(last < first.unwrap() * 0.5, "{first:?} -> {last}");
    }

    #[test]
    fn transcripts_are_read_with_a_sorted_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("phonemes.tsv");
        std::fs::write(&p, "# comment\na/s1.wav\tk a t\nb/s2.wav\tt a\n").unwrap();
        let t = Transcripts::read(&p).unwrap();
        assert_eq!(t.inventory, ["a", "k", "t"]);
        assert_eq!(t.by_path["a/s1.wav"], [2, 1, 3]);
        assert_eq!(t.n_classes(), 4);
        std::fs::write(&p, "a/s1.wav k a t\n").unwrap();
        assert!(Transcripts::read(&p)
            .unwrap_err()
            .to_string()
            .contains("line 1: no tab"));
        std::fs::write(&p, "a\tk\na\tt\n").unwrap();
        assert!(Transcripts::read(&p).unwrap_err().to_string().contains("twice"));
    }
}
