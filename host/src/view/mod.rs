//! Looking at results, the last stage of the data path: figures from `oect run`'s Parquet
//! outputs (every feature against step or elapsed time, one figure per chip, one line per
//! experiment) and from experiment files (transfer-curve evolution, transient snapshots), as
//! PNG/SVG files ([`plot`]) or one self-contained HTML page per batch ([`report`]).
//!
//! [`table`] is the only code that knows the output schema; [`curves`] reads experiment files
//! through [`crate::source`]; [`decimate`] bounds the points per line; [`figure`] draws;
//! [`palette`] makes PNGs small; [`html`] writes the page.

mod curves;
mod decimate;
mod figure;
mod html;
mod palette;
mod raster;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

pub use figure::Format;
use figure::{FeatureFigure, Figure, Frame, Line, TransferFigure, TransientFigure};
pub use table::Output;

use crate::sink::file_part;
use crate::source::Experiment;

/// What the x axis of feature figures shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    /// The step index (`step_index`).
    Step,
    /// Time since the test started (needs an output with elapsed time per step).
    Time,
}

/// Which figures to make and how.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Only these features (all when empty). A name matches a feature, or all components of
    /// a per-cycle record (`tau_cycles` matches `tau_cycles[0]` and `tau_cycles[1]`).
    pub features: Vec<String>,
    /// Only this chip.
    pub chip: Option<String>,
    /// Divide each line by its first finite value.
    pub normalize: bool,
    pub x: XAxis,
}

/// The outputs and experiment files found under the inputs.
#[derive(Debug, Default)]
pub struct Batch {
    pub outputs: Vec<Output>,
    /// `.h5` files named (directly or in a folder) among the inputs.
    pub experiment_files: Vec<PathBuf>,
    /// Inputs that could not be used, each naming the file.
    pub problems: Vec<String>,
}

impl Batch {
    /// Finds `.parquet` outputs and `.h5` experiment files in `inputs` (files, or folders
    /// searched recursively; hidden files are skipped) and reads the outputs. A missing input
    /// is an error; an unreadable file is a problem and the rest is still read.
    pub fn gather(inputs: &[PathBuf]) -> Result<Batch> {
        let mut parquet = Vec::new();
        let mut h5 = Vec::new();
        let mut problems = Vec::new();
        for input in inputs {
            if input.is_dir() {
                let before = parquet.len() + h5.len();
                walk(input, &mut parquet, &mut h5)?;
                if parquet.len() + h5.len() == before {
                    problems.push(format!(
                        "{}: no .parquet or .h5 files in this folder",
                        input.display()
                    ));
                }
            } else if input.is_file() {
                match input.extension().and_then(|e| e.to_str()) {
                    Some("parquet") => parquet.push(input.clone()),
                    Some("h5") => h5.push(input.clone()),
                    _ => problems.push(format!(
                        "{}: neither an oect output (.parquet) nor an experiment file (.h5)",
                        input.display()
                    )),
                }
            } else {
                bail!("{}: no such file or folder", input.display());
            }
        }
        for list in [&mut parquet, &mut h5] {
            list.sort();
            list.dedup();
        }
        let read: Vec<Result<Vec<Output>, String>> =
            parquet.par_iter().map(|p| table::read(p)).collect();
        let mut outputs = Vec::new();
        for r in read {
            match r {
                Ok(o) => outputs.extend(o),
                Err(e) => problems.push(e),
            }
        }
        Ok(Batch {
            outputs,
            experiment_files: h5,
            problems,
        })
    }

    /// An error when there is nothing to draw at all, naming what was wrong with the inputs.
    fn check_usable(&self) -> Result<()> {
        if !self.outputs.is_empty() || !self.experiment_files.is_empty() {
            return Ok(());
        }
        match self.problems.as_slice() {
            [] => bail!("no outputs or experiment files in the inputs"),
            problems => bail!("nothing usable in the inputs:\n  {}", problems.join("\n  ")),
        }
    }
}

