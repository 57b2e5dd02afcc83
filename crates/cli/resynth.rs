//! `voxswap resynth`: audio → log-mel → Griffin-Lim → audio.

use std::path::PathBuf;
use std::process::ExitCode;

use voxswap_audio::{mel_to_audio, resample, write_wav, FrontendConfig, GriffinLimConfig, LogMel};

use crate::io::{check_output, read_at_rate, say, SynthArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio file to resynthesise.
    input: PathBuf,
    /// WAV file to write.
    #[arg(short, long, value_name = "WAV")]
    output: PathBuf,
    #[command(flatten)]
    synth: SynthArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    check_output(&a.output, "wav", &[&a.input])?;
    let cfg = FrontendConfig::speech_16k();
    let (audio, samples) = read_at_rate(&a.input, a.synth.channel, cfg.sample_rate)?;
    let mel = LogMel::new(&cfg)?.compute(&samples);
    let gl = GriffinLimConfig {
        n_iter: a.synth.iterations as usize,
        ..Default::default()
    };
    let mut wave = mel_to_audio(&cfg, &mel, gl)?;
    wave.resize(samples.len(), 0.0);
    let rate = a.synth.rate.unwrap_or(audio.sample_rate);
    let wave = resample(&wave, cfg.sample_rate, rate)?;
    let format = a.synth.format();
    let report = write_wav(&a.output, &wave, rate, format)?;
    say(format!(
        "wrote {} ({:.2} s at {rate} Hz, {} Griffin-Lim iterations)",
        a.output.display(),
        report.samples as f64 / f64::from(rate),
        a.synth.iterations
    ))?;
    if report.clipped > 0 {
        eprintln!(
            "warning: {} samples clipped to [-1, 1]; use --float to keep them",
            report.clipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
