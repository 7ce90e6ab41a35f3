//! Direct chunk reads for the measurement datasets.
//!
//! The HDF5 library inflates chunks one at a time under its global lock, so reading made up most
//! of every run. On this path HDF5 only hands over each chunk's stored bytes (`H5Dread_chunk`,
//! a B-tree lookup and a copy, under the lock). A pool of read threads then decodes them, many
//! chunks at once and outside the lock: the fletcher32 check, inflate (libdeflate) and unshuffle.
//!
//! Only the pipeline the converter writes is decoded here: little-endian float64 with any of
//! shuffle, deflate and fletcher32. [`Measurement`] reads other datasets and unallocated chunks
//! through HDF5 as before, and so any read that fails on this path: a damaged file still gets
//! HDF5's own error message.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use hdf5::datatype::ByteOrder;
use hdf5::filters::Filter;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Hyperslab, Selection, SliceOrIndex};

/// A box of the dataset: `start[d]..start[d] + count[d]` along every dimension `d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slab {
    pub start: Vec<usize>,
    pub count: Vec<usize>,
}

/// One filter of the pipeline, in the order HDF5 applied it when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Shuffle,
    Deflate,
    Fletcher32,
}

/// A measurement dataset as the reader sees it: read by the direct path where its storage
/// allows, else by HDF5.
#[derive(Debug)]
pub(crate) struct Measurement {
    dataset: Dataset,
    direct: Option<ChunkedF64>,
}

impl Measurement {
    pub fn new(dataset: Dataset) -> Measurement {
        let direct = ChunkedF64::new(&dataset);
        Measurement { dataset, direct }
    }

    /// Reads every (non-empty) slab, each into C order.
    pub fn read(&self, slabs: &[Slab]) -> hdf5::Result<Vec<Vec<f64>>> {
        if let Some(values) = self.direct.as_ref().and_then(|d| d.read(slabs).ok()) {
            return Ok(values);
        }
        slabs
            .iter()
            .map(|slab| {
                let ranges: Vec<SliceOrIndex> = slab
                    .start
                    .iter()
                    .zip(&slab.count)
                    .map(|(&s, &n)| (s..s + n).into())
                    .collect();
                let selection = Selection::from(Hyperslab::from(ranges));
                let values = self
                    .dataset
                    .read_slice::<f64, _, ndarray::IxDyn>(selection)?;
                Ok(values.into_raw_vec_and_offset().0)
            })
            .collect()
    }
}

/// A float64 dataset whose chunks this module decodes itself.
#[derive(Debug)]
pub(crate) struct ChunkedF64 {
    dataset: Dataset,
    shape: Vec<usize>,
    chunk: Vec<usize>,
    pipeline: Vec<Stage>,
}

// Not declared by hdf5-sys; in the C library since 1.10.2.
extern "C" {
    fn H5Dget_chunk_storage_size(
        dset_id: hdf5_sys::h5i::hid_t,
        offset: *const hdf5_sys::h5::hsize_t,
        chunk_bytes: *mut hdf5_sys::h5::hsize_t,
    ) -> hdf5_sys::h5::herr_t;
}

/// Per-thread buffers, reused from chunk to chunk.
struct Scratch {
    inflater: libdeflater::Decompressor,
    a: Vec<u8>,
    b: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        inflater: libdeflater::Decompressor::new(),
        a: Vec::new(),
        b: Vec::new(),
    });
}

/// Threads that decode chunks. Separate from the extraction workers (`-j`) so that reading
/// keeps every core busy even when one worker computes; sized by the CPUs this process may
/// use (which respects Slurm's CPU binding).
fn read_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("oect-read-{i}"))
            .build()
            .expect("read thread pool")
    })
}

impl ChunkedF64 {
    /// `None` when the dataset is not one this module decodes; HDF5 then reads it.
    pub fn new(dataset: &Dataset) -> Option<ChunkedF64> {
        if cfg!(target_endian = "big") {
            return None; // decoded bytes are copied as they are: little-endian only
        }
        let dtype = dataset.dtype().ok()?;
        let float64 = matches!(dtype.to_descriptor().ok()?, TypeDescriptor::Float(_))
            && dtype.size() == 8
            && dtype.byte_order() == ByteOrder::LittleEndian;
        if !float64 {
            return None;
        }
        let chunk = dataset.chunk()?;
        let shape = dataset.shape();
        if chunk.len() != shape.len() || chunk.contains(&0) {
            return None;
        }
        let mut pipeline = Vec::new();
        for filter in dataset.filters() {
            let stage = match filter {
                Filter::Shuffle => Stage::Shuffle,
                Filter::Deflate(_) => Stage::Deflate,
                Filter::Fletcher32 => Stage::Fletcher32,
                _ => return None,
            };
            if pipeline.contains(&stage) {
                return None;
            }
            pipeline.push(stage);
        }
        Some(ChunkedF64 {
            dataset: dataset.clone(),
            shape,
            chunk,
            pipeline,
        })
    }