fn walk(dir: &Path, parquet: &mut Vec<PathBuf>, h5: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read folder", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, parquet, h5)?;
        } else {
            match path.extension().and_then(|e| e.to_str()) {
                Some("parquet") => parquet.push(path),
                Some("h5") => h5.push(path),
                _ => {}
            }
        }
    }
    Ok(())
}

/// What a command made, and what it could not.
#[derive(Debug, Default)]
pub struct Made {
    pub written: Vec<PathBuf>,
    /// Problems that cost a figure or an input, each naming the file, feature or chip.
    pub problems: Vec<String>,
    /// Things worth knowing that cost nothing (e.g. `--x time` fell back to steps).
    pub notes: Vec<String>,
}

/// A rendered feature figure and what it shows.
struct FeaturePlot {
    config: String,
    chip: String,
    feature: String,
    figure: FeatureFigure,
}

/// The experiments of one chip and config, in a stable order (device, then file).
type Groups<'a> = BTreeMap<(String, String), Vec<&'a Output>>;

fn groups<'a>(batch: &'a Batch, sel: &Selection) -> Groups<'a> {
    let mut groups: Groups = BTreeMap::new();
    for o in &batch.outputs {
        if sel.chip.as_ref().is_some_and(|c| *c != o.chip_id) {
            continue;
        }
        groups
            .entry((o.config_name.clone(), o.chip_id.clone()))
            .or_default()
            .push(o);
    }
    for list in groups.values_mut() {
        list.sort_by(|a, b| {
            device_key(&a.device_id)
                .cmp(&device_key(&b.device_id))
                .then_with(|| a.span.map(|s| s.0).cmp(&b.span.map(|s| s.0)))
                .then_with(|| a.test_id.cmp(&b.test_id))
        });
    }
    groups
}

/// Devices sort by number when they are numbers (2 before 10).
fn device_key(d: &str) -> (u64, String) {
    (d.parse().unwrap_or(u64::MAX), d.to_string())
}

