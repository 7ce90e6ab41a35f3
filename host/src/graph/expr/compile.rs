//! Checks a syntax tree against the allowed language and binds its names:
//! lambda arguments to inputs, params or defaults; `np.<f>` to known numpy
//! functions. Everything not explicitly allowed is rejected here, with the
//! position of the offending token.

use super::eval::{IndexItem, MapFn, Node, Reduction};
use super::parser::{Arg, Form, Lambda, SubItem, Syn, SynKind};
use super::ExprError;

/// Methods callable on an array value, as `x.mean()`.
const METHODS: &str = ".mean() .std() .sum() .min() .max()";

/// Largest magnitude accepted for an index or axis: every such integer is
/// exact in an `f64` and far from `isize` overflow in slice arithmetic.
const MAX_INDEX: f64 = 9_007_199_254_740_992.0;

#[derive(Debug, Clone, Copy)]
enum Func {
    Map(MapFn),
    Reduce(Reduction),
}

fn numpy_function(name: &str) -> Option<Func> {
    let (map, reduce) = (|f| Some(Func::Map(f)), |r| Some(Func::Reduce(r)));
    match name {
        "abs" => map(MapFn::Abs),
        "log" => map(MapFn::Log),
        "log10" => map(MapFn::Log10),
        "exp" => map(MapFn::Exp),
        "sqrt" => map(MapFn::Sqrt),
        "nansum" => reduce(Reduction::NanSum),
        "nanmean" => reduce(Reduction::NanMean),
        "nanstd" => reduce(Reduction::NanStd),
        "nanmin" => reduce(Reduction::NanMin),
        "nanmax" => reduce(Reduction::NanMax),
        _ => method(name).map(Func::Reduce),
    }
}

fn method(name: &str) -> Option<Reduction> {
    Some(match name {
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        "std" => Reduction::Std,
        "min" => Reduction::Min,
        "max" => Reduction::Max,
        _ => return None,
    })
}

fn numpy_constant(name: &str) -> Option<f64> {
    Some(match name {
        "pi" => std::f64::consts::PI,
        "e" => std::f64::consts::E,
        "nan" => f64::NAN,
        "inf" => f64::INFINITY,
        _ => return None,
    })
}

/// What a lambda argument stands for.
#[derive(Debug, Clone, Copy)]
enum Binding {
    Input(usize),
    Const(f64),
    /// Legacy `lambda inputs: inputs['name']`: all inputs, by name.
    Dict,
}

/// Compiles a parsed `func:` string for a feature with these inputs and params.
pub(super) fn compile(
    src: &str,
    form: &Form,
    inputs: &[&str],
    params: &[(&str, f64)],
) -> Result<Node, ExprError> {
    let mut scope = Scope {
        src,
        inputs,
        args: Vec::new(),
    };
    match form {
        Form::Lambda(lambda) => scope.lambda(lambda, params),
        Form::Expr(e) => scope.function(e, params),
    }
}

struct Scope<'a> {
    src: &'a str,
    inputs: &'a [&'a str],
    args: Vec<(&'a str, Binding)>,
}

impl<'a> Scope<'a> {
    fn error(&self, pos: usize, message: String) -> ExprError {
        ExprError::new(self.src, pos, message)
    }

    fn lookup(&self, name: &str) -> Option<Binding> {
        self.args
            .iter()
            .find(|(arg, _)| *arg == name)
            .map(|(_, b)| *b)
    }

