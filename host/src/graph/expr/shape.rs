//! Static shapes: what an expression returns per step, known before any data is read.
//!
//! The output schema must not depend on the data (every experiment of a config has the same
//! columns), and shape errors that hold for every step are config errors. So each node's
//! shape is derived from its inputs' declared shapes: the number of axes is exact, and each
//! axis is either a fixed length or data-dependent.

use super::eval::{IndexItem, Node};

/// Length of one axis of a per-step value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    Fixed(usize),
    /// Depends on the data (e.g. the number of cycles of a step).
    Dyn,
}

/// A value's shape: per step (axes after the step axis), or one array for the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape {
    Rows(Vec<Extent>),
    Plain(Vec<Extent>),
}

fn text(dims: &[Extent]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Extent::Fixed(k) => k.to_string(),
            Extent::Dyn => "n".to_string(),
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// numpy broadcasting of two shapes aligned from the right; a data-dependent axis matches
/// any length (checked per step at run time).
fn broadcast(a: &[Extent], b: &[Extent]) -> Result<Vec<Extent>, String> {
    let n = a.len().max(b.len());
    let at = |s: &[Extent], k: usize| {
        (k + s.len())
            .checked_sub(n)
            .map_or(Extent::Fixed(1), |i| s[i])
    };
    (0..n)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Ok(x),
            (Extent::Fixed(1), y) => Ok(y),
            (x, Extent::Fixed(1)) => Ok(x),
            (Extent::Dyn, y) | (y, Extent::Dyn) => Ok(y),
            _ => Err(format!(
                "operands could not be broadcast together with per-step shapes {} {}",
                text(a),
                text(b)
            )),
        })
        .collect()
}

fn remove_axis(dims: &[Extent], axis: isize, ndim: usize) -> Result<(usize, Vec<Extent>), String> {
    let k = if axis < 0 { axis + ndim as isize } else { axis };
    if !(0..ndim as isize).contains(&k) {
        return Err(format!(
            "axis {axis} is out of bounds for array of dimension {ndim}"
        ));
    }
    Ok((k as usize, dims.to_vec()))
}

/// Length of a Python slice of a fixed-length axis.
fn slice_len(len: usize, start: Option<isize>, stop: Option<isize>, step: isize) -> usize {
    let n = len as isize;
    let (lo, hi) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let clamp = |b: isize| {
        let b = if b < 0 { b + n } else { b };
        b.clamp(lo, hi)
    };
    let first = start.map_or(if step > 0 { 0 } else { n - 1 }, clamp);
    let last = stop.map_or(if step > 0 { n } else { -1 }, clamp);
    let span = if step > 0 { last - first } else { first - last };
    if span <= 0 {
        0
    } else {
        ((span - 1) / step.abs() + 1) as usize
    }
}

/// Applies basic indexing to `dims` (all axes of the indexed array).
fn index_dims(dims: &[Extent], items: &[IndexItem]) -> Result<Vec<Extent>, String> {
    if items.len() > dims.len() {
        return Err(format!(
            "too many indices for array: array is {}-dimensional, but {} were indexed",
            dims.len(),
            items.len()
        ));
    }
    let mut out = Vec::new();
    for (axis, d) in dims.iter().enumerate() {
        match (items.get(axis), d) {
            (None, d) => out.push(*d),
            (Some(IndexItem::At(i)), Extent::Fixed(k)) => {
                let k = *k as isize;
                if !(-k..k).contains(i) {
                    return Err(format!(
                        "index {i} is out of bounds for axis {axis} with size {k}"
                    ));
                }
            }
            (Some(IndexItem::At(_)), Extent::Dyn) => {}
            (Some(IndexItem::Slice { start, stop, step }), Extent::Fixed(k)) => {
                out.push(Extent::Fixed(slice_len(*k, *start, *stop, *step)))
            }
            (Some(IndexItem::Slice { .. }), Extent::Dyn) => out.push(Extent::Dyn),
        }
    }
    Ok(out)
}

