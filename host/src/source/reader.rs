//! Reader for experiment files in the oect-infra "batch" HDF5 layout (format 2.0, writer
//! variants A and B).
//!
//! Metadata (attributes, step layout, sampling parameters) is read once in
//! [`Experiment::open`]; step data is read on demand, a whole range of steps per HDF5 call,
//! because per-step hyperslab reads are what made the predecessor slow.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Container, Dataset, File, Group, H5Type};

use oect_plugin_api::abi::Channel;

use super::chunked::{Measurement, Slab};
use super::steps::{self, keys, Sampling, StepKey, StepRecord};

/// Chunk cache per open file, for the reads HDF5 still decodes itself (see `chunked`). Real
/// chunks are up to ~250 kB (transient) and a transfer range read touches a whole row of chunks;
/// 32 MiB keeps the chunks shared by consecutive range reads decompressed instead of inflating
/// them again.
const CHUNK_CACHE_BYTES: usize = 32 << 20;
/// Hash slots of the chunk cache (a prime, as HDF5 recommends, ~100× the chunks it can hold).
const CHUNK_CACHE_SLOTS: usize = 12_421;
/// Longest fixed-length string accepted; longer ones are reported instead of being read.
const MAX_FIXED_TEXT: usize = 64 << 20;

/// A file-level problem, always naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SourceError {
    pub path: PathBuf,
    pub message: String,
}

impl SourceError {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// A scalar root attribute.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Shape of `/transfer/measurement_data`: `(n_steps, 2, max_points)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferLayout {
    pub n_steps: usize,
    pub max_points: usize,
    /// Steps per stored chunk (1 if not chunked); reads aligned to it decode each chunk once.
    pub steps_per_chunk: usize,
}

/// Column range of every transient step in `/transient/measurement_data`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransientLayout {
    pub steps: Vec<Range<usize>>,
    pub total_points: usize,
}

/// Steps of one kind, stored flat for cache-friendly access: the channels read, each with
/// the samples of every step, step k at `offsets[k]..offsets[k + 1]` in every channel (so
/// the channels of a step are equally long by construction).
#[derive(Debug, Clone, PartialEq)]
pub struct StepBlock {
    pub first_step: usize,
    pub offsets: Vec<usize>,
    pub channels: Vec<(Channel, Vec<f64>)>,
}

impl StepBlock {
    fn empty(first_step: usize, channels: &[Channel]) -> Self {
        Self {
            first_step,
            offsets: vec![0],
            channels: channels.iter().map(|&c| (c, Vec::new())).collect(),
        }
    }