    /// Reads every slab, each into C order; `Err` if this path cannot (then read with HDF5).
    ///
    /// This thread takes the stored chunks from HDF5 one after the other while the read
    /// threads decode the ones already taken.
    pub fn read(&self, slabs: &[Slab]) -> Result<Vec<Vec<f64>>, String> {
        if rayon::current_thread_index().is_some() {
            // A worker of another pool (experiment mode) would run its own pool's tasks while
            // it waits for the read threads, starting further experiments from inside this
            // read. A plain thread waits without taking other work.
            return std::thread::scope(|s| {
                s.spawn(|| self.read_on_this_thread(slabs))
                    .join()
                    .unwrap_or_else(|_| Err("the read thread panicked".into()))
            });
        }
        self.read_on_this_thread(slabs)
    }

    fn read_on_this_thread(&self, slabs: &[Slab]) -> Result<Vec<Vec<f64>>, String> {
        for slab in slabs {
            let fits = slab.start.len() == self.shape.len()
                && slab.count.len() == self.shape.len()
                && (0..self.shape.len()).all(|d| slab.start[d] + slab.count[d] <= self.shape[d]);
            if !fits {
                return Err(format!(
                    "slab {slab:?} is outside the dataset {:?}",
                    self.shape
                ));
            }
        }
        let lens: Vec<usize> = slabs.iter().map(|s| s.count.iter().product()).collect();
        // Not zeroed: every element is written by exactly one chunk, checked by `written`
        // before the lengths are set.
        let mut outputs: Vec<Vec<f64>> = lens.iter().map(|&n| Vec::with_capacity(n)).collect();
        let targets: Vec<Target> = outputs
            .iter_mut()
            .zip(&lens)
            .map(|(o, &n)| Target(o.as_mut_ptr(), n))
            .collect();
        let written = AtomicUsize::new(0);
        let failure: Mutex<Option<String>> = Mutex::new(None);
        let chunk_bytes = self.chunk.iter().product::<usize>() * 8;
        read_pool().in_place_scope(|scope| {
            for (slab, target) in slabs.iter().zip(&targets) {
                for origin in chunk_origins(&self.chunk, slab) {
                    if failure.lock().expect("failure slot").is_some() {
                        return;
                    }
                    let (stored, mask) = match hdf5::sync::sync(|| self.stored_chunk(&origin)) {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            failure.lock().expect("failure slot").get_or_insert(e);
                            return;
                        }
                    };
                    let (written, failure) = (&written, &failure);
                    scope.spawn(move |_| {
                        SCRATCH.with_borrow_mut(|scratch| {
                            match decode(&self.pipeline, &stored, mask, chunk_bytes, scratch) {
                                // SAFETY: distinct chunks hold disjoint parts of a slab, so no
                                // other job writes these elements, and `target` outlives the
                                // scope.
                                Ok(bytes) => {
                                    let n = unsafe {
                                        copy_piece(bytes, &self.chunk, &origin, slab, *target)
                                    };
                                    written.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    failure.lock().expect("failure slot").get_or_insert(e);
                                }
                            }
                        });
                    });
                }
            }
        });
        if let Some(e) = failure.into_inner().expect("failure slot") {
            return Err(e);
        }
        if written.into_inner() != lens.iter().sum::<usize>() {
            return Err("the chunks do not cover the selection".into());
        }
        for (output, n) in outputs.iter_mut().zip(lens) {
            // SAFETY: all `n` elements were written (counted above); f64 has no invalid values.
            unsafe { output.set_len(n) };
        }
        Ok(outputs)
    }

    /// The stored bytes and filter mask of the chunk starting at `origin`; the caller holds the
    /// HDF5 lock.
    fn stored_chunk(&self, origin: &[usize]) -> Result<(Vec<u8>, u32), String> {
        let offset: Vec<hdf5_sys::h5::hsize_t> = origin.iter().map(|&o| o as _).collect();
        let id = self.dataset.id();
        let mut size = 0;
        // SAFETY: `id` is a live dataset, `offset` has one entry per dimension, and `size` is a
        // live local.
        if unsafe { H5Dget_chunk_storage_size(id, offset.as_ptr(), &mut size) } < 0 || size == 0 {
            return Err(format!("chunk at {origin:?} is not stored"));
        }
        let mut stored = vec![0u8; usize::try_from(size).map_err(|e| e.to_string())?];
        let mut mask = 0;
        // SAFETY: as above; `stored` holds the `size` bytes HDF5 just reported for this chunk.
        let status = unsafe {
            hdf5_sys::h5d::H5Dread_chunk(
                id,
                hdf5_sys::h5p::H5P_DEFAULT,
                offset.as_ptr(),
                &mut mask,
                stored.as_mut_ptr().cast(),
            )
        };
        if status < 0 {
            return Err(format!("cannot read the stored chunk at {origin:?}"));
        }
        Ok((stored, mask))
    }
}

