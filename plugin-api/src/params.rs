//! Extractor parameters: typed values parsed from the config's JSON, with defaults,
//! limits and documentation, described to the host as [`ParamInfo`]s.
//!
//! Authors derive [`Params`] on a struct; each field's type implements [`ParamValue`].
//! Parameters are validated in the plugin when an extractor is created, so a bad key,
//! type or value is an error at config-load time naming the key.

use serde_json::{Map, Value};

use crate::abi::{limits_text, Bound, ParamInfo, ParamKind};

/// A parameter struct: `#[derive(Params)]` implements it (and `Default`, from the
/// declared defaults).
///
/// ```
/// use oect_plugin_api::{Choice, Params};
///
/// #[derive(Choice, Clone, Copy, Default)]
/// enum Half {
///     #[default]
///     Forward,
///     Reverse,
/// }
///
/// #[derive(Params)]
/// struct Swing {
///     /// samples per least-squares fit (at least 2)
///     #[param(default = 5, min = 2)]
///     window_points: usize,
///     /// which half of the sweep
///     #[param(default)]
///     half: Half,
///     /// fixed period in s; default: the step's own
///     period: Option<f64>,
/// }
///
/// let p = Swing::from_json(&serde_json::json!({"half": "reverse"})).unwrap();
/// assert_eq!((p.window_points, p.period), (5, None));
/// let e = Swing::from_json(&serde_json::json!({"window_points": 1})).err().unwrap();
/// assert_eq!(e, "parameter 'window_points': must be ≥ 2, got 1");
/// ```
pub trait Params: Default + Send + Sync + Sized + 'static {
    /// One entry per parameter, in declaration order.
    fn describe() -> Vec<ParamInfo>;

    /// Validates `given` (a JSON object, or `null` for none): rejects unknown keys,
    /// wrong types and values outside the limits, naming the key; fills in defaults.
    fn from_json(given: &Value) -> Result<Self, String>;

    /// Every parameter's value.
    fn to_json(&self) -> Map<String, Value>;
}

/// An extractor without parameters.
impl Params for () {
    fn describe() -> Vec<ParamInfo> {
        Vec::new()
    }

    fn from_json(given: &Value) -> Result<(), String> {
        param_object(given, &[]).map(|_| ())
    }