    /// Number of steps in the block.
    pub fn n_steps(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of samples of the k-th step of the block (file step `first_step + k`).
    pub fn len(&self, k: usize) -> usize {
        self.offsets[k + 1] - self.offsets[k]
    }

    /// The k-th step alone, as a block of one step.
    pub fn single(&self, k: usize) -> StepBlock {
        let samples = self.offsets[k]..self.offsets[k + 1];
        StepBlock {
            first_step: self.first_step + k,
            offsets: vec![0, samples.len()],
            channels: self
                .channels
                .iter()
                .map(|(c, data)| (*c, data[samples.clone()].to_vec()))
                .collect(),
        }
    }

    /// `channel`'s samples of the k-th step, if the block holds that channel.
    pub fn samples(&self, channel: Channel, k: usize) -> Option<&[f64]> {
        let (_, data) = self.channels.iter().find(|(c, _)| *c == channel)?;
        Some(&data[self.offsets[k]..self.offsets[k + 1]])
    }
}

/// Per-experiment metadata, read once when the file is opened.
#[derive(Debug)]
pub struct Experiment {
    pub path: PathBuf,
    /// Root attribute `chip_id`, `"NA"` if missing or empty.
    pub chip_id: String,
    /// Root attribute `device_number`, `"NA"` if missing or empty.
    pub device_id: String,
    /// Root attribute `test_id` (unique per test), `None` if missing, empty or `NA`.
    pub test_id: Option<String>,
    /// Root attribute `created_at`: when the test started (local time).
    pub created_at: Option<chrono::NaiveDateTime>,
    /// All scalar root attributes of a supported type.
    pub attrs: BTreeMap<String, AttrValue>,
    /// `None` if `/transfer/measurement_data` is absent.
    pub transfer: Option<TransferLayout>,
    /// `None` if `/transient/measurement_data` is absent.
    pub transient: Option<TransientLayout>,
    /// What the file records about each transfer and transient step (times, loop
    /// iteration, instrument settings), in step order.
    pub transfer_steps: Vec<StepRecord>,
    pub transient_steps: Vec<StepRecord>,
    transfer_data: Option<Measurement>,
    transient_data: Option<Measurement>,
}

/// What the supervisor of a run knows about an experiment: its metadata without the open
/// file. Worker processes open files (see `exec`) and send this across the process
/// boundary, so it is plain serialisable data; what the writer needs of a file goes here.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExperimentInfo {
    pub path: PathBuf,
    pub chip_id: String,
    pub device_id: String,
    pub test_id: Option<String>,
    pub created_at: Option<chrono::NaiveDateTime>,
    pub attrs: BTreeMap<String, AttrValue>,
    pub transfer: Option<TransferLayout>,
    pub transient: Option<TransientLayout>,
    /// The row keys of each transfer and transient step, in step order.
    pub transfer_steps: Vec<StepKey>,
    pub transient_steps: Vec<StepKey>,
}

/// What `oect inspect` shows of a file: layout, step lengths, sampling and attributes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Overview {
    pub path: PathBuf,
    pub chip_id: String,
    pub device_id: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub transfer: Option<TransferOverview>,
    pub transient: Option<TransientOverview>,
}

/// Transfer part of an [`Overview`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransferOverview {
    pub steps: usize,
    pub max_points: usize,
    /// Shortest sweep after the NaN padding is stripped (`None` without steps).
    pub min_points: Option<usize>,
}

/// Transient part of an [`Overview`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransientOverview {
    pub steps: usize,
    pub total_points: usize,
    pub min_points: Option<usize>,
    pub max_points: Option<usize>,
    pub period_s: Option<f64>,
    pub sample_rate_hz: Option<f64>,
}

/// Refuses anything but a regular file (after following links) without opening it: opening
/// a FIFO blocks until a writer appears, and a device or socket is never an experiment.
pub fn check_regular(path: &Path) -> Result<(), SourceError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| SourceError::new(path, format!("cannot read file: {e}")))?;
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device file"
    } else {
        "not a regular file"
    };
    Err(SourceError::new(
        path,
        format!("{what}, not a regular file: refused without opening it"),
    ))
}

