//! The contract between the `oect` host and its extractor plugins, and the SDK plugin
//! authors write against.
//!
//! An extractor is a plain function with an attribute; its parameters are a struct
//! with a derive:
//!
//! ```
//! use oect_plugin_api::{export_plugin, extractor, Params, Transfer};
//!
//! #[derive(Params)]
//! struct OnOff {
//!     /// floor for min |Id| in A, so that a zero reading gives a finite ratio
//!     #[param(default = 1e-12, positive)]
//!     min_current: f64,
//! }
//!
//! /// max |Id| / min |Id| of the sweep
//! #[extractor(name = "mylab.on_off_ratio", unit = "",
//!     example("a sweep from 1 nA to 1 mA", vg = [-0.6, 0.0, 0.6], id = [1e-9, 1e-6, 1e-3], output = 1e6))]
//! fn on_off_ratio(step: Transfer, p: &OnOff) -> Option<f64> {
//!     let abs = step.id.iter().filter(|i| i.is_finite()).map(|i| i.abs());
//!     let (min, max) = abs.fold(None, |acc: Option<(f64, f64)>, a| {
//!         Some(acc.map_or((a, a), |(lo, hi)| (lo.min(a), hi.max(a))))
//!     })?;
//!     Some(max / min.max(p.min_current))
//! }
//!
//! export_plugin!();
//! ```
//!
//! - **The function** takes a step view first ([`Transfer`] `vg`/`id`, [`Transient`]
//!   `t`/`i`, [`Current`] `i` alone, or [`Features`]), optionally the [`Context`] of the
//!   step (what the file records for it: voltages, timing, loop iteration, device
//!   metadata), and its parameter struct by reference. The view says what the extractor
//!   reads: the host reads and decodes only those channels, and checks once that they
//!   are equally long.
//! - **The attribute** names the extractor (`namespace.feature`) and its unit; the
//!   function's doc comment (first paragraph) is its description. The per-step shape
//!   follows from the return type (`f64`, `Option<f64>`, `[f64; N]`, `Result<_, E>` of
//!   those); for `Vec<f64>`, `Vec<[f64; N]>`, ndarray arrays and [`FeatureValue`] it is
//!   declared: `shape = [p.n_cycles]` (the parameter struct's binding is in scope),
//!   `shape = ["n_cycles", 2]` (a string is an axis whose length depends on the data), or
//!   `shape = <expression giving Vec<Dim>>`. `example(...)` entries (input → expected
//!   output) are shown by `oect plugins list` and run by the test kit.
//! - **Failures**: `None` is "no result" for that step (a fit that found nothing), an
//!   `Err(e)` with `e: Display` is "invalid input"; return [`StepFailure`] to choose the
//!   kind. A panic is caught at the library boundary and recorded as a panic.
//! - **Parameters**: `#[derive(Params)]` turns the struct into validated, documented
//!   parameters: defaults are Rust values (`#[param(default = 5)]`, `#[param(default)]`
//!   for `Default::default()`), `Option<T>` fields are optional, `min`/`max`/`positive`
//!   limit numbers, doc comments are the descriptions, and an enum deriving [`Choice`]
//!   is a choice parameter. The derive also implements `Default` from those defaults.
//! - [`export_plugin!`] once per crate exports the registered extractors as the
//!   library's entry point.
//!
//! The host loads plugins through the stable ABI in [`abi`]; the SDK builds those types,
//! so author code never touches them.

// The macros name this crate by its absolute path; this makes that path work inside it too.
extern crate self as oect_plugin_api;

pub mod abi;
mod export;
mod params;
#[cfg(feature = "testkit")]
pub mod testkit;
mod value;
mod view;

pub use abi::{
    Dim, ExtractorInfo, FailureKind, FeatureValue, InputKind, PluginInfo, PluginRef, StepFailure,
};
/// `#[extractor(name = "...", unit = "...", shape = ..., example(...))]` on a function:
/// registers it as an extractor (see the crate documentation for the signature rules).
pub use oectsdk_macros::extractor;
/// `#[derive(Choice)]` on a fieldless enum: a choice parameter whose accepted strings are
/// the variants in snake_case, or those given by `#[choice("a", "b")]`.
pub use oectsdk_macros::Choice;
/// `#[derive(Params)]` on a struct with named fields: validated, documented parameters
/// (`#[param(default = ..., min = ..., max = ..., positive)]`).
pub use oectsdk_macros::Params;
pub use params::{NumberOrRange, ParamValue, Params};
pub use value::{IntoStepValue, KnownShape};
pub use view::{Context, Current, FeatureInput, Features, FromStep, Transfer, Transient};