/// Every feature's name in `outputs`, in the order they first appear.
fn feature_names(outputs: &[&Output]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for o in outputs {
        for s in &o.series {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    names
}

fn selected(name: &str, sel: &Selection) -> bool {
    sel.features.is_empty() || sel.features.iter().any(|f| matches(name, f))
}

/// `name` is feature `f` or one of its components (`f[0]`, `f[1]`).
fn matches(name: &str, f: &str) -> bool {
    name == f || name.strip_prefix(f).is_some_and(|r| r.starts_with('['))
}

/// Seconds → a unit that keeps the axis numbers small.
fn time_unit(max_s: f64) -> (f64, &'static str) {
    match max_s {
        m if m < 600.0 => (1.0, "s"),
        m if m < 36_000.0 => (60.0, "min"),
        m if m < 7.0 * 86_400.0 => (3600.0, "h"),
        _ => (86_400.0, "d"),
    }
}

/// The feature figures of the batch, and problems/notes about the selection.
fn feature_plots(batch: &Batch, sel: &Selection, made: &mut Made) -> Vec<FeaturePlot> {
    let groups = groups(batch, sel);
    if let Some(chip) = &sel.chip {
        if !batch.outputs.is_empty() && !batch.outputs.iter().any(|o| &o.chip_id == chip) {
            made.problems.push(format!(
                "--chip {chip}: no output of that chip in the inputs"
            ));
        }
    }
    let all: Vec<&Output> = groups.values().flatten().copied().collect();
    let available = feature_names(&all);
    for f in &sel.features {
        if !all.is_empty() && !available.iter().any(|a| matches(a, f)) {
            made.problems.push(format!(
                "--feature {f}: no such feature in the outputs (they have: {})",
                available.join(", ")
            ));
        }
    }
    let use_time = sel.x == XAxis::Time
        && {
            let untimed: Vec<&Output> = all
                .iter()
                .copied()
                .filter(|o| !o.elapsed_s.iter().any(|t| t.is_finite()))
                .collect();
            if let Some(first) = untimed.first() {
                made.notes.push(format!(
                "--x time: {} of {} outputs record no step times (e.g. {}, test {}); plotting against step instead",
                untimed.len(),
                all.len(),
                first.path.display(),
                first.test_id
            ));
            }
            untimed.is_empty()
        };

    let mut plots = Vec::new();
    for ((config, chip), outputs) in &groups {
        let (t_scale, t_unit) = time_unit(
            outputs
                .iter()
                .flat_map(|o| o.elapsed_s.iter())
                .filter(|v| v.is_finite())
                .fold(0.0, |m: f64, &v| m.max(v)),
        );
        let repeated = |o: &Output| {
            outputs
                .iter()
                .filter(|p| p.device_id == o.device_id)
                .count()
                > 1
        };
        for feature in feature_names(outputs)
            .into_iter()
            .filter(|f| selected(f, sel))
        {
            let mut lines = Vec::new();
            let mut unit = None;
            let mut spread = false;
            let mut axis = None;
            for (i, o) in outputs.iter().enumerate() {
                let Some(s) = o.series.iter().find(|s| s.name == feature) else {
                    continue;
                };
                unit = unit.or(s.unit.clone());
                axis = axis.or(Some(s.axis));
                let (y, band) = match &s.values {
                    table::Values::Scalar(v) => (v.clone(), None),
                    table::Values::Spread(q) => {
                        spread = true;
                        (
                            q.iter().map(|q| q.median).collect(),
                            Some(q.iter().map(|q| (q.q1, q.q3)).collect::<Vec<_>>()),
                        )
                    }
                };
                // Rows without a step of the feature's kind (in a table over both kinds) are
                // not part of its series; a NaN value on a step of it (failed, no fit) is a
                // gap in the line.
                let keep: Vec<usize> = (0..y.len()).filter(|&r| s.steps[r].is_finite()).collect();
                let x: Vec<f64> = if use_time {
                    keep.iter().map(|&r| o.elapsed_s[r] / t_scale).collect()
                } else {
                    keep.iter().map(|&r| s.steps[r]).collect()
                };
                let mut y: Vec<f64> = keep.iter().map(|&r| y[r]).collect();
                let mut band = band.map(|b| keep.iter().map(|&r| b[r]).collect::<Vec<_>>());
                if sel.normalize {
                    let first = y.iter().copied().find(|v| v.is_finite() && *v != 0.0);
                    match first {
                        Some(f) => {
                            y.iter_mut().for_each(|v| *v /= f);
                            if let Some(b) = band.as_mut() {
                                b.iter_mut().for_each(|(lo, hi)| {
                                    // Dividing by a negative first value swaps the quartiles.
                                    let (a, c) = (*lo / f, *hi / f);
                                    (*lo, *hi) = (a.min(c), a.max(c));
                                });
                            }
                        }
                        None => made.notes.push(format!(
                            "{}: {feature} has no finite non-zero value to normalise to; drawn as is",
                            o.path.display()
                        )),
                    }
                }
                let label = if repeated(o) {
                    format!("dev {} · {}", o.device_id, o.test_id)
                } else {
                    format!("dev {}", o.device_id)
                };
                lines.push(Line {
                    label,
                    color: i,
                    x,
                    y,
                    band,
                });
            }
            let what = if spread {
                "line: per-step median over cycles, band: inter-quartile range"
            } else {
                "one value per step"
            };
            let norm = if sel.normalize {
                " · normalised to the first step"
            } else {
                ""
            };
            let x_label = if use_time {
                format!("elapsed time ({t_unit})")
            } else {
                axis.unwrap_or(table::StepAxis::Row).label().to_string()
            };
            let n = lines.len();
            plots.push(FeaturePlot {
                config: config.clone(),
                chip: chip.clone(),
                feature: feature.clone(),
                figure: FeatureFigure {
                    title: format!("{feature} — chip {chip}"),
                    subtitle: format!(
                        "config {config} · {n} experiment{} · {what}{norm}",
                        if n == 1 { "" } else { "s" }
                    ),
                    x_label,
                    y_label: if sel.normalize {
                        format!("{feature} / first step")
                    } else {
                        feature.clone()
                    },
                    unit: if sel.normalize { None } else { unit },
                    lines,
                },
            });
        }
    }
    plots
}

/// The figures of one experiment file.
struct ExperimentFigures {
    path: PathBuf,
    curves: curves::ExperimentCurves,
}

impl ExperimentFigures {
    fn read(path: &Path) -> Result<ExperimentFigures, String> {
        let exp = Experiment::open(path).map_err(|e| e.to_string())?;
        let curves = curves::read(&exp).map_err(|e| e.to_string())?;
        Ok(ExperimentFigures {
            path: path.to_path_buf(),
            curves,
        })
    }

    fn who(&self) -> String {
        format!(
            "chip {}, device {}",
            self.curves.chip_id, self.curves.device_id
        )
    }

    fn transfer(&self) -> Option<TransferFigure<'_>> {
        let c = &self.curves;
        (!c.transfer.is_empty()).then(|| TransferFigure {
            title: format!("Transfer curves — {}", self.who()),
            subtitle: match c.transfer.get(1).map(|s| s.step) {
                Some(k) if k > 1 => format!(
                    "{} · {} of {} sweeps (one in {k}, and the last), coloured by step",
                    c.name,
                    c.transfer.len(),
                    c.transfer_steps
                ),
                _ => format!(
                    "{} · all {} sweeps, coloured by step",
                    c.name, c.transfer_steps
                ),
            },
            curves: &c.transfer,
        })
    }

    fn transient(&self) -> Option<TransientFigure<'_>> {
        let c = &self.curves;
        (!c.transient.is_empty()).then(|| TransientFigure {
            title: format!("Transient response — {}", self.who()),
            subtitle: format!(
                "{} · first, middle and last of {} steps, first {} cycles",
                c.name,
                c.transient_steps,
                curves::SNAPSHOT_CYCLES
            ),
            curves: &c.transient,
            n_steps: c.transient_steps,
        })
    }
}

