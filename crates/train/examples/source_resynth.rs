//! A source-filter vocoder's resynthesis of recordings with its harmonics at the F0 measured on
//! each recording (YIN, filled through unvoiced frames, as in its training) instead of its own
//! predicted F0: the ceiling a better F0 would give. Development tool:
//!
//!     cargo run --release -p voxswap-train --example source_resynth -- VOCODER_DIR OUT_DIR IN.wav…
//!
//! Writes `OUT_DIR/<name of IN>` for each input (16 kHz float WAV, aligned with the input).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use voxswap_audio::pitch::{fill_unvoiced, Yin};
use voxswap_audio::{read_mono, resample, ChannelMix, LogMel, WavFormat};
use voxswap_model::NeuralVocoder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: source_resynth VOCODER_DIR OUT_DIR IN.wav…".into());
    }
    let v = NeuralVocoder::load(&PathBuf::from(&args[1]), &Device::Cpu)?.ok_or("no vocoder.json there")?;
    let fe = v.config().frontend.clone();
    let out_dir = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out_dir)?;
    let yin = Yin {
        sample_rate: fe.sample_rate,
        hop: fe.hop_length,
        ..Yin::speech_16k()
    };
    let mut logmel = LogMel::new(&fe)?;
    for input in &args[3..] {
        let a = read_mono(input, ChannelMix::Downmix)?;
        let x = resample(&a.samples, a.sample_rate, fe.sample_rate)?;
        let mel = logmel.compute(&x);
        let raw = yin.track(&x);
        if std::env::var_os("F0_DUMP").is_some() {
            // YIN's F0 and the vocoder's own, frame by frame.
            let m = Tensor::from_vec(mel.data.clone(), (1, mel.n_mels, mel.frames), &Device::Cpu)?;
            let own = v.forward_source(&m, None)?.log_f0.flatten_all()?.to_vec1::<f32>()?;
            let cols: Vec<String> = raw
                .iter()
                .zip(&own)
                .map(|(f, z)| format!("{f:.0}/{:.0}", 120.0 * z.exp()))
                .collect();
            eprintln!("{input}: {}", cols.join(" "));
        }
        let f0 = fill_unvoiced(&raw, 120.0);
        let f0: Vec<f32> = (0..mel.frames).map(|t| f0[t.min(f0.len() - 1)] as f32).collect();
        let m = Tensor::from_vec(mel.data.clone(), (1, mel.n_mels, mel.frames), &Device::Cpu)?;
        let y = v.forward_source(&m, Some(&[f0]))?.audio;
        let mut y = y.flatten_all()?.to_vec1::<f32>()?;
        y.truncate(x.len());
        let name = PathBuf::from(input)
            .file_name()
            .ok_or("input without a name")?
            .to_owned();
        voxswap_audio::write_wav(out_dir.join(name), &y, fe.sample_rate, WavFormat::Float32)?;
    }
    Ok(())
}