/// The decoded bytes of one chunk (`nbytes` long, little-endian float64).
fn decode<'s>(
    pipeline: &[Stage],
    stored: &'s [u8],
    mask: u32,
    nbytes: usize,
    scratch: &'s mut Scratch,
) -> Result<&'s [u8], String> {
    /// Where the data is after each stage: a stage that transforms it writes into the
    /// scratch buffer it is not in, so the stored bytes are never copied.
    enum At {
        Stored,
        A,
        B,
    }
    let Scratch { inflater, a, b } = scratch;
    // The buffers only grow: zero-filling is paid once per thread.
    grow(a, nbytes);
    grow(b, nbytes);
    let (mut at, mut len) = (At::Stored, stored.len());
    for (i, stage) in pipeline.iter().enumerate().rev() {
        if mask & (1 << i) != 0 {
            continue;
        }
        let (data, out, next) = match at {
            At::Stored => (stored, &mut a[..], At::A),
            At::A => (&a[..], &mut b[..], At::B),
            At::B => (&b[..], &mut a[..], At::A),
        };
        match stage {
            Stage::Fletcher32 => {
                len = len
                    .checked_sub(4)
                    .ok_or("chunk shorter than its checksum")?;
                let sum = u32::from_le_bytes(data[len..len + 4].try_into().expect("4 bytes"));
                if !fletcher32_matches(&data[..len], sum) {
                    return Err("fletcher32 checksum mismatch".into());
                }
                continue; // checked in place
            }
            Stage::Deflate => {
                len = inflater
                    .zlib_decompress(&data[..len], &mut out[..nbytes])
                    .map_err(|e| format!("inflate: {e:?}"))?;
            }
            Stage::Shuffle => {
                if len > out.len() {
                    return Err("shuffled data longer than the chunk".into());
                }
                unshuffle8(&data[..len], &mut out[..len]);
            }
        }
        at = next;
    }
    if len != nbytes {
        return Err(format!("chunk decodes to {len} bytes, expected {nbytes}"));
    }
    Ok(match at {
        At::Stored => &stored[..len],
        At::A => &a[..len],
        At::B => &b[..len],
    })
}

fn grow(buffer: &mut Vec<u8>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
}

/// An output buffer the read threads write disjoint parts of.
#[derive(Clone, Copy)]
struct Target(*mut f64, usize);
// SAFETY: only used for the disjoint writes of `ChunkedF64::read`, while the buffer lives.
unsafe impl Send for Target {}
unsafe impl Sync for Target {}

/// First elements of the chunks that hold a part of `slab`, in C order.
fn chunk_origins(chunk: &[usize], slab: &Slab) -> Vec<Vec<usize>> {
    if slab.count.contains(&0) {
        return Vec::new();
    }
    let rank = chunk.len();
    let first: Vec<usize> = (0..rank).map(|d| slab.start[d] / chunk[d]).collect();
    let last: Vec<usize> = (0..rank)
        .map(|d| (slab.start[d] + slab.count[d] - 1) / chunk[d])
        .collect();
    let mut origins = Vec::new();
    let mut at = first.clone();
    loop {
        origins.push(at.iter().zip(chunk).map(|(c, n)| c * n).collect());
        if !next_index(&mut at, &first, &last) {
            return origins;
        }
    }
}

