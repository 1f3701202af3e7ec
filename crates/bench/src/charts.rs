//! One SVG bar chart per (workload, mode): each engine's operations per second, so a reader
//! can look instead of read.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde_json::Value;

/// A color per engine, in a fixed order so every chart reads the same way.
fn color_of(engine: &str) -> RGBColor {
    match engine {
        "talus" => RGBColor(0x1f, 0x77, 0xb4),
        "redb" => RGBColor(0xd6, 0x27, 0x28),
        "fjall" => RGBColor(0x2c, 0xa0, 0x2c),
        "lmdb" => RGBColor(0xff, 0x7f, 0x0e),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Writes `<workload>-<mode>.svg` into `dir` for every workload and mode in `results`.
pub fn write_charts(dir: &Path, results: &[Value]) -> Result<Vec<PathBuf>> {
    let rows: Vec<&Value> = results.iter().filter(|result| result["kind"] == "engine").collect();
    let mut groups: Vec<(String, String)> = rows
        .iter()
        .map(|row| (row["workload"].as_str().unwrap_or("").to_owned(), row["mode"].as_str().unwrap_or("").to_owned()))
        .collect();
    groups.dedup();
    let mut written = Vec::new();
    for (workload, mode) in groups {
        let bars: Vec<(String, f64)> = rows
            .iter()
            .filter(|row| row["workload"] == workload.as_str() && row["mode"] == mode.as_str())
            .map(|row| {
                (row["engine"].as_str().unwrap_or("").to_owned(), row["run_ops_per_sec"].as_f64().unwrap_or(0.0))
            })
            .collect();
        let path = dir.join(format!("{workload}-{mode}.svg"));
        bar_chart(&path, &format!("{workload}, {mode}: operations per second (higher is better)"), &bars)
            .map_err(|error| anyhow!("chart {}: {error}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn bar_chart(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|(_, value)| *value).fold(0.0, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..top)?;
    let names: Vec<String> = bars.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(idx) => names.get(*idx).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("ops/s")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(idx, (name, value))| {
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(idx), 0.0), (SegmentValue::Exact(idx + 1), *value)],
            color_of(name).filled(),
        );
        bar.set_margin(0, 0, 14, 14);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(idx, (_, value))| {
        Text::new(format!("{value:.0}"), (SegmentValue::CenterOf(idx), *value), ("sans-serif", 13))
    }))?;
    root.present()?;
    Ok(())
}
