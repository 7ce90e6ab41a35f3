//! Recursive-descent parser producing a syntax tree with byte positions.
//!
//! It knows only grammar (Python's precedence, restricted to what `func:`
//! strings use); which names, functions and attributes are allowed is decided
//! by `compile`, so that every rejection names the offending token.

use super::lexer::{tokenize, Tok, Token};
use super::ExprError;

/// Deepest nesting accepted, both for parser recursion and for the finished
/// tree, so that hostile input cannot exhaust a worker thread's stack.
const MAX_DEPTH: usize = 100;

/// Python keywords: never names, so that `import`, `if`, `and` are reported
/// as unsupported syntax rather than unknown variables.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Binary operators; comparisons yield 1.0 / 0.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A whole `func:` string.
#[derive(Debug)]
pub(super) enum Form {
    Lambda(Lambda),
    /// Anything else; only a function name such as `np.mean` or `abs` compiles.
    Expr(Syn),
}

#[derive(Debug)]
pub(super) struct Lambda {
    pub params: Vec<Param>,
    /// Position of the `:` ending the argument list.
    pub colon: usize,
    pub body: Syn,
}

#[derive(Debug)]
pub(super) struct Param {
    pub name: String,
    pub pos: usize,
    pub default: Option<Syn>,
}

/// A syntax node; `pos` is where an error about it should point.
#[derive(Debug)]
pub(super) struct Syn {
    pub kind: SynKind,
    pub pos: usize,
    depth: usize,
}

#[derive(Debug)]
pub(super) enum SynKind {
    Num(f64),
    Str(String),
    Name(String),
    Neg(Box<Syn>),
    Pos(Box<Syn>),
    Binary(BinOp, Box<Syn>, Box<Syn>),
    /// `base.name`; the node's `pos` is that of `name`.
    Attr(Box<Syn>, String),
    /// `callee(args)`; the node's `pos` is that of `(`.
    Call(Box<Syn>, Vec<Arg>),
    /// `base[items]`; the node's `pos` is that of `[`.
    Subscript(Box<Syn>, Vec<SubItem>),
}

#[derive(Debug)]
pub(super) struct Arg {
    /// Keyword name and its position, for `name=value`.
    pub keyword: Option<(String, usize)>,
    pub value: Syn,
}

#[derive(Debug)]
pub(super) enum SubItem {
    Index(Syn),
    Slice {
        start: Option<Syn>,
        stop: Option<Syn>,
        step: Option<Syn>,
    },
}

impl Syn {
    /// Where the whole expression begins (`pos` may be an operator inside it).
    pub(super) fn start(&self) -> usize {
        self.children()
            .first()
            .map_or(self.pos, |first| first.start().min(self.pos))
    }

    /// Direct sub-expressions, in source order.
    pub(super) fn children(&self) -> Vec<&Syn> {
        match &self.kind {
            SynKind::Num(_) | SynKind::Str(_) | SynKind::Name(_) => Vec::new(),
            SynKind::Neg(x) | SynKind::Pos(x) | SynKind::Attr(x, _) => vec![x],
            SynKind::Binary(_, a, b) => vec![a, b],
            SynKind::Call(callee, args) => std::iter::once(&**callee)
                .chain(args.iter().map(|a| &a.value))
                .collect(),
            SynKind::Subscript(base, items) => {
                let mut out = vec![&**base];
                for item in items {
                    match item {
                        SubItem::Index(e) => out.push(e),
                        SubItem::Slice { start, stop, step } => {
                            out.extend([start, stop, step].into_iter().flatten())
                        }
                    }
                }
                out
            }
        }
    }
}