/// Writes `bytes` to `path` through a temporary file, so a file under its final name is whole.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: cannot write ({e})", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
}

/// `oect plot`: one file per (config, chip, feature) under `dir/<config>/`, and the transfer
/// and transient figures of each experiment file under `dir/experiments/`.
pub fn plot(batch: &Batch, sel: &Selection, format: Format, dir: &Path) -> Result<Made> {
    batch.check_usable()?;
    let mut made = Made {
        problems: batch.problems.clone(),
        ..Made::default()
    };
    let plots = feature_plots(batch, sel, &mut made);
    let ext = format.extension();
    let mut jobs: Vec<(PathBuf, Result<Vec<u8>, String>)> = plots
        .par_iter()
        .map(|p| {
            let path = dir.join(file_part(&p.config)).join(format!(
                "{}-{}.{ext}",
                file_part(&p.chip),
                file_part(&p.feature)
            ));
            let bytes = figure::render(&p.figure, format)
                .map(|(b, _)| b)
                .map_err(|e| format!("{}: {e:#}", path.display()));
            (path, bytes)
        })
        .collect();
    let files: Vec<&PathBuf> = batch.experiment_files.iter().collect();
    let experiment_jobs: Vec<Vec<Drawn>> = files
        .par_iter()
        .map(|f| {
            let figs = match ExperimentFigures::read(f) {
                Ok(figs) => figs,
                Err(e) => return vec![(f.to_path_buf(), Err(e))],
            };
            if sel.chip.as_ref().is_some_and(|c| *c != figs.curves.chip_id) {
                return Vec::new();
            }
            let base = dir.join("experiments");
            let stem = file_part(&figs.curves.name);
            let mut out = Vec::new();
            let mut add = |kind: &str, r: Option<Result<(Vec<u8>, Option<Frame>)>>| {
                if let Some(r) = r {
                    let path = base.join(format!("{stem}-{kind}.{ext}"));
                    let r = r
                        .map(|(b, _)| b)
                        .map_err(|e| format!("{}: {e:#}", path.display()));
                    out.push((path, r));
                }
            };
            add(
                "transfer",
                figs.transfer().map(|f| figure::render(&f, format)),
            );
            add(
                "transient",
                figs.transient().map(|f| figure::render(&f, format)),
            );
            if out.is_empty() {
                out.push((
                    f.to_path_buf(),
                    Err(format!(
                        "{}: no transfer or transient steps to draw",
                        f.display()
                    )),
                ));
            }
            out
        })
        .collect();
    jobs.extend(experiment_jobs.into_iter().flatten());
    for (path, bytes) in jobs {
        match bytes.and_then(|b| write_file(&path, &b)) {
            Ok(()) => made.written.push(path),
            Err(e) => made.problems.push(e),
        }
    }
    if made.written.is_empty() && made.problems.is_empty() {
        made.problems
            .push("nothing to draw for this selection".to_string());
    }
    Ok(made)
}

