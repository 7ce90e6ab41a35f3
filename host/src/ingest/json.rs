//! The instrument's JSON as Python sees it: key order kept, ints and floats kept apart, and
//! re-serialised exactly as the predecessor's converter does (`json.dumps` with its defaults for
//! `raw/json`, compact and non-ASCII kept for `raw/workflow`), because those bytes land in the
//! HDF5 file. `serde_json::Value` would sort keys and print `1e-5` where Python prints `1e-05`.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with the distinctions Python's `json` module makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` (Python ints are unbounded).
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Keys in file order; a repeated key keeps its first position and its last value, as a
    /// Python dict does.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text (a UTF-8 BOM is skipped).
    pub fn parse(bytes: &[u8]) -> Result<Json, String> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::Int(i) => Some(i as f64),
            Json::UInt(u) => Some(u as f64),
            Json::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Python truthiness (`value or "NA"` in the predecessor's file naming).
    pub fn truthy(&self) -> bool {
        match self {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Int(i) => *i != 0,
            Json::UInt(u) => *u != 0,
            Json::Float(f) => *f != 0.0,
            Json::Str(s) => !s.is_empty(),
            Json::Array(a) => !a.is_empty(),
            Json::Object(m) => !m.is_empty(),
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Object(m) => {
                let at = m.iter().position(|(k, _)| k == key)?;
                Some(m.remove(at).1)
            }
            _ => None,
        }
    }

    /// Sets `key` (in place when present, appended when not), like `dict[key] = value`.
    pub fn insert(&mut self, key: &str, value: Json) {
        if let Json::Object(m) = self {
            match m.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => m.push((key.to_owned(), value)),
            }
        }
    }

    /// `json.dumps(value)`: `", "` and `": "` separators, non-ASCII and DEL as `\uXXXX`.
    pub fn to_python_ascii(&self) -> String {
        let mut out = String::new();
        self.dump(&mut out, true);
        out
    }

    /// `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`.
    pub fn to_python_compact(&self) -> String {
        let mut out = String::new();
        self.dump(&mut out, false);
        out
    }

    fn dump(&self, out: &mut String, ascii: bool) {
        let (item_sep, key_sep) = if ascii { (", ", ": ") } else { (",", ":") };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => write!(out, "{i}").expect("write to String"),
            Json::UInt(u) => write!(out, "{u}").expect("write to String"),
            Json::Float(f) => out.push_str(&json_float(*f)),
            Json::Str(s) => dump_str(out, s, ascii),
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    v.dump(out, ascii);
                }
                out.push(']');
            }
            Json::Object(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    dump_str(out, k, ascii);
                    out.push_str(key_sep);
                    v.dump(out, ascii);
                }
                out.push('}');
            }
        }
    }

    /// Python's `str(value)` of the loaded object, as pandas' `astype(str)` prints table cells.
    pub fn python_str(&self) -> String {
        match self {
            Json::Str(s) => s.clone(),
            other => other.python_repr(),
        }
    }

    /// Python's `repr()` of the loaded object.
    fn python_repr(&self) -> String {
        match self {
            Json::Null => "None".into(),
            Json::Bool(b) => if *b { "True" } else { "False" }.into(),
            Json::Int(i) => i.to_string(),
            Json::UInt(u) => u.to_string(),
            Json::Float(f) => python_float(*f),
            Json::Str(s) => python_str_repr(s),
            Json::Array(items) => {
                let parts: Vec<String> = items.iter().map(Json::python_repr).collect();
                format!("[{}]", parts.join(", "))
            }
            Json::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", python_str_repr(k), v.python_repr()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

fn dump_str(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(out, "\\u{unit:04x}").expect("write to String");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `float.__repr__`: the shortest digits that read back to the same value (as Rust prints
/// them), in fixed notation for decimal exponents −4 … 15 and as `1.5e-07` otherwise.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "-1.5e-7", "1e16", "0e0"
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(point.unsigned_abs() as usize)
        )
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Floats in `json.dumps`: `float.__repr__`, with `NaN` / `Infinity` spelled as Python does.
fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        python_float(f)
    }
}

/// `repr(str)`: single quotes unless the text has a single quote and no double quote.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(out, "\\x{:02x}", c as u32).expect("write to String");
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
                Ok(Json::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
                Ok(i64::try_from(u).map_or(Json::UInt(u), Json::Int))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
                Ok(Json::Float(f))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut obj = Json::Object(Vec::new());
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    obj.insert(&k, v);
                }
                Ok(obj)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        for (x, want) in [
            (100.0, "100.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5e-3, "-0.0025"),
            (6.02e23, "6.02e+23"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(python_float(x), want, "{x:e}");
        }
    }

    #[test]
    fn dumps_matches_python_defaults_and_keeps_key_order() {
        let v = Json::parse(
            "{\"b\": 1, \"a\": [1.0, \"稳\", null, true], \"c\": {\"x\": 1e-5}, \"b\": 2}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            v.to_python_ascii(),
            r#"{"b": 2, "a": [1.0, "\u7a33", null, true], "c": {"x": 1e-05}}"#
        );
        assert_eq!(
            v.to_python_compact(),
            "{\"b\":2,\"a\":[1.0,\"稳\",null,true],\"c\":{\"x\":1e-05}}"
        );
        let s = Json::Str("a\"b\\\n\u{7f}😀".into());
        assert_eq!(s.to_python_ascii(), r#""a\"b\\\n\u007f\ud83d\ude00""#);
        assert_eq!(s.to_python_compact(), "\"a\\\"b\\\\\\n\u{7f}😀\"");
    }

    #[test]
    fn python_str_of_cells() {
        assert_eq!(Json::Bool(true).python_str(), "True");
        assert_eq!(Json::Float(2.0).python_str(), "2.0");
        assert_eq!(Json::Str("x".into()).python_str(), "x");
        let v = Json::parse(br#"[1, "it's", {"k": null}]"#).unwrap();
        assert_eq!(v.python_str(), r#"[1, "it's", {'k': None}]"#);
    }
}
