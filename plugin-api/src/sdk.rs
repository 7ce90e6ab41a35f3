//! The safe Rust face for plugin authors.
//!
//! ```ignore
//! use oect_plugin_api::{register_extractor, export_plugin, ExtractorSpec, FeatureValue,
//!                       InputKind, ParamKind, ParamSpec, Params, StepExtractor, StepInput, Dim};
//!
//! struct OnOff;
//! impl StepExtractor for OnOff {
//!     fn output_shape(&self) -> Vec<Dim> { vec![] }
//!     fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
//!         let id = input.require("Id")?;
//!         let max = id.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
//!         let min = id.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
//!         Ok(FeatureValue::scalar(max / min))
//!     }
//! }
//! register_extractor!(ExtractorSpec {
//!     name: "mylab.on_off_ratio", input: InputKind::Transfer, unit: "",
//!     description: "max |Id| / min |Id| of the sweep", params: &[],
//!     create: |_p: &Params| Ok(Box::new(OnOff)),
//! });
//! export_plugin!();
//! ```

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{Map, Value};

use crate::abi::{Dim, FeatureValue, InputKind, StepInput};

/// A configured extractor: computes one feature for one step at a time.
///
/// Implementations must be deterministic and safe to call from several threads at
/// once; the host calls them from its worker pool.
pub trait StepExtractor: Send + Sync + 'static {
    /// Per-step output shape (without the step axis). `[]` is a scalar.
    fn output_shape(&self) -> Vec<Dim>;

    /// Computes the value for one step. An `Err` becomes NaN in that cell and an
    /// error record in the run summary.
    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String>;
}

/// The type of a parameter. Any kind also accepts `null` when its default is `null`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Bool,
    /// A non-negative integer.
    Count,
    Float,
    Str,
    /// One of these strings, exactly.
    Choice(&'static [&'static str]),
    /// Two numbers `[a, b]`.
    FloatPair,
    /// A number, or a `[min, max]` pair whose ends may be `null`.
    FloatOrRange,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Bool => f.write_str("bool"),
            ParamKind::Count => f.write_str("non-negative integer"),
            ParamKind::Float => f.write_str("number"),
            ParamKind::Str => f.write_str("string"),
            ParamKind::Choice(options) => write!(f, "one of: {}", options.join(", ")),
            ParamKind::FloatPair => f.write_str("[number, number]"),
            ParamKind::FloatOrRange => f.write_str("number or [min, max]"),
        }
    }
}

/// Declaration of one parameter of an extractor.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Default value as JSON text; `"null"` makes the parameter optional.
    pub default: &'static str,
    pub doc: &'static str,
}

/// Declaration of one extractor; submit it with [`register_extractor!`](crate::register_extractor).
pub struct ExtractorSpec {
    /// Namespaced name, `<namespace>.<feature>`.
    pub name: &'static str,
    pub input: InputKind,
    pub description: &'static str,
    pub unit: &'static str,
    pub params: &'static [ParamSpec],
    /// Builds the extractor from validated parameters (defaults filled in).
    pub create: fn(&Params) -> Result<Box<dyn StepExtractor>, String>,
}

inventory::collect!(ExtractorSpec);

impl ExtractorSpec {
    /// Every extractor registered in the current binary (a plugin, or a test of one).
    pub fn registered() -> impl Iterator<Item = &'static ExtractorSpec> {
        inventory::iter::<ExtractorSpec>.into_iter()
    }

    /// The registered extractor called `name`.
    pub fn find(name: &str) -> Option<&'static ExtractorSpec> {
        Self::registered().find(|s| s.name == name)
    }

    /// Validates `params` and builds the extractor, in-process (tests, test kit).
    pub fn instantiate(&self, params: &Value) -> Result<Box<dyn StepExtractor>, String> {
        let params = Params::validate(self.params, params)?;
        guarded("create", || (self.create)(&params))
    }
}

/// Registers an [`ExtractorSpec`] so that [`export_plugin!`](crate::export_plugin) exports it.
#[macro_export]
macro_rules! register_extractor {
    ($spec:expr $(,)?) => {
        $crate::__private::inventory::submit! { $spec }
    };
}

