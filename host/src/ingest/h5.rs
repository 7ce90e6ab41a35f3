//! The HDF5 writer for layout variant A (`specs/hdf5_format.md` §1–4), shared by `oect convert`
//! and `oect generate`, so that both write the same file for the same export.
//!
//! Everything h5py decides is reproduced: attribute types (Python `bytes` → variable-length
//! string with the ASCII flag, `str` → UTF-8, bool → int8 enum), chunk shapes (h5py's
//! `guess_chunk`) and the filter pipeline shuffle → deflate(4) → fletcher32. The measurement
//! and table chunks are encoded here, many at once on the rayon pool (shuffle, libdeflate,
//! checksum), and handed to HDF5 already filtered (`H5Dwrite_chunk`): HDF5 would deflate them
//! one by one under its global lock, which is what made the predecessor's converter slow. The
//! transient data is streamed in slabs of whole chunks, so memory stays bounded whatever the
//! test's length.

use std::ffi::{c_char, CString};
use std::path::Path;

use hdf5::dataset::FillTime;
use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group, H5Type, Location};
use rayon::prelude::*;

use super::csv::StepData;
use super::table::StepTable;

/// `format_version` of variant A.
pub const FORMAT_VERSION: &str = "2.0_direct_new_storage";
/// Chunks encoded per parallel batch (bounds the encoded bytes held at once).
const CHUNKS_PER_BATCH: usize = 64;
/// Transient points buffered per slab before its chunks are encoded (rounded to whole chunks).
const SLAB_POINTS: usize = 1 << 20;

/// A root attribute value, typed as h5py stores the Python value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// Python `bytes`: variable-length, ASCII flag, UTF-8 payload.
    Ascii(String),
    /// Python `str`: variable-length UTF-8.
    Utf8(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

/// Everything of a file except the transient samples, which are streamed.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Root attributes in the order the predecessor sets them; a later one of the same name
    /// replaces an earlier one (the provenance attributes replace the JSON's).
    pub attrs: Vec<(String, Attr)>,
    /// `raw/json`: pure ASCII (`json.dumps` escapes the rest).
    pub raw_json: String,
    /// `raw/workflow`.
    pub workflow: Option<String>,
    pub transfer: Option<TransferGroup>,
    pub transient: Option<TransientGroup>,
}

/// `/transfer`: every sweep, `(Vg, Id)`.
#[derive(Debug, Clone)]
pub struct TransferGroup {
    pub steps: Vec<StepData>,
    pub table: StepTable,
}

/// `/transient`: the sizes of its steps; the samples come from a [`TransientSource`].
#[derive(Debug, Clone)]
pub struct TransientGroup {
    pub lengths: Vec<usize>,
    /// Spacing of `continuous_time` per step, ms (the predecessor's rule: 1 ms unless the step
    /// has `parameters.timeStep`).
    pub time_steps_ms: Vec<f64>,
    pub table: StepTable,
}

/// The transient steps `(original_time, drain_current)`, in order, a batch at a time.
pub trait TransientSource {
    /// The next steps; `None` after the last. A step whose length differs from the one
    /// announced in [`TransientGroup::lengths`] fails the write.
    fn next_batch(&mut self) -> Option<Result<Vec<StepData>, String>>;
}

