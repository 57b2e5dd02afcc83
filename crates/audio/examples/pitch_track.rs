//! Prints the causal pitch track a model with F0 conditioning reads (voxswap_audio::pitch):
//! one line per 10 ms frame, `F0_HZ NORMALISED VOICED`, for comparing with other trackers.
//!
//!     cargo run --release -p voxswap-audio --example pitch_track -- FILE.wav [YIN_THRESHOLD]

use voxswap_audio::pitch::{frontend_yin, PitchNormalizer};
use voxswap_audio::{read_mono, resample, ChannelMix, FrontendConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: pitch_track FILE")?;
    let fe = FrontendConfig::speech_16k();
    let a = read_mono(&path, ChannelMix::Downmix)?;
    let x = resample(&a.samples, a.sample_rate, fe.sample_rate)?;
    let (mut yin, lookahead) = frontend_yin(&fe);
    if let Some(t) = std::env::args().nth(2) {
        yin.threshold = t.parse()?;
    }
    let mut norm = PitchNormalizer::new();
    for f in yin.track_ending(&x, lookahead) {
        let [z, v] = norm.push(f);
        println!("{f:.2} {z:.4} {v}");
    }
    Ok(())
}
