//! Compiled expression tree and its evaluation over n-d `f64` arrays with
//! numpy's semantics (broadcasting, basic indexing, NaN rules of reductions).

use ndarray::{arr0, ArrayD, ArrayView1, ArrayViewD, Axis, IxDyn, SliceInfo, SliceInfoElem, Zip};

use super::parser::BinOp;

/// A checked expression: names are bound, constants folded into `Const`,
/// indices and axes are plain integers.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Const(f64),
    Input(usize),
    Map(MapFn, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Reduce {
        op: Reduction,
        arg: Box<Node>,
        axis: Option<isize>,
        ddof: f64,
    },
    Index(Box<Node>, Vec<IndexItem>),
}

/// Elementwise functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MapFn {
    Neg,
    Abs,
    Log,
    Log10,
    Exp,
    Sqrt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reduction {
    Sum,
    Mean,
    Std,
    Min,
    Max,
    NanSum,
    NanMean,
    NanStd,
    NanMin,
    NanMax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IndexItem {
    At(isize),
    Slice {
        start: Option<isize>,
        stop: Option<isize>,
        step: isize,
    },
}

impl BinOp {
    pub(super) fn apply(self, x: f64, y: f64) -> f64 {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            BinOp::Pow => x.powf(y),
            BinOp::Lt => truth(x < y),
            BinOp::Le => truth(x <= y),
            BinOp::Gt => truth(x > y),
            BinOp::Ge => truth(x >= y),
            BinOp::Eq => truth(x == y),
            BinOp::Ne => truth(x != y),
        }
    }
}

impl MapFn {
    pub(super) fn apply(self, x: f64) -> f64 {
        match self {
            MapFn::Neg => -x,
            MapFn::Abs => x.abs(),
            MapFn::Log => x.ln(),
            MapFn::Log10 => x.log10(),
            MapFn::Exp => x.exp(),
            MapFn::Sqrt => x.sqrt(),
        }
    }
}

impl Reduction {
    /// Whether numpy's function takes `ddof` (only the standard deviations).
    pub(super) fn takes_ddof(self) -> bool {
        matches!(self, Reduction::Std | Reduction::NanStd)
    }

    /// Reduces one lane, as numpy does (sums are pairwise; the nan-variants
    /// sum with NaN replaced by 0, exactly like numpy's `_replace_nan`).
    fn lane(self, lane: ArrayView1<'_, f64>, ddof: f64) -> Result<f64, String> {
        let n = lane.len() as f64;
        let not_nan = |x: f64| if x.is_nan() { 0.0 } else { x };
        let count = || lane.iter().filter(|x| !x.is_nan()).count() as f64;
        Ok(match self {
            Reduction::Sum => pairwise_sum(lane, &|x| x),
            Reduction::Mean => pairwise_sum(lane, &|x| x) / n,
            Reduction::Std => {
                let mean = pairwise_sum(lane, &|x| x) / n;
                let squares = pairwise_sum(lane, &|x| (x - mean) * (x - mean));
                (squares / (n - ddof).max(0.0)).sqrt()
            }
            Reduction::Min => extreme(lane, "minimum", |x, best| x < best)?,
            Reduction::Max => extreme(lane, "maximum", |x, best| x > best)?,
            Reduction::NanSum => pairwise_sum(lane, &not_nan),
            Reduction::NanMean => pairwise_sum(lane, &not_nan) / count(),
            Reduction::NanStd => {
                let cnt = count();
                let mean = pairwise_sum(lane, &not_nan) / cnt;
                let squares = pairwise_sum(lane, &|x| {
                    if x.is_nan() {
                        0.0
                    } else {
                        (x - mean) * (x - mean)
                    }
                });
                let dof = cnt - ddof;
                if dof > 0.0 {
                    (squares / dof).sqrt()
                } else {
                    f64::NAN
                }
            }
            Reduction::NanMin => nan_extreme(lane, "fmin", |x, best| x < best)?,
            Reduction::NanMax => nan_extreme(lane, "fmax", |x, best| x > best)?,
        })
    }
}

/// Sum of `f(x)` in numpy's pairwise order: eight running sums for blocks of
/// up to 128 elements, halving (at a multiple of 8) above that. Besides
/// keeping the rounding error at O(log n), this reproduces numpy's sums along
/// an array's innermost axis (for lanes within numpy's 8192-element buffer).
fn pairwise_sum(lane: ArrayView1<'_, f64>, f: &impl Fn(f64) -> f64) -> f64 {
    let n = lane.len();
    if n < 8 {
        lane.iter().fold(0.0, |acc, &x| acc + f(x))
    } else if n <= 128 {
        let whole = n - n % 8;
        let mut r = [0.0; 8];
        for (i, &x) in lane.iter().take(whole).enumerate() {
            r[i % 8] += f(x);
        }
        let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        lane.iter().skip(whole).fold(head, |acc, &x| acc + f(x))
    } else {
        let half = n / 2 - (n / 2) % 8;
        let (lo, hi) = lane.split_at(Axis(0), half);
        pairwise_sum(lo, f) + pairwise_sum(hi, f)
    }
}