/// Validated parameters with defaults applied. Getters only fail for names or
/// types the extractor did not declare, i.e. programming errors in the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Checks `given` against `specs`: rejects unknown keys and wrong types, and fills defaults.
    pub fn validate(specs: &[ParamSpec], given: &Value) -> Result<Params, String> {
        let empty = Map::new();
        let given = match given {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => return Err(format!("parameters must be a mapping, got {other}")),
        };
        if let Some(unknown) = given.keys().find(|k| !specs.iter().any(|s| s.name == *k)) {
            let accepted: Vec<&str> = specs.iter().map(|s| s.name).collect();
            return Err(if accepted.is_empty() {
                format!("unknown parameter '{unknown}' (this extractor takes none)")
            } else {
                format!(
                    "unknown parameter '{unknown}' (accepted: {})",
                    accepted.join(", ")
                )
            });
        }
        let mut values = Map::new();
        for spec in specs {
            let default: Value = serde_json::from_str(spec.default)
                .map_err(|e| format!("parameter '{}' has an invalid default: {e}", spec.name))?;
            let value = given.get(spec.name).cloned().unwrap_or(default.clone());
            let value = check_kind(spec, value, default.is_null())
                .map_err(|e| format!("parameter '{}': {e}", spec.name))?;
            values.insert(spec.name.to_string(), value);
        }
        Ok(Params { values })
    }

    /// The raw JSON value of a declared parameter.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    fn get(&self, name: &str) -> Result<&Value, String> {
        self.values
            .get(name)
            .ok_or_else(|| format!("parameter '{name}' is not declared by this extractor"))
    }

    pub fn bool(&self, name: &str) -> Result<bool, String> {
        self.get(name)?
            .as_bool()
            .ok_or_else(|| format!("parameter '{name}' is not a bool"))
    }

    pub fn f64(&self, name: &str) -> Result<f64, String> {
        self.opt_f64(name)?
            .ok_or_else(|| format!("parameter '{name}' is required"))
    }

    /// A number that may be `null`.
    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>, String> {
        match self.get(name)? {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("parameter '{name}' is not a number")),
        }
    }

    pub fn usize(&self, name: &str) -> Result<usize, String> {
        self.get(name)?
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("parameter '{name}' is not a non-negative integer"))
    }

    pub fn str(&self, name: &str) -> Result<&str, String> {
        self.get(name)?
            .as_str()
            .ok_or_else(|| format!("parameter '{name}' is not a string"))
    }

    pub fn pair(&self, name: &str) -> Result<(f64, f64), String> {
        match self.get(name)? {
            Value::Array(a) if a.len() == 2 => match (a[0].as_f64(), a[1].as_f64()) {
                (Some(x), Some(y)) => Ok((x, y)),
                _ => Err(format!("parameter '{name}' is not a pair of numbers")),
            },
            _ => Err(format!("parameter '{name}' is not a pair of numbers")),
        }
    }
}

fn check_kind(spec: &ParamSpec, value: Value, nullable: bool) -> Result<Value, String> {
    if value.is_null() {
        return if nullable {
            Ok(value)
        } else {
            Err(format!("expected {}, got null", spec.kind))
        };
    }
    let wrong = |v: &Value| Err(format!("expected {}, got {v}", spec.kind));
    match spec.kind {
        ParamKind::Bool if value.is_boolean() => Ok(value),
        ParamKind::Count if value.is_u64() => Ok(value),
        // Accept 5.0 for a count: YAML writers often emit floats.
        ParamKind::Count => match value.as_f64() {
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => {
                Ok(Value::from(x as u64))
            }
            _ => wrong(&value),
        },
        ParamKind::Float if value.is_number() => Ok(value),
        ParamKind::Str if value.is_string() => Ok(value),
        ParamKind::Choice(options) => {
            if value.as_str().is_some_and(|s| options.contains(&s)) {
                Ok(value)
            } else {
                wrong(&value)
            }
        }
        ParamKind::FloatPair => match &value {
            Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_number) => Ok(value),
            _ => wrong(&value),
        },
        ParamKind::FloatOrRange => match &value {
            Value::Number(_) => Ok(value),
            Value::Array(a) if a.len() == 2 && a.iter().all(|v| v.is_number() || v.is_null()) => {
                Ok(value)
            }
            _ => wrong(&value),
        },
        _ => wrong(&value),
    }
}

