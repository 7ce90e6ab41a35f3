//! Compiled expression tree and its evaluation with numpy's semantics (broadcasting, basic
//! indexing, NaN rules of reductions), applied to each step's own array.
//!
//! Inputs are columns of per-step values whose lengths along a data-dependent axis may
//! differ (one step has 99 cycles, the next 109). Instead of padding them to a rectangle,
//! as the predecessor did, an expression `x[:, ...]` indexes and reduces *each step's own
//! array*, so `tau[:, -10:, 0]` is the last ten real cycles of every step and a mean never
//! sees padding. Only a reduction across the steps (`axis=0`, or none) or an index across
//! them (`x[0]`, `x[1:]`) looks at several steps at once. On rectangular data this is
//! exactly numpy's result on the stacked array.

use std::sync::Arc;

use ndarray::{
    arr0, ArrayD, ArrayView1, ArrayViewD, Axis, Dimension, IxDyn, SliceInfo, SliceInfoElem, Zip,
};

use oect_plugin_api::FailureKind;

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

/// An array that stays borrowed from the inputs until an operation needs to own it, so
/// indexing a large input copies only what is selected.
#[derive(Clone)]
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

/// Why a step has no value: the failure's kind (an input's, carried through) and a
/// message for the researcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: Arc<str>,
}

/// The expression itself failed at a step (an index out of bounds, shapes that do not
/// broadcast): the step's data does not fit it.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            kind: FailureKind::InvalidInput,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One step of a per-step input column, as the caller hands it in.
#[derive(Debug, Clone)]
pub enum Cell<'a> {
    /// The step's value, with its own shape (steps of one column may differ in length
    /// along a data-dependent axis).
    Value(ArrayViewD<'a, f64>),
    /// The step has no value; the failure says why (kind `no_result` when the input had
    /// no result rather than an error).
    Failed(Failure),
    /// The row has no step of this column's data kind (rows of mixed configs): padding,
    /// which element-wise operations keep and reductions never see.
    Absent,
}

/// One step of a result column.
#[derive(Debug, Clone, PartialEq)]
pub enum OutCell {
    Value(ArrayD<f64>),
    Failed(Failure),
    Absent,
}

/// A per-step input column: `rank` is the number of axes of each step's value.
#[derive(Debug, Clone)]
pub struct Column<'a> {
    pub rank: usize,
    pub cells: Vec<Cell<'a>>,
}

/// One step during evaluation.
#[derive(Clone)]
enum Item<'a> {
    Value(Val<'a>),
    Failed(Failure),
    Absent,
}

/// A value during evaluation: per step (the rows of the experiment), or one array for the
/// whole experiment (constants, reductions across steps).
enum Value<'a> {
    Plain(Val<'a>),
    Rows { rank: usize, items: Vec<Item<'a>> },
}

/// Applies `f` to each step that has a value; an error fails only that step.
fn per_step<'a>(
    items: Vec<Item<'a>>,
    f: impl Fn(Val<'a>) -> Result<Val<'a>, String>,
) -> Vec<Item<'a>> {
    items
        .into_iter()
        .map(|item| match item {
            Item::Value(v) => match f(v) {
                Ok(v) => Item::Value(v),
                Err(e) => Item::Failed(e.into()),
            },
            other => other,
        })
        .collect()
}

/// A finished evaluation: per step, or one array for the whole experiment.
#[derive(Debug)]
pub(super) enum Evaluated {
    Steps(Vec<OutCell>),
    Whole(ArrayD<f64>),
}

