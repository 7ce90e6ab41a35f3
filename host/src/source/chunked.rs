//! Direct chunk reads for the measurement datasets.
//!
//! The HDF5 library inflates chunks one at a time under its global lock, so reading made up most
//! of every run. On this path HDF5 only hands over each chunk's stored bytes (`H5Dread_chunk`,
//! a B-tree lookup and a copy, under the lock). A pool of read threads then decodes them, many
//! chunks at once and outside the lock: the fletcher32 check, inflate (libdeflate) and unshuffle.
//!
//! Only the pipeline the converter writes is decoded here: little-endian float64 with at least
//! one of shuffle, deflate and fletcher32. [`Measurement`] reads other datasets through HDF5 as
//! before, and so any read that fails on this path where HDF5's own checks would notice: a
//! damaged chunk still gets HDF5's error message (and the fallback is counted).
//!
//! What HDF5 does *not* notice is refused here: a chunk missing from a damaged index (HDF5
//! reads the fill value, 0, in its place), an index entry standing in for another chunk, a
//! filter mask that skips a filter HDF5 never skips. The data values would be wrong and no
//! checksum covers the index (see [`Gaps`] and `check_chunk_index`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use hdf5::dataset::Layout;
use hdf5::datatype::ByteOrder;
use hdf5::filters::Filter;
use hdf5::plist::dataset_create::{FillTime, FillValue};
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

/// Why the direct path gave no values.
#[derive(Debug)]
pub(crate) enum DirectError {
    /// Damage that HDF5's own read would not notice (it would return fill values or
    /// wrongly decoded data): the read fails.
    Damaged(String),
    /// Something this path does not read; HDF5 reads it instead, and reports whatever
    /// damage its own checks find.
    Unsupported(String),
}

impl DirectError {
    /// The same error, naming the chunk.
    fn at(self, origin: &[usize]) -> DirectError {
        match self {
            DirectError::Damaged(e) => {
                DirectError::Damaged(format!("the chunk at {origin:?}: {e}"))
            }
            DirectError::Unsupported(e) => {
                DirectError::Unsupported(format!("the chunk at {origin:?}: {e}"))
            }
        }
    }
}

/// What a read may do where the file stores nothing.
///
/// HDF5 reads a chunk that is absent from the chunk index (never written, or lost to a
/// damaged index) as the dataset's fill value. The converter writes every element, so a
/// gap is only legitimate where it means "no data": a user-defined NaN fill value, the
/// format's own padding. Any other fill value (h5py's default is 0) would put numbers into
/// the table that were never measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gaps {
    /// Unstored chunks read as NaN.
    Nan,
    /// Unstored data is an error; the text says what HDF5 would have returned.
    Refused(String),
}

impl Gaps {
    pub fn of(dataset: &Dataset) -> Gaps {
        let Ok(dcpl) = dataset.dcpl() else {
            return Gaps::Refused("an unreadable fill value".into());
        };
        let fill = dcpl.fill_value_as::<f64>();
        match (dcpl.fill_value_defined(), dcpl.fill_time(), fill) {
            (FillValue::UserDefined, FillTime::IfSet | FillTime::Alloc, Some(v)) if v.is_nan() => {
                Gaps::Nan
            }
            (_, FillTime::Never, _) => {
                Gaps::Refused("whatever the buffer held (the fill time is 'never')".into())
            }
            (_, _, Some(v)) => Gaps::Refused(format!("its fill value {v}")),
            (_, _, None) => Gaps::Refused("an undefined fill value".into()),
        }
    }

    /// The error for unstored data at `what`, or `None` where the gap reads as NaN.
    fn refuse(&self, what: &str) -> Option<String> {
        match self {
            Gaps::Nan => None,
            Gaps::Refused(fill) => Some(format!(
                "{what} is not stored in the file (the file is damaged, or it was never \
                 written); HDF5 would read {fill} there"
            )),
        }
    }
}

/// A measurement dataset as the reader sees it: read by the direct path where its storage
/// allows, else by HDF5; never with fill values standing in for missing data.
#[derive(Debug)]
pub(crate) struct Measurement {
    dataset: Dataset,
    direct: Option<ChunkedF64>,
    gaps: Gaps,
    /// The outcome of [`Measurement::check_storage`], once known.
    storage: OnceLock<Result<(), String>>,
    /// Reads done by HDF5 instead of the direct path.
    fallbacks: AtomicUsize,
}

