//! What an extractor function may return, and how it becomes the per-step value.

use std::fmt::Display;

use crate::abi::{Dim, FailureKind, FeatureValue, StepFailure};

/// A return type of an extractor function: converts into the step's value or its failure.
///
/// | returned | per-step value |
/// |---|---|
/// | `f64` | a scalar |
/// | `[f64; N]` | `[N]` |
/// | `Vec<f64>` | `[len]` (declare the shape) |
/// | `Vec<[f64; N]>` | `[len, N]` (declare the shape) |
/// | `ndarray::Array<f64, D>` (feature `ndarray`) | the array's shape (declare it) |
/// | [`FeatureValue`] | as given (declare the shape) |
/// | `Option<T>` | `None`: no result for this step |
/// | `Result<T, E>` | `Err(e)`: invalid input with `e`'s text, or the [`StepFailure`] itself |
pub trait IntoStepValue {
    /// The number of axes of every value, when the type fixes it.
    const RANK: Option<usize>;

    fn into_step_value(self) -> Result<FeatureValue, StepFailure>;
}

/// A return type whose per-step shape follows from the type alone, so that the
/// attribute need not declare it.
#[diagnostic::on_unimplemented(
    message = "the per-step shape of `{Self}` depends on the data or the parameters",
    label = "declare it in the attribute: `#[extractor(..., shape = [...])]`"
)]
pub trait KnownShape: IntoStepValue {
    fn shape() -> Vec<Dim>;
}

impl IntoStepValue for f64 {
    const RANK: Option<usize> = Some(0);

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        Ok(FeatureValue::scalar(self))
    }
}

impl KnownShape for f64 {
    fn shape() -> Vec<Dim> {
        Vec::new()
    }
}

impl<const N: usize> IntoStepValue for [f64; N] {
    const RANK: Option<usize> = Some(1);

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        Ok(FeatureValue::vector(self.to_vec()))
    }
}

impl<const N: usize> KnownShape for [f64; N] {
    fn shape() -> Vec<Dim> {
        vec![Dim::Fixed(N as u64)]
    }
}

impl IntoStepValue for Vec<f64> {
    const RANK: Option<usize> = Some(1);

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        Ok(FeatureValue::vector(self))
    }
}

impl<const N: usize> IntoStepValue for Vec<[f64; N]> {
    const RANK: Option<usize> = Some(2);

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        let rows = self.len() as u64;
        let data = self.into_iter().flatten().collect();
        FeatureValue::array(vec![rows, N as u64], data).map_err(StepFailure::invalid_input)
    }
}

impl IntoStepValue for FeatureValue {
    const RANK: Option<usize> = None;

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        Ok(self)
    }
}

#[cfg(feature = "ndarray")]
impl<S, D> IntoStepValue for ndarray::ArrayBase<S, D>
where
    S: ndarray::Data<Elem = f64>,
    D: ndarray::Dimension,
{
    const RANK: Option<usize> = D::NDIM;

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        let shape = self.shape().iter().map(|&n| n as u64).collect();
        // `iter` walks in logical (row-major) order whatever the memory layout.
        FeatureValue::array(shape, self.iter().copied().collect())
            .map_err(StepFailure::invalid_input)
    }
}

impl<T: IntoStepValue> IntoStepValue for Option<T> {
    const RANK: Option<usize> = T::RANK;

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        match self {
            Some(v) => v.into_step_value(),
            None => Err(StepFailure::no_result("no result for this step")),
        }
    }
}

impl<T: KnownShape> KnownShape for Option<T> {
    fn shape() -> Vec<Dim> {
        T::shape()
    }
}

/// An error an extractor may return: anything `Display` (an invalid input), or a
/// [`StepFailure`] of the kind it chooses.
pub trait IntoFailure {
    fn into_failure(self) -> StepFailure;
}

impl<E: Display> IntoFailure for E {
    fn into_failure(self) -> StepFailure {
        StepFailure::new(FailureKind::InvalidInput, self.to_string())
    }
}

impl IntoFailure for StepFailure {
    fn into_failure(self) -> StepFailure {
        self
    }
}

impl<T: IntoStepValue, E: IntoFailure> IntoStepValue for Result<T, E> {
    const RANK: Option<usize> = T::RANK;

    fn into_step_value(self) -> Result<FeatureValue, StepFailure> {
        self.map_err(IntoFailure::into_failure)?.into_step_value()
    }
}

impl<T: KnownShape, E: IntoFailure> KnownShape for Result<T, E> {
    fn shape() -> Vec<Dim> {
        T::shape()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: impl IntoStepValue) -> (Vec<u64>, Vec<f64>) {
        let v = v.into_step_value().unwrap();
        (v.shape.into_vec(), v.data.into_vec())
    }

    #[test]
    fn return_types_convert_with_their_shapes() {
        assert_eq!(value(2.5), (vec![], vec![2.5]));
        assert_eq!(value([1.0, 2.0]), (vec![2], vec![1.0, 2.0]));
        assert_eq!(value(vec![1.0, 2.0, 3.0]), (vec![3], vec![1.0, 2.0, 3.0]));
        assert_eq!(
            value(vec![[1.0, 2.0], [3.0, 4.0]]),
            (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(value(Some(1.0)), (vec![], vec![1.0]));
        assert_eq!(value(Ok::<_, String>([0.5; 3])), (vec![3], vec![0.5; 3]));
        assert_eq!(<[f64; 3]>::shape(), vec![Dim::Fixed(3)]);
        assert_eq!(<Result<Option<f64>, String>>::shape(), vec![]);
        assert_eq!(
            <Result<Vec<[f64; 2]>, String> as IntoStepValue>::RANK,
            Some(2)
        );
    }

    #[test]
    fn failures_keep_their_kind() {
        let e = None::<f64>.into_step_value().unwrap_err();
        assert_eq!(e.kind, FailureKind::NoResult);
        let e = Err::<f64, _>("too short").into_step_value().unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (FailureKind::InvalidInput, "too short")
        );
        let e = Err::<f64, _>(StepFailure::no_result("no fit"))
            .into_step_value()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (FailureKind::NoResult, "no fit")
        );
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_arrays_keep_their_shape_in_row_major_order() {
        let a =
            ndarray::Array2::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            value(a.t().to_owned()),
            (vec![3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
        );
        assert_eq!(
            value(a.view()),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(<ndarray::Array2<f64> as IntoStepValue>::RANK, Some(2));
        assert_eq!(<ndarray::ArrayD<f64> as IntoStepValue>::RANK, None);
    }
}
