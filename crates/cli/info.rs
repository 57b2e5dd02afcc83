//! `voxswap info`.

use std::path::PathBuf;
use std::process::ExitCode;

use voxswap_audio::AudioReader;

use crate::io::{channel_mix, say};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio file to describe.
    file: PathBuf,
    /// Measure one channel (counted from 0) instead of the mono mix.
    #[arg(long, value_name = "N")]
    channel: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn dbfs(v: f64) -> f64 {
    if v > 0.0 {
        20.0 * v.log10()
    } else {
        f64::NEG_INFINITY
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut reader = AudioReader::open(&a.file, channel_mix(a.channel))?;
    let info = reader.info().clone();
    // Chunk by chunk: an hour-long file is measured in constant memory.
    let (mut peak, mut sum_sq) = (0.0f64, 0.0f64);
    let frames = reader.for_each_chunk(|buf| {
        for &v in buf {
            peak = peak.max(f64::from(v.abs()));
            sum_sq += f64::from(v) * f64::from(v);
        }
    })?;
    let rms = (sum_sq / frames.max(1) as f64).sqrt();
    let duration_s = frames as f64 / f64::from(info.sample_rate);
    let measured = match a.channel {
        Some(c) => format!(" of channel {c}"),
        None if info.channels > 1 => " of the mono mix".to_string(),
        None => String::new(),
    };
    if a.json {
        let v = serde_json::json!({
            "file": a.file.display().to_string(),
            "format": info.format,
            "sample_rate_hz": info.sample_rate,
            "channels": info.channels,
            "frames": frames,
            "duration_s": duration_s,
            "measured": if measured.is_empty() { "mono".to_string() } else { measured.trim_start_matches(" of ").to_string() },
            "peak": peak,
            "peak_dbfs": if peak > 0.0 { Some(dbfs(peak)) } else { None },
            "rms": rms,
            "rms_dbfs": if rms > 0.0 { Some(dbfs(rms)) } else { None },
        });
        say(serde_json::to_string_pretty(&v)?)?;
    } else {
        say(format!("file:      {}", a.file.display()))?;
        say(format!("format:    {}", info.format))?;
        say(format!("rate:      {} Hz", info.sample_rate))?;
        say(format!("channels:  {}", info.channels))?;
        say(format!("duration:  {duration_s:.3} s ({frames} frames)"))?;
        say(format!("peak:      {:.1} dBFS ({peak:.4}){measured}", dbfs(peak)))?;
        say(format!("rms:       {:.1} dBFS ({rms:.4}){measured}", dbfs(rms)))?;
    }
    Ok(ExitCode::SUCCESS)
}