/// Text of a panic payload, for error records.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

thread_local! {
    /// Set while `guarded` runs `f`: such panics are caught and recorded, so printing
    /// them too would flood the terminal with one report per failed step.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an error message.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r,
        Err(payload) => Err(format!("{what} panicked: {}", panic_message(&*payload))),
    }
}

/// Exports the extractors registered in this crate as an oect plugin.
///
/// `export_plugin!()` takes the plugin's name and version from Cargo;
/// `export_plugin!(name: "...", version: "...")` sets them explicitly.
#[macro_export]
macro_rules! export_plugin {
    () => {
        $crate::export_plugin!(name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION"));
    };
    (name: $name:expr, version: $version:expr $(,)?) => {
        // The symbol abi_stable's loader looks up (`ROOT_MODULE_LOADER_NAME`); spelled out
        // here so that plugin crates need no direct abi_stable dependency. A unit test in
        // oect-plugin-api keeps it in sync. `no_mangle` is sound as long as no other item
        // of the library has this name: a second `export_plugin!` in the crate is a
        // duplicate definition, which does not compile.
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader:
            $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn oect_root_module_loader(
            ) -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::set_plugin_meta($name, $version);
                $crate::__private::abi_stable::library::__call_root_module_loader(
                    $crate::__private::root_module,
                )
            }
            // SAFETY: `from_constructor::<M>` requires the `PrefixRef<ErasedPrefix>` that the
            // constructor returns to come from a `PrefixRef<M>`. The constructor returns what
            // `__call_root_module_loader(root_module)` returns: the module made by
            // `root_module`, which has type `fn() -> PluginRef` (checked by the compiler),
            // erased from exactly that `PrefixRef`; and `M` is `PluginRef`.
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<
                    $crate::PluginRef,
                >(
                    oect_root_module_loader,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// The FFI side of [`export_plugin!`](crate::export_plugin): turns the inventory of
/// [`ExtractorSpec`]s into the root module.
pub mod export {
    use std::sync::OnceLock;

    use abi_stable::{
        prefix_type::PrefixTypeTrait,
        sabi_trait::TD_Opaque,
        std_types::{RErr, ROk, RResult, RStr, RString, RVec},
    };

    use super::{guarded, ExtractorSpec, StepExtractor};
    use crate::abi::{
        Dim, Extractor, ExtractorBox, ExtractorInfo, Extractor_TO, FeatureValue, ParamInfo, Plugin,
        PluginInfo, PluginRef, StepInput,
    };

    static META: OnceLock<(&'static str, &'static str)> = OnceLock::new();

    /// Records the plugin's name and version (called by the exported loader).
    pub fn set_plugin_meta(name: &'static str, version: &'static str) {
        let _ = META.set((name, version));
    }

    /// Builds the root module.
    pub fn root_module() -> PluginRef {
        Plugin {
            info,
            extractors,
            create,
        }
        .leak_into_prefix()
    }

    extern "C" fn info() -> PluginInfo {
        let (name, version) = META.get().copied().unwrap_or(("unknown", "0.0.0"));
        PluginInfo {
            name: name.into(),
            version: version.into(),
            api_version: crate::API_VERSION.into(),
        }
    }

    extern "C" fn extractors() -> RVec<ExtractorInfo> {
        ExtractorSpec::registered().map(describe).collect()
    }

    fn describe(spec: &ExtractorSpec) -> ExtractorInfo {
        ExtractorInfo {
            name: spec.name.into(),
            input: spec.input,
            description: spec.description.into(),
            unit: spec.unit.into(),
            params: spec
                .params
                .iter()
                .map(|p| ParamInfo {
                    name: p.name.into(),
                    kind: p.kind.to_string().into(),
                    default_json: p.default.into(),
                    doc: p.doc.into(),
                })
                .collect(),
        }
    }

    extern "C" fn create(name: RStr<'_>, params_json: RStr<'_>) -> RResult<ExtractorBox, RString> {
        match guarded("create", || build(name.as_str(), params_json.as_str())) {
            Ok(b) => ROk(b),
            Err(e) => RErr(e.into()),
        }
    }

    fn build(name: &str, params_json: &str) -> Result<ExtractorBox, String> {
        let spec = ExtractorSpec::find(name)
            .ok_or_else(|| format!("this plugin has no extractor '{name}'"))?;
        let given: serde_json::Value = serde_json::from_str(params_json)
            .map_err(|e| format!("parameters are not valid JSON: {e}"))?;
        let inner = spec.instantiate(&given)?;
        let shape = guarded("output_shape", || Ok(inner.output_shape()))?;
        Ok(Extractor_TO::from_value(
            Guarded {
                inner,
                shape: shape.into(),
            },
            TD_Opaque,
        ))
    }

    /// Adapts a [`StepExtractor`] to the ABI, containing panics.
    struct Guarded {
        inner: Box<dyn StepExtractor>,
        shape: RVec<Dim>,
    }

    impl Extractor for Guarded {
        fn output_shape(&self) -> RVec<Dim> {
            self.shape.clone()
        }

        fn extract_step(&self, input: &StepInput<'_>) -> RResult<FeatureValue, RString> {
            match guarded("extractor", || self.inner.extract_step(input)) {
                Ok(v) => ROk(v),
                Err(e) => RErr(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "direction",
            kind: ParamKind::Choice(&["forward", "reverse"]),
            default: "\"forward\"",
            doc: "",
        },
        ParamSpec {
            name: "n",
            kind: ParamKind::Count,
            default: "100",
            doc: "",
        },
        ParamSpec {
            name: "period",
            kind: ParamKind::Float,
            default: "null",
            doc: "",
        },
        ParamSpec {
            name: "prominence",
            kind: ParamKind::FloatOrRange,
            default: "null",
            doc: "",
        },
    ];

    #[test]
    fn defaults_fill_in() {
        let p = Params::validate(SPECS, &json!({"direction": "reverse", "n": 5.0})).unwrap();
        assert_eq!(p.str("direction").unwrap(), "reverse");
        assert_eq!(p.usize("n").unwrap(), 5);
        assert_eq!(p.opt_f64("period").unwrap(), None);
        let p = Params::validate(SPECS, &Value::Null).unwrap();
        assert_eq!(p.str("direction").unwrap(), "forward");
        assert_eq!(p.usize("n").unwrap(), 100);
    }

    #[test]
    fn rejects_unknown_keys_and_wrong_types() {
        let e = Params::validate(SPECS, &json!({"dirction": "forward"})).unwrap_err();
        assert!(e.contains("unknown parameter 'dirction'"), "{e}");
        assert!(e.contains("direction, n, period, prominence"), "{e}");
        let e = Params::validate(SPECS, &json!({"direction": "Forward"})).unwrap_err();
        assert!(
            e.contains("parameter 'direction'") && e.contains("forward, reverse"),
            "{e}"
        );
        let e = Params::validate(SPECS, &json!({"n": -1})).unwrap_err();
        assert!(e.contains("parameter 'n'"), "{e}");
        let e = Params::validate(SPECS, &json!({"n": "ten"})).unwrap_err();
        assert!(e.contains("non-negative integer"), "{e}");
        let e = Params::validate(SPECS, &json!({"prominence": [1, "x"]})).unwrap_err();
        assert!(e.contains("parameter 'prominence'"), "{e}");
        assert!(Params::validate(SPECS, &json!({"prominence": [null, 2.0]})).is_ok());
        assert!(Params::validate(SPECS, &json!([1, 2])).is_err());
    }

    #[test]
    fn guarded_turns_panics_into_errors() {
        let r: Result<(), String> = guarded("extractor", || panic!("boom at step 3"));
        assert_eq!(r.unwrap_err(), "extractor panicked: boom at step 3");
    }

    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