/// A write failure.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// A transient step has another length than announced.
    Miscount(String),
    /// The [`TransientSource`] could not produce a step.
    Source(String),
    Other(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            WriteError::Miscount(m) | WriteError::Source(m) | WriteError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<hdf5::Error> for WriteError {
    fn from(e: hdf5::Error) -> Self {
        WriteError::Other(e.to_string())
    }
}

impl From<String> for WriteError {
    fn from(e: String) -> Self {
        WriteError::Other(e)
    }
}

/// Writes `spec` (and the transient samples from `source`) to a new file at `path`.
pub fn write(
    path: &Path,
    spec: &FileSpec,
    source: &mut dyn TransientSource,
) -> Result<(), WriteError> {
    let file = File::create(path)?;
    write_attrs(&file, &spec.attrs)?;
    let raw = file.create_group("raw")?;
    let json = VarLenAscii::from_ascii(&spec.raw_json)
        .map_err(|e| WriteError::Other(format!("raw/json: {e}")))?;
    raw.new_dataset::<VarLenAscii>()
        .fill_time(FillTime::Alloc)
        .create("json")?
        .write_scalar(&json)?;
    if let Some(transfer) = &spec.transfer {
        write_transfer(&file.create_group("transfer")?, transfer)?;
    }
    if let Some(transient) = &spec.transient {
        write_transient(&file.create_group("transient")?, transient, source)?;
    }
    if let Some(workflow) = &spec.workflow {
        let text: VarLenUnicode = workflow
            .parse()
            .map_err(|e| WriteError::Other(format!("raw/workflow: {e}")))?;
        raw.new_dataset::<VarLenUnicode>()
            .fill_time(FillTime::Alloc)
            .create("workflow")?
            .write_scalar(&text)?;
    }
    file.close()?;
    Ok(())
}

/// A source for files without transient data.
pub struct NoTransient;

impl TransientSource for NoTransient {
    fn next_batch(&mut self) -> Option<Result<Vec<StepData>, String>> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// attributes

/// A variable-length string with the ASCII flag whose bytes may be any UTF-8 (numpy stores
/// Python `bytes` that way). hdf5's `VarLenAscii` insists on ASCII content, so this type only
/// points at a C string owned by the caller.
#[repr(transparent)]
struct AsciiFlagged(*const c_char);

// SAFETY: `repr(transparent)` over one pointer is the memory layout of an HDF5 variable-length
// C string, which is all the descriptor claims; writers keep the pointee alive during the call.
unsafe impl H5Type for AsciiFlagged {
    fn type_descriptor() -> TypeDescriptor {
        TypeDescriptor::VarLenAscii
    }
}

fn c_text(name: &str, value: &str) -> Result<CString, WriteError> {
    CString::new(value)
        .map_err(|_| WriteError::Other(format!("attribute {name}: text contains a NUL byte")))
}

fn write_attrs(loc: &Location, attrs: &[(String, Attr)]) -> Result<(), WriteError> {
    // the last value of each name wins, as repeated `attrs[k] = v` in h5py
    let mut last: Vec<(&str, &Attr)> = Vec::new();
    for (name, value) in attrs {
        match last.iter_mut().find(|(n, _)| *n == name.as_str()) {
            Some(slot) => slot.1 = value,
            None => last.push((name, value)),
        }
    }
    for (name, value) in last {
        match value {
            Attr::Ascii(text) => {
                let c = c_text(name, text)?;
                loc.new_attr::<AsciiFlagged>()
                    .create(name)?
                    .write_scalar(&AsciiFlagged(c.as_ptr()))?;
            }
            Attr::Utf8(text) => put_utf8(loc, name, text)?,
            Attr::Int(v) => loc.new_attr::<i64>().create(name)?.write_scalar(v)?,
            Attr::UInt(v) => loc.new_attr::<u64>().create(name)?.write_scalar(v)?,
            Attr::Float(v) => loc.new_attr::<f64>().create(name)?.write_scalar(v)?,
            Attr::Bool(v) => loc.new_attr::<bool>().create(name)?.write_scalar(v)?,
        }
    }
    Ok(())
}

fn put_utf8(loc: &Location, name: &str, value: &str) -> Result<(), WriteError> {
    let v: VarLenUnicode = value
        .parse()
        .map_err(|e| WriteError::Other(format!("attribute {name}: {e}")))?;
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&v)?;
    Ok(())
}

fn put_utf8_list(loc: &Location, name: &str, values: &[&str]) -> Result<(), WriteError> {
    let values = values
        .iter()
        .map(|v| {
            v.parse::<VarLenUnicode>()
                .map_err(|e| WriteError::Other(format!("attribute {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    loc.new_attr::<VarLenUnicode>()
        .shape(values.len())
        .create(name)?
        .write_raw(&values)?;
    Ok(())
}

fn labels(
    ds: &Dataset,
    dims: &[&str],
    types: &[&str],
    description: &str,
) -> Result<(), WriteError> {
    put_utf8_list(ds, "dimension_labels", dims)?;
    put_utf8_list(ds, "data_type_labels", types)?;
    put_utf8(ds, "description", description)
}

// ---------------------------------------------------------------------------------------------
// groups

fn write_transfer(group: &Group, transfer: &TransferGroup) -> Result<(), WriteError> {
    let n = transfer.steps.len();
    let p = transfer.steps.iter().map(StepData::len).max().unwrap_or(0);
    let mut data = vec![f64::NAN; n * 2 * p];
    for (step, out) in transfer
        .steps
        .iter()
        .zip(data.chunks_exact_mut(2 * p.max(1)))
    {
        out[..step.len()].copy_from_slice(&step.x);
        out[p..p + step.len()].copy_from_slice(&step.y);
    }
    let shape = [n, 2, p];
    let ds = filtered_dataset(group, "measurement_data", &f64::type_descriptor(), &shape)?;
    let chunk = guess_chunk(&shape, 8);
    let region = Region {
        data: &data,
        shape: &shape,
        origin: &[0, 0, 0],
    };
    let origins = chunk_origins(&shape, &chunk, &[0, 0, 0], &shape);
    write_f64_chunks(&ds, &region, &shape, &chunk, &origins)?;
    labels(
        &ds,
        &["step_index", "data_type", "data_point"],
        &["Vg", "Id"],
        "3D transfer measurement data: [step_index, data_type, data_point]",
    )?;
    write_table(group, &transfer.table)
}

fn write_transient(
    group: &Group,
    transient: &TransientGroup,
    source: &mut dyn TransientSource,
) -> Result<(), WriteError> {
    let total: usize = transient.lengths.iter().sum();
    let shape = [3, total];
    let chunk = guess_chunk(&shape, 8);
    let ds = filtered_dataset(group, "measurement_data", &f64::type_descriptor(), &shape)?;
    let slab_len = (SLAB_POINTS / chunk[1]).max(1) * chunk[1];
    // rows of the slab being filled, columns `written..written + rows[0].len()`
    let mut rows: [Vec<f64>; 3] = std::array::from_fn(|_| Vec::with_capacity(slab_len));
    let mut written = 0;
    let mut step = 0;
    let mut offset = 0.0_f64;
    let flush =
        |rows: &mut [Vec<f64>; 3], written: &mut usize, all: bool| -> Result<(), WriteError> {
            let len = rows[0].len();
            let n = if all { len } else { len - len % chunk[1] };
            if n == 0 {
                return Ok(());
            }
            let mut data = Vec::with_capacity(3 * n);
            for row in rows.iter_mut() {
                data.extend(row.drain(..n));
            }
            let origin = [0, *written];
            let region = Region {
                data: &data,
                shape: &[3, n],
                origin: &origin,
            };
            let origins = chunk_origins(&shape, &chunk, &origin, &[3, n]);
            write_f64_chunks(&ds, &region, &shape, &chunk, &origins)?;
            *written += n;
            Ok(())
        };
    while let Some(batch) = source.next_batch() {
        for data in batch.map_err(WriteError::Source)? {
            let Some(&expected) = transient.lengths.get(step) else {
                return Err(WriteError::Miscount(format!(
                    "more transient steps than the {} announced",
                    transient.lengths.len()
                )));
            };
            if data.len() != expected {
                return Err(WriteError::Miscount(format!(
                    "transient step {step} has {} points, {expected} were counted",
                    data.len()
                )));
            }
            // np.arange(n) * (dt_ms / 1000.0) + offset, then offset = last + dt
            let dt = transient.time_steps_ms[step] / 1000.0;
            rows[0].extend((0..data.len()).map(|k| k as f64 * dt + offset));
            if let Some(&last) = rows[0].last().filter(|_| !data.is_empty()) {
                offset = last + dt;
            }
            rows[1].extend_from_slice(&data.x);
            rows[2].extend_from_slice(&data.y);
            step += 1;
            if rows[0].len() >= slab_len {
                flush(&mut rows, &mut written, false)?;
            }
        }
    }
    flush(&mut rows, &mut written, true)?;
    if step != transient.lengths.len() || written != total {
        return Err(WriteError::Other(format!(
            "{step} transient steps ({written} points) written, {} ({total} points) announced",
            transient.lengths.len()
        )));
    }
    labels(
        &ds,
        &["data_type", "data_point"],
        &["continuous_time", "original_time", "drain_current"],
        "2D transient measurement data: [data_type, data_point]",
    )?;
    write_table(group, &transient.table)
}

fn write_table(group: &Group, table: &StepTable) -> Result<(), WriteError> {
    let dtype = table.type_descriptor();
    let rows = table.rows();
    let ds = filtered_dataset(group, "step_info_table", &dtype, &[rows])?;
    let size = dtype.size();
    let bytes = table.to_bytes();
    let chunk_rows = guess_chunk(&[rows], size)[0];
    let origins: Vec<usize> = (0..rows).step_by(chunk_rows.max(1)).collect();
    for batch in origins.chunks(CHUNKS_PER_BATCH) {
        let encoded: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|&first| {
                let mut raw = vec![0u8; chunk_rows * size];
                let end = (first + chunk_rows).min(rows);
                raw[..(end - first) * size].copy_from_slice(&bytes[first * size..end * size]);
                encode_chunk(&raw, size)
            })
            .collect();
        for (&first, chunk) in batch.iter().zip(&encoded) {
            write_chunk(&ds, &[first], chunk)?;
        }
    }
    put_utf8(
        &ds,
        "description",
        "Step information table stored as structured array",
    )?;
    let names = table.column_names();
    put_utf8_list(
        &ds,
        "columns",
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// chunks

/// Chunk shape as h5py guesses it (so files match the predecessor's): halve the axes in turn
/// until the chunk is near a target that grows with the dataset size (8 KiB … 1 MiB).
pub fn guess_chunk(shape: &[usize], type_size: usize) -> Vec<usize> {
    const BASE: f64 = 16.0 * 1024.0;
    const MIN: f64 = 8.0 * 1024.0;
    const MAX: f64 = 1024.0 * 1024.0;
    let mut chunk: Vec<f64> = shape.iter().map(|&d| d.max(1) as f64).collect();
    let bytes = |c: &[f64]| c.iter().product::<f64>() * type_size as f64;
    let target = (BASE * 2f64.powf((bytes(&chunk) / (1024.0 * 1024.0)).log10())).clamp(MIN, MAX);
    let mut axis = 0;
    loop {
        let b = bytes(&chunk);
        let near = b < target || (b - target).abs() / target < 0.5;
        if (near && b < MAX) || chunk.iter().product::<f64>() <= 1.0 {
            break;
        }
        let i = axis % chunk.len();
        chunk[i] = (chunk[i] / 2.0).ceil();
        axis += 1;
    }
    chunk.into_iter().map(|c| c as usize).collect()
}

/// A chunked dataset with the predecessor's filters: shuffle → deflate(4) → fletcher32.
fn filtered_dataset(
    group: &Group,
    name: &str,
    dtype: &TypeDescriptor,
    shape: &[usize],
) -> hdf5::Result<Dataset> {
    let chunk = guess_chunk(shape, dtype.size());
    group
        .new_dataset_builder()
        .empty_as(dtype)
        .packed(true)
        .shape(shape.to_vec())
        .chunk(chunk)
        .shuffle()
        .deflate(4)
        .fletcher32()
        .fill_time(FillTime::IfSet)
        .create(name)
}

/// Values of a box of a dataset held in memory: C order over `shape`, element 0 at `origin`.
struct Region<'a> {
    data: &'a [f64],
    shape: &'a [usize],
    origin: &'a [usize],
}

/// Origins of the chunks of a dataset of `full` shape that hold a part of the box
/// `origin..origin+count` (whole chunks: the box is chunk-aligned except at the dataset's end).
fn chunk_origins(
    full: &[usize],
    chunk: &[usize],
    origin: &[usize],
    count: &[usize],
) -> Vec<Vec<usize>> {
    let rank = full.len();
    if count.contains(&0) {
        return Vec::new();
    }
    let first: Vec<usize> = (0..rank).map(|d| origin[d] / chunk[d]).collect();
    let last: Vec<usize> = (0..rank)
        .map(|d| (origin[d] + count[d] - 1) / chunk[d])
        .collect();
    let mut out = Vec::new();
    let mut at = first.clone();
    'outer: loop {
        out.push(at.iter().zip(chunk).map(|(a, c)| a * c).collect());
        for d in (0..rank).rev() {
            if at[d] < last[d] {
                at[d] += 1;
                continue 'outer;
            }
            at[d] = first[d];
        }
        return out;
    }
}

/// The chunk at `chunk_origin` as little-endian bytes, from `region` (which must hold all of
/// the chunk that lies inside the dataset); elements outside the dataset are zero.
fn gather(region: &Region, full: &[usize], chunk: &[usize], chunk_origin: &[usize]) -> Vec<u8> {
    let rank = full.len();
    let n: usize = chunk.iter().product();
    let mut out = vec![0u8; n * 8];
    // extent of the chunk inside the dataset
    let inside: Vec<usize> = (0..rank)
        .map(|d| chunk[d].min(full[d] - chunk_origin[d]))
        .collect();
    if inside.contains(&0) {
        return out;
    }
    let run = inside[rank - 1];
    let mut idx = vec![0usize; rank]; // position inside the chunk, last axis fixed at 0
    loop {
        let mut src = 0;
        let mut dst = 0;
        for d in 0..rank {
            let global = chunk_origin[d] + idx[d];
            src = src * region.shape[d] + (global - region.origin[d]);
            dst = dst * chunk[d] + idx[d];
        }
        for (o, v) in out[dst * 8..(dst + run) * 8]
            .chunks_exact_mut(8)
            .zip(&region.data[src..src + run])
        {
            o.copy_from_slice(&v.to_le_bytes());
        }
        // next run: advance the outer axes
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < inside[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn write_f64_chunks(
    ds: &Dataset,
    region: &Region,
    full: &[usize],
    chunk: &[usize],
    origins: &[Vec<usize>],
) -> Result<(), WriteError> {
    for batch in origins.chunks(CHUNKS_PER_BATCH) {
        let encoded: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|o| encode_chunk(&gather(region, full, chunk, o), 8))
            .collect();
        for (o, bytes) in batch.iter().zip(&encoded) {
            write_chunk(ds, o, bytes)?;
        }
    }
    Ok(())
}

/// The predecessor's pipeline on one chunk: shuffle (by `elem` bytes), zlib deflate level 4,
/// then the fletcher32 checksum appended little-endian, as HDF5's filters do.
fn encode_chunk(raw: &[u8], elem: usize) -> Vec<u8> {
    thread_local! {
        static DEFLATE: std::cell::RefCell<libdeflater::Compressor> = std::cell::RefCell::new(
            libdeflater::Compressor::new(libdeflater::CompressionLvl::new(4).expect("level 4")));
    }
    let shuffled = shuffle(raw, elem);
    DEFLATE.with(|c| {
        let mut c = c.borrow_mut();
        let mut out = vec![0u8; c.zlib_compress_bound(shuffled.len()) + 4];
        let n = c
            .zlib_compress(&shuffled, &mut out)
            .expect("the buffer holds the compress bound");
        let sum = fletcher32(&out[..n]);
        out[n..n + 4].copy_from_slice(&sum.to_le_bytes());
        out.truncate(n + 4);
        out
    })
}

/// HDF5's shuffle: byte `b` of element `i` goes to `b * n + i`; trailing bytes stay as they are.
fn shuffle(raw: &[u8], elem: usize) -> Vec<u8> {
    if elem <= 1 {
        return raw.to_vec();
    }
    let n = raw.len() / elem;
    let mut out = vec![0u8; raw.len()];
    let mut done = 0;
    if elem == 8 {
        // eight elements at a time, transposed in registers (the measurement data's case)
        let blocks = n / 8;
        for k in 0..blocks {
            let e: [u64; 8] = std::array::from_fn(|j| {
                u64::from_le_bytes(raw[(8 * k + j) * 8..][..8].try_into().expect("8 bytes"))
            });
            for b in 0..8 {
                let mut v = 0u64;
                for (j, x) in e.iter().enumerate() {
                    v |= ((x >> (8 * b)) & 0xff) << (8 * j);
                }
                out[b * n + 8 * k..][..8].copy_from_slice(&v.to_le_bytes());
            }
        }
        done = 8 * blocks;
    }
    for i in done..n {
        for b in 0..elem {
            out[b * n + i] = raw[i * elem + b];
        }
    }
    out[n * elem..].copy_from_slice(&raw[n * elem..]);
    out
}

/// HDF5's fletcher32 over 16-bit big-endian words (an odd last byte is the high half).
fn fletcher32(data: &[u8]) -> u32 {
    let fold = |s: u32| (s & 0xffff) + (s >> 16);
    let (mut sum1, mut sum2) = (0u32, 0u32);
    // at most 360 words between reductions, so that the sums cannot overflow
    for block in data[..data.len() & !1].chunks(720) {
        for w in block.chunks_exact(2) {
            sum1 += u32::from(u16::from_be_bytes([w[0], w[1]]));
            sum2 += sum1;
        }
        (sum1, sum2) = (fold(sum1), fold(sum2));
    }
    if data.len() % 2 == 1 {
        sum1 += u32::from(data[data.len() - 1]) << 8;
        sum2 += sum1;
        (sum1, sum2) = (fold(sum1), fold(sum2));
    }
    (fold(sum2) << 16) | fold(sum1)
}

/// Stores one already-filtered chunk.
fn write_chunk(ds: &Dataset, origin: &[usize], bytes: &[u8]) -> Result<(), WriteError> {
    let offset: Vec<hdf5_sys::h5::hsize_t> = origin.iter().map(|&o| o as _).collect();
    let id = ds.id();
    // SAFETY: `id` is a live chunked dataset of rank `offset.len()`, `offset` is a chunk origin
    // inside it, and `bytes` is one chunk after every filter of its pipeline (mask 0), alive for
    // the call. HDF5's global lock is held, as for every call into the library.
    let status = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5d::H5Dwrite_chunk(
            id,
            hdf5_sys::h5p::H5P_DEFAULT,
            0,
            offset.as_ptr(),
            bytes.len(),
            bytes.as_ptr().cast(),
        )
    });
    if status < 0 {
        return Err(WriteError::Other(format!(
            "{}: cannot write the chunk at {origin:?}",
            ds.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_shapes_are_h5pys() {
        assert_eq!(guess_chunk(&[5001, 2, 182], 8), [313, 1, 12]);
        assert_eq!(guess_chunk(&[3, 125_000_000], 8), [1, 30518]);
        assert_eq!(guess_chunk(&[3, 25_000], 8), [1, 1563]);
        assert_eq!(guess_chunk(&[3, 2, 182], 8), [3, 2, 182]);
    }

    #[test]
    fn shuffle_and_checksum() {
        let raw: Vec<u8> = (0..20).collect();
        let s = shuffle(&raw, 8);
        assert_eq!(&s[..4], &[0, 8, 1, 9]);
        assert_eq!(&s[16..], &[16, 17, 18, 19]);
        // the 8-element blocks agree with the plain loop
        let raw: Vec<u8> = (0..8 * 21).map(|i| (i * 7 % 251) as u8).collect();
        let plain: Vec<u8> = (0..8)
            .flat_map(|b| (0..21).map(move |i| (b, i)))
            .map(|(b, i)| raw[i * 8 + b])
            .collect();
        assert_eq!(shuffle(&raw, 8), plain);
        // big-endian words: 0x0102, then the odd byte 0x03 as 0x0300
        assert_eq!(fletcher32(&[1, 2]), (258 << 16) | 258);
        assert_eq!(
            fletcher32(&[1, 2, 3]),
            ((258 + 258 + 0x300) << 16) | (258 + 0x300)
        );
    }

    #[test]
    fn chunk_origins_cover_a_box() {
        let o = chunk_origins(&[3, 10], &[1, 4], &[0, 4], &[3, 6]);
        assert_eq!(
            o,
            vec![
                vec![0, 4],
                vec![0, 8],
                vec![1, 4],
                vec![1, 8],
                vec![2, 4],
                vec![2, 8]
            ]
        );
    }
}