/// Parses a complete `func:` string.
pub(super) fn parse(src: &str) -> Result<Form, ExprError> {
    let mut p = Parser {
        src,
        toks: tokenize(src)?,
        at: 0,
        depth: 0,
    };
    let form = if matches!(p.peek(), Tok::Name(n) if n == "lambda") {
        Form::Lambda(p.lambda()?)
    } else {
        Form::Expr(p.expr()?)
    };
    match p.peek() {
        Tok::Eof => Ok(form),
        _ => Err(p.unexpected("end of input")),
    }
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks.get(self.at + ahead).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.src.len(), |t| t.pos)
    }

    fn bump(&mut self) {
        self.at = (self.at + 1).min(self.toks.len().saturating_sub(1));
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let hit = self.peek() == tok;
        if hit {
            self.bump();
        }
        hit
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<usize, ExprError> {
        let pos = self.pos();
        if self.eat(tok) {
            Ok(pos)
        } else {
            Err(self.unexpected(what))
        }
    }

    fn error(&self, pos: usize, message: String) -> ExprError {
        ExprError::new(self.src, pos, message)
    }

    /// Error for the current token, which is not what the grammar wants here.
    fn unexpected(&self, expected: &str) -> ExprError {
        let message = match self.peek() {
            Tok::Name(n) if n == "lambda" => {
                "a lambda is only allowed as the whole func, not inside it".to_owned()
            }
            Tok::Name(n) if KEYWORDS.contains(&n.as_str()) => format!("`{n}` is not supported"),
            tok => format!("expected {expected}, found {}", tok.describe()),
        };
        self.error(self.pos(), message)
    }

    fn node(&self, kind: SynKind, pos: usize) -> Result<Syn, ExprError> {
        let mut node = Syn {
            kind,
            pos,
            depth: 0,
        };
        node.depth = 1 + node.children().iter().map(|c| c.depth).max().unwrap_or(0);
        if node.depth > MAX_DEPTH {
            return Err(self.error(pos, "expression is nested too deeply".into()));
        }
        Ok(node)
    }

    /// `lambda a, b=1: body`
    fn lambda(&mut self) -> Result<Lambda, ExprError> {
        self.bump();
        let mut params: Vec<Param> = Vec::new();
        while let Tok::Name(name) = self.peek() {
            let (name, pos) = (name.clone(), self.pos());
            if KEYWORDS.contains(&name.as_str()) {
                return Err(self.unexpected("an argument name"));
            }
            if params.iter().any(|p| p.name == name) {
                return Err(self.error(pos, format!("duplicate argument `{name}`")));
            }
            self.bump();
            let default = if self.eat(&Tok::Assign) {
                Some(self.expr()?)
            } else {
                if params.iter().any(|p| p.default.is_some()) {
                    return Err(self.error(
                        pos,
                        format!("argument `{name}` without a default follows one with a default"),
                    ));
                }
                None
            };
            params.push(Param { name, pos, default });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if matches!(self.peek(), Tok::Star | Tok::StarStar) {
            return Err(self.error(self.pos(), "*args and **kwargs are not supported".into()));
        }
        let colon = self.expect(&Tok::Colon, "`:` after the lambda arguments")?;
        let body = self.expr()?;
        Ok(Lambda {
            params,
            colon,
            body,
        })
    }

    /// Comparison level (lowest precedence used).
    fn expr(&mut self) -> Result<Syn, ExprError> {
        let lhs = self.arith()?;
        let Some(op) = self.comparison_op() else {
            return Ok(lhs);
        };
        let pos = self.pos();
        self.bump();
        let rhs = self.arith()?;
        if self.comparison_op().is_some() {
            return Err(self.error(
                self.pos(),
                "chained comparisons are not supported for arrays; use parentheses".into(),
            ));
        }
        self.node(SynKind::Binary(op, Box::new(lhs), Box::new(rhs)), pos)
    }

    fn comparison_op(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::EqEq => BinOp::Eq,
            Tok::NotEq => BinOp::Ne,
            _ => return None,
        })
    }

    /// `+` and `-`, left-associative.
    fn arith(&mut self) -> Result<Syn, ExprError> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let pos = self.pos();
            self.bump();
            let rhs = self.term()?;
            lhs = self.node(SynKind::Binary(op, Box::new(lhs), Box::new(rhs)), pos)?;
        }
    }

    /// `*` and `/`, left-associative.
    fn term(&mut self) -> Result<Syn, ExprError> {
        let mut lhs = self.factor()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(lhs),
            };
            let pos = self.pos();
            self.bump();
            let rhs = self.factor()?;
            lhs = self.node(SynKind::Binary(op, Box::new(lhs), Box::new(rhs)), pos)?;
        }
    }

    /// Unary sign, then `**` (right-associative, binding tighter than a sign
    /// on its left: `-x**2` is `-(x**2)`, `2**-1` is `2**(-1)`). Every
    /// recursive path of the grammar passes through here, so this is where
    /// recursion depth is bounded.
    fn factor(&mut self) -> Result<Syn, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(self.pos(), "expression is nested too deeply".into()));
        }
        self.depth += 1;
        let result = self.factor_inner();
        self.depth -= 1;
        result
    }

    fn factor_inner(&mut self) -> Result<Syn, ExprError> {
        let pos = self.pos();
        match self.peek() {
            Tok::Minus => {
                self.bump();
                let x = self.factor()?;
                self.node(SynKind::Neg(Box::new(x)), pos)
            }
            Tok::Plus => {
                self.bump();
                let x = self.factor()?;
                self.node(SynKind::Pos(Box::new(x)), pos)
            }
            _ => {
                let base = self.primary()?;
                if !matches!(self.peek(), Tok::StarStar) {
                    return Ok(base);
                }
                let op_pos = self.pos();
                self.bump();
                let exp = self.factor()?;
                self.node(
                    SynKind::Binary(BinOp::Pow, Box::new(base), Box::new(exp)),
                    op_pos,
                )
            }
        }
    }

    /// An atom followed by calls, subscripts and attribute accesses.
    fn primary(&mut self) -> Result<Syn, ExprError> {
        let mut e = self.atom()?;
        loop {
            let pos = self.pos();
            e = match self.peek() {
                Tok::LParen => {
                    self.bump();
                    let args = self.call_args()?;
                    self.node(SynKind::Call(Box::new(e), args), pos)?
                }
                Tok::LBracket => {
                    self.bump();
                    let items = self.subscript_items()?;
                    self.node(SynKind::Subscript(Box::new(e), items), pos)?
                }
                Tok::Dot => {
                    self.bump();
                    let name_pos = self.pos();
                    let Tok::Name(name) = self.peek() else {
                        return Err(self.unexpected("an attribute name"));
                    };
                    let name = name.clone();
                    self.bump();
                    self.node(SynKind::Attr(Box::new(e), name), name_pos)?
                }
                _ => return Ok(e),
            };
        }
    }

    fn atom(&mut self) -> Result<Syn, ExprError> {
        let pos = self.pos();
        let kind = match self.peek() {
            Tok::Num(v) => SynKind::Num(*v),
            Tok::Str(s) => SynKind::Str(s.clone()),
            Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => SynKind::Name(n.clone()),
            Tok::LParen => {
                self.bump();
                let inner = self.expr()?;
                if matches!(self.peek(), Tok::Comma) {
                    return Err(self.error(self.pos(), "tuples are not supported".into()));
                }
                self.expect(&Tok::RParen, "`)`")?;
                return Ok(inner);
            }
            _ => return Err(self.unexpected("a number, a name or `(`")),
        };
        self.bump();
        self.node(kind, pos)
    }

    /// Arguments after `(`, through the closing `)`.
    fn call_args(&mut self) -> Result<Vec<Arg>, ExprError> {
        let mut args: Vec<Arg> = Vec::new();
        while !matches!(self.peek(), Tok::RParen) {
            let keyword = match (self.peek(), self.peek_at(1)) {
                (Tok::Name(name), Tok::Assign) => {
                    let keyword = (name.clone(), self.pos());
                    self.bump();
                    self.bump();
                    Some(keyword)
                }
                _ => None,
            };
            let arg_pos = self.pos();
            if keyword.is_none() && args.iter().any(|a| a.keyword.is_some()) {
                return Err(self.error(
                    arg_pos,
                    "positional argument follows keyword argument".into(),
                ));
            }
            let value = self.expr()?;
            args.push(Arg { keyword, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen, "`,` or `)`")?;
        Ok(args)
    }

    /// Index items after `[`, through the closing `]`.
    fn subscript_items(&mut self) -> Result<Vec<SubItem>, ExprError> {
        let mut items = Vec::new();
        loop {
            items.push(self.subscript_item()?);
            if !self.eat(&Tok::Comma) || matches!(self.peek(), Tok::RBracket) {
                break;
            }
        }
        self.expect(&Tok::RBracket, "`,` or `]`")?;
        Ok(items)
    }

    /// `i`, or a slice `start:stop:step` with any part omitted.
    fn subscript_item(&mut self) -> Result<SubItem, ExprError> {
        let ends_part = |t: &Tok| matches!(t, Tok::Colon | Tok::Comma | Tok::RBracket);
        let start = if matches!(self.peek(), Tok::Colon) {
            None
        } else {
            let e = self.expr()?;
            if !matches!(self.peek(), Tok::Colon) {
                return Ok(SubItem::Index(e));
            }
            Some(e)
        };
        self.bump();
        let stop = if ends_part(self.peek()) {
            None
        } else {
            Some(self.expr()?)
        };
        let step = if self.eat(&Tok::Colon) && !ends_part(self.peek()) {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(SubItem::Slice { start, stop, step })
    }
}