/// Copies the part of a decoded chunk (C order over `chunk`, first element at `origin`) that
/// lies in `slab` into the slab's output, one run along the last dimension at a time, and
/// returns the number of elements copied.
///
/// # Safety
/// `target` must be the live output of `slab` (`count` elements, C order), and no other thread
/// may write the elements this chunk covers.
unsafe fn copy_piece(
    bytes: &[u8],
    chunk: &[usize],
    origin: &[usize],
    slab: &Slab,
    target: Target,
) -> usize {
    let rank = chunk.len();
    let lo: Vec<usize> = (0..rank).map(|d| slab.start[d].max(origin[d])).collect();
    let hi: Vec<usize> = (0..rank)
        .map(|d| (slab.start[d] + slab.count[d]).min(origin[d] + chunk[d]))
        .collect();
    let strides = |dims: &[usize]| {
        let mut s = vec![1; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            s[d] = s[d + 1] * dims[d + 1];
        }
        s
    };
    let (src_strides, dst_strides) = (strides(chunk), strides(&slab.count));
    let run = hi[rank - 1] - lo[rank - 1];
    // Walk every run: all index tuples of the outer dimensions, last dimension fixed at `lo`.
    let mut at = lo.clone();
    let mut outer_last = hi.clone();
    for (d, h) in outer_last.iter_mut().enumerate() {
        *h -= 1;
        if d == rank - 1 {
            *h = lo[d];
        }
    }
    loop {
        let src: usize = (0..rank)
            .map(|d| (at[d] - origin[d]) * src_strides[d])
            .sum();
        let dst: usize = (0..rank)
            .map(|d| (at[d] - slab.start[d]) * dst_strides[d])
            .sum();
        debug_assert!(dst + run <= target.1 && (src + run) * 8 <= bytes.len());
        // SAFETY: in bounds (above); the caller guarantees exclusive access to these elements.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(src * 8),
                target.0.add(dst).cast::<u8>(),
                run * 8,
            );
        }
        if !next_index(&mut at, &lo, &outer_last) {
            break;
        }
    }
    (0..rank).map(|d| hi[d] - lo[d]).product()
}

/// Advances `at` through the box `first..=last` in C order; `false` after the last tuple.
fn next_index(at: &mut [usize], first: &[usize], last: &[usize]) -> bool {
    for d in (0..at.len()).rev() {
        if at[d] < last[d] {
            at[d] += 1;
            return true;
        }
        at[d] = first[d];
    }
    false
}

/// Reverses HDF5's shuffle for 8-byte elements: byte `b` of element `i` was stored at
/// `b * n + i`. Trailing bytes that do not fill an element were stored as they are.
/// Works on 8 × 8 blocks (eight bytes from each plane, transposed in registers), which is
/// about 2.5 times as fast as moving single bytes.
fn unshuffle8(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 8;
    let planes: [&[u8]; 8] = std::array::from_fn(|b| &src[b * n..(b + 1) * n]);
    let blocks = n / 8;
    for (k, out) in dst[..64 * blocks].chunks_exact_mut(64).enumerate() {
        let rows: [u64; 8] = std::array::from_fn(|b| {
            u64::from_le_bytes(planes[b][8 * k..8 * k + 8].try_into().expect("8 bytes"))
        });
        for (j, element) in out.chunks_exact_mut(8).enumerate() {
            let mut v = 0u64;
            for (b, row) in rows.iter().enumerate() {
                v |= ((row >> (8 * j)) & 0xff) << (8 * b);
            }
            element.copy_from_slice(&v.to_le_bytes());
        }
    }
    for i in 8 * blocks..n {
        for (b, plane) in planes.iter().enumerate() {
            dst[8 * i + b] = plane[i];
        }
    }
    dst[8 * n..src.len()].copy_from_slice(&src[8 * n..]);
}

/// HDF5's fletcher32 over 16-bit big-endian words, compared with the stored value. Files written
/// by HDF5 before 1.6.3 store it with the bytes of each half swapped, which HDF5 also accepts.
fn fletcher32_matches(data: &[u8], stored: u32) -> bool {
    let fold = |s: u32| (s & 0xffff) + (s >> 16);
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let words = data.chunks_exact(2);
    let odd = words.remainder().first().copied();
    // At most 360 words between reductions, so that the sums cannot overflow.
    for block in data[..data.len() & !1].chunks(720) {
        for w in block.chunks_exact(2) {
            sum1 += u32::from(u16::from_be_bytes([w[0], w[1]]));
            sum2 += sum1;
        }
        (sum1, sum2) = (fold(sum1), fold(sum2));
    }
    if let Some(last) = odd {
        sum1 += u32::from(last) << 8;
        sum2 += sum1;
        (sum1, sum2) = (fold(sum1), fold(sum2));
    }
    let sum = (fold(sum2) << 16) | fold(sum1);
    let c = sum.to_le_bytes();
    let reversed = u32::from_le_bytes([c[2], c[3], c[0], c[1]]);
    stored == sum || stored == reversed
}
