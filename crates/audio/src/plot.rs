//! PNG pictures with plotters (spectrograms, loss curves): text with an embedded font (no system
//! font needed), written atomically (rendered to a temporary file, renamed into place).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

fn file_err(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Picture {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// DejaVu Sans (Bitstream Vera licence), cut down to printable ASCII by pyftsubset.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to be valid; a failure would only lose text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Renders a `width` × `height` PNG to `path` with `draw`. Nothing is left at `path` on error.
///
/// # Errors
/// [`Error::Picture`] when the picture cannot be drawn or written.
pub fn render_png(
    path: &Path,
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = crate::partial::PartialFile::create(dir, ".voxswap-", ".png")
        .map_err(|e| file_err(path, format!("cannot write: {e}")))?;
    {
        let root = BitMapBackend::new(tmp.path(), (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(path, e))?;
        draw(&root)?;
        root.present()
            .map_err(|e| file_err(path, format!("cannot write PNG: {e}")))?;
    }
    tmp.persist(path)
        .map_err(|e| file_err(path, format!("cannot write: {e}")))?;
    Ok(())
}

/// A plotters error as [`Error::Picture`] naming the picture (plotters' errors are not
/// `Send + Sync`).
pub fn perr<E: std::fmt::Display>(path: &Path, e: E) -> Error {
    file_err(path, format!("drawing failed: {e}"))
}

/// One curve: a name and `(step, value)` points.
pub type Curve = (String, Vec<(f64, f64)>);

/// Loss curves against steps, on a log-scale value axis.
///
/// # Errors
/// See [`render_png`].
pub fn loss_curves(path: &Path, title: &str, curves: &[Curve]) -> Result<()> {
    let points = || {
        curves
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
    };
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = points().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if lo.is_finite() {
        (lo * 0.9, hi * 1.1)
    } else {
        (1e-3, 1.0)
    };
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    render_png(path, 900, 500, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())
            .map_err(|e| perr(path, e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| perr(path, e))?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    pts.iter().copied().filter(|(_, v)| *v > 0.0),
                    color.stroke_width(2),
                ))
                .map_err(|e| perr(path, e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| perr(path, e))?;
        Ok(())
    })
}