/// Where the experiment file of `output` is: an input file of the same name, else the path
/// the output records (relative to the folder `oect run` ran in), taken as is or from one of
/// the output's parent folders (outputs and data side by side, the report made elsewhere).
fn locate(output: &Output, inputs: &[PathBuf]) -> Option<PathBuf> {
    let recorded = &output.source_file;
    let name = recorded.file_name()?;
    if let Some(p) = inputs.iter().find(|p| p.file_name() == Some(name)) {
        return Some(p.clone());
    }
    if recorded.is_file() {
        return Some(recorded.clone());
    }
    if recorded.is_absolute() {
        return None;
    }
    let dir = std::path::absolute(&output.path).ok()?;
    dir.ancestors()
        .skip(1)
        .map(|d| d.join(recorded))
        .find(|p| p.is_file())
}

/// Feature figures are inline SVG (sharp on paper, small for a few lines) up to this size;
/// beyond it (many devices × thousands of steps) the 256-colour PNG is several times smaller.
const SVG_BUDGET: usize = 64 * 1024;

/// A feature figure for the page: its SVG, or the PNG `png` draws (bytes, pixel width) when
/// the SVG is over [`SVG_BUDGET`] and the PNG is smaller.
fn feature_image(svg: String, png: impl FnOnce() -> Result<(Vec<u8>, u32)>) -> Result<html::Image> {
    if svg.len() <= SVG_BUDGET {
        return Ok(html::Image::Svg(svg));
    }
    let (bytes, width) = png()?;
    // base64 makes the PNG a third larger on the page.
    Ok(match bytes.len() * 4 / 3 < svg.len() {
        true => html::Image::Png { bytes, width },
        false => html::Image::Svg(svg),
    })
}

/// A figure file to write: its path and bytes, or why it could not be drawn.
type Drawn = (PathBuf, Result<Vec<u8>, String>);