impl Node {
    /// Evaluates the tree over per-step columns.
    pub(super) fn evaluate(&self, inputs: &[Column<'_>]) -> Result<Evaluated, String> {
        let rows = inputs.first().map_or(0, |c| c.cells.len());
        if let Some(c) = inputs.iter().find(|c| c.cells.len() != rows) {
            return Err(format!(
                "inputs have different numbers of rows: {rows} and {}",
                c.cells.len()
            ));
        }
        Ok(match self.value(inputs)? {
            Value::Rows { items, .. } => Evaluated::Steps(
                items
                    .into_iter()
                    .map(|item| match item {
                        Item::Value(v) => OutCell::Value(v.into_owned()),
                        Item::Failed(m) => OutCell::Failed(m),
                        Item::Absent => OutCell::Absent,
                    })
                    .collect(),
            ),
            Value::Plain(v) => Evaluated::Whole(v.into_owned()),
        })
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

    fn value<'a>(&self, inputs: &[Column<'a>]) -> Result<Value<'a>, String> {
        Ok(match self {
            Node::Const(v) => Value::Plain(Val::Owned(arr0(*v).into_dyn())),
            Node::Input(i) => {
                let column = inputs
                    .get(*i)
                    .ok_or_else(|| format!("input {} is missing", i + 1))?;
                let items = column
                    .cells
                    .iter()
                    .map(|c| match c {
                        Cell::Value(v) => Item::Value(Val::View(v.clone())),
                        Cell::Failed(m) => Item::Failed(m.clone()),
                        Cell::Absent => Item::Absent,
                    })
                    .collect();
                Value::Rows {
                    rank: column.rank,
                    items,
                }
            }
            Node::Map(f, x) => {
                let map = |v: Val<'a>| {
                    let mut a = v.into_owned();
                    a.mapv_inplace(|x| f.apply(x));
                    Ok(Val::Owned(a))
                };
                match x.value(inputs)? {
                    Value::Plain(v) => Value::Plain(map(v)?),
                    Value::Rows { rank, items } => Value::Rows {
                        rank,
                        items: per_step(items, map),
                    },
                }
            }
            Node::Binary(op, a, b) => combine(*op, a.value(inputs)?, b.value(inputs)?)?,
            Node::Reduce {
                op,
                arg,
                axis,
                ddof,
            } => match arg.value(inputs)? {
                Value::Plain(v) => Value::Plain(Val::Owned(reduce(*op, v.view(), *axis, *ddof)?)),
                Value::Rows { rank, items } => reduce_rows(*op, rank, items, *axis, *ddof)?,
            },
            Node::Index(base, index_items) => match base.value(inputs)? {
                Value::Plain(v) => Value::Plain(index(v, index_items)?),
                Value::Rows { rank, items } => match index_items.split_first() {
                    Some((
                        IndexItem::Slice {
                            start: None,
                            stop: None,
                            step: 1,
                        },
                        per,
                    )) => {
                        let dropped = per.iter().filter(|i| matches!(i, IndexItem::At(_))).count();
                        Value::Rows {
                            rank: rank.saturating_sub(dropped),
                            items: per_step(items, |v| index_from(v, per, 1)),
                        }
                    }
                    _ => Value::Plain(index(Val::Owned(stack(rank, &items)?), index_items)?),
                },
            },
        })
    }
}

/// A binary operation: step by step where either side is per step (numpy broadcasting
/// within each step), whole arrays otherwise.
fn combine<'a>(op: BinOp, a: Value<'a>, b: Value<'a>) -> Result<Value<'a>, String> {
    let owned = |r: Result<ArrayD<f64>, String>| r.map(Val::Owned);
    Ok(match (a, b) {
        (Value::Plain(x), Value::Plain(y)) => Value::Plain(owned(binary(op, x.view(), y.view()))?),
        (
            Value::Rows {
                rank: ra,
                items: xa,
            },
            Value::Rows {
                rank: rb,
                items: xb,
            },
        ) => {
            let items = xa
                .into_iter()
                .zip(xb)
                .map(|pair| match pair {
                    (Item::Absent, _) | (_, Item::Absent) => Item::Absent,
                    (Item::Failed(m), _) | (_, Item::Failed(m)) => Item::Failed(m),
                    (Item::Value(x), Item::Value(y)) => match binary(op, x.view(), y.view()) {
                        Ok(v) => Item::Value(Val::Owned(v)),
                        Err(e) => Item::Failed(e.into()),
                    },
                })
                .collect();
            Value::Rows {
                rank: ra.max(rb),
                items,
            }
        }
        (Value::Rows { rank, items }, Value::Plain(p)) => {
            rows_with_plain(op, rank, items, p, false)?
        }
        (Value::Plain(p), Value::Rows { rank, items }) => {
            rows_with_plain(op, rank, items, p, true)?
        }
    })
}

/// A per-step value against a whole-experiment array: the array broadcasts against each
/// step's value, or, when it has one more axis, its first axis runs along the steps.
fn rows_with_plain<'a>(
    op: BinOp,
    rank: usize,
    items: Vec<Item<'a>>,
    plain: Val<'a>,
    plain_first: bool,
) -> Result<Value<'a>, String> {
    let p = plain.view();
    let n = items.len();
    let along_steps = p.ndim() == rank + 1;
    if p.ndim() > rank + 1 || (along_steps && p.shape()[0] != 1 && p.shape()[0] != n) {
        return Err(format!(
            "operands could not be broadcast together: one value per step ({n} steps) and shape {}",
            shape_text(p.shape())
        ));
    }
    let items = items
        .into_iter()
        .enumerate()
        .map(|(row, item)| match item {
            Item::Value(v) => {
                let q = if along_steps {
                    p.index_axis(Axis(0), if p.shape()[0] == 1 { 0 } else { row })
                } else {
                    p.view()
                };
                let r = if plain_first {
                    binary(op, q, v.view())
                } else {
                    binary(op, v.view(), q)
                };
                match r {
                    Ok(a) => Item::Value(Val::Owned(a)),
                    Err(e) => Item::Failed(e.into()),
                }
            }
            other => other,
        })
        .collect();
    let rank = if along_steps {
        rank
    } else {
        rank.max(p.ndim())
    };
    Ok(Value::Rows { rank, items })
}

