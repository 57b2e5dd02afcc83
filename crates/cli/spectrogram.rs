//! `voxswap spectrogram`: the log-mel the model sees, as a picture.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use plotters::prelude::*;
use voxswap_audio::mel::{hz_to_mel, mel_to_hz};
use voxswap_audio::{FrontendConfig, LogMel};

use crate::io::{check_output, read_at_rate, say};
use voxswap_audio::plot::{perr, render_png};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio file to draw.
    file: PathBuf,
    /// PNG file to write.
    #[arg(short, long, value_name = "PNG")]
    output: PathBuf,
    /// Picture width in pixels, 200 to 8000.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(200..=8000))]
    width: u32,
    /// Picture height in pixels, 150 to 4000.
    #[arg(long, default_value_t = 480, value_parser = clap::value_parser!(u32).range(150..=4000))]
    height: u32,
    /// Draw one channel (counted from 0) instead of the mono mix.
    #[arg(long, value_name = "N")]
    channel: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    check_output(&a.output, "png", &[&a.file])?;
    if a.output
        .extension()
        .and_then(|e| e.to_str())
        .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
    {
        bail!("{}: the output must be a .png file", a.output.display());
    }
    let cfg = FrontendConfig::speech_16k();
    let (_, samples) = read_at_rate(&a.file, a.channel, cfg.sample_rate)?;
    let mel = LogMel::new(&cfg)?.compute(&samples);
    let duration_s = samples.len() as f64 / f64::from(cfg.sample_rate);
    let floor = f64::from(cfg.log_floor.ln());
    let top = mel
        .data
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
        .max(floor as f32 + 1.0);
    // Show 80 dB below the loudest cell (ln(10^4) natural-log units).
    let bottom = (f64::from(top) - 4.0 * std::f64::consts::LN_10 * 2.0).max(floor);
    let title = format!(
        "{}: log-mel, {} bands, {} ms hop",
        a.file.display(),
        cfg.n_mels,
        cfg.hop_ms()
    );
    let (lo, hi) = (hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale));
    let band_hz = |band: f64| mel_to_hz(lo + (hi - lo) * (band + 1.0) / (cfg.n_mels as f64 + 1.0), cfg.mel_scale);
    render_png(&a.output, a.width, a.height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..duration_s.max(1e-3), 0.0..cfg.n_mels as f64)
            .map_err(|e| perr(&a.output, e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("time (s)")
            .y_desc("frequency (Hz)")
            .y_label_formatter(&|b| format!("{:.0}", band_hz(*b)))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| perr(&a.output, e))?;
        // One rectangle per cell, columns merged down to about one per pixel for long files.
        let cols = mel.frames.min(a.width as usize).max(1);
        let per = mel.frames.div_ceil(cols).max(1);
        let hop_s = f64::from(cfg.hop_length as u32) / f64::from(cfg.sample_rate);
        let cells = (0..mel.frames).step_by(per).flat_map(|t0| {
            let mel = &mel;
            (0..mel.n_mels).map(move |m| {
                let t1 = (t0 + per).min(mel.frames);
                let v = (t0..t1).map(|t| mel.at(m, t)).fold(f32::NEG_INFINITY, f32::max);
                let h = ((f64::from(v) - bottom) / (f64::from(top) - bottom)).clamp(0.0, 1.0);
                let color = ViridisRGB::get_color(h as f32);
                Rectangle::new(
                    [(t0 as f64 * hop_s, m as f64), (t1 as f64 * hop_s, m as f64 + 1.0)],
                    color.filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(|e| perr(&a.output, e))?;
        Ok(())
    })?;
    say(format!(
        "wrote {} ({} frames, {:.2} s)",
        a.output.display(),
        mel.frames,
        duration_s
    ))?;
    Ok(ExitCode::SUCCESS)
}
