//! Learning-curve plots (SVG and PNG) with plotters: mean accuracy against
//! labels per strategy, with a band from the lowest to the highest seed.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One point of a learning curve, as the plot needs it (the plot's own
/// type: `simulate` depends on `plot`, never the other way).
pub struct Point<'a> {
    pub dataset: &'a str,
    pub strategy: &'a str,
    pub labels: usize,
    pub accuracy: f64,
}

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

type Series = Vec<(String, Vec<(f64, f64, f64, f64)>)>;

fn series(points: &[Point]) -> Series {
    // (dataset/strategy) -> labels -> accuracies
    let mut m: BTreeMap<String, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    let datasets: std::collections::BTreeSet<&str> = points.iter().map(|p| p.dataset).collect();
    for p in points {
        let name = if datasets.len() > 1 { format!("{} {}", p.dataset, p.strategy) } else { p.strategy.to_string() };
        m.entry(name).or_default().entry(p.labels).or_default().push(p.accuracy);
    }
    m.into_iter()
        .map(|(name, by)| {
            let v = by
                .into_iter()
                .map(|(l, accs)| {
                    let mean = accs.iter().sum::<f64>() / accs.len() as f64;
                    let lo = accs.iter().cloned().fold(f64::INFINITY, f64::min);
                    let hi = accs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    (l as f64, mean, lo, hi)
                })
                .collect();
            (name, v)
        })
        .collect()
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, s: &Series, title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e:?}"))?;
    let max_x = s.iter().flat_map(|(_, v)| v.iter().map(|p| p.0)).fold(10.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_x, 0f64..1f64)
        .map_err(|e| anyhow!("plot: {e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("labels")
        .y_desc("held-out accuracy")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("plot: {e:?}"))?;
    for (i, (name, v)) in s.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let band: Vec<(f64, f64)> = v.iter().map(|p| (p.0, p.3)).chain(v.iter().rev().map(|p| (p.0, p.2))).collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).map_err(|e| anyhow!("plot: {e:?}"))?;
        chart
            .draw_series(LineSeries::new(v.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e:?}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("plot: {e:?}"))?;
    root.present().map_err(|e| anyhow!("plot: {e:?}"))?;
    Ok(())
}

/// Writes the learning curves as SVG and PNG.
pub fn curves(points: &[Point], svg: &Path, png: &Path) -> Result<()> {
    register_font();
    let s = series(points);
    let datasets: std::collections::BTreeSet<&str> = points.iter().map(|p| p.dataset).collect();
    let title = format!("{}: accuracy against labels (band: min-max over seeds)", datasets.into_iter().collect::<Vec<_>>().join(", "));
    draw(SVGBackend::new(svg, (900, 560)).into_drawing_area(), &s, &title)?;
    draw(BitMapBackend::new(png, (900, 560)).into_drawing_area(), &s, &title)?;
    Ok(())
}
