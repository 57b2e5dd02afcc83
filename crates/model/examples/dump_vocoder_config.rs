//! Prints a vocoder size's `vocoder.json`: `cargo run -p voxswap-model --example
//! dump_vocoder_config -- tiny` (or `small`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let cfg = match std::env::args().nth(1).as_deref() {
        Some("tiny") => voxswap_model::VocoderConfig::tiny(&fe),
        _ => voxswap_model::VocoderConfig::small(&fe),
    };
    println!("{}", serde_json::to_string_pretty(&cfg)?);
    Ok(())
}