impl Experiment {
    /// Opens `path` and reads its metadata; fails on anything that would make step reads wrong.
    pub fn open(path: &Path) -> Result<Experiment, SourceError> {
        let fail = |message: String| SourceError::new(path, message);
        check_regular(path)?;
        let file = File::with_options()
            .with_fapl(|p| p.chunk_cache(CHUNK_CACHE_SLOTS, CHUNK_CACHE_BYTES, 1.0))
            .open(path)
            .map_err(|e| fail(format!("not a readable HDF5 file ({e})")))?;

        let version = file
            .attr("format_version")
            .map_err(|_| {
                fail("no root attribute format_version: not an oect-infra batch file".into())
            })
            .and_then(|a| read_text(&a).map_err(|e| fail(format!("format_version: {e}"))))?;
        if !(version.starts_with("2.0_") && version.contains("new_storage")) {
            return Err(fail(format!(
                "unsupported format_version {version:?} (expected \"2.0_…new_storage\")"
            )));
        }

        let attrs = read_root_attrs(&file);
        let text_attr = |key: &str| match attrs.get(key) {
            Some(AttrValue::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(AttrValue::Int(i)) => i.to_string(),
            _ => "NA".to_owned(),
        };
        let (chip_id, device_id) = (text_attr("chip_id"), text_attr("device_number"));
        let test_id = Some(text_attr("test_id")).filter(|t| t != "NA");
        let created_at = match attrs.get("created_at") {
            Some(AttrValue::String(s)) => steps::parse_time(s),
            _ => None,
        };

        let transfer_group = open_group(&file, "transfer").map_err(&fail)?;
        let transfer_data = transfer_group
            .as_ref()
            .map(|g| open_measurement(g, "transfer"))
            .transpose()
            .map_err(&fail)?
            .flatten();
        let transfer = transfer_data
            .as_ref()
            .map(transfer_layout)
            .transpose()
            .map_err(&fail)?;

        let transient_group = open_group(&file, "transient").map_err(&fail)?;
        let transient_data = transient_group
            .as_ref()
            .map(|g| open_measurement(g, "transient"))
            .transpose()
            .map_err(&fail)?
            .flatten();
        let table = match &transient_group {
            Some(g) if g.link_exists("step_info_table") => Some(
                g.dataset("step_info_table")
                    .map_err(|e| fail(format!("/transient/step_info_table: {e}")))?,
            ),
            _ => None,
        };
        let transient = transient_data
            .as_ref()
            .map(|ds| transient_layout(ds, table.as_ref()))
            .transpose()
            .map_err(&fail)?;

        let n_transfer = transfer.as_ref().map_or(0, |t| t.n_steps);
        let n_transient = transient.as_ref().map_or(0, |t| t.steps.len());
        let raw_json = scalar_text(&file, "json");
        let workflow = scalar_text(&file, "workflow");
        let transfer_table = match &transfer_group {
            Some(g) if g.link_exists("step_info_table") => g.dataset("step_info_table").ok(),
            _ => None,
        };
        let step_records = |table: Option<&Dataset>, kind: &str, count: usize| {
            steps::records(table, raw_json.as_deref(), workflow.as_deref(), kind, count)
        };
        let transfer_steps = step_records(transfer_table.as_ref(), "transfer", n_transfer);
        let transient_steps = step_records(table.as_ref(), "transient", n_transient);

        Ok(Experiment {
            path: path.to_path_buf(),
            chip_id,
            device_id,
            test_id,
            created_at,
            attrs,
            transfer,
            transient,
            transfer_steps,
            transient_steps,
            transfer_data: transfer_data.map(Measurement::new),
            transient_data: transient_data.map(Measurement::new),
        })
    }

    /// Transfer steps `range`: channels Vg and Id, NaN-padding stripped per step (keep samples
    /// where both are non-NaN, the predecessor reader's rule, which needs both channels
    /// whatever an extractor reads). Reads the whole range in ONE hyperslab call.
    pub fn read_transfer(&self, range: Range<usize>) -> Result<StepBlock, SourceError> {
        const CHANNELS: [Channel; 2] = [Channel::Vg, Channel::Id];
        let (Some(layout), Some(ds)) = (&self.transfer, &self.transfer_data) else {
            return Err(self.error("the file has no transfer data"));
        };
        self.check_range(&range, layout.n_steps, "transfer")?;
        let p = layout.max_points;
        if range.is_empty() || p == 0 {
            let mut block = StepBlock::empty(range.start, &CHANNELS);
            block.offsets.resize(range.len() + 1, 0);
            return Ok(block);
        }
        let slab = Slab {
            start: vec![range.start, 0, 0],
            count: vec![range.len(), 2, p],
        };
        let data = ds
            .read(&[slab])
            .map_err(|e| self.error(format!("reading transfer steps {range:?}: {e}")))?
            .remove(0);

        let mut offsets = Vec::with_capacity(range.len() + 1);
        let mut x = Vec::with_capacity(data.len() / 2);
        let mut y = Vec::with_capacity(data.len() / 2);
        offsets.push(0);
        for step in data.chunks_exact(2 * p) {
            let (vg, id) = step.split_at(p);
            for (&v, &i) in vg.iter().zip(id) {
                if !v.is_nan() && !i.is_nan() {
                    x.push(v);
                    y.push(i);
                }
            }
            offsets.push(x.len());
        }
        Ok(StepBlock {
            first_step: range.start,
            offsets,
            channels: vec![(Channel::Vg, x), (Channel::Id, y)],
        })
    }

    /// Transient steps `range`, with only `channels` read (`Time` is row 0,
    /// `continuous_time`; `Current` row 2, `drain_current`): an extractor of the current
    /// alone costs one row of chunks to decode, not two. One hyperslab per row for the
    /// whole range.
    pub fn read_transient(
        &self,
        range: Range<usize>,
        channels: &[Channel],
    ) -> Result<StepBlock, SourceError> {
        let (Some(layout), Some(ds)) = (&self.transient, &self.transient_data) else {
            return Err(self.error("the file has no transient data"));
        };
        self.check_range(&range, layout.steps.len(), "transient")?;
        let rows: Vec<usize> = channels
            .iter()
            .map(|c| match c {
                Channel::Time => Ok(0),
                Channel::Current => Ok(2),
                other => {
                    Err(self.error(format!("transient steps have no {} channel", other.field())))
                }
            })
            .collect::<Result<_, _>>()?;
        let steps = &layout.steps[range.clone()];
        // Steps are validated to be ordered and non-overlapping, so the range spans first..last.
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            return Ok(StepBlock::empty(range.start, channels));
        };
        let span = first.start..last.end;
        let data: Vec<Vec<f64>> = if span.is_empty() || rows.is_empty() {
            vec![Vec::new(); rows.len()]
        } else {
            let slabs: Vec<Slab> = rows
                .iter()
                .map(|&row| Slab {
                    start: vec![row, span.start],
                    count: vec![1, span.len()],
                })
                .collect();
            ds.read(&slabs)
                .map_err(|e| self.error(format!("reading transient steps {range:?}: {e}")))?
        };

        let contiguous = steps.windows(2).all(|w| w[0].end == w[1].start);
        if contiguous {
            let mut offsets: Vec<usize> = steps.iter().map(|s| s.start - span.start).collect();
            offsets.push(span.len());
            return Ok(StepBlock {
                first_step: range.start,
                offsets,
                channels: channels.iter().copied().zip(data).collect(),
            });
        }
        // Gaps between steps (not written by csv2hdf, but allowed): copy each step out.
        let mut block = StepBlock::empty(range.start, channels);
        for s in steps {
            let local = s.start - span.start..s.end - span.start;
            for ((_, out), row) in block.channels.iter_mut().zip(&data) {
                out.extend_from_slice(&row[local.clone()]);
            }
            block
                .offsets
                .push(block.offsets.last().copied().unwrap_or(0) + local.len());
        }
        Ok(block)
    }

