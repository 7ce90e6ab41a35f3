//! Tokeniser for the Python-lambda subset accepted in `func:` strings.

use super::ExprError;

/// One lexical token. Identifiers include Python keywords; the parser decides
/// what they may mean, so it can name the keyword in its error.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Plus,
    Minus,
    Star,
    StarStar,
    Slash,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    NotEq,
    Assign,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        let text = match self {
            Tok::Num(v) => return format!("number `{v}`"),
            Tok::Str(s) => return format!("string '{s}'"),
            Tok::Name(n) => return format!("`{n}`"),
            Tok::Eof => return "end of input".to_owned(),
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::StarStar => "**",
            Tok::Slash => "/",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Assign => "=",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
        };
        format!("`{text}`")
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Splits `src` into tokens, ending with [`Tok::Eof`] at `src.len()`.
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let err = |pos: usize, message: String| Err(ExprError::new(src, pos, message));
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let pos = i;
        let next = bytes.get(i + 1).copied();
        let (tok, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'0'..=b'9' => number(src, pos)?,
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => number(src, pos)?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let len = bytes[pos..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (Tok::Name(src[pos..pos + len].to_owned()), len)
            }
            b'\'' | b'"' => string(src, pos)?,
            b'*' if next == Some(b'*') => (Tok::StarStar, 2),
            b'*' => (Tok::Star, 1),
            b'/' if next == Some(b'/') => return err(pos, "operator `//` is not supported".into()),
            b'/' => (Tok::Slash, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'<' if next == Some(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if next == Some(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'=' if next == Some(b'=') => (Tok::EqEq, 2),
            b'=' => (Tok::Assign, 1),
            b'!' if next == Some(b'=') => (Tok::NotEq, 2),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b':' => (Tok::Colon, 1),
            b'.' => (Tok::Dot, 1),
            b'%' | b'&' | b'|' | b'^' | b'~' | b'@' => {
                return err(pos, format!("operator `{}` is not supported", c as char))
            }
            _ => {
                let ch = src[pos..].chars().next().unwrap_or('?');
                return err(pos, format!("unexpected character `{ch}`"));
            }
        };
        toks.push(Token { tok, pos });
        i += len;
    }
    toks.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(toks)
}

/// Python float/int literal: `2`, `1.`, `.5`, `1e-10`, `2.5E+3`.
fn number(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = src.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut end = start + digits(start);
    if bytes.get(end) == Some(&b'.') {
        end += 1 + digits(end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exp = end + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        let n = digits(exp);
        if n == 0 {
            return Err(ExprError::new(src, start, "invalid number literal".into()));
        }
        end = exp + n;
    }
    if bytes
        .get(end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
    {
        return Err(ExprError::new(src, start, "invalid number literal".into()));
    }
    let text = &src[start..end];
    let value = text
        .parse::<f64>()
        .map_err(|_| ExprError::new(src, start, format!("invalid number literal `{text}`")))?;
    Ok((Tok::Num(value), end - start))
}

/// A quoted string without escapes (only input names are ever quoted).
fn string(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let quote = src.as_bytes()[start];
    for (offset, b) in src.as_bytes()[start + 1..].iter().enumerate() {
        match *b {
            b if b == quote => {
                let body = &src[start + 1..start + 1 + offset];
                return Ok((Tok::Str(body.to_owned()), offset + 2));
            }
            b'\\' => {
                let pos = start + 1 + offset;
                return Err(ExprError::new(
                    src,
                    pos,
                    "escape sequences are not supported".into(),
                ));
            }
            b'\n' => break,
            _ => {}
        }
    }
    Err(ExprError::new(src, start, "unterminated string".into()))
}
