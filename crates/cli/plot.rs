//! PNG pictures with plotters: text with an embedded font (no system font needed), written
//! atomically (rendered to a temporary file, renamed into place).

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

/// DejaVu Sans (Bitstream Vera licence), cut down to printable ASCII by pyftsubset.
static FONT: &[u8] = include_bytes!("assets/DejaVuSans-ascii.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to be valid; a failure would only lose text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Renders a `width` × `height` PNG to `path` with `draw`. Nothing is left at `path` on error.
pub fn render_png(
    path: &Path,
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".voxswap-")
        .suffix(".png")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    {
        let root = BitMapBackend::new(tmp.path(), (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("{}: cannot write PNG: {e}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow!("{}: cannot write: {}", path.display(), e.error))?;
    Ok(())
}

/// Turns a plotters error into anyhow (its errors are not `Send + Sync`).
pub fn perr<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e}")
}
