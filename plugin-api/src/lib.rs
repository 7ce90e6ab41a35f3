//! The contract between the `oect` host and its extractor plugins.
//!
//! A plugin is a `cdylib` that registers one or more single-step extractors with
//! [`register_extractor!`] and exports them with [`export_plugin!`]. The host loads
//! it at run time through the stable ABI in [`abi`], so a plugin built once keeps
//! working with every host built against a compatible `oect-plugin-api` version.
//!
//! Plugin authors only touch the safe Rust face in [`sdk`]: implement
//! [`StepExtractor`], describe the parameters with [`ParamSpec`], and let the
//! macros do the FFI. Every call that crosses the boundary is wrapped in
//! `catch_unwind`, so a panicking extractor becomes an error value for that step
//! instead of aborting the host.

pub mod abi;
pub mod sdk;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use abi::{
    Channel, Dim, ExtractorBox, ExtractorInfo, FeatureValue, InputKind, ParamInfo, PluginInfo,
    PluginRef, StepContext, StepInput,
};
pub use sdk::{ExtractorSpec, ParamKind, ParamSpec, Params, StepExtractor};

/// Re-exported because [`Params::value`] hands out JSON values.
pub use serde_json;

/// The version of this crate a plugin was compiled against (checked by the host).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
    pub use inventory;

    pub use crate::sdk::export::{root_module, set_plugin_meta};
}
