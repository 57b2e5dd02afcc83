//! Prints a preset's `config.json`: `cargo run -p voxswap-model --example dump_config -- tiny`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "paper".into());
    let cfg = voxswap_model::ModelConfig::preset(&name)?;
    println!("{}", serde_json::to_string_pretty(&cfg)?);
    Ok(())
}
