//! Safe evaluation of derived-feature `func:` strings.
//!
//! The predecessor `eval`ed these Python lambdas, which let a config run
//! arbitrary code. Here they are parsed as a small, closed language (the
//! arithmetic, comparisons, numpy reductions and basic indexing the configs
//! use) and evaluated over whole per-experiment columns; nothing outside that
//! language can be expressed, so nothing else can run.
//!
//! Accepted forms: `lambda a, b, k=2: expr` (the first arguments take the
//! feature's inputs in order, the rest its params by name or their defaults),
//! the legacy `lambda inputs: inputs['name'] ...`, a numpy function name such
//! as `np.mean` (applied to the single input, params as keyword arguments),
//! and `abs`.
//!
//! Expressions: numbers, `+ - * / **`, unary signs, comparisons (1.0 / 0.0),
//! numpy broadcasting; `np.`/`numpy.` `mean std sum min max nanmean nanstd
//! nansum nanmin nanmax` (with `axis=`, and `ddof=` for the stds), `abs log
//! log10 exp sqrt`, `np.pi np.e np.nan np.inf`; `abs(x)`; methods `x.mean()
//! x.std() x.sum() x.min() x.max()`; basic indexing such as `x[:, -10:, 0]`.
//! Indices, axes and `ddof` must be constants (numbers, params, defaults).
//!
//! Evaluation is per step: `x[:, ...]` and reductions over `axis >= 1` apply to each step's
//! own array, so ragged per-step arrays (cycles per step) are never padded (see `eval`).

mod compile;
mod eval;
mod lexer;
mod parser;
mod shape;
#[cfg(test)]
mod tests;

use std::fmt;

pub use eval::{Cell, Column, Failure, OutCell};
pub use shape::Extent;

/// A compiled `func:` expression, ready to evaluate any number of times.
#[derive(Debug, Clone)]
pub struct Expr {
    root: eval::Node,
    n_inputs: usize,
}

/// A rejected `func:` string: what is wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// Byte offset into `src` of the offending token.
    pub pos: usize,
    pub message: String,
    /// The whole `func:` string, kept so that `Display` can point into it.
    pub src: String,
}

impl ExprError {
    fn new(src: &str, pos: usize, message: String) -> Self {
        ExprError {
            pos,
            message,
            src: src.to_owned(),
        }
    }
}

impl fmt::Display for ExprError {
    /// The message, then the source line holding `pos` with a caret under it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pos = self.pos.min(self.src.len());
        while !self.src.is_char_boundary(pos) {
            pos -= 1;
        }
        let line_start = self.src[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.src[pos..]
            .find('\n')
            .map_or(self.src.len(), |i| pos + i);
        // Keep tabs so the caret lines up however the terminal renders them.
        let pad: String = self.src[line_start..pos]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(
            f,
            "{}\n    {}\n    {pad}^",
            self.message,
            &self.src[line_start..line_end]
        )
    }
}

impl std::error::Error for ExprError {}

impl Expr {
    /// Compiles `src` for a feature whose inputs are `inputs` (names, in
    /// config order) and whose numeric params are `params`.
    ///
    /// # Errors
    /// Anything outside the language, and arguments or params that do not
    /// match up, with the position in `src` to blame.
    pub fn compile(src: &str, inputs: &[&str], params: &[(&str, f64)]) -> Result<Expr, ExprError> {
        let form = parser::parse(src)?;
        let root = compile::compile(src, &form, inputs, params)?;
        Ok(Expr {
            root,
            n_inputs: inputs.len(),
        })
    }

    /// The per-step shape of the result, given each input's per-step shape.
    ///
    /// # Errors
    /// Shape errors that would hold for every step (operands that cannot broadcast, an
    /// index or axis out of range, too many indices), and a result that is one array for
    /// the whole experiment rather than one value per step.
    pub fn per_step_shape(&self, inputs: &[Vec<Extent>]) -> Result<Vec<Extent>, String> {
        if inputs.len() != self.n_inputs {
            return Err(format!(
                "expected {} input(s), got {}",
                self.n_inputs,
                inputs.len()
            ));
        }
        match self.root.shape(inputs)? {
            shape::Shape::Rows(dims) => Ok(dims),
            shape::Shape::Plain(_) => Err(
                "the expression returns one value for the whole experiment, not one value per step \
                 (combine it with a per-step input, e.g. `x - x.mean()`)"
                    .into(),
            ),
        }
    }

    /// Evaluates over per-step columns, one per input in compile order, all with the same
    /// number of rows. The result has one cell per row.
    ///
    /// # Errors
    /// What numpy would raise for the whole experiment (a reduction across steps over
    /// nothing, an index across steps of different shapes), a result that is not per step,
    /// or a wrong number of inputs. What goes wrong within one step fails only that step.
    pub fn eval_steps(&self, inputs: &[Column<'_>]) -> Result<Vec<OutCell>, String> {
        if inputs.len() != self.n_inputs {
            return Err(format!(
                "expected {} input column(s), got {}",
                self.n_inputs,
                inputs.len()
            ));
        }
        match self.root.evaluate(inputs)? {
            eval::Evaluated::Steps(cells) => Ok(cells),
            eval::Evaluated::Whole(a) => Err(format!(
                "the expression returns one array of shape {:?} for the whole experiment, not one value per step",
                a.shape()
            )),
        }
    }
}