/// Re-exported so that plugins returning arrays use the same ndarray as the SDK.
#[cfg(feature = "ndarray")]
pub use ndarray;

/// The version of this crate a plugin was compiled against (checked by the host).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a plugin built against `oect-plugin-api` `plugin` can be loaded by a host
/// built against this version, and if not, why (one line naming both versions).
///
/// While the API is 0.x every minor release may change the ABI, so the minor versions
/// must be equal. From 1.0 on, minor releases only add to the ABI: a host serves plugins
/// of its own major version built against the same or an older minor (a plugin built
/// against a newer minor may rely on what this host lacks). Patch releases never change
/// the ABI.
pub fn check_api_version(plugin: &str) -> Result<(), String> {
    let host = parse_version(API_VERSION).expect("the crate's own version is semver");
    let why = match parse_version(plugin) {
        None => "its version is not MAJOR.MINOR.PATCH",
        Some(plugin) => match version_policy(host, plugin) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        },
    };
    Err(format!(
        "built against oect-plugin-api {plugin} but this host uses {API_VERSION} ({why}); rebuild the plugin against {API_VERSION}"
    ))
}

/// `(major, minor)` of `MAJOR.MINOR.PATCH[-pre][+build]`.
fn parse_version(v: &str) -> Option<(u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some((major, minor))
}

/// The rule of [`check_api_version`] on `(major, minor)` pairs.
fn version_policy(host: (u64, u64), plugin: (u64, u64)) -> Result<(), &'static str> {
    match (host, plugin) {
        ((0, h), (0, p)) if h == p => Ok(()),
        ((0, _), _) => Err("while the API is 0.x, plugin and host need the same minor version"),
        ((h, _), (p, _)) if h != p => Err("plugin and host need the same major version"),
        ((_, h), (_, p)) if p > h => {
            Err("the plugin needs a newer minor version than the host has")
        }
        _ => Ok(()),
    }
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
    pub use inventory;
    pub use serde_json;

    pub use crate::abi::{
        Bound, Channel, Dim, Example, Expected, ExtractorInfo, FailureKind, FeatureValue,
        InputKind, ParamInfo, ParamKind, StepFailure, StepInput, StepSettings,
    };
    pub use crate::export::{
        describe, example, expect_value, one_view, rank_fits, root_module, set_plugin_meta,
        Registration, Run, DEFAULT_TOLERANCE,
    };
    pub use crate::params::{expected, param_field, param_info, param_object, ParamValue, Params};
    pub use crate::value::{IntoStepValue, KnownShape};
    pub use crate::view::{ExampleView, FromStep, View};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_follow_the_documented_policy() {
        assert_eq!(API_VERSION, "0.2.0");
        for ok in ["0.2.0", "0.2.7", "0.2.1-rc.1"] {
            assert_eq!(check_api_version(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("0.1.0", "same minor"),
            ("0.3.0", "same minor"),
            ("1.0.0", "same minor"),
            ("0.2", "not MAJOR.MINOR.PATCH"),
            ("x", "not MAJOR.MINOR.PATCH"),
        ] {
            let e = check_api_version(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                e.contains(&format!("oect-plugin-api {bad} but this host uses 0.2.0")),
                "{e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn from_1_0_a_host_serves_older_minors_of_its_major() {
        assert_eq!(version_policy((1, 3), (1, 3)), Ok(()));
        assert_eq!(version_policy((1, 3), (1, 0)), Ok(()));
        assert!(version_policy((1, 3), (1, 4))
            .unwrap_err()
            .contains("newer minor"));
        assert!(version_policy((1, 3), (2, 0))
            .unwrap_err()
            .contains("same major"));
        assert!(version_policy((2, 0), (1, 9))
            .unwrap_err()
            .contains("same major"));
        assert!(version_policy((1, 0), (0, 9))
            .unwrap_err()
            .contains("same major"));
        assert!(version_policy((0, 2), (0, 1))
            .unwrap_err()
            .contains("same minor"));
    }
}