impl Measurement {
    pub fn new(dataset: Dataset) -> Measurement {
        let gaps = Gaps::of(&dataset);
        let direct = ChunkedF64::new(&dataset);
        Measurement {
            dataset,
            direct,
            gaps,
            storage: OnceLock::new(),
            fallbacks: AtomicUsize::new(0),
        }
    }

    /// Reads every (non-empty) slab, each into C order.
    pub fn read(&self, slabs: &[Slab]) -> Result<Vec<Vec<f64>>, String> {
        self.check_storage()?;
        let mut gave_up = None;
        if let Some(direct) = &self.direct {
            match direct.read(slabs, &self.gaps) {
                Ok(values) => return Ok(values),
                Err(DirectError::Damaged(e)) => return Err(e),
                Err(DirectError::Unsupported(e)) => gave_up = Some(e),
            }
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let by_hdf5: Result<Vec<Vec<f64>>, String> = slabs
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
                    .read_slice::<f64, _, ndarray::IxDyn>(selection)
                    .map_err(|e| e.to_string())?;
                Ok(values.into_raw_vec_and_offset().0)
            })
            .collect();
        // HDF5's message does not say where; the direct path's does.
        by_hdf5.map_err(|e| match gave_up {
            Some(why) => format!("{e} ({why})"),
            None => e,
        })
    }

    /// Reads so far that HDF5 did instead of the direct path: the dataset's storage is not
    /// one the direct path decodes, or it gave up on a chunk (HDF5 then reports the damage).
    pub fn fallbacks(&self) -> usize {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Checks the dataset's storage against its layout, once, before its first read: that
    /// HDF5 will find every chunk it has, at its own place, and that data is missing only
    /// where gaps read as NaN.
    fn check_storage(&self) -> Result<(), String> {
        self.storage
            .get_or_init(|| match self.dataset.layout() {
                Layout::Chunked => check_chunk_index(&self.dataset, &self.gaps),
                Layout::Contiguous
                    if self.dataset.offset().is_none() && self.dataset.size() > 0 =>
                {
                    self.gaps.refuse("the dataset's data").map_or(Ok(()), Err)
                }
                _ => Ok(()),
            })
            .clone()
    }
}

