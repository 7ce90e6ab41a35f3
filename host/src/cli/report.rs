//! What the commands print.

use std::fs::File;
use std::path::Path;

use anyhow::Result;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use oect_plugin_api::FailureKind;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::exec::{Outcome, Summary};
use crate::plugins::Registry;
use crate::source::{AttrValue, Overview};

use super::OK;

/// The overview of each file (`json_object`: one file, as one JSON object); a file that
/// cannot be read is a FAILED line and exit status 1, the others are shown.
pub fn inspect(
    paths: &[std::path::PathBuf],
    results: Vec<Result<Overview, String>>,
    json_object: bool,
    json: bool,
) -> Result<u8> {
    let mut shown = Vec::new();
    for (path, r) in paths.iter().zip(results) {
        match r {
            Ok(exp) => shown.push(exp),
            Err(why) => failed!("{}: {why}", path.display()),
        }
    }
    let status = if shown.len() == paths.len() {
        OK
    } else {
        super::PARTIAL
    };
    match (json, json_object) {
        (true, true) => {
            if let Some(exp) = shown.first() {
                outln!("{}", serde_json::to_string_pretty(exp)?);
            }
        }
        (true, false) => outln!("{}", serde_json::to_string_pretty(&shown)?),
        (false, _) => shown.iter().for_each(inspect_one),
    }
    Ok(status)
}

fn inspect_one(exp: &Overview) {
    outln!("{}", exp.path.display());
    outln!("  chip {}  device {}", exp.chip_id, exp.device_id);
    match &exp.transfer {
        Some(t) if t.steps > 0 => outln!(
            "  transfer:  {} steps, {}–{} points per sweep",
            t.steps,
            t.min_points.unwrap_or(0),
            t.max_points
        ),
        _ => outln!("  transfer:  none"),
    }
    match &exp.transient {
        Some(t) => {
            outln!(
                "  transient: {} steps, {}–{} points per step, {} points in all",
                t.steps,
                t.min_points.unwrap_or(0),
                t.max_points.unwrap_or(0),
                t.total_points
            );
            if let (Some(period), Some(rate)) = (t.period_s, t.sample_rate_hz) {
                outln!("             period {period} s, {rate} Hz");
            }
        }
        None => outln!("  transient: none"),
    }
    outln!("  attributes:");
    for (k, v) in &exp.attributes {
        outln!("    {k:<24} {}", attr_json(v));
    }
}

fn attr_json(v: &AttrValue) -> serde_json::Value {
    match v {
        AttrValue::String(s) => s.clone().into(),
        AttrValue::Int(i) => (*i).into(),
        AttrValue::Float(f) => (*f).into(),
        AttrValue::Bool(b) => (*b).into(),
    }
}