    /// `np` or `numpy` when `e` names the module (not a lambda argument).
    fn numpy_alias<'s>(&self, e: &'s Syn) -> Option<&'s str> {
        match &e.kind {
            SynKind::Name(n) if (n == "np" || n == "numpy") && self.lookup(n).is_none() => Some(n),
            _ => None,
        }
    }

    /// Binds the arguments, then compiles the body.
    fn lambda(&mut self, lambda: &'a Lambda, params: &[(&str, f64)]) -> Result<Node, ExprError> {
        let n = self.inputs.len();
        let legacy = match lambda.params.as_slice() {
            [only] if only.default.is_none() => uses_as_dict(&lambda.body, &only.name),
            _ => false,
        };
        if legacy {
            self.args.push((&lambda.params[0].name, Binding::Dict));
        } else {
            if lambda.params.len() < n {
                return Err(self.error(
                    lambda.colon,
                    format!(
                        "the lambda takes {} argument(s) but the feature has {n} input(s)",
                        lambda.params.len()
                    ),
                ));
            }
            // Defaults are evaluated first, with no argument in scope, and
            // checked even where an input overrides them: Python evaluates
            // them when the lambda is defined.
            let defaults = lambda
                .params
                .iter()
                .map(|arg| {
                    arg.default
                        .as_ref()
                        .map(|d| self.constant(d, "a default value"))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?;
            for ((i, arg), default) in lambda.params.iter().enumerate().zip(defaults) {
                let param = params.iter().find(|(p, _)| *p == arg.name).map(|(_, v)| *v);
                let binding = match (i < n, param, default) {
                    (true, ..) => Binding::Input(i),
                    (false, Some(v), _) | (false, None, Some(v)) => Binding::Const(v),
                    (false, None, None) => {
                        return Err(self.error(
                            arg.pos,
                            format!(
                                "argument `{}` has no value: it is not one of the {n} input(s), \
                                 not a param and has no default",
                                arg.name
                            ),
                        ))
                    }
                };
                self.args.push((&arg.name, binding));
            }
        }
        let takers = if legacy { &[][..] } else { &lambda.params[n..] };
        if let Some((p, _)) = params
            .iter()
            .find(|(p, _)| !takers.iter().any(|a| a.name == *p))
        {
            return Err(self.error(
                lambda.colon,
                format!(
                    "param `{p}` is not taken by any lambda argument after the {n} input argument(s)"
                ),
            ));
        }
        self.expr(&lambda.body)
    }

    /// A bare function name (`np.mean`, `abs`), applied to the single input
    /// with the params as keyword arguments, as the predecessor called it.
    fn function(&self, e: &Syn, params: &[(&str, f64)]) -> Result<Node, ExprError> {
        let (name, func) = match &e.kind {
            SynKind::Name(n) if n == "abs" => ("abs".to_owned(), Func::Map(MapFn::Abs)),
            SynKind::Name(n) => return Err(self.error(e.pos, format!("unknown function `{n}`"))),
            SynKind::Attr(base, f) if self.numpy_alias(base).is_some() => {
                let name = format!("{}.{f}", self.numpy_alias(base).unwrap_or("np"));
                let func = numpy_function(f)
                    .ok_or_else(|| self.error(e.pos, format!("unknown numpy function `{name}`")))?;
                (name, func)
            }
            _ => {
                return Err(self.error(
                    0,
                    "func must be `lambda ...: ...`, a numpy function such as `np.mean`, or `abs`"
                        .into(),
                ))
            }
        };
        if self.inputs.len() != 1 {
            return Err(self.error(
                0,
                format!(
                    "`{name}` takes one input, but the feature has {}",
                    self.inputs.len()
                ),
            ));
        }
        let arg = Box::new(Node::Input(0));
        let op = match func {
            Func::Map(f) => {
                if let Some((p, _)) = params.first() {
                    return Err(self.error(0, format!("`{name}` takes no param `{p}`")));
                }
                return Ok(Node::Map(f, arg));
            }
            Func::Reduce(op) => op,
        };
        let (mut axis, mut ddof) = (None, 0.0);
        for &(p, v) in params {
            match p {
                "axis" => axis = Some(self.integer(v, 0, "`axis`")?),
                "ddof" if op.takes_ddof() => ddof = v,
                _ => return Err(self.error(0, format!("`{name}` takes no param `{p}`"))),
            }
        }
        Ok(Node::Reduce {
            op,
            arg,
            axis,
            ddof,
        })
    }

    fn expr(&self, e: &Syn) -> Result<Node, ExprError> {
        Ok(match &e.kind {
            SynKind::Num(v) => Node::Const(*v),
            SynKind::Str(_) => {
                return Err(self.error(
                    e.pos,
                    "strings are only allowed as input names, as in `lambda inputs: inputs['gm']`"
                        .into(),
                ))
            }
            SynKind::Name(n) => self.name(n, e.pos)?,
            SynKind::Neg(x) => Node::Map(MapFn::Neg, Box::new(self.expr(x)?)),
            SynKind::Pos(x) => self.expr(x)?,
            SynKind::Binary(op, a, b) => {
                Node::Binary(*op, Box::new(self.expr(a)?), Box::new(self.expr(b)?))
            }
            SynKind::Attr(base, name) => self.attribute(base, name, e.pos)?,
            SynKind::Call(callee, args) => self.call(callee, args, e.pos)?,
            SynKind::Subscript(base, items) => self.subscript(base, items, e.pos)?,
        })
    }

    fn name(&self, n: &str, pos: usize) -> Result<Node, ExprError> {
        let message = match self.lookup(n) {
            Some(Binding::Input(i)) => return Ok(Node::Input(i)),
            Some(Binding::Const(v)) => return Ok(Node::Const(v)),
            Some(Binding::Dict) => format!(
                "`{n}` holds the inputs by name; use it as {n}['{}']",
                self.inputs.first().copied().unwrap_or("name")
            ),
            None if n == "np" || n == "numpy" => {
                format!("`{n}` can only be used as `{n}.<function>(...)`")
            }
            None if n == "abs" => "`abs` must be called, as in `abs(x)`".to_owned(),
            None if self.args.is_empty() => {
                format!("unknown name `{n}`")
            }
            None => {
                let names: Vec<&str> = self.args.iter().map(|(a, _)| *a).collect();
                format!(
                    "unknown name `{n}`{}; the lambda's arguments are: {}",
                    crate::suggest::hint(n, names.iter().copied()),
                    names.join(", ")
                )
            }
        };
        Err(self.error(pos, message))
    }

    /// `base.name` not followed by a call: only numpy constants.
    fn attribute(&self, base: &Syn, name: &str, pos: usize) -> Result<Node, ExprError> {
        if let Some(np) = self.numpy_alias(base) {
            if let Some(v) = numpy_constant(name) {
                return Ok(Node::Const(v));
            }
            let message = if numpy_function(name).is_some() {
                format!("`{np}.{name}` must be called, as in `{np}.{name}(x)`")
            } else {
                format!("unknown numpy name `{np}.{name}`")
            };
            return Err(self.error(pos, message));
        }
        self.expr(base)?;
        let message = if method(name).is_some() {
            format!("method `.{name}` must be called, as in `x.{name}()`")
        } else {
            attribute_not_allowed(name)
        };
        Err(self.error(pos, message))
    }

    fn call(&self, callee: &Syn, args: &[Arg], pos: usize) -> Result<Node, ExprError> {
        match &callee.kind {
            SynKind::Name(n) if n == "abs" && self.lookup(n).is_none() => {
                self.map_call("abs", MapFn::Abs, args, pos)
            }
            SynKind::Name(n) => {
                let message = match self.lookup(n) {
                    Some(_) => format!("`{n}` is not a function"),
                    None => format!("unknown function `{n}`"),
                };
                Err(self.error(callee.pos, message))
            }
            SynKind::Attr(base, f) => match self.numpy_alias(base) {
                Some(np) => self.numpy_call(&format!("{np}.{f}"), f, callee.pos, args, pos),
                None => {
                    let array = self.expr(base)?;
                    let op = method(f)
                        .ok_or_else(|| self.error(callee.pos, attribute_not_allowed(f)))?;
                    self.reduction(&format!(".{f}()"), op, array, args)
                }
            },
            _ => Err(self.error(
                callee.start(),
                "only `np.<function>(...)`, `abs(...)` and array methods can be called".into(),
            )),
        }
    }

    /// `np.<f>(args)`; `name_pos` is that of `f`, `pos` that of `(`.
    fn numpy_call(
        &self,
        name: &str,
        f: &str,
        name_pos: usize,
        args: &[Arg],
        pos: usize,
    ) -> Result<Node, ExprError> {
        match numpy_function(f) {
            Some(Func::Map(m)) => self.map_call(name, m, args, pos),
            Some(Func::Reduce(op)) => {
                let Some((array, rest)) = args.split_first().filter(|(a, _)| a.keyword.is_none())
                else {
                    return Err(self.error(pos, format!("`{name}` needs an array argument")));
                };
                let array = self.expr(&array.value)?;
                self.reduction(name, op, array, rest)
            }
            None => Err(self.error(name_pos, format!("unknown numpy function `{name}`"))),
        }
    }

    /// An elementwise function: exactly one positional argument.
    fn map_call(&self, name: &str, f: MapFn, args: &[Arg], pos: usize) -> Result<Node, ExprError> {
        match args {
            [Arg {
                keyword: None,
                value,
            }] => Ok(Node::Map(f, Box::new(self.expr(value)?))),
            _ => {
                let at = args.get(1).map_or(pos, |a| a.value.start());
                Err(self.error(at, format!("`{name}` takes exactly one array argument")))
            }
        }
    }

    /// Options of a reduction after its array: an optional positional `axis`,
    /// then keywords `axis` and (for std) `ddof`.
    fn reduction(
        &self,
        name: &str,
        op: Reduction,
        array: Node,
        options: &[Arg],
    ) -> Result<Node, ExprError> {
        let (mut axis, mut ddof) = (None, None);
        for (i, arg) in options.iter().enumerate() {
            let (key, key_pos) = match &arg.keyword {
                Some((k, p)) => (k.as_str(), *p),
                None if i == 0 => ("axis", arg.value.start()),
                None => {
                    return Err(self.error(
                        arg.value.start(),
                        format!("`{name}` takes at most one positional option (axis)"),
                    ))
                }
            };
            let slot = match key {
                "axis" => &mut axis,
                "ddof" if op.takes_ddof() => &mut ddof,
                _ => {
                    let allowed = if op.takes_ddof() {
                        "axis, ddof"
                    } else {
                        "axis"
                    };
                    return Err(self.error(
                        key_pos,
                        format!("`{name}` takes no argument `{key}` (allowed: {allowed})"),
                    ));
                }
            };
            if slot.is_some() {
                return Err(self.error(key_pos, format!("`{key}` given twice")));
            }
            *slot = Some((
                self.constant(&arg.value, &format!("`{key}`"))?,
                arg.value.start(),
            ));
        }
        let axis = match axis {
            Some((v, at)) => Some(self.integer(v, at, "`axis`")?),
            None => None,
        };
        let ddof = ddof.map_or(0.0, |(v, _)| v);
        Ok(Node::Reduce {
            op,
            arg: Box::new(array),
            axis,
            ddof,
        })
    }

    fn subscript(&self, base: &Syn, items: &[SubItem], pos: usize) -> Result<Node, ExprError> {
        if let SynKind::Name(n) = &base.kind {
            if let Some(Binding::Dict) = self.lookup(n) {
                return self.input_by_name(n, items, pos);
            }
        }
        let array = self.expr(base)?;
        let items = items
            .iter()
            .map(|item| match item {
                SubItem::Index(e) => Ok(IndexItem::At(self.integer_expr(e, "an index")?)),
                SubItem::Slice { start, stop, step } => {
                    let bound = |b: &Option<Syn>| {
                        b.as_ref()
                            .map(|e| self.integer_expr(e, "a slice bound"))
                            .transpose()
                    };
                    let step_value = bound(step)?.unwrap_or(1);
                    if let (Some(e), 0) = (step, step_value) {
                        return Err(self.error(e.start(), "slice step cannot be zero".into()));
                    }
                    Ok(IndexItem::Slice {
                        start: bound(start)?,
                        stop: bound(stop)?,
                        step: step_value,
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Node::Index(Box::new(array), items))
    }

    /// Legacy `inputs['name']`.
    fn input_by_name(&self, dict: &str, items: &[SubItem], pos: usize) -> Result<Node, ExprError> {
        let [SubItem::Index(Syn {
            kind: SynKind::Str(key),
            pos: key_pos,
            ..
        })] = items
        else {
            return Err(self.error(
                pos,
                format!("`{dict}` must be subscripted with one input name, as in {dict}['gm']"),
            ));
        };
        match self.inputs.iter().position(|i| i == key) {
            Some(i) => Ok(Node::Input(i)),
            None => Err(self.error(
                *key_pos,
                format!(
                    "unknown input '{key}'{}; the feature's inputs are: {}",
                    crate::suggest::hint(key, self.inputs.iter().copied()),
                    self.inputs.join(", ")
                ),
            )),
        }
    }

    /// Value of an expression that must not depend on the inputs.
    fn constant(&self, e: &Syn, what: &str) -> Result<f64, ExprError> {
        self.expr(e)?.constant().ok_or_else(|| {
            self.error(
                e.start(),
                format!("{what} must be a constant (numbers, params and defaults only)"),
            )
        })
    }

    fn integer_expr(&self, e: &Syn, what: &str) -> Result<isize, ExprError> {
        let v = self.constant(e, what)?;
        self.integer(v, e.start(), what)
    }

    fn integer(&self, v: f64, pos: usize, what: &str) -> Result<isize, ExprError> {
        if v.fract() == 0.0 && v.abs() <= MAX_INDEX {
            Ok(v as isize)
        } else {
            Err(self.error(pos, format!("{what} must be an integer, got {v}")))
        }
    }
}

fn attribute_not_allowed(name: &str) -> String {
    format!("attribute `.{name}` is not allowed; only `np.<function>` and the methods {METHODS}")
}

/// Whether `body` subscripts `name` by a string, which marks the legacy
/// single-dict calling convention.
fn uses_as_dict(body: &Syn, name: &str) -> bool {
    if let SynKind::Subscript(base, items) = &body.kind {
        let by_string = matches!(
            items.first(),
            Some(SubItem::Index(Syn {
                kind: SynKind::Str(_),
                ..
            }))
        );
        if by_string && matches!(&base.kind, SynKind::Name(n) if n == name) {
            return true;
        }
    }
    body.children().into_iter().any(|c| uses_as_dict(c, name))
}