/// The v1 B-tree of a chunk index has no checksum, and a damaged key moves a chunk's entry
/// to another place, where HDF5's lookup no longer finds it (it reads the fill value
/// instead), or onto the place of another chunk, whose lookup may then return this one's
/// data. A lookup only succeeds for an entry whose key equals the chunk's place, so if
/// every place of the chunk grid is looked up and the hits are as many as the entries, each
/// entry answers for exactly its own place: no entry is lost and none stands in for
/// another. Costs one lookup per chunk, 3–10 µs each (`docs/BENCHMARKS.md`).
fn check_chunk_index(dataset: &Dataset, gaps: &Gaps) -> Result<(), String> {
    let (Some(chunk), shape) = (dataset.chunk(), dataset.shape()) else {
        return Err("a chunked dataset without a chunk shape".into());
    };
    if chunk.len() != shape.len() || chunk.contains(&0) {
        return Err(format!(
            "chunk shape {chunk:?} does not fit the dataset {shape:?}"
        ));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let whole = Slab {
        start: vec![0; shape.len()],
        count: shape.clone(),
    };
    let places = chunk_origins(&chunk, &whole);
    // The lock is taken per lookup, so that reads of other files are not held up for the
    // whole sweep; the index of a file open read-only does not change in between.
    let listed = hdf5::sync::sync(|| dataset.num_chunks());
    let missing: Vec<&Vec<usize>> = places
        .iter()
        .filter(|origin| hdf5::sync::sync(|| stored_size(dataset, origin)).is_none())
        .collect();
    let found = places.len() - missing.len();
    let Some(listed) = listed else {
        return Err("cannot count the entries of the chunk index (damaged file?)".into());
    };
    if found != listed {
        return Err(format!(
            "the chunk index has {listed} entries, but only {found} of them are where the \
             dataset's {} chunks are (damaged chunk index)",
            places.len()
        ));
    }
    match missing.first() {
        Some(first) => gaps
            .refuse(&format!(
                "the chunk at {first:?}{}",
                match missing.len() {
                    1 => String::new(),
                    n => format!(" (and {} more of the {} chunks)", n - 1, places.len()),
                }
            ))
            .map_or(Ok(()), Err),
        None => Ok(()),
    }
}

// Not declared by hdf5-sys; in the C library since 1.10.2. The signature is H5Dpublic.h's:
// `herr_t H5Dget_chunk_storage_size(hid_t, const hsize_t *offset, hsize_t *chunk_bytes)`.
extern "C" {
    fn H5Dget_chunk_storage_size(
        dset_id: hdf5_sys::h5i::hid_t,
        offset: *const hdf5_sys::h5::hsize_t,
        chunk_bytes: *mut hdf5_sys::h5::hsize_t,
    ) -> hdf5_sys::h5::herr_t;
}

/// Bytes stored for the chunk starting at `origin` (one element per dimension of
/// `dataset`), `None` if the chunk index has no such chunk (HDF5 1.10 reports 0 bytes,
/// later versions an error; either way HDF5's own read would use the fill value).
///
/// This is the entry that `H5Dread_chunk` reads: both look the chunk up with the same
/// index search. (`H5Dget_chunk_info_by_coord` scans the index instead and, in a damaged
/// index with duplicate keys, can report another entry's size.) The caller holds the HDF5
/// lock (`hdf5::sync::sync`): the library build is not thread-safe.
fn stored_size(dataset: &Dataset, origin: &[usize]) -> Option<usize> {
    if dataset.ndim() != origin.len() {
        return None;
    }
    let offset: Vec<hdf5_sys::h5::hsize_t> = origin.iter().map(|&o| o as _).collect();
    let mut size = 0;
    // SAFETY: `dataset.id()` is a live dataset (`dataset` holds a reference to it), `offset`
    // has one entry per dimension (checked above), which is what the function reads, and
    // `size` is a live local of the type it writes. The caller holds the HDF5 lock.
    let status = unsafe { H5Dget_chunk_storage_size(dataset.id(), offset.as_ptr(), &mut size) };
    match usize::try_from(size) {
        Ok(size) if status >= 0 && size > 0 => Some(size),
        _ => None,
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
        if pipeline.is_empty() {
            // Nothing to decode, so nothing to gain; and without filters HDF5 reports the
            // chunk size of the layout, not of the index entry `H5Dread_chunk` would copy.
            return None;
        }
        Some(ChunkedF64 {
            dataset: dataset.clone(),
            shape,
            chunk,
            pipeline,
        })
    }

    /// Reads every slab, each into C order.
    ///
    /// This thread takes the stored chunks from HDF5 one after the other while the read
    /// threads decode the ones already taken.
    pub fn read(&self, slabs: &[Slab], gaps: &Gaps) -> Result<Vec<Vec<f64>>, DirectError> {
        if rayon::current_thread_index().is_some() {
            // A worker of another pool (experiment mode) would run its own pool's tasks while
            // it waits for the read threads, starting further experiments from inside this
            // read. A plain thread waits without taking other work.
            return std::thread::scope(|s| {
                s.spawn(|| self.read_on_this_thread(slabs, gaps))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(DirectError::Unsupported("the read thread panicked".into()))
                    })
            });
        }
        self.read_on_this_thread(slabs, gaps)
    }

    fn read_on_this_thread(
        &self,
        slabs: &[Slab],
        gaps: &Gaps,
    ) -> Result<Vec<Vec<f64>>, DirectError> {
        for slab in slabs {
            let fits = slab.start.len() == self.shape.len()
                && slab.count.len() == self.shape.len()
                && (0..self.shape.len()).all(|d| slab.start[d] + slab.count[d] <= self.shape[d]);
            if !fits {
                return Err(DirectError::Unsupported(format!(
                    "slab {slab:?} is outside the dataset {:?}",
                    self.shape
                )));
            }
        }
        let lens: Vec<usize> = slabs.iter().map(|s| s.count.iter().product()).collect();
        // Not zeroed: the read threads write every element before the lengths are set (see
        // the check of `written` below).
        let mut outputs: Vec<Vec<f64>> = lens.iter().map(|&n| Vec::with_capacity(n)).collect();
        let targets: Vec<Target> = outputs
            .iter_mut()
            .zip(&lens)
            .map(|(o, &len)| Target {
                ptr: o.as_mut_ptr(),
                len,
            })
            .collect();
        let written = AtomicUsize::new(0);
        let failure: Mutex<Option<DirectError>> = Mutex::new(None);
        let fail = |e: DirectError| {
            failure.lock().expect("failure slot").get_or_insert(e);
        };
        let chunk_bytes = self.chunk.iter().product::<usize>() * 8;
        // The scope returns only after every job spawned in it has finished, so no job
        // touches `outputs` after this statement.
        read_pool().in_place_scope(|scope| {
            for (slab, &target) in slabs.iter().zip(&targets) {
                // Each origin is yielded once and lies on the chunk grid, so the chunks hold
                // disjoint boxes of the dataset; `copy_piece` writes only its chunk's box
                // within the slab: the jobs below write disjoint elements of `target`.
                for origin in chunk_origins(&self.chunk, slab) {
                    if failure.lock().expect("failure slot").is_some() {
                        return;
                    }
                    let (stored, mask) = match hdf5::sync::sync(|| self.stored_chunk(&origin, gaps))
                    {
                        Ok(chunk) => chunk,
                        Err(e) => return fail(e),
                    };
                    let (written, fail) = (&written, &fail);
                    scope.spawn(move |_| {
                        SCRATCH.with_borrow_mut(|scratch| {
                            let copied =
                                decode(&self.pipeline, &stored, mask, chunk_bytes, scratch)
                                    .and_then(|bytes| {
                                        // SAFETY: `target` is the output of `slab`, alive
                                        // until the scope ends; no other job writes, and
                                        // nothing reads, this chunk's piece (see above).
                                        unsafe {
                                            copy_piece(bytes, &self.chunk, &origin, slab, target)
                                        }
                                        .map_err(DirectError::Unsupported)
                                    });
                            match copied {
                                Ok(n) => {
                                    written.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(e) => fail(e.at(&origin)),
                            }
                        });
                    });
                }
            }
        });
        if let Some(e) = failure.into_inner().expect("failure slot") {
            return Err(e);
        }
        // The pieces are disjoint and lie inside their slab, so they cover it exactly when
        // their sizes add up to its size.
        if written.into_inner() != lens.iter().sum::<usize>() {
            return Err(DirectError::Unsupported(
                "the chunks do not cover the selection".into(),
            ));
        }
        for (output, n) in outputs.iter_mut().zip(lens) {
            // SAFETY: all `n` elements were written (checked above; `n` is the capacity the
            // vector was made with), and f64 has no invalid bit patterns.
            unsafe { output.set_len(n) };
        }
        Ok(outputs)
    }

    /// The stored bytes and filter mask of the chunk starting at `origin`. The caller holds
    /// the HDF5 lock, so that the index entry cannot change between the lookup and the read.
    fn stored_chunk(&self, origin: &[usize], gaps: &Gaps) -> Result<(Vec<u8>, u32), DirectError> {
        let Some(size) = stored_size(&self.dataset, origin) else {
            return Err(match gaps.refuse(&format!("the chunk at {origin:?}")) {
                Some(e) => DirectError::Damaged(e),
                // HDF5 reads the gap as NaN.
                None => DirectError::Unsupported(format!("the chunk at {origin:?} is not stored")),
            });
        };
        // Deflate that would grow the data fails and is skipped, so a chunk never takes more
        // than its data, HDF5's 0.1 % + 12 bytes of deflate headroom and the checksum.
        let data_bytes = self.chunk.iter().product::<usize>() * 8;
        if size > data_bytes + data_bytes / 1000 + 64 {
            return Err(DirectError::Damaged(format!(
                "the chunk at {origin:?} is listed with {size} stored bytes, more than its \
                 {data_bytes} bytes of data can take (damaged chunk index)"
            )));
        }
        let mut stored = vec![0u8; size];
        let mut mask = 0;
        let offset: Vec<hdf5_sys::h5::hsize_t> = origin.iter().map(|&o| o as _).collect();
        // SAFETY: the dataset is live and `offset` has one entry per dimension (checked by
        // `stored_size`). `H5Dread_chunk` writes the stored bytes of the index entry it finds,
        // and `stored` holds exactly as many: `stored_size` found the same entry with the same
        // search (the dataset has filters, so it reports the entry's size, not the chunk's),
        // and nothing in this process can change the index in between, as the caller holds
        // the HDF5 lock and the file is open read-only. Like every HDF5 reader this relies
        // on no other process rewriting the file while it is open (HDF5 itself gives no
        // guarantees then). HDF5 2.x is also told the buffer's size (`capacity`, a live
        // local) and refuses a larger chunk.
        #[cfg(hdf5_2)]
        let status = unsafe {
            let mut capacity = stored.len();
            hdf5_sys::h5d::H5Dread_chunk(
                self.dataset.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                offset.as_ptr(),
                &mut mask,
                stored.as_mut_ptr().cast(),
                &mut capacity,
            )
        };
        // SAFETY: as above.
        #[cfg(not(hdf5_2))]
        let status = unsafe {
            hdf5_sys::h5d::H5Dread_chunk(
                self.dataset.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                offset.as_ptr(),
                &mut mask,
                stored.as_mut_ptr().cast(),
            )
        };
        if status < 0 {
            return Err(DirectError::Unsupported(format!(
                "cannot read the stored chunk at {origin:?}"
            )));
        }
        for (i, stage) in self.pipeline.iter().enumerate() {
            // HDF5 skips a filter on writing only when it fails and is optional: deflate on
            // data it cannot shrink. Shuffle does not fail and fletcher32 is mandatory, so
            // such a bit comes from a damaged index entry, and decoding by it (as HDF5 would)
            // gives wrong values that no checksum catches.
            if mask & (1 << i) != 0 && *stage != Stage::Deflate {
                return Err(DirectError::Damaged(format!(
                    "the chunk at {origin:?} is marked as stored without its {stage:?} filter, \
                     which HDF5 never writes (damaged chunk index)"
                )));
            }
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
) -> Result<&'s [u8], DirectError> {
    // A checksum or deflate stream that fails is reported by HDF5's own read as well. A
    // chunk that decodes to the wrong length is not (HDF5 1.10 uses what it got), and it
    // can only come from a damaged filter mask: the stored bytes passed their checksum.
    let damaged = |e: String| DirectError::Damaged(format!("{e} (damaged chunk index)"));
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
                    .ok_or_else(|| damaged("chunk shorter than its checksum".into()))?;
                let sum = u32::from_le_bytes(data[len..len + 4].try_into().expect("4 bytes"));
                if !fletcher32_matches(&data[..len], sum) {
                    return Err(DirectError::Unsupported(
                        "fletcher32 checksum mismatch".into(),
                    ));
                }
                continue; // checked in place
            }
            Stage::Deflate => {
                len = inflater
                    .zlib_decompress(&data[..len], &mut out[..nbytes])
                    .map_err(|e| match e {
                        libdeflater::DecompressionError::InsufficientSpace => {
                            damaged(format!("chunk inflates to more than {nbytes} bytes"))
                        }
                        libdeflater::DecompressionError::BadData => {
                            DirectError::Unsupported("inflate: bad data".into())
                        }
                    })?;
            }
            Stage::Shuffle => {
                if len > out.len() {
                    return Err(damaged("shuffled data longer than the chunk".into()));
                }
                unshuffle8(&data[..len], &mut out[..len]);
            }
        }
        at = next;
    }
    if len != nbytes {
        return Err(damaged(format!(
            "chunk decodes to {len} bytes, expected {nbytes}"
        )));
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

/// The output of one slab: `len` elements of C-order f64 storage, which the read threads
/// fill in disjoint pieces, one per chunk.
#[derive(Clone, Copy)]
struct Target {
    ptr: *mut f64,
    len: usize,
}

// SAFETY: a `Target` is a pointer and a length, used only as `copy_piece`'s destination.
// Sending it to a read thread is sound because the one function that makes `Target`s,
// `ChunkedF64::read_on_this_thread`, keeps the buffer alive and untouched until its scope has
// joined every job, and gives each job a piece no other job writes.
unsafe impl Send for Target {}

/// First elements of the chunks that hold a part of `slab`, in C order, each chunk once
/// (every index tuple of the box of chunk-grid cells that the slab touches, visited once by
/// `next_index`).
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
/// returns the number of elements copied. `Err` (nothing copied) if the piece would not lie
/// inside both the chunk's bytes and the output.
///
/// # Safety
/// `target.ptr` must point to an allocation of at least `target.len` f64 that stays alive
/// during the call, and no other thread may read or write the elements of this chunk's piece
/// (its box intersected with `slab`) meanwhile.
unsafe fn copy_piece(
    bytes: &[u8],
    chunk: &[usize],
    origin: &[usize],
    slab: &Slab,
    target: Target,
) -> Result<usize, String> {
    let rank = chunk.len();
    if rank == 0 || [origin.len(), slab.start.len(), slab.count.len()] != [rank; 3] {
        return Err(format!(
            "chunk {chunk:?} at {origin:?} does not match slab {slab:?}"
        ));
    }
    let lo: Vec<usize> = (0..rank).map(|d| slab.start[d].max(origin[d])).collect();
    let hi: Vec<usize> = (0..rank)
        .map(|d| (slab.start[d] + slab.count[d]).min(origin[d] + chunk[d]))
        .collect();
    // The bounds check, once per chunk: with a non-empty box `lo..hi` inside the chunk and
    // inside the slab, every source index below is < the chunk's element count and every
    // destination index < the slab's, so each run lies inside `bytes` and the output.
    let inside = (0..rank).all(|d| lo[d] < hi[d]);
    if !inside
        || bytes.len() < chunk.iter().product::<usize>() * 8
        || target.len < slab.count.iter().product::<usize>()
    {
        return Err(format!(
            "the piece of chunk {chunk:?} at {origin:?} does not fit slab {slab:?} \
             ({} decoded bytes, {} output elements)",
            bytes.len(),
            target.len
        ));
    }
    let strides = |dims: &[usize]| {
        let mut s = vec![1; rank];
        for d in (0..rank - 1).rev() {
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
        // SAFETY: both runs are in bounds (the check above), the caller guarantees that the
        // output is alive and that no other thread accesses these elements, and `bytes` is a
        // separate allocation (the thread's scratch buffer or the stored chunk).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(src * 8),
                target.ptr.add(dst).cast::<u8>(),
                run * 8,
            );
        }
        if !next_index(&mut at, &lo, &outer_last) {
            break;
        }
    }
    Ok((0..rank).map(|d| hi[d] - lo[d]).product())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(bytes: &[u8], origin: &[usize], slab: &Slab, out: &mut [f64]) -> Result<usize, String> {
        let target = Target {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        };
        // SAFETY: `out` is alive and borrowed exclusively for the call.
        unsafe { copy_piece(bytes, &[2, 4], origin, slab, target) }
    }

    /// The bounds check holds in every build: a piece that would not fit its buffers is an
    /// error, not a write out of bounds.
    #[test]
    fn copy_piece_refuses_what_does_not_fit_its_buffers() {
        let chunk: Vec<u8> = (0..8).flat_map(|v| f64::from(v).to_le_bytes()).collect();
        let inner = Slab {
            start: vec![1, 1],
            count: vec![1, 2],
        };
        let mut out = [0.0; 2];
        assert_eq!(copy(&chunk, &[0, 0], &inner, &mut out), Ok(2));
        assert_eq!(out, [5.0, 6.0]);
        // Decoded bytes shorter than the chunk, an output shorter than the slab.
        assert!(copy(&chunk[..56], &[0, 0], &inner, &mut out).is_err());
        assert!(copy(&chunk, &[0, 0], &inner, &mut out[..1]).is_err());
        // A chunk that does not meet the slab, and a slab of another rank.
        assert!(copy(&chunk, &[2, 0], &inner, &mut out).is_err());
        let flat = Slab {
            start: vec![0],
            count: vec![2],
        };
        assert!(copy(&chunk, &[0, 0], &flat, &mut out).is_err());
        assert_eq!(out, [5.0, 6.0], "nothing written by the refused calls");
    }
}