/// numpy's `minimum`/`maximum` reduction: NaN wins, empty is an error.
fn extreme(
    lane: ArrayView1<'_, f64>,
    name: &str,
    better: fn(f64, f64) -> bool,
) -> Result<f64, String> {
    let mut values = lane.iter().copied();
    let first = values.next().ok_or_else(|| no_identity(name))?;
    Ok(values.fold(first, |best, x| {
        if best.is_nan() || x.is_nan() {
            f64::NAN
        } else if better(x, best) {
            x
        } else {
            best
        }
    }))
}

/// numpy's `nanmin`/`nanmax`: NaN is skipped, an all-NaN lane gives NaN,
/// empty is an error.
fn nan_extreme(
    lane: ArrayView1<'_, f64>,
    name: &str,
    better: fn(f64, f64) -> bool,
) -> Result<f64, String> {
    if lane.is_empty() {
        return Err(no_identity(name));
    }
    Ok(lane
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .reduce(|best, x| if better(x, best) { x } else { best })
        .unwrap_or(f64::NAN))
}

fn no_identity(name: &str) -> String {
    format!("zero-size array to reduction operation {name} which has no identity")
}

/// Intermediate value: inputs and slices of them stay borrowed, so indexing
/// a large input copies only what is selected.
enum Val<'a> {
    View(ArrayViewD<'a, f64>),
    Owned(ArrayD<f64>),
}

impl Val<'_> {
    fn view(&self) -> ArrayViewD<'_, f64> {
        match self {
            Val::View(v) => v.view(),
            Val::Owned(a) => a.view(),
        }
    }

    fn into_owned(self) -> ArrayD<f64> {
        match self {
            Val::View(v) => v.to_owned(),
            Val::Owned(a) => a,
        }
    }
}

impl Node {
    /// Evaluates the tree; `inputs` are indexed by `Node::Input`.
    pub(super) fn eval(&self, inputs: &[ArrayViewD<'_, f64>]) -> Result<ArrayD<f64>, String> {
        Ok(self.value(inputs)?.into_owned())
    }

    /// The value when the tree uses no input (for axes, indices, defaults).
    pub(super) fn constant(&self) -> Option<f64> {
        match self {
            Node::Const(v) => Some(*v),
            Node::Map(f, x) => Some(f.apply(x.constant()?)),
            Node::Binary(op, a, b) => Some(op.apply(a.constant()?, b.constant()?)),
            Node::Input(_) | Node::Reduce { .. } | Node::Index(..) => None,
        }
    }

    fn value<'a>(&self, inputs: &[ArrayViewD<'a, f64>]) -> Result<Val<'a>, String> {
        Ok(match self {
            Node::Const(v) => Val::Owned(arr0(*v).into_dyn()),
            Node::Input(i) => Val::View(
                inputs
                    .get(*i)
                    .ok_or_else(|| format!("input {} is missing", i + 1))?
                    .clone(),
            ),
            Node::Map(f, x) => {
                let mut a = match x.value(inputs)? {
                    Val::View(v) => v.to_owned(),
                    Val::Owned(a) => a,
                };
                a.mapv_inplace(|v| f.apply(v));
                Val::Owned(a)
            }
            Node::Binary(op, a, b) => {
                let (a, b) = (a.value(inputs)?, b.value(inputs)?);
                Val::Owned(binary(*op, a.view(), b.view())?)
            }
            Node::Reduce {
                op,
                arg,
                axis,
                ddof,
            } => Val::Owned(reduce(*op, arg.value(inputs)?.view(), *axis, *ddof)?),
            Node::Index(base, items) => index(base.value(inputs)?, items)?,
        })
    }
}