    /// Step reads so far that the HDF5 library did itself instead of the parallel chunk
    /// reader (storage it does not decode, or a chunk it gave up on).
    pub fn read_fallbacks(&self) -> usize {
        [&self.transfer_data, &self.transient_data]
            .into_iter()
            .flatten()
            .map(Measurement::fallbacks)
            .sum()
    }

    /// The metadata the supervisor needs (see [`ExperimentInfo`]).
    pub fn info(&self) -> ExperimentInfo {
        ExperimentInfo {
            path: self.path.clone(),
            chip_id: self.chip_id.clone(),
            device_id: self.device_id.clone(),
            test_id: self.test_id.clone(),
            created_at: self.created_at,
            attrs: self.attrs.clone(),
            transfer: self.transfer.clone(),
            transient: self.transient.clone(),
            transfer_steps: keys(&self.transfer_steps),
            transient_steps: keys(&self.transient_steps),
        }
    }

    /// Reads what `oect inspect` shows; this reads every transfer step, to report the
    /// sweep lengths after the NaN padding.
    pub fn overview(&self) -> Result<Overview, SourceError> {
        let transfer = match &self.transfer {
            Some(t) => {
                let block = self.read_transfer(0..t.n_steps)?;
                let min = (0..block.n_steps()).map(|k| block.len(k)).min();
                Some(TransferOverview {
                    steps: t.n_steps,
                    max_points: t.max_points,
                    min_points: min,
                })
            }
            None => None,
        };
        let transient = self.transient.as_ref().map(|t| {
            let lens = t.steps.iter().map(|r| r.len());
            let sampling = (!t.steps.is_empty())
                .then(|| self.transient_sampling(0))
                .flatten();
            TransientOverview {
                steps: t.steps.len(),
                total_points: t.total_points,
                min_points: lens.clone().min(),
                max_points: lens.max(),
                period_s: sampling.map(|s| s.period),
                sample_rate_hz: sampling.map(|s| s.sample_rate),
            }
        });
        Ok(Overview {
            path: self.path.clone(),
            chip_id: self.chip_id.clone(),
            device_id: self.device_id.clone(),
            attributes: self.attrs.clone(),
            transfer,
            transient,
        })
    }

