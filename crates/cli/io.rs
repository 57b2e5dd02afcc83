//! Input and output helpers shared by the commands.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use voxswap_audio::{read_mono, resample, Audio, ChannelMix};

/// The flags of every command that writes speech.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Griffin-Lim iterations, 1 to 1000 (more is slower and closer to the mel; with the
    /// Griffin-Lim vocoder only).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub iterations: u32,
    /// Output sample rate in Hz, 8000 to 192000 (default: the input's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8000..=192000))]
    pub rate: Option<u32>,
    /// Write 32-bit float instead of 16-bit PCM.
    #[arg(long)]
    pub float: bool,
    /// Use one channel (counted from 0) of the input instead of the mono mix (for convert: of
    /// the source; references are always mixed to mono).
    #[arg(long, value_name = "N")]
    pub channel: Option<usize>,
}

impl SynthArgs {
    /// The output sample format.
    pub fn format(&self) -> voxswap_audio::WavFormat {
        if self.float {
            voxswap_audio::WavFormat::Float32
        } else {
            voxswap_audio::WavFormat::Pcm16
        }
    }
}

/// Which vocoder turns mels into audio (`--vocoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VocoderKind {
    /// The model folder's neural vocoder when it has one (vocoder.json), else Griffin-Lim.
    Auto,
    /// The model folder's neural vocoder (an error when it has none).
    Neural,
    /// Griffin-Lim phase reconstruction (no extra model; metallic, slower).
    GriffinLim,
}

/// The `--vocoder` flag.
#[derive(Debug, Clone, clap::Args)]
pub struct VocoderArgs {
    /// Vocoder: auto (the model folder's neural vocoder when it has one, else Griffin-Lim),
    /// neural, or griffin-lim.
    #[arg(long, value_enum, default_value_t = VocoderKind::Auto)]
    pub vocoder: VocoderKind,
}

impl VocoderArgs {
    /// The neural vocoder of `model_dir` to use, or `None` for Griffin-Lim.
    ///
    /// # Errors
    /// `--vocoder neural` and the folder has none; a vocoder whose files cannot be read.
    pub fn load(&self, model_dir: &Path) -> anyhow::Result<Option<voxswap_model::NeuralVocoder>> {
        if self.vocoder == VocoderKind::GriffinLim {
            return Ok(None);
        }
        let v = voxswap_model::NeuralVocoder::load(model_dir, &candle_core::Device::Cpu)
            .with_context(|| format!("{}: cannot load the neural vocoder", model_dir.display()))?;
        if v.is_none() && self.vocoder == VocoderKind::Neural {
            bail!(
                "--vocoder neural: {} has no neural vocoder ({}); use --vocoder griffin-lim, or train one \
                 (voxswap train --vocoder)",
                model_dir.display(),
                voxswap_model::vocoder::CONFIG_FILE
            );
        }
        Ok(v)
    }
}

/// `--channel` as the audio crate wants it.
pub fn channel_mix(channel: Option<usize>) -> ChannelMix {
    channel.map_or(ChannelMix::Downmix, ChannelMix::Select)
}

/// Reads a file as mono and resamples it to `rate_hz`.
pub fn read_at_rate(path: &Path, channel: Option<usize>, rate_hz: u32) -> anyhow::Result<(Audio, Vec<f32>)> {
    let audio = read_mono(path, channel_mix(channel))?;
    let samples = resample(&audio.samples, audio.sample_rate, rate_hz)
        .with_context(|| format!("resampling {}", path.display()))?;
    Ok((audio, samples))
}

/// Checks, before any work, that `output` can be created: its folder exists, it is not a
/// folder itself, its name ends in `.ext` (voxswap writes WAV and PNG only, and a file named
/// `.mp3` holding WAV data would mislead every player), and it is none of the `inputs`.
pub fn check_output(output: &Path, ext: &str, inputs: &[&Path]) -> anyhow::Result<()> {
    if output.is_dir() {
        bail!("{}: is a directory; give a file name for the output", output.display());
    }
    if !output
        .extension()
        .is_some_and(|x| x.to_string_lossy().eq_ignore_ascii_case(ext))
    {
        bail!(
            "{}: voxswap writes {} files only; give the output a .{ext} name",
            output.display(),
            ext.to_uppercase()
        );
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: cannot write: folder {} does not exist",
            output.display(),
            dir.display()
        );
    }
    check_not_input(output, inputs)
}

/// Refuses an output path that is one of the inputs (source or reference), which writing would
/// destroy.
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    if let Ok(a) = output.canonicalize() {
        for input in inputs {
            if input.canonicalize().is_ok_and(|b| a == b) {
                bail!(
                    "{}: output would overwrite an input ({})",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// Outputs a command finished writing (a folder conversion counts them), for the message on
/// an interrupt.
pub static FINISHED_OUTPUTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// On Ctrl-C or SIGTERM, deletes the partial outputs being written and exits with 130 (for
/// every command but `train`, which checkpoints first).
pub fn remove_partial_files_on_signal() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        voxswap_audio::partial::remove_all();
        match FINISHED_OUTPUTS.load(std::sync::atomic::Ordering::SeqCst) {
            0 => eprintln!("\ninterrupted: nothing written"),
            n => eprintln!("\ninterrupted: the file being written was removed; the {n} finished before it are kept"),
        }
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// `$XDG_DATA_HOME/voxswap`, or `~/.local/share/voxswap`: where an installed voxswap keeps its
/// model and the user's speaker bank.
pub fn data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("voxswap"))
}

/// A flag's number: finite and from 0 to `max` (clap's `value_parser`).
pub fn parse_in<T>(s: &str, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default + Copy + std::fmt::Display + Into<f64>,
{
    match s.parse::<T>() {
        Ok(v) if v.into().is_finite() && v >= T::default() && v <= max => Ok(v),
        _ => Err(format!("`{s}` is not a number from 0 to {max}")),
    }
}

/// Writes a line to stdout; a closed pipe surfaces as an error that `main` treats as success.
pub fn say(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// Whether the error chain ends in a broken pipe (`voxswap info x | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