/// `oect report`: one self-contained HTML page at `out` for the whole batch.
pub fn report(batch: &Batch, sel: &Selection, out: &Path) -> Result<Made> {
    batch.check_usable()?;
    let mut made = Made {
        problems: batch.problems.clone(),
        ..Made::default()
    };
    let plots = feature_plots(batch, sel, &mut made);
    let images: Vec<Result<(html::Image, Option<Frame>), String>> = plots
        .par_iter()
        .map(|p| {
            let drawn = figure::render(&p.figure, Format::Svg).and_then(|(svg, frame)| {
                let svg = String::from_utf8_lossy(&svg).into_owned();
                let image = feature_image(svg, || {
                    Ok((figure::render(&p.figure, Format::Png)?.0, p.figure.size().0))
                })?;
                Ok((image, frame))
            });
            drawn.map_err(|e| format!("{} of chip {}: {e:#}", p.feature, p.chip))
        })
        .collect();

    // Experiment files: those given, and those the outputs point to.
    let mut files: Vec<PathBuf> = batch.experiment_files.clone();
    let mut located: Vec<Option<PathBuf>> = Vec::new();
    for o in &batch.outputs {
        let f = locate(o, &batch.experiment_files);
        if let Some(f) = &f {
            if !files.iter().any(|g| g.file_name() == f.file_name()) {
                files.push(f.clone());
            }
        }
        located.push(f);
    }
    let read: Vec<Result<ExperimentFigures, String>> = files
        .par_iter()
        .map(|f| ExperimentFigures::read(f))
        .collect();
    let mut experiments = Vec::new();
    for r in read {
        match r {
            Ok(e) if sel.chip.as_ref().is_none_or(|c| *c == e.curves.chip_id) => {
                experiments.push(e)
            }
            Ok(_) => {}
            Err(e) => made.problems.push(e),
        }
    }
    let pngs: Vec<html::ExperimentPanel> = experiments
        .par_iter()
        .map(|e| {
            let render = |r: Option<Result<(Vec<u8>, Option<Frame>)>>| {
                r.map(|r| r.map(|(b, _)| b).map_err(|e| format!("{e:#}")))
            };
            html::ExperimentPanel {
                chip: e.curves.chip_id.clone(),
                device: e.curves.device_id.clone(),
                name: e.curves.name.clone(),
                transfer: render(e.transfer().map(|f| figure::render(&f, Format::Png))),
                transient: render(e.transient().map(|f| figure::render(&f, Format::Png))),
            }
        })
        .collect();

    let mut figures = Vec::new();
    for (p, image) in plots.iter().zip(images) {
        match image {
            Ok((image, frame)) => figures.push(html::FeaturePanel {
                chip: p.chip.clone(),
                config: p.config.clone(),
                feature: p.feature.clone(),
                image,
                frame,
            }),
            Err(e) => made.problems.push(e),
        }
    }
    let mut rows = Vec::new();
    for (o, file) in batch.outputs.iter().zip(&located) {
        if sel.chip.as_ref().is_some_and(|c| *c != o.chip_id) {
            continue;
        }
        let span = file.as_ref().and_then(|f| {
            experiments
                .iter()
                .find(|e| e.path.file_name() == f.file_name())
                .and_then(|e| e.curves.span)
        });
        rows.push(html::Row::of_output(o, file.as_deref(), span));
    }
    for e in &experiments {
        let has_output = batch
            .outputs
            .iter()
            .any(|o| o.source_file.file_name() == e.path.file_name());
        if !has_output {
            rows.push(html::Row::of_experiment(&e.path, &e.curves));
        }
    }
    rows.sort_by(|a, b| {
        (&a.chip, device_key(&a.device), &a.experiment, &a.config).cmp(&(
            &b.chip,
            device_key(&b.device),
            &b.experiment,
            &b.config,
        ))
    });
    let page = html::page(&html::Content {
        rows,
        figures,
        experiments: pngs,
        notes: made.notes.clone(),
        problems: made.problems.clone(),
    });
    for p in &page.problems {
        made.problems.push(p.clone());
    }
    write_file(out, page.html.as_bytes()).map_err(anyhow::Error::msg)?;
    made.written.push(out.to_path_buf());
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_svg_becomes_the_smaller_png() {
        let small = "<svg></svg>".to_string();
        let drawn = feature_image(small.clone(), || panic!("no PNG for a small SVG")).unwrap();
        assert!(matches!(drawn, html::Image::Svg(s) if s == small));
        let large = "x".repeat(SVG_BUDGET + 1);
        let drawn = feature_image(large.clone(), || Ok((vec![0; 1000], 1000))).unwrap();
        assert!(matches!(drawn, html::Image::Png { width: 1000, .. }));
        // A PNG that would not be smaller keeps the SVG.
        let drawn = feature_image(large, || Ok((vec![0; SVG_BUDGET], 1000))).unwrap();
        assert!(matches!(drawn, html::Image::Svg(_)));
    }
}
