//! `voxswap resynth`: audio → log-mel → vocoder → audio, to hear what the vocoder alone does.

use std::path::PathBuf;
use std::process::ExitCode;

use voxswap_audio::{mel_to_audio, resample, write_wav, FrontendConfig, GriffinLimConfig, LogMel};
use voxswap_stream::Vocoder;

use crate::io::{check_output, read_at_rate, say, SynthArgs, VocoderArgs, VocoderKind};
use crate::voice::ModelArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio file to resynthesise.
    input: PathBuf,
    /// WAV file to write.
    #[arg(short, long, value_name = "WAV")]
    output: PathBuf,
    /// Model folder whose neural vocoder (vocoder.json) is used; found as for `convert` when not
    /// given. Without one, or with --vocoder griffin-lim, the speech frontend and Griffin-Lim.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    #[command(flatten)]
    vocoder: VocoderArgs,
    #[command(flatten)]
    synth: SynthArgs,
}

/// Frames the neural vocoder takes at a time (bounded memory on long files).
const BLOCK_FRAMES: usize = 1000;

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    check_output(&a.output, "wav", &[&a.input])?;
    let neural = match a.vocoder.vocoder {
        VocoderKind::GriffinLim => None,
        kind => match (ModelArgs { model: a.model.clone() }).dir() {
            Ok(dir) => a.vocoder.load(&dir)?,
            Err(e) if kind == VocoderKind::Neural => return Err(e.context("--vocoder neural")),
            Err(_) => None,
        },
    };
    let cfg = neural
        .as_ref()
        .map_or_else(FrontendConfig::speech_16k, |v| v.config().frontend.clone());
    let (audio, samples) = read_at_rate(&a.input, a.synth.channel, cfg.sample_rate)?;
    let mel = LogMel::new(&cfg)?.compute(&samples);
    let (mut wave, how) = match &neural {
        Some(v) => {
            let mut voc = voxswap_stream::Neural::new(v);
            let mut wave = Vec::with_capacity(samples.len() + cfg.n_fft);
            let mut start = 0;
            while start < mel.frames {
                let n = BLOCK_FRAMES.min(mel.frames - start);
                voc.push_mel(&mel.range(start, n), &mut wave)?;
                start += n;
            }
            voc.finish(&mut wave)?;
            (wave, voc.name())
        }
        None => {
            let gl = GriffinLimConfig {
                n_iter: a.synth.iterations as usize,
                ..Default::default()
            };
            (
                mel_to_audio(&cfg, &mel, gl)?,
                format!(
                    "{} Griffin-Lim iteration{}",
                    a.synth.iterations,
                    if a.synth.iterations == 1 { "" } else { "s" }
                ),
            )
        }
    };
    wave.resize(samples.len(), 0.0);
    let rate = a.synth.rate.unwrap_or(audio.sample_rate);
    let wave = resample(&wave, cfg.sample_rate, rate)?;
    let format = a.synth.format();
    let report = write_wav(&a.output, &wave, rate, format)?;
    say(format!(
        "wrote {} ({:.2} s at {rate} Hz, {how})",
        a.output.display(),
        report.samples as f64 / f64::from(rate),
    ))?;
    if report.clipped > 0 {
        eprintln!(
            "warning: {} samples clipped to [-1, 1]; use --float to keep them",
            report.clipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