impl Node {
    /// The static shape of the tree, given its inputs' per-step shapes.
    pub(super) fn shape(&self, inputs: &[Vec<Extent>]) -> Result<Shape, String> {
        Ok(match self {
            Node::Const(_) => Shape::Plain(Vec::new()),
            Node::Input(i) => Shape::Rows(
                inputs
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| format!("input {} is missing", i + 1))?,
            ),
            Node::Map(_, x) => x.shape(inputs)?,
            Node::Binary(_, a, b) => match (a.shape(inputs)?, b.shape(inputs)?) {
                (Shape::Plain(x), Shape::Plain(y)) => Shape::Plain(broadcast(&x, &y)?),
                (Shape::Rows(x), Shape::Rows(y)) => Shape::Rows(broadcast(&x, &y)?),
                (Shape::Rows(r), Shape::Plain(p)) | (Shape::Plain(p), Shape::Rows(r)) => {
                    if p.len() > r.len() + 1 {
                        return Err(format!(
                            "operands could not be broadcast together: a per-step value of shape {} and an array of shape {}",
                            text(&r),
                            text(&p)
                        ));
                    }
                    let p = if p.len() == r.len() + 1 {
                        &p[1..]
                    } else {
                        &p[..]
                    };
                    Shape::Rows(broadcast(&r, p)?)
                }
            },
            Node::Reduce { arg, axis, .. } => match (arg.shape(inputs)?, axis) {
                (_, None) => Shape::Plain(Vec::new()),
                (Shape::Plain(p), Some(a)) => {
                    let (k, mut dims) = remove_axis(&p, *a, p.len())?;
                    dims.remove(k);
                    Shape::Plain(dims)
                }
                (Shape::Rows(r), Some(a)) => {
                    let (k, mut dims) = remove_axis(&r, *a, r.len() + 1)?;
                    if k == 0 {
                        Shape::Plain(dims)
                    } else {
                        dims.remove(k - 1);
                        Shape::Rows(dims)
                    }
                }
            },
            Node::Index(base, items) => match base.shape(inputs)? {
                Shape::Plain(p) => Shape::Plain(index_dims(&p, items)?),
                Shape::Rows(r) => match items.split_first() {
                    Some((
                        IndexItem::Slice {
                            start: None,
                            stop: None,
                            step: 1,
                        },
                        per,
                    )) => Shape::Rows(index_dims(&r, per)?),
                    _ => {
                        let mut all = vec![Extent::Dyn];
                        all.extend(&r);
                        Shape::Plain(index_dims(&all, items)?)
                    }
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_lengths_follow_python() {
        let py = |len: usize, a: Option<isize>, b: Option<isize>, s: isize| slice_len(len, a, b, s);
        assert_eq!(py(2, None, None, 1), 2);
        assert_eq!(py(100, Some(-10), None, 1), 10);
        assert_eq!(py(5, Some(-10), None, 1), 5);
        assert_eq!(py(5, None, Some(10), 1), 5);
        assert_eq!(py(5, None, None, -1), 5);
        assert_eq!(py(5, Some(3), Some(1), 1), 0);
        assert_eq!(py(5, None, None, 2), 3);
        assert_eq!(py(0, None, None, 1), 0);
    }

    #[test]
    fn broadcasting_with_data_dependent_axes() {
        use Extent::{Dyn, Fixed};
        assert_eq!(
            broadcast(&[Dyn, Fixed(2)], &[Fixed(2)]),
            Ok(vec![Dyn, Fixed(2)])
        );
        assert_eq!(broadcast(&[Dyn], &[Fixed(3)]), Ok(vec![Fixed(3)]));
        assert_eq!(broadcast(&[Fixed(1)], &[Dyn]), Ok(vec![Dyn]));
        assert!(broadcast(&[Fixed(2)], &[Fixed(3)]).is_err());
    }
}