    fn to_json(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// A type a parameter can have. Implemented for `bool`, `usize`, `u32`, `u64`, `f64`,
/// `String`, `(f64, f64)`, [`NumberOrRange`], `Option<T>` and enums deriving
/// [`Choice`](crate::Choice).
pub trait ParamValue: Sized {
    fn kind() -> ParamKind;

    /// Whether `null` is a valid value (it is for `Option`).
    const NULLABLE: bool = false;

    /// The value of `json`; the error says what was expected and what was given (the
    /// caller adds the key).
    fn from_json(json: &Value) -> Result<Self, String>;

    fn to_json(&self) -> Value;

    /// The number to check against `min`/`max`, for numeric kinds.
    fn number(&self) -> Option<f64> {
        None
    }
}

/// `expected <kind>, got <json>`.
pub fn expected<T: ParamValue>(got: &Value) -> String {
    format!("expected {}, got {got}", T::kind())
}

impl ParamValue for bool {
    fn kind() -> ParamKind {
        ParamKind::Bool
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        json.as_bool().ok_or_else(|| expected::<Self>(json))
    }

    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ParamValue for f64 {
    fn kind() -> ParamKind {
        ParamKind::Float
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        json.as_f64().ok_or_else(|| expected::<Self>(json))
    }

    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

/// A whole non-negative number; `5.0` is accepted too, since YAML writers often emit floats.
fn count(json: &Value) -> Option<u64> {
    json.as_u64().or_else(|| {
        json.as_f64()
            .filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x <= u32::MAX as f64)
            .map(|x| x as u64)
    })
}

macro_rules! count_param {
    ($($t:ty),*) => {$(
        impl ParamValue for $t {
            fn kind() -> ParamKind {
                ParamKind::Count
            }

            fn from_json(json: &Value) -> Result<Self, String> {
                count(json)
                    .and_then(|n| <$t>::try_from(n).ok())
                    .ok_or_else(|| expected::<Self>(json))
            }

            fn to_json(&self) -> Value {
                Value::from(*self as u64)
            }

            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}

count_param!(usize, u32, u64);

impl ParamValue for String {
    fn kind() -> ParamKind {
        ParamKind::Text
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        json.as_str()
            .map(str::to_string)
            .ok_or_else(|| expected::<Self>(json))
    }

    fn to_json(&self) -> Value {
        Value::from(self.as_str())
    }
}

impl ParamValue for (f64, f64) {
    fn kind() -> ParamKind {
        ParamKind::FloatPair
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        match json.as_array().map(Vec::as_slice) {
            Some([a, b]) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(expected::<Self>(json)),
            },
            _ => Err(expected::<Self>(json)),
        }
    }

    fn to_json(&self) -> Value {
        Value::from(vec![self.0, self.1])
    }
}

/// A number, or a `[min, max]` range whose ends may be open (`null`), e.g. a peak
/// prominence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberOrRange {
    Number(f64),
    Range(Option<f64>, Option<f64>),
}

impl ParamValue for NumberOrRange {
    fn kind() -> ParamKind {
        ParamKind::FloatOrRange
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        let end = |v: &Value| match v {
            Value::Null => Ok(None),
            v => v.as_f64().map(Some).ok_or(()),
        };
        match json {
            Value::Number(n) => n
                .as_f64()
                .map(NumberOrRange::Number)
                .ok_or_else(|| expected::<Self>(json)),
            Value::Array(a) if a.len() == 2 => match (end(&a[0]), end(&a[1])) {
                (Ok(lo), Ok(hi)) => Ok(NumberOrRange::Range(lo, hi)),
                _ => Err(expected::<Self>(json)),
            },
            _ => Err(expected::<Self>(json)),
        }
    }

    fn to_json(&self) -> Value {
        match *self {
            NumberOrRange::Number(x) => Value::from(x),
            NumberOrRange::Range(lo, hi) => Value::from(vec![Value::from(lo), Value::from(hi)]),
        }
    }
}

impl<T: ParamValue> ParamValue for Option<T> {
    fn kind() -> ParamKind {
        T::kind()
    }

    const NULLABLE: bool = true;

    fn from_json(json: &Value) -> Result<Self, String> {
        match json {
            Value::Null => Ok(None),
            v => T::from_json(v).map(Some),
        }
    }

    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_json)
    }

    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(T::number)
    }
}

/// The parameters object of a config feature (`null`: none given), after checking that
/// it only names `accepted` keys.
pub fn param_object<'v>(
    given: &'v Value,
    accepted: &[&str],
) -> Result<&'v Map<String, Value>, String> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let map = match given {
        Value::Object(map) => map,
        Value::Null => EMPTY.get_or_init(Map::new),
        other => return Err(format!("parameters must be a mapping, got {other}")),
    };
    if let Some(unknown) = map.keys().find(|k| !accepted.contains(&k.as_str())) {
        return Err(if accepted.is_empty() {
            format!("unknown parameter '{unknown}' (this extractor takes none)")
        } else {
            format!(
                "unknown parameter '{unknown}' (accepted: {})",
                accepted.join(", ")
            )
        });
    }
    Ok(map)
}

/// Parameter `name` from `map`, or its default; checked against the limits.
pub fn param_field<T: ParamValue>(
    map: &Map<String, Value>,
    name: &str,
    default: impl FnOnce() -> T,
    min: Option<Bound>,
    max: Option<Bound>,
) -> Result<T, String> {
    let value = match map.get(name) {
        None => default(),
        Some(Value::Null) if !T::NULLABLE => {
            return Err(format!(
                "parameter '{name}': expected {}, got null",
                T::kind()
            ))
        }
        Some(json) => T::from_json(json).map_err(|e| format!("parameter '{name}': {e}"))?,
    };
    if let Some(x) = value.number() {
        check_bounds(x, min, max).map_err(|e| format!("parameter '{name}': {e}"))?;
    }
    Ok(value)
}

fn check_bounds(x: f64, min: Option<Bound>, max: Option<Bound>) -> Result<(), String> {
    let below_min = min.is_some_and(|b| {
        if b.inclusive {
            x < b.value
        } else {
            x <= b.value
        }
    });
    let above_max = max.is_some_and(|b| {
        if b.inclusive {
            x > b.value
        } else {
            x >= b.value
        }
    });
    if x.is_nan() || below_min || above_max {
        return Err(format!("must be {}, got {x}", limits_text(min, max)));
    }
    Ok(())
}