    /// Period and sample rate of transient step `step` from its recorded settings (see
    /// [`steps`](super::steps)), `None` when the file does not record them.
    pub fn transient_sampling(&self, step: usize) -> Option<Sampling> {
        self.transient_steps.get(step)?.params.sampling()
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::new(&self.path, message)
    }

    fn check_range(&self, range: &Range<usize>, n: usize, kind: &str) -> Result<(), SourceError> {
        if range.start > range.end || range.end > n {
            return Err(self.error(format!(
                "{kind} steps {range:?} requested, but the file has {n} {kind} steps"
            )));
        }
        Ok(())
    }
}

/// Opens `/name` if it exists; it must then be a group.
fn open_group(file: &File, name: &str) -> Result<Option<Group>, String> {
    if !file.link_exists(name) {
        return Ok(None);
    }
    file.group(name)
        .map(Some)
        .map_err(|e| format!("/{name} is not a group ({e})"))
}

/// Opens `/<kind>/measurement_data` if present and checks that it holds floats.
fn open_measurement(group: &Group, kind: &str) -> Result<Option<Dataset>, String> {
    if !group.link_exists("measurement_data") {
        return Ok(None);
    }
    let name = format!("/{kind}/measurement_data");
    let ds = group
        .dataset("measurement_data")
        .map_err(|e| format!("{name}: {e}"))?;
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Float(_)) => Ok(Some(ds)),
        Ok(other) => Err(format!("{name} has element type {other}, expected float64")),
        Err(e) => Err(format!("{name} has an unreadable element type ({e})")),
    }
}

fn transfer_layout(ds: &Dataset) -> Result<TransferLayout, String> {
    match ds.shape()[..] {
        [n_steps, 2, max_points] => Ok(TransferLayout {
            n_steps,
            max_points,
            steps_per_chunk: ds.chunk().map_or(1, |c| c[0].max(1)),
        }),
        ref shape => Err(format!(
            "/transfer/measurement_data has shape {shape:?}, expected (n_steps, 2, n_points)"
        )),
    }
}

fn transient_layout(ds: &Dataset, table: Option<&Dataset>) -> Result<TransientLayout, String> {
    let total_points = match ds.shape()[..] {
        [3, total] => total,
        ref shape => {
            return Err(format!(
                "/transient/measurement_data has shape {shape:?}, expected (3, n_points)"
            ))
        }
    };
    // Without a step table the predecessor reports zero transient steps.
    let steps = table.map_or(Ok(Vec::new()), |t| step_ranges(t, total_points))?;
    Ok(TransientLayout {
        steps,
        total_points,
    })
}

