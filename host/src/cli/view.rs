//! `oect plot` and `oect report`: argument parsing and console output; the work is in
//! [`crate::view`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::view::{self, Batch, Format, Made, Selection, XAxis};

use super::{OK, PARTIAL, USAGE};

/// What to draw, shared by `plot` and `report`.
#[derive(Args)]
pub struct SelectionArgs {
    /// Feature outputs of `oect run` (.parquet) and experiment files (.h5), or folders
    /// searched recursively for both.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Only this feature (repeatable; a per-cycle record's name selects all its components).
    #[arg(long = "feature", value_name = "NAME")]
    features: Vec<String>,
    /// Only this chip.
    #[arg(long = "chip", value_name = "ID")]
    chip: Option<String>,
    /// Divide every line by its first finite value (relative drift).
    #[arg(long)]
    normalize: bool,
    /// X axis of the feature figures: step index, or time since the test started.
    #[arg(long = "x", value_enum, default_value_t = XAxis::Step)]
    x: XAxis,
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        Selection {
            features: self.features.clone(),
            chip: self.chip.clone(),
            normalize: self.normalize,
            x: self.x,
        }
    }
}

#[derive(Args)]
pub struct PlotArgs {
    #[command(flatten)]
    select: SelectionArgs,
    /// Folder for the figures: DIR/<config>/<chip>-<feature>.<ext> and
    /// DIR/experiments/<experiment>-{transfer,transient}.<ext>.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Image format of the figures.
    #[arg(long, value_enum, default_value_t = Format::Png)]
    format: Format,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    select: SelectionArgs,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
}

pub fn plot(args: &PlotArgs) -> Result<u8> {
    let batch = Batch::gather(&args.select.inputs)?;
    let made = view::plot(&batch, &args.select.selection(), args.format, &args.out)?;
    outln!("{} figures in {}", made.written.len(), args.out.display());
    Ok(finish(&made))
}

pub fn report(args: &ReportArgs) -> Result<u8> {
    let batch = Batch::gather(&args.select.inputs)?;
    let made = view::report(&batch, &args.select.selection(), &args.out)?;
    outln!("{}", args.out.display());
    Ok(finish(&made))
}

/// Prints notes and problems; the exit status says whether everything asked for was made.
fn finish(made: &Made) -> u8 {
    for n in &made.notes {
        noteln!("note: {n}");
    }
    for p in &made.problems {
        error!("{p}");
    }
    match (made.written.is_empty(), made.problems.is_empty()) {
        (_, true) => OK,
        (false, false) => PARTIAL,
        (true, false) => USAGE,
    }
}
