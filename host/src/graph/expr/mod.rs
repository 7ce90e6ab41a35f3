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

mod compile;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

use ndarray::{ArrayD, ArrayViewD};

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

    /// Evaluates over whole per-experiment columns (step axis first), one per
    /// input in compile order. The result may have any shape (a scalar is a
    /// 0-d array); the caller checks it.
    ///
    /// # Errors
    /// What numpy would raise: shapes that do not broadcast, an index or axis
    /// out of range, a min/max over nothing; also a wrong number of inputs.
    pub fn eval(&self, inputs: &[ArrayViewD<'_, f64>]) -> Result<ArrayD<f64>, String> {
        if inputs.len() != self.n_inputs {
            return Err(format!(
                "expected {} input array(s), got {}",
                self.n_inputs,
                inputs.len()
            ));
        }
        self.root.eval(inputs)
    }
}