/// numpy's shape tuple notation, for error messages: `()`, `(3,)`, `(2, 3)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// Elementwise `op` with numpy broadcasting: shapes align from the right and
/// each pair of lengths must match or contain a 1.
fn binary(
    op: BinOp,
    a: ArrayViewD<'_, f64>,
    b: ArrayViewD<'_, f64>,
) -> Result<ArrayD<f64>, String> {
    let mismatch = || {
        format!(
            "operands could not be broadcast together with shapes {} {}",
            shape_text(a.shape()),
            shape_text(b.shape())
        )
    };
    let ndim = a.ndim().max(b.ndim());
    let dim_of = |shape: &[usize], axis: usize| {
        (axis + shape.len())
            .checked_sub(ndim)
            .map_or(1, |k| shape[k])
    };
    let shape = (0..ndim)
        .map(
            |axis| match (dim_of(a.shape(), axis), dim_of(b.shape(), axis)) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            },
        )
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(mismatch)?;
    let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return Err(mismatch());
    };
    Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| op.apply(x, y)))
}

/// Reduces over one axis (negative counts from the end) or, with `None`, over
/// the whole array to a 0-d result.
fn reduce(
    op: Reduction,
    a: ArrayViewD<'_, f64>,
    axis: Option<isize>,
    ddof: f64,
) -> Result<ArrayD<f64>, String> {
    let Some(axis) = axis else {
        let flat: Vec<f64>;
        let lane = match a.as_slice() {
            Some(s) => ArrayView1::from(s),
            None => {
                flat = a.iter().copied().collect();
                ArrayView1::from(&flat[..])
            }
        };
        return Ok(arr0(op.lane(lane, ddof)?).into_dyn());
    };
    let ndim = a.ndim() as isize;
    let k = if axis < 0 { axis + ndim } else { axis };
    if !(0..ndim).contains(&k) {
        return Err(format!(
            "axis {axis} is out of bounds for array of dimension {ndim}"
        ));
    }
    let mut failure = None;
    let out = a.map_axis(Axis(k as usize), |lane| {
        op.lane(lane, ddof).unwrap_or_else(|e| {
            failure.get_or_insert(e);
            f64::NAN
        })
    });
    failure.map_or(Ok(out), Err)
}

/// numpy basic indexing: integers drop an axis, slices keep it, axes not
/// mentioned are kept whole.
fn index<'a>(val: Val<'a>, items: &[IndexItem]) -> Result<Val<'a>, String> {
    let shape = val.view().shape().to_vec();
    if items.len() > shape.len() {
        return Err(format!(
            "too many indices for array: array is {}-dimensional, but {} were indexed",
            shape.len(),
            items.len()
        ));
    }
    let mut elems = Vec::with_capacity(shape.len());
    for (axis, &len) in shape.iter().enumerate() {
        let len_i = len as isize;
        elems.push(match items.get(axis) {
            Some(&IndexItem::At(i)) => {
                let k = if i < 0 { i + len_i } else { i };
                if !(0..len_i).contains(&k) {
                    return Err(format!(
                        "index {i} is out of bounds for axis {axis} with size {len}"
                    ));
                }
                SliceInfoElem::Index(k)
            }
            Some(&IndexItem::Slice { start, stop, step }) => python_slice(len_i, start, stop, step),
            None => SliceInfoElem::Slice {
                start: 0,
                end: None,
                step: 1,
            },
        });
    }
    let info = SliceInfo::<_, IxDyn, IxDyn>::try_from(elems).map_err(|e| e.to_string())?;
    Ok(match val {
        Val::View(v) => Val::View(v.slice_move(info)),
        Val::Owned(a) => Val::Owned(a.slice_move(info)),
    })
}

/// Python's slice semantics (out-of-range bounds clamp, negative values count
/// from the end, negative steps walk backwards) expressed as an ndarray slice,
/// whose negative steps instead reverse the range `start..end`.
fn python_slice(
    len: isize,
    start: Option<isize>,
    stop: Option<isize>,
    step: isize,
) -> SliceInfoElem {
    let backwards = step < 0;
    let clamp = |bound: isize| {
        if bound < 0 {
            let b = bound + len;
            if b >= 0 {
                b
            } else if backwards {
                -1
            } else {
                0
            }
        } else if bound >= len {
            if backwards {
                len - 1
            } else {
                len
            }
        } else {
            bound
        }
    };
    let first = start.map_or(if backwards { len - 1 } else { 0 }, clamp);
    let stop = stop.map_or(if backwards { -1 } else { len }, clamp);
    let span = if backwards {
        first - stop
    } else {
        stop - first
    };
    let count = if span > 0 {
        (span - 1) / step.abs() + 1
    } else {
        0
    };
    if count == 0 {
        return SliceInfoElem::Slice {
            start: 0,
            end: Some(0),
            step: 1,
        };
    }
    let reach = (count - 1) * step.abs();
    let (lo, hi) = if backwards {
        (first - reach, first + 1)
    } else {
        (first, first + reach + 1)
    };
    SliceInfoElem::Slice {
        start: lo,
        end: Some(hi),
        step,
    }
}