/// The two index columns, converted to f64 by HDF5 whatever their stored numeric type.
#[derive(H5Type, Clone, Copy)]
#[repr(C)]
struct IndexRow {
    start_data_index: f64,
    end_data_index: f64,
}

/// Step column ranges from the step table's `start/end_data_index`, or the predecessor's even
/// split (`total // n`, remainder to the last step) when the table lacks them.
fn step_ranges(table: &Dataset, total: usize) -> Result<Vec<Range<usize>>, String> {
    const NAME: &str = "/transient/step_info_table";
    let desc = table
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| format!("{NAME} has an unreadable type ({e})"))?;
    let TypeDescriptor::Compound(compound) = desc else {
        return Err(format!(
            "{NAME} is not a compound table (element type {desc})"
        ));
    };
    let &[n] = &table.shape()[..] else {
        return Err(format!(
            "{NAME} has shape {:?}, expected one dimension",
            table.shape()
        ));
    };
    let field = |name: &str| compound.fields.iter().find(|f| f.name == name);
    let (Some(start), Some(end)) = (field("start_data_index"), field("end_data_index")) else {
        let per = total.checked_div(n).unwrap_or(0);
        return Ok((0..n)
            .map(|j| j * per..if j + 1 == n { total } else { (j + 1) * per })
            .collect());
    };
    for f in [start, end] {
        if !matches!(
            f.ty,
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_)
        ) {
            return Err(format!(
                "{NAME} column {} has type {}, expected a number",
                f.name, f.ty
            ));
        }
    }
    let rows = table
        .read_raw::<IndexRow>()
        .map_err(|e| format!("reading {NAME}: {e}"))?;
    let rows: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.start_data_index, r.end_data_index))
        .collect();
    index_ranges(&rows, total).map_err(|e| format!("{NAME} {e}"))
}

/// Validates the step table's `(start, end)` index pairs against `total` data points:
/// whole, non-negative, within the data, increasing and non-overlapping (read_transient
/// relies on that). Kept free of HDF5 so that it can be fuzzed on arbitrary values.
pub(crate) fn index_ranges(rows: &[(f64, f64)], total: usize) -> Result<Vec<Range<usize>>, String> {
    let index = |v: f64, row: usize, name: &str| -> Result<usize, String> {
        if !(v >= 0.0 && v.fract() == 0.0) {
            Err(format!("row {row}: {name} = {v} is not a valid index"))
        } else if v > total as f64 {
            Err(format!(
                "row {row}: {name} = {v} runs past the data ({total} points)"
            ))
        } else {
            Ok(v as usize)
        }
    };
    let mut ranges = Vec::with_capacity(rows.len());
    let mut prev_end = 0;
    for (j, &(start, end)) in rows.iter().enumerate() {
        let s = index(start, j, "start_data_index")?;
        let e = index(end, j, "end_data_index")?;
        if s > e {
            return Err(format!("row {j}: decreasing index range {s}..{e}"));
        }
        if s < prev_end {
            return Err(format!(
                "row {j}: starts at {s}, before the previous step ends at {prev_end}"
            ));
        }
        prev_end = e;
        ranges.push(s..e);
    }
    Ok(ranges)
}

/// An HDF5 fixed-length, null-padded string of `N` bytes with the ASCII or UTF-8 flag.
///
/// hdf5's own `FixedAscii` promises ASCII content, but these files store UTF-8 bytes under the
/// ASCII flag (numpy `S` columns), so this type carries raw bytes and never claims they are text.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct FixedBytes<const N: usize, const UTF8: bool>(pub(crate) [u8; N]);

// SAFETY: `H5Type` requires the descriptor to describe the type's memory exactly, since HDF5
// writes values of that description into it. `repr(transparent)` over `[u8; N]` is N bytes
// at alignment 1, exactly an N-byte HDF5 fixed-length string, and every byte pattern is a
// valid `[u8; N]`, so whatever the file holds is a valid value (the type claims no UTF-8).
unsafe impl<const N: usize, const UTF8: bool> H5Type for FixedBytes<N, UTF8> {
    fn type_descriptor() -> TypeDescriptor {
        if UTF8 {
            TypeDescriptor::FixedUnicode(N)
        } else {
            TypeDescriptor::FixedAscii(N)
        }
    }
}