/// Reduces a per-step value: over axes inside each step (per step), across the steps (axis
/// 0: each position over the steps that have it), or over everything (`axis=None`). Absent
/// rows are never seen; a failed step counts as NaN, as numpy would see a NaN row.
fn reduce_rows<'a>(
    op: Reduction,
    rank: usize,
    items: Vec<Item<'a>>,
    axis: Option<isize>,
    ddof: f64,
) -> Result<Value<'a>, String> {
    let ndim = rank as isize + 1;
    let Some(axis) = axis else {
        let mut flat = Vec::new();
        for item in &items {
            match item {
                Item::Value(v) => flat.extend(v.view().iter().copied()),
                Item::Failed(_) => flat.push(f64::NAN),
                Item::Absent => {}
            }
        }
        let lane = op.lane(ArrayView1::from(&flat[..]), ddof)?;
        return Ok(Value::Plain(Val::Owned(arr0(lane).into_dyn())));
    };
    let k = if axis < 0 { axis + ndim } else { axis };
    if !(0..ndim).contains(&k) {
        return Err(format!(
            "axis {axis} is out of bounds for array of dimension {ndim}"
        ));
    }
    if k > 0 {
        let inner = Some(k - 1);
        return Ok(Value::Rows {
            rank: rank - 1,
            items: per_step(items, |v| reduce(op, v.view(), inner, ddof).map(Val::Owned)),
        });
    }
    // Across the steps.
    let values: Vec<ArrayViewD<'_, f64>> = items
        .iter()
        .filter_map(|i| match i {
            Item::Value(v) => Some(v.view()),
            _ => None,
        })
        .collect();
    let mut shape = vec![0usize; rank];
    for v in &values {
        for (d, s) in shape.iter_mut().zip(v.shape()) {
            *d = (*d).max(*s);
        }
    }
    if values.is_empty() && rank > 0 {
        return Err("no step has a value to reduce across the steps".into());
    }
    let mut out = ArrayD::from_elem(IxDyn(&shape), f64::NAN);
    let mut lane = Vec::with_capacity(items.len());
    for (pos, slot) in out.indexed_iter_mut() {
        lane.clear();
        for item in &items {
            match item {
                Item::Value(v) => {
                    if let Some(x) = v.view().get(pos.slice()) {
                        lane.push(*x);
                    }
                }
                Item::Failed(_) => lane.push(f64::NAN),
                Item::Absent => {}
            }
        }
        *slot = op.lane(ArrayView1::from(&lane[..]), ddof)?;
    }
    Ok(Value::Plain(Val::Owned(out)))
}

/// The steps stacked into one array (step axis first), for indexing across steps; steps
/// without a value are NaN. Needs every step's value to have the same shape.
fn stack(rank: usize, items: &[Item<'_>]) -> Result<ArrayD<f64>, String> {
    let mut shape: Option<Vec<usize>> = None;
    for item in items {
        if let Item::Value(v) = item {
            let s = v.view().shape().to_vec();
            match &shape {
                Some(prev) if *prev != s => {
                    return Err(format!(
                        "indexing across steps needs every step's value to have the same shape, \
                         but steps have shapes {} and {}; index within each step with x[:, ...]",
                        shape_text(prev),
                        shape_text(&s)
                    ))
                }
                Some(_) => {}
                None => shape = Some(s),
            }
        }
    }
    let inner = match shape {
        Some(s) => s,
        None if rank == 0 => Vec::new(),
        None => return Err("no step has a value to index across the steps".into()),
    };
    let mut full = vec![items.len()];
    full.extend(&inner);
    let mut out = ArrayD::from_elem(IxDyn(&full), f64::NAN);
    for (row, item) in items.iter().enumerate() {
        if let Item::Value(v) = item {
            out.index_axis_mut(Axis(0), row).assign(&v.view());
        }
    }
    Ok(out)
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
    index_from(val, items, 0)
}

/// [`index`] on a step's array whose axes are numbered from `first_axis` in messages (1
/// for a step of a column, whose axis 0 is the steps).
fn index_from<'a>(val: Val<'a>, items: &[IndexItem], first_axis: usize) -> Result<Val<'a>, String> {
    let shape = val.view().shape().to_vec();
    if items.len() > shape.len() {
        return Err(format!(
            "too many indices for array: array is {}-dimensional, but {} were indexed",
            shape.len() + first_axis,
            items.len() + first_axis
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
                        "index {i} is out of bounds for axis {} with size {len}",
                        axis + first_axis
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
