//! From registered extractor functions to the library's root module.
//!
//! `#[extractor]` submits a [`Registration`] to an inventory; [`export_plugin!`](crate::export_plugin)
//! makes the inventory the plugin's root module. Every call across the boundary runs
//! under `catch_unwind`, so a panicking extractor becomes a
//! [`FailureKind::Panic`] failure of that step instead of aborting the host.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString, RVec};
use serde_json::Value;

use crate::abi::{
    Channel, Dim, Example, Expected, Extractor, ExtractorBox, ExtractorInfo, Extractor_TO,
    FailureKind, FeatureValue, InputKind, Plugin, PluginInfo, PluginRef, StepFailure, StepInput,
    StepSettings,
};
use crate::params::Params;
use crate::value::IntoStepValue;

/// A configured extractor, as the generated code builds it.
pub trait Run: Send + Sync + 'static {
    /// Per-step output shape (without the step axis).
    fn shape(&self) -> Vec<Dim>;

    fn call(&self, input: &StepInput<'_>) -> Result<FeatureValue, StepFailure>;
}

/// One `#[extractor]` function.
pub struct Registration {
    pub name: &'static str,
    pub describe: fn() -> ExtractorInfo,
    /// Validates the parameters and builds the extractor.
    pub create: fn(&Value) -> Result<Box<dyn Run>, String>,
}

inventory::collect!(Registration);

fn registered() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// Whether exactly one of an extractor's arguments is a step view.
pub const fn one_view(is_view: &[bool]) -> bool {
    let mut n = 0;
    let mut k = 0;
    while k < is_view.len() {
        if is_view[k] {
            n += 1;
        }
        k += 1;
    }
    n == 1
}

/// Whether a declared shape of `declared` axes fits a return type of rank `rank`.
pub const fn rank_fits(rank: Option<usize>, declared: usize) -> bool {
    match rank {
        Some(r) => r == declared,
        None => true,
    }
}

/// The description of an extractor, from what its function and attribute declare.
/// `args` holds `(input, channels)` of each of the function's step arguments.
pub fn describe<P: Params>(
    name: &str,
    args: &[(Option<InputKind>, &'static [Channel])],
    description: &str,
    unit: &str,
    examples: Vec<Example>,
) -> ExtractorInfo {
    let (input, channels) = args
        .iter()
        .find_map(|(input, channels)| input.map(|i| (i, *channels)))
        .expect("checked at compile time: one step view");
    ExtractorInfo {
        name: name.into(),
        input,
        channels: channels.iter().copied().collect(),
        description: description.into(),
        unit: unit.into(),
        params: P::describe().into(),
        examples: examples.into(),
    }
}

/// Relative tolerance of an example whose attribute sets none.
pub const DEFAULT_TOLERANCE: f64 = 1e-9;

/// An example's expected value (or the failure its expression stands for).
pub fn expect_value(value: impl IntoStepValue, tolerance: f64) -> Expected {
    match value.into_step_value() {
        Ok(value) => Expected::Value { value, tolerance },
        Err(f) => Expected::Failure(f.kind),
    }
}

/// One declared example; its parameters are kept as the ones that differ from the defaults.
pub fn example<P: Params>(
    description: &str,
    params: &P,
    arrays: Vec<Vec<f64>>,
    settings: StepSettings,
    expected: Expected,
) -> Example {
    let defaults = P::default().to_json();
    let changed: serde_json::Map<String, Value> = params
        .to_json()
        .into_iter()
        .filter(|(k, v)| defaults.get(k) != Some(v))
        .collect();
    Example {
        description: description.into(),
        params_json: Value::Object(changed).to_string().into(),
        arrays: arrays.into_iter().map(RVec::from).collect(),
        settings,
        expected,
    }
}

/// Text of a panic payload, for failure records.
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

/// Runs `f`, returning the panic's message if it panics.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
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
    result.map_err(|payload| panic_message(&*payload))
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
    // A panic must not unwind into the host. An extractor whose description panics (an
    // example expression that panics) cannot be offered; it is named on stderr.
    registered()
        .filter_map(|r| match guarded(r.describe) {
            Ok(info) => Some(info),
            Err(panic) => {
                eprintln!(
                    "{}: describing the extractor panicked ({panic}); not offered",
                    r.name
                );
                None
            }
        })
        .collect()
}

extern "C" fn create(name: RStr<'_>, params_json: RStr<'_>) -> RResult<ExtractorBox, RString> {
    match guarded(|| build(name.as_str(), params_json.as_str())) {
        Ok(Ok(b)) => ROk(b),
        Ok(Err(e)) => RErr(e.into()),
        Err(panic) => RErr(format!("creating the extractor panicked: {panic}").into()),
    }
}

fn build(name: &str, params_json: &str) -> Result<ExtractorBox, String> {
    let registration = registered()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("this plugin has no extractor '{name}'"))?;
    let given: Value = serde_json::from_str(params_json)
        .map_err(|e| format!("parameters are not valid JSON: {e}"))?;
    let inner = (registration.create)(&given)?;
    let shape = inner.shape().into();
    Ok(Extractor_TO::from_value(
        Guarded { inner, shape },
        TD_Opaque,
    ))
}

/// Adapts a [`Run`] to the ABI, containing panics.
struct Guarded {
    inner: Box<dyn Run>,
    shape: RVec<Dim>,
}

impl Extractor for Guarded {
    fn output_shape(&self) -> RVec<Dim> {
        self.shape.clone()
    }

    fn extract_step(&self, input: &StepInput<'_>) -> RResult<FeatureValue, StepFailure> {
        match guarded(|| self.inner.call(input)) {
            Ok(r) => r.into(),
            Err(panic) => RErr(StepFailure::new(FailureKind::Panic, panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_turns_panics_into_messages() {
        let r: Result<(), String> = guarded(|| panic!("boom at step 3"));
        assert_eq!(r.unwrap_err(), "boom at step 3");
    }

    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn compile_time_checks() {
        assert!(one_view(&[true, false]));
        assert!(!one_view(&[true, true]) && !one_view(&[false]));
        assert!(rank_fits(Some(2), 2) && rank_fits(None, 3) && !rank_fits(Some(0), 1));
    }
}