/// A string element read in its stored form.
pub(crate) trait TextCell: H5Type {
    fn bytes(&self) -> &[u8];
}

impl TextCell for VarLenAscii {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl TextCell for VarLenUnicode {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize, const UTF8: bool> TextCell for FixedBytes<N, UTF8> {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Lossy UTF-8 whatever the charset flag says (variant A stores UTF-8 under ASCII), trailing
/// NULs stripped.
pub(crate) fn decode_text(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn first_text<T: TextCell>(c: &Container) -> Result<String, String> {
    // read_raw keeps even a huge fixed-size element on the heap
    let cells = c.read_raw::<T>().map_err(|e| e.to_string())?;
    cells
        .first()
        .map(|s| decode_text(s.bytes()))
        .ok_or_else(|| "empty string array".to_owned())
}

fn fixed_text<const UTF8: bool>(c: &Container, size: usize) -> Result<String, String> {
    match size {
        0..=256 => first_text::<FixedBytes<256, UTF8>>(c),
        257..=65_536 => first_text::<FixedBytes<65_536, UTF8>>(c),
        65_537..=MAX_FIXED_TEXT => first_text::<FixedBytes<MAX_FIXED_TEXT, UTF8>>(c),
        _ => Err(format!("fixed-length string of {size} bytes is too long")),
    }
}

/// Reads a scalar string attribute or dataset: variable or fixed length, either charset.
fn read_text(c: &Container) -> Result<String, String> {
    let desc = c
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| e.to_string())?;
    match desc {
        TypeDescriptor::VarLenAscii => first_text::<VarLenAscii>(c),
        TypeDescriptor::VarLenUnicode => first_text::<VarLenUnicode>(c),
        TypeDescriptor::FixedAscii(n) => fixed_text::<false>(c, n),
        TypeDescriptor::FixedUnicode(n) => fixed_text::<true>(c, n),
        other => Err(format!("expected a string, found {other}")),
    }
}

/// All scalar root attributes of a supported type; others (arrays, compounds, …) are skipped,
/// since the attribute set is open-ended.
fn read_root_attrs(file: &File) -> BTreeMap<String, AttrValue> {
    let names = file.attr_names().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| {
            let value = file.attr(&name).ok().and_then(|a| attr_value(&a))?;
            Some((name, value))
        })
        .collect()
}

fn attr_value(attr: &Attribute) -> Option<AttrValue> {
    if !attr.is_scalar() {
        return None;
    }
    match attr.dtype().and_then(|t| t.to_descriptor()).ok()? {
        TypeDescriptor::Integer(_) => attr.read_scalar::<i64>().ok().map(AttrValue::Int),
        TypeDescriptor::Unsigned(_) => attr
            .read_scalar::<u64>()
            .ok()
            .and_then(|v| i64::try_from(v).ok())
            .map(AttrValue::Int),
        TypeDescriptor::Float(_) => attr.read_scalar::<f64>().ok().map(AttrValue::Float),
        TypeDescriptor::Boolean => attr.read_scalar::<bool>().ok().map(AttrValue::Bool),
        TypeDescriptor::VarLenAscii
        | TypeDescriptor::VarLenUnicode
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => read_text(attr).ok().map(AttrValue::String),
        _ => None,
    }
}

/// Text of the scalar dataset `/raw/<name>`, if present and readable.
fn scalar_text(file: &File, name: &str) -> Option<String> {
    let raw = open_group(file, "raw").ok()??;
    if !raw.link_exists(name) {
        return None;
    }
    let ds = raw.dataset(name).ok()?;
    read_text(&ds).ok()
}
