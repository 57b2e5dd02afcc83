//! `voxswap resynth`: audio → log-mel → Griffin-Lim → audio.

use std::path::PathBuf;
use std::process::ExitCode;

use voxswap_audio::{mel_to_audio, resample, write_wav, FrontendConfig, GriffinLimConfig, LogMel, WavFormat};

use crate::io::{check_output, read_at_rate, say};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio file to resynthesise.
    input: PathBuf,
    /// WAV file to write.
    #[arg(short, long, value_name = "WAV")]
    output: PathBuf,
    /// Griffin-Lim iterations (more is slower and closer to the mel).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    iterations: u32,
    /// Output sample rate in Hz (default: the input's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8000..=192000))]
    rate: Option<u32>,
    /// Write 32-bit float instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
    /// Use one channel (counted from 0) instead of the mono mix.
    #[arg(long, value_name = "N")]
    channel: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    check_output(&a.output, &a.input)?;
    let cfg = FrontendConfig::speech_16k();
    let (audio, samples) = read_at_rate(&a.input, a.channel, cfg.sample_rate)?;
    let mel = LogMel::new(&cfg)?.compute(&samples);
    let gl = GriffinLimConfig {
        n_iter: a.iterations as usize,
        ..Default::default()
    };
    let mut wave = mel_to_audio(&cfg, &mel, gl)?;
    wave.resize(samples.len(), 0.0);
    let rate = a.rate.unwrap_or(audio.sample_rate);
    let wave = resample(&wave, cfg.sample_rate, rate)?;
    let format = if a.float { WavFormat::Float32 } else { WavFormat::Pcm16 };
    let report = write_wav(&a.output, &wave, rate, format)?;
    say(format!(
        "wrote {} ({:.2} s at {rate} Hz, {} Griffin-Lim iterations)",
        a.output.display(),
        report.samples as f64 / f64::from(rate),
        a.iterations
    ))?;
    if report.clipped > 0 {
        eprintln!(
            "warning: {} samples clipped to [-1, 1]; use --float to keep them",
            report.clipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