pub fn plugins(registry: &Registry, json: bool) -> Result<u8> {
    if json {
        let doc = serde_json::json!({
            "api_version": oect_plugin_api::API_VERSION,
            "plugins": registry.plugins().collect::<Vec<_>>(),
            "extractors": registry.extractors().collect::<Vec<_>>(),
            "warnings": registry.warnings,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(OK);
    }
    for w in &registry.warnings {
        warning!("{w}");
    }
    outln!(
        "oect {} loads plugins built against oect-plugin-api {} (0.x: the same minor version)",
        env!("CARGO_PKG_VERSION"),
        oect_plugin_api::API_VERSION
    );
    if registry.plugins().next().is_none() {
        outln!("no plugins found (searched --plugin-dir, OECT_PLUGIN_PATH and the executable's folder)");
    }
    for p in registry.plugins() {
        outln!(
            "{} {} (plugin API {}) — {}",
            p.name,
            p.version,
            p.api_version,
            p.path.display()
        );
        for name in &p.extractors {
            let Some(e) = registry.extractor(name) else {
                continue;
            };
            let unit = if e.unit.is_empty() { "1" } else { &e.unit };
            let shape = e
                .shape
                .as_ref()
                .map_or(String::new(), |s| format!(" (per step: {s})"));
            outln!(
                "  {:<24} {:<18} {} [{unit}]{shape}",
                e.name,
                e.reads(),
                e.description
            );
            for param in &e.params {
                outln!(
                    "      {:<22} {}, default {} — {}",
                    param.name,
                    param.accepts,
                    param.default,
                    param.doc
                );
            }
            for ex in &e.examples {
                let params = match &ex.params {
                    serde_json::Value::Object(m) if !m.is_empty() => format!(" with {}", ex.params),
                    _ => String::new(),
                };
                let inputs: Vec<String> = ex
                    .inputs
                    .iter()
                    .map(|(field, values)| format!("{field} = {}", short_list(values)))
                    .collect();
                outln!(
                    "      e.g. {}: {}{params} → {}",
                    ex.description,
                    inputs.join(", "),
                    ex.expected
                );
            }
        }
    }
    Ok(OK)
}

/// `[1, 2, 3]`, or its first values and the count for long lists.
fn short_list(values: &[f64]) -> String {
    const SHOWN: usize = 10;
    let head: Vec<String> = values
        .iter()
        .take(SHOWN)
        .map(|v| crate::plugins::number_text(*v))
        .collect();
    if values.len() > SHOWN {
        format!("[{}, … ({} values)]", head.join(", "), values.len())
    } else {
        format!("[{}]", head.join(", "))
    }
}

/// `1 experiment`, `2 experiments`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The run's summary on stdout (JSON, or text unless `-q`); without `--json`, its failed
/// experiments on stderr, even with `-q` (the JSON has them, and a program reading it
/// keeps stderr for the progress events).
pub fn summary(s: &Summary, out: &Path, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    for o in &s.experiments {
        if let Outcome::Failed { input, reason } = o {
            failed!("{}: {reason}", input.display());
        }
    }
    if super::output::verbosity() == super::output::Verbosity::Quiet {
        return Ok(());
    }
    let written = s.count(|o| matches!(o, Outcome::Written { .. }));
    let skipped = s.count(|o| matches!(o, Outcome::Skipped { .. }));
    let failed = s.count(|o| matches!(o, Outcome::Failed { .. }));
    let interrupted = s.count(|o| matches!(o, Outcome::Interrupted { .. }));
    let interrupted = if interrupted > 0 {
        format!(", {interrupted} interrupted")
    } else {
        String::new()
    };
    // Up-to-date outputs count with what they record, so a rerun reports the same.
    let (mut step_errors, mut no_fit, mut nonfinite) = (0, 0, 0);
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in &s.experiments {
        if let Outcome::Written {
            step_errors: e,
            no_fit_steps: n,
            nonfinite_steps: f,
            failed_by_kind,
            ..
        }
        | Outcome::Skipped {
            step_errors: e,
            no_fit_steps: n,
            nonfinite_steps: f,
            failed_by_kind,
            ..
        } = o
        {
            (step_errors, no_fit, nonfinite) = (step_errors + e, no_fit + n, nonfinite + f);
            for (kind, n) in failed_by_kind {
                *kinds.entry(kind).or_default() += n;
            }
        }
    }
    let by_kind = if kinds.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    outln!(
        "{}: {written} written, {skipped} skipped (up to date), {failed} failed{interrupted}; {step_errors} failed steps{by_kind}, {no_fit} steps without a fit, {nonfinite} values with NaN/inf; {} tasks in {:.2} s ({} mode, {} worker{})",
        count(s.experiments.len(), "experiment"),
        s.tasks,
        s.seconds,
        match s.mode {
            crate::exec::Mode::Step => "step",
            crate::exec::Mode::Experiment => "experiment",
        },
        s.workers,
        if s.workers == 1 { "" } else { "s" }
    );
    let t = &s.time_split;
    if s.tasks > 0 {
        outln!(
            "time summed over threads: read {:.2} s, extract {:.2} s, write {:.2} s",
            t.read,
            t.extract,
            t.write
        );
    }
    if s.read_fallbacks > 0 {
        outln!(
            "{} step reads were done by the HDF5 library instead of the parallel chunk reader (slower, same values)",
            s.read_fallbacks
        );
    }
    for c in &s.casualties {
        let what = match (&c.feature, c.step) {
            (Some(f), Some(step)) => format!("feature '{f}', step {step}"),
            _ => "the file".to_string(),
        };
        outln!("  CASUALTY {}: {what}: {}", c.input.display(), c.cause);
    }
    if let Some(w) = &s.worker_output {
        errln!(
            "note: plugins and libraries printed {} lines ({} bytes on stdout), kept out of this output: see {}",
            w.lines,
            w.stdout_bytes,
            w.log.display()
        );
    }
    for o in &s.experiments {
        match o {
            Outcome::Written { input, output, .. } | Outcome::Skipped { input, output, .. }
                if super::output::verbosity() == super::output::Verbosity::Verbose =>
            {
                let what = if matches!(o, Outcome::Written { .. }) {
                    "written"
                } else {
                    "skipped (up to date)"
                };
                outln!("  {what} {} → {}", input.display(), output.display());
                if let Outcome::Written { errors, .. } = o {
                    step_failures(input, errors);
                }
            }
            Outcome::Skipped {
                input,
                output,
                step_errors,
                ..
            } if *step_errors > 0 => outln!(
                "  {}: up to date, but {} records {step_errors} failed steps (--force recomputes them)",
                input.display(),
                output.display()
            ),
            Outcome::Written { input, errors, .. } => step_failures(input, errors),
            _ => {}
        }
    }
    outln!("outputs in {}", out.display());
    Ok(())
}

/// The first three failed steps of a written experiment, and how many more there are.
fn step_failures(input: &Path, errors: &[crate::sink::StepError]) {
    for e in errors.iter().take(3) {
        let at = e
            .step
            .map_or("all steps".to_string(), |s| format!("step {s}"));
        // A step without a result says so in its message ("no fit: …");
        // a failure is prefixed with its kind.
        let kind = match e.kind {
            FailureKind::NoResult => String::new(),
            k => format!("{}: ", k.as_str().replace('_', " ")),
        };
        outln!(
            "  {}: feature '{}', {at}: {kind}{}",
            input.display(),
            e.feature,
            e.message
        );
    }
    if errors.len() > 3 {
        outln!(
            "  {}: … and {} more steps without a value",
            input.display(),
            errors.len() - 3
        );
    }
}

/// First and last value of a few columns of each written file.
pub fn demo_table(s: &Summary) -> Result<()> {
    let columns = ["gm_max_forward", "Von_forward", "absI_max"];
    outln!();
    outln!(
        "{:<16} {:>6}  {:>22}  {:>22}  {:>22}",
        "experiment",
        "steps",
        "gm_max_forward (S)",
        "Von_forward (V)",
        "absI_max (A)"
    );
    outln!(
        "{:<16} {:>6}  {:>22}  {:>22}  {:>22}",
        "",
        "",
        "first → last",
        "first → last",
        "first → last"
    );
    for o in &s.experiments {
        let Outcome::Written { output, rows, .. } = o else {
            continue;
        };
        let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(output)?)?
            .with_batch_size(1 << 20)
            .build()?
            .next()
            .transpose()?;
        let Some(batch) = batch else { continue };
        let meta = crate::sink::read_meta(output).map_err(anyhow::Error::msg)?;
        let name = format!("{}-{}", meta.chip_id, meta.device_id);
        let mut cells = Vec::new();
        for c in columns {
            let cell = batch
                .column_by_name(c)
                .map(|a| {
                    let a = a.as_primitive::<Float64Type>();
                    format!("{:.4e} → {:.4e}", a.value(0), a.value(a.len() - 1))
                })
                .unwrap_or_default();
            cells.push(cell);
        }
        outln!(
            "{name:<16} {rows:>6}  {:>22}  {:>22}  {:>22}",
            cells[0],
            cells[1],
            cells[2]
        );
    }
    Ok(())
}
