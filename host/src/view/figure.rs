//! Drawing, with plotters: one drawing code per kind of figure, rendered to PNG (plotters'
//! bitmap backend, indexed by [`palette`] and encoded by `png`) or SVG. Text uses the embedded DejaVu Sans through
//! plotters' `ab_glyph` support, so no system font is looked up and the same input gives the
//! same bytes on every machine.

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::curves::Curve;
use super::decimate;
use super::palette;
use super::raster::Raster;

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `host/assets/fonts/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family every text style below asks for; SVG viewers render it with their own sans-serif.
const FAMILY: &str = "sans-serif";

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Distinct line colours (Tableau 10), cycled.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const LEGEND_WIDTH: u32 = 190;
const GRID: RGBColor = RGBColor(232, 232, 232);
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const SUBTLE: RGBColor = RGBColor(90, 90, 90);

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(())
        .ok_or_else(|| anyhow!("the embedded font could not be loaded"))
}

/// Where the main chart of a figure lies, so the report can turn a pointer position back into
/// data coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Pixel box of the plotting area: left, top, right, bottom.
    pub px: [i32; 4],
    /// Data range shown along x and y, in the displayed units.
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub x_label: String,
    pub y_label: String,
}

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Option<Frame>>
    where
        DB::ErrorType: 'static;
}

/// Renders `fig` to the bytes of a PNG or SVG file.
pub fn render<F: Figure>(fig: &F, format: Format) -> Result<(Vec<u8>, Option<Frame>)> {
    ensure_font()?;
    let (w, h) = fig.size();
    match format {
        Format::Svg => {
            let mut text = String::new();
            let frame = {
                let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
                let frame = fig.draw(&root)?;
                root.present()?;
                frame
            };
            Ok((text.into_bytes(), frame))
        }
        Format::Png => {
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            let frame = {
                let raster = Raster::new(&mut rgb, (w, h), FONT)
                    .ok_or_else(|| anyhow!("the embedded font could not be loaded"))?;
                let root = raster.into_drawing_area();
                let frame = fig.draw(&root)?;
                root.present()?;
                frame
            };
            let indexed = palette::index(&rgb);
            let mut png_bytes = Vec::new();
            let mut enc = png::Encoder::new(&mut png_bytes, w, h);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_palette(indexed.palette);
            // Figures are mostly flat colour: the best deflate level and per-row filter choice
            // make them several times smaller than the defaults, for little time.
            enc.set_compression(png::Compression::Best);
            enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&indexed.indices)?;
            writer.finish()?;
            Ok((png_bytes, frame))
        }
    }
}

/// One experiment's line in a feature figure.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    /// Index into the palette.
    pub color: usize,
    /// `(x, y)` points; NaN y breaks the line.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Per-point `(low, high)` of an inter-quartile band, when the feature has one.
    pub band: Option<Vec<(f64, f64)>>,
}

/// A feature against step or time, one line per experiment.
#[derive(Debug, Clone)]
pub struct FeatureFigure {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    /// The quantity on y, without unit.
    pub y_label: String,
    /// SI unit of y (`S`, `A`, `s`, …) when known; the axis then gets a readable prefix.
    pub unit: Option<String>,
    pub lines: Vec<Line>,
}

/// A multiplier and prefixed unit that put `max_abs` between 1 and 1000 (`A` → `µA`).
pub fn si_scale(max_abs: f64, unit: Option<&str>) -> (f64, Option<String>) {
    const BASE: [&str; 9] = ["A", "S", "V", "s", "F", "W", "Hz", "Ω", "C"];
    let Some(unit) = unit else {
        return (1.0, None);
    };
    if !(BASE.contains(&unit) && max_abs.is_finite() && max_abs > 0.0) {
        return (1.0, Some(unit.to_string()));
    }
    /// Smallest magnitude of each prefix, the multiplier that brings it to 1, its name.
    const PREFIXES: [(f64, f64, &str); 7] = [
        (1e9, 1e-9, "G"),
        (1e6, 1e-6, "M"),
        (1e3, 1e-3, "k"),
        (1.0, 1.0, ""),
        (1e-3, 1e3, "m"),
        (1e-6, 1e6, "µ"),
        (1e-9, 1e9, "n"),
    ];
    for (p, m, name) in PREFIXES {
        if max_abs >= p * 0.9995 {
            return (m, Some(format!("{name}{unit}")));
        }
    }
    (1e12, Some(format!("p{unit}")))
}

/// A tick label on an axis spanning `span`: as many digits as tell neighbouring ticks apart
/// (about ten per axis), float noise around zero (`-1.1e-16`) shown as 0.
fn tick_on(v: f64, span: f64) -> String {
    let step = span.abs() / 10.0;
    if !(step > 0.0 && step.is_finite()) {
        return tick(v);
    }
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    let a = v.abs();
    let step_exp = step.log10().floor() as i32;
    let s = if (1e-3..1e5).contains(&a) {
        let decimals = (1 - step_exp).clamp(0, 12) as usize;
        format!("{v:.decimals$}")
    } else {
        let digits = (a.log10().floor() as i32 - step_exp + 1).clamp(1, 10) as usize;
        format!("{v:.digits$e}")
    };
    trim_number(&s)
}

/// Drops trailing zeros of the fraction (`2.500` → `2.5`, `1.50e-5` → `1.5e-5`).
fn trim_number(s: &str) -> String {
    let (mantissa, exp) = match s.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let m = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    let m = if m == "-0" { "0" } else { m };
    match exp {
        Some(e) => format!("{m}e{e}"),
        None => m.to_string(),
    }
}

/// A tick label with at most four significant digits and no float noise (`0.30000000000000004`).
pub fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        trim_number(&format!("{v:.decimals$}"))
    } else {
        trim_number(&format!("{v:.2e}"))
    }
}

fn label_with_unit(quantity: &str, unit: Option<&str>) -> String {
    match unit {
        Some(u) => format!("{quantity} ({u})"),
        None => quantity.to_string(),
    }
}

/// `[lo, hi]` covering `values` with a margin; a flat or empty range still gets a height.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
        return (lo - d, hi + d);
    }
    let m = (hi - lo) * 0.04;
    (lo - m, hi + m)
}

/// Title and subtitle over the area; returns the area below them.
fn titles<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let area = area.titled(title, font(24))?;
    Ok(area.titled(subtitle, font(16).color(&SUBTLE))?)
}

/// A legend in its own column to the right of the chart, so it never hides data.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    top: i32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    const ROW: i32 = 24;
    let (_, h) = area.dim_in_pixel();
    let fits = ((h as i32 - top - 20) / ROW).max(1) as usize;
    for (i, (label, color)) in entries.iter().enumerate() {
        let y = top + i as i32 * ROW;
        if i + 1 == fits && entries.len() > fits {
            area.draw(&Text::new(
                format!("… {} more", entries.len() - i),
                (8, y - 8),
                font(16),
            ))?;
            break;
        }
        area.draw(&PathElement::new(
            vec![(8, y), (36, y)],
            color.stroke_width(3),
        ))?;
        let mut text = label.clone();
        if text.chars().count() > 22 {
            text = text.chars().take(21).collect::<String>() + "…";
        }
        area.draw(&Text::new(text, (44, y - 9), font(16)))?;
    }
    Ok(())
}

impl Figure for FeatureFigure {
    fn size(&self) -> (u32, u32) {
        (1000, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Option<Frame>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, _) = root.dim_in_pixel();
        let (main, side) = root.split_horizontally(w - LEGEND_WIDTH);
        let area = titles(&main, &self.title, &self.subtitle)?;

        let ys = |l: &Line| {
            let band = l.band.iter().flatten().flat_map(|&(a, b)| [a, b]);
            l.y.iter().copied().chain(band).collect::<Vec<f64>>()
        };
        let max_abs = self
            .lines
            .iter()
            .flat_map(ys)
            .filter(|v| v.is_finite())
            .fold(0.0, |m: f64, v| m.max(v.abs()));
        let (scale, unit) = si_scale(max_abs, self.unit.as_deref());
        let xr = padded_range(self.lines.iter().flat_map(|l| l.x.iter().copied()));
        let yr = padded_range(self.lines.iter().flat_map(ys).map(|v| v * scale));
        let y_label = label_with_unit(&self.y_label, unit.as_deref());

        let mut chart = ChartBuilder::on(&area)
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(86)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(y_label.as_str())
            .axis_desc_style(font(19))
            .label_style(font(16))
            .x_label_formatter(&|v| tick_on(*v, xr.1 - xr.0))
            .y_label_formatter(&|v| tick_on(*v, yr.1 - yr.0))
            .light_line_style(GRID)
            .max_light_lines(1)
            .bold_line_style(GRID_BOLD)
            .draw()?;

        let px_width = chart.plotting_area().dim_in_pixel().0 as usize;
        for line in &self.lines {
            let color = PALETTE[line.color % PALETTE.len()];
            if let Some(band) = &line.band {
                let (lo, hi): (Vec<f64>, Vec<f64>) = band.iter().copied().unzip();
                for (seg_lo, seg_hi) in decimate::segments(&line.x, &lo)
                    .into_iter()
                    .zip(decimate::segments(&line.x, &hi))
                {
                    let seg_lo = decimate::min_max(&seg_lo, xr.0, xr.1, px_width);
                    let seg_hi = decimate::min_max(&seg_hi, xr.0, xr.1, px_width);
                    let mut poly: Vec<(f64, f64)> =
                        seg_hi.iter().map(|&(x, y)| (x, y * scale)).collect();
                    poly.extend(seg_lo.iter().rev().map(|&(x, y)| (x, y * scale)));
                    chart.draw_series(std::iter::once(Polygon::new(
                        poly,
                        color.mix(0.2).filled(),
                    )))?;
                }
            }
            for seg in decimate::segments(&line.x, &line.y) {
                let seg = decimate::min_max(&seg, xr.0, xr.1, px_width);
                let seg = seg.into_iter().map(|(x, y)| (x, y * scale));
                if line.x.len() <= 1 || seg.len() == 1 {
                    chart.draw_series(seg.map(|p| Circle::new(p, 3, color.filled())))?;
                } else {
                    chart.draw_series(LineSeries::new(seg, color.stroke_width(2)))?;
                }
            }
        }
        let (lo_x, lo_y) = chart.backend_coord(&(xr.0, yr.0));
        let (hi_x, hi_y) = chart.backend_coord(&(xr.1, yr.1));
        let entries: Vec<(String, RGBColor)> = self
            .lines
            .iter()
            .map(|l| (l.label.clone(), PALETTE[l.color % PALETTE.len()]))
            .collect();
        legend(&side, &entries, hi_y + 10)?;
        Ok(Some(Frame {
            px: [lo_x, hi_y, hi_x, lo_y],
            x: xr,
            y: yr,
            x_label: self.x_label.clone(),
            y_label,
        }))
    }
}

/// Colour of a step on the step colour scale (viridis, stopping short of its palest yellow,
/// which vanishes on white paper).
fn step_color(step: usize, first: usize, last: usize) -> RGBColor {
    let t = if last > first {
        (step - first) as f64 / (last - first) as f64
    } else {
        0.0
    };
    ViridisRGB::get_color(t * 0.9)
}

/// Transfer sweeps of one experiment, coloured by step: linear Id and log |Id| side by side,
/// with a colour bar.
pub struct TransferFigure<'a> {
    pub title: String,
    pub subtitle: String,
    pub curves: &'a [Curve],
}

impl Figure for TransferFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Option<Frame>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let area = titles(root, &self.title, &self.subtitle)?;
        let (w, _) = area.dim_in_pixel();
        let (panels, bar) = area.split_horizontally(w - 130);
        let panels = panels.split_evenly((1, 2));
        let first = self.curves.first().map_or(0, |c| c.step);
        let last = self.curves.last().map_or(0, |c| c.step);

        let vg = padded_range(self.curves.iter().flat_map(|c| c.x.iter().copied()));
        let max_abs = self
            .curves
            .iter()
            .flat_map(|c| c.y.iter())
            .filter(|v| v.is_finite())
            .fold(0.0, |m: f64, v| m.max(v.abs()));
        let (scale, unit) = si_scale(max_abs, Some("A"));
        let id = padded_range(
            self.curves
                .iter()
                .flat_map(|c| c.y.iter().map(|v| v * scale)),
        );

        let mut linear = ChartBuilder::on(&panels[0])
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .caption("linear", font(18))
            .build_cartesian_2d(vg.0..vg.1, id.0..id.1)?;
        linear
            .configure_mesh()
            .x_desc("Vg (V)")
            .y_desc(label_with_unit("Id", unit.as_deref()).as_str())
            .axis_desc_style(font(18))
            .label_style(font(15))
            .x_label_formatter(&|v| tick_on(*v, vg.1 - vg.0))
            .y_label_formatter(&|v| tick_on(*v, id.1 - id.0))
            .light_line_style(GRID)
            .max_light_lines(1)
            .bold_line_style(GRID_BOLD)
            .draw()?;
        for c in self.curves {
            let color = step_color(c.step, first, last);
            for seg in decimate::segments(&c.x, &c.y) {
                linear.draw_series(LineSeries::new(
                    seg.into_iter().map(|(x, y)| (x, y * scale)),
                    color.stroke_width(1),
                ))?;
            }
        }

        let abs: Vec<Vec<f64>> = self
            .curves
            .iter()
            .map(|c| {
                c.y.iter()
                    .map(|v| if v.abs() > 0.0 { v.abs() } else { f64::NAN })
                    .collect()
            })
            .collect();
        let (lo, hi) = abs
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo / 1.5, hi * 1.5)
        } else {
            (1e-12, 1e-3)
        };
        let mut log = ChartBuilder::on(&panels[1])
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .caption("log", font(18))
            .build_cartesian_2d(vg.0..vg.1, (lo..hi).log_scale())?;
        log.configure_mesh()
            .x_desc("Vg (V)")
            .y_desc("|Id| (A)")
            .axis_desc_style(font(18))
            .label_style(font(15))
            .x_label_formatter(&|v| tick_on(*v, vg.1 - vg.0))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .light_line_style(GRID)
            .max_light_lines(1)
            .bold_line_style(GRID_BOLD)
            .draw()?;
        for (c, a) in self.curves.iter().zip(&abs) {
            let color = step_color(c.step, first, last);
            for seg in decimate::segments(&c.x, a) {
                log.draw_series(LineSeries::new(seg, color.stroke_width(1)))?;
            }
        }

        // Colour bar: step index against colour.
        let (s0, s1) = (first as f64, last.max(first + 1) as f64);
        let mut cbar = ChartBuilder::on(&bar)
            .margin_top(40)
            .margin_bottom(62)
            .margin_left(14)
            .margin_right(12)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, s0..s1)?;
        cbar.configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .disable_x_axis()
            .y_desc("step_index")
            .axis_desc_style(font(17))
            .label_style(font(15))
            .y_label_formatter(&|v| tick(v.round()))
            .draw()?;
        const BANDS: usize = 64;
        cbar.draw_series((0..BANDS).map(|i| {
            let t0 = s0 + (s1 - s0) * i as f64 / BANDS as f64;
            let t1 = s0 + (s1 - s0) * (i + 1) as f64 / BANDS as f64;
            let color = ViridisRGB::get_color((i as f64 + 0.5) / BANDS as f64 * 0.9);
            Rectangle::new([(0.0, t0), (1.0, t1)], color.filled())
        }))?;
        Ok(None)
    }
}

/// The first, middle and last transient step of one experiment, a few cycles each.
pub struct TransientFigure<'a> {
    pub title: String,
    pub subtitle: String,
    pub curves: &'a [Curve],
    /// Transient steps in the file.
    pub n_steps: usize,
}

impl Figure for TransientFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Option<Frame>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, _) = root.dim_in_pixel();
        let (main, side) = root.split_horizontally(w - LEGEND_WIDTH);
        let area = titles(&main, &self.title, &self.subtitle)?;
        let t = padded_range(self.curves.iter().flat_map(|c| c.x.iter().copied()));
        let max_abs = self
            .curves
            .iter()
            .flat_map(|c| c.y.iter())
            .filter(|v| v.is_finite())
            .fold(0.0, |m: f64, v| m.max(v.abs()));
        let (scale, unit) = si_scale(max_abs, Some("A"));
        let id = padded_range(
            self.curves
                .iter()
                .flat_map(|c| c.y.iter().map(|v| v * scale)),
        );
        let mut chart = ChartBuilder::on(&area)
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(86)
            .build_cartesian_2d(t.0..t.1, id.0..id.1)?;
        chart
            .configure_mesh()
            .x_desc("time since the step started (s)")
            .y_desc(label_with_unit("Id", unit.as_deref()).as_str())
            .axis_desc_style(font(19))
            .label_style(font(16))
            .x_label_formatter(&|v| tick_on(*v, t.1 - t.0))
            .y_label_formatter(&|v| tick_on(*v, id.1 - id.0))
            .light_line_style(GRID)
            .max_light_lines(1)
            .bold_line_style(GRID_BOLD)
            .draw()?;
        let px_width = chart.plotting_area().dim_in_pixel().0 as usize;
        let last = self.n_steps.saturating_sub(1);
        let mut entries = Vec::new();
        for (i, c) in self.curves.iter().enumerate() {
            let color = step_color(c.step, 0, last);
            for seg in decimate::segments(&c.x, &c.y) {
                let seg = decimate::min_max(&seg, t.0, t.1, px_width);
                chart.draw_series(LineSeries::new(
                    seg.into_iter().map(|(x, y)| (x, y * scale)),
                    color.stroke_width(2),
                ))?;
            }
            let which = match (i, self.curves.len()) {
                (0, _) => "first",
                (i, n) if i + 1 == n => "last",
                _ => "middle",
            };
            entries.push((format!("step {} ({which})", c.step), color));
        }
        let (_, top) = chart.backend_coord(&(t.0, id.1));
        legend(&side, &entries, top + 10)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_and_clean() {
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(1500.0), "1500");
        assert_eq!(tick(-2.5), "-2.5");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1.5e-5), "1.5e-5");
        assert_eq!(tick(123456.0), "1.23e5");
    }

    #[test]
    fn ticks_tell_neighbours_apart() {
        // An axis from 2.6665 to 2.6675 needs five decimals, one from 0 to 10 none.
        assert_eq!(tick_on(2.6668, 0.001), "2.6668");
        assert_eq!(tick_on(2.6670, 0.001), "2.667");
        assert_eq!(tick_on(4.0, 10.0), "4");
        assert_eq!(tick_on(-1.1e-16, 1.2), "0");
        assert_eq!(tick_on(5.5e-6, 3e-6), "5.5e-6");
        assert_eq!(tick_on(2.66682e-6, 1e-9), "2.66682e-6");
        assert_eq!(tick_on(1500.0, 2000.0), "1500");
    }

    #[test]
    fn units_get_a_readable_prefix() {
        assert_eq!(si_scale(6e-4, Some("A")), (1e6, Some("µA".into())));
        assert_eq!(si_scale(2.5e-3, Some("S")), (1e3, Some("mS".into())));
        assert_eq!(si_scale(0.4, Some("V")), (1e3, Some("mV".into())));
        assert_eq!(si_scale(1.0, Some("V")), (1.0, Some("V".into())));
        assert_eq!(si_scale(3.0, Some("dB")), (1.0, Some("dB".into())));
        assert_eq!(si_scale(3.0, None), (1.0, None));
    }
}