/// The description of one parameter, with its default's JSON.
pub fn param_info<T: ParamValue>(
    name: &str,
    default: &T,
    doc: &str,
    min: Option<Bound>,
    max: Option<Bound>,
) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        kind: T::kind(),
        nullable: T::NULLABLE,
        default_json: default.to_json().to_string().into(),
        doc: doc.into(),
        min: min.into(),
        max: max.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Choice, Params};

    use super::*;

    #[derive(Choice, Clone, Copy, Debug, Default, PartialEq)]
    enum Direction {
        #[default]
        Forward,
        Reverse,
        #[choice("both", "Both")]
        Both,
    }

    #[derive(Params, Debug)]
    struct Every {
        /// a direction
        #[param(default)]
        direction: Direction,
        /// a count
        #[param(default = 100, min = 1)]
        n: usize,
        /// an optional period
        period: Option<f64>,
        /// a positive scale
        #[param(default = 1.0, positive)]
        scale: f64,
        /// a fraction
        #[param(default = 0.5, min = 0.0, max = 1.0)]
        fraction: f64,
        /// a prominence
        prominence: Option<NumberOrRange>,
        /// a window
        #[param(default = (0.1, 0.9))]
        window: (f64, f64),
        /// a label
        #[param(default = "x".to_string())]
        label: String,
        /// a flag
        #[param(default = true)]
        flag: bool,
    }

    #[test]
    fn defaults_fill_in_and_values_parse() {
        let p = Every::from_json(&json!({"direction": "reverse", "n": 5.0})).unwrap();
        assert_eq!((p.direction, p.n, p.period), (Direction::Reverse, 5, None));
        let p = Every::from_json(&Value::Null).unwrap();
        assert_eq!(
            (p.direction, p.n, p.window),
            (Direction::Forward, 100, (0.1, 0.9))
        );
        assert_eq!((p.label.as_str(), p.flag, p.scale), ("x", true, 1.0));
        let p = Every::from_json(&json!({"direction": "Both", "prominence": [null, 2.0]})).unwrap();
        assert_eq!(p.direction, Direction::Both);
        assert_eq!(p.prominence, Some(NumberOrRange::Range(None, Some(2.0))));
        let p = Every::from_json(&json!({"prominence": 3, "period": null})).unwrap();
        assert_eq!(p.prominence, Some(NumberOrRange::Number(3.0)));
    }

    #[test]
    fn bad_keys_types_and_values_are_named() {
        let e = |v: Value| Every::from_json(&v).unwrap_err();
        let msg = e(json!({"dirction": "forward"}));
        assert!(msg.contains("unknown parameter 'dirction'"), "{msg}");
        assert!(
            msg.contains("direction, n, period, scale, fraction"),
            "{msg}"
        );
        assert_eq!(
            e(json!({"direction": "sideways"})),
            "parameter 'direction': expected one of: forward, reverse, both, Both, got \"sideways\""
        );
        assert_eq!(
            e(json!({"n": -1})),
            "parameter 'n': expected non-negative integer, got -1"
        );
        assert_eq!(e(json!({"n": 0})), "parameter 'n': must be ≥ 1, got 0");
        assert_eq!(
            e(json!({"scale": 0.0})),
            "parameter 'scale': must be > 0, got 0"
        );
        assert_eq!(
            e(json!({"fraction": 1.5})),
            "parameter 'fraction': must be ≥ 0 and ≤ 1, got 1.5"
        );
        assert_eq!(
            e(json!({"n": null})),
            "parameter 'n': expected non-negative integer, got null"
        );
        assert!(e(json!({"prominence": [1, "x"]})).contains("parameter 'prominence'"));
        assert!(e(json!({"window": [1.0]})).contains("parameter 'window'"));
        assert!(e(json!({"label": 1})).contains("parameter 'label'"));
        assert!(e(json!({"flag": "yes"})).contains("parameter 'flag'"));
        assert_eq!(e(json!([1, 2])), "parameters must be a mapping, got [1,2]");
        let e = <()>::from_json(&json!({"x": 1})).unwrap_err();
        assert_eq!(e, "unknown parameter 'x' (this extractor takes none)");
    }

    #[test]
    fn descriptions_carry_kind_default_doc_and_limits() {
        let info = Every::describe();
        let names: Vec<&str> = info.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "direction",
                "n",
                "period",
                "scale",
                "fraction",
                "prominence",
                "window",
                "label",
                "flag"
            ]
        );
        let d = &info[0];
        assert_eq!(d.kind.to_string(), "one of: forward, reverse, both, Both");
        assert_eq!(
            (d.default_json.as_str(), d.doc.as_str()),
            ("\"forward\"", "a direction")
        );
        assert!(!d.nullable);
        assert!(info[2].nullable && info[2].default_json == "null");
        assert_eq!(
            info[1].min.into_option(),
            Some(Bound {
                value: 1.0,
                inclusive: true
            })
        );
        assert_eq!(
            info[3].min.into_option(),
            Some(Bound {
                value: 0.0,
                inclusive: false
            })
        );
        assert_eq!(info[6].default_json.as_str(), "[0.1,0.9]");
        let json = Every::default().to_json();
        assert_eq!(json["n"], 100);
        assert_eq!(json["label"], "x");
    }
}
