//! Types that cross the dynamic-library boundary.
//!
//! Everything here is `#[repr(C)]` + [`StableAbi`]: abi_stable checks the layout of
//! the whole root module when the host loads a library, so a plugin compiled
//! against an incompatible version of this crate is refused with an error instead
//! of corrupting memory.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// What an extractor reads.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// Transfer sweeps: channels `Vg` (V) and `Id` (A).
    Transfer,
    /// Transient pulse trains: channels `continuous_time` (s) and `drain_current` (A).
    Transient,
    /// Per-step values of other features, one channel per input feature (named after it).
    Features,
}

impl InputKind {
    /// The name used in configs and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Transfer => "transfer",
            InputKind::Transient => "transient",
            InputKind::Features => "features",
        }
    }
}

/// One axis of a per-step output shape.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// An axis whose length is known once the extractor is configured.
    Fixed(u64),
    /// An axis whose length depends on the data (e.g. the number of cycles in a step).
    Dyn(RString),
}

/// A per-step result: a row-major n-d array of `f64` (`shape == []` for a scalar).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FeatureValue {
    pub shape: RVec<u64>,
    pub data: RVec<f64>,
}

impl FeatureValue {
    /// A scalar value.
    pub fn scalar(x: f64) -> Self {
        FeatureValue {
            shape: RVec::new(),
            data: RVec::from(vec![x]),
        }
    }

    /// A 1-D value.
    pub fn vector(values: Vec<f64>) -> Self {
        FeatureValue {
            shape: RVec::from(vec![values.len() as u64]),
            data: RVec::from(values),
        }
    }

    /// An n-d value; fails if `shape` does not multiply out to `data.len()`.
    pub fn array(shape: Vec<u64>, data: Vec<f64>) -> Result<Self, String> {
        let n: u64 = shape.iter().product();
        if n != data.len() as u64 {
            return Err(format!(
                "shape {shape:?} holds {n} values but {} were given",
                data.len()
            ));
        }
        Ok(FeatureValue {
            shape: RVec::from(shape),
            data: RVec::from(data),
        })
    }
}

/// A named array handed to an extractor for one step.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Channel<'a> {
    pub name: RStr<'a>,
    /// Shape of `data` (`[n]` for a measured channel, the feature's shape for a feature input).
    pub shape: RSlice<'a, u64>,
    pub data: RSlice<'a, f64>,
}

impl<'a> Channel<'a> {
    pub fn new(name: &'a str, shape: &'a [u64], data: &'a [f64]) -> Self {
        Channel {
            name: RStr::from_str(name),
            shape: RSlice::from_slice(shape),
            data: RSlice::from_slice(data),
        }
    }
}

/// Where a step comes from, and the sampling parameters the file records for it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// Experiment identifier (`chip-device`), for messages.
    pub experiment: RStr<'a>,
    /// 0-based index of the step within its kind.
    pub step_index: u64,
    /// Pulse period in s (transient steps), from the step parameters or the workflow.
    pub period: ROption<f64>,
    /// Sample rate in Hz (transient steps), from the step parameters or the workflow.
    pub sample_rate: ROption<f64>,
}

impl<'a> StepContext<'a> {
    /// A context without sampling parameters.
    pub fn new(experiment: &'a str, step_index: u64) -> Self {
        StepContext {
            experiment: RStr::from_str(experiment),
            step_index,
            period: ROption::RNone,
            sample_rate: ROption::RNone,
        }
    }

    /// The same context with the step's sampling parameters.
    pub fn with_sampling(self, period: Option<f64>, sample_rate: Option<f64>) -> Self {
        StepContext {
            period: period.into(),
            sample_rate: sample_rate.into(),
            ..self
        }
    }
}

/// Everything an extractor sees for one step.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub channels: RSlice<'a, Channel<'a>>,
    pub context: StepContext<'a>,
}

impl<'a> StepInput<'a> {
    pub fn new(channels: &'a [Channel<'a>], context: StepContext<'a>) -> Self {
        StepInput {
            channels: RSlice::from_slice(channels),
            context,
        }
    }

    /// The data of channel `name`, if present.
    pub fn channel(&self, name: &str) -> Option<&'a [f64]> {
        self.channels
            .as_slice()
            .iter()
            .find(|c| c.name.as_str() == name)
            .map(|c| c.data.as_slice())
    }

    /// The data of channel `name`, or an error naming the missing channel.
    pub fn require(&self, name: &str) -> Result<&'a [f64], String> {
        self.channel(name).ok_or_else(|| {
            let have: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
            format!("missing input channel '{name}' (have: {})", have.join(", "))
        })
    }
}

pub use extractor_trait::{Extractor, ExtractorBox, Extractor_TO};

mod extractor_trait {
    // `#[sabi_trait]` expands to impls inside consts, which this lint flags.
    #![allow(non_local_definitions)]

    use abi_stable::{
        sabi_trait,
        std_types::{RBox, RResult, RString, RVec},
    };

    use super::{Dim, FeatureValue, StepInput};

    /// A configured extractor living in a plugin.
    #[sabi_trait]
    pub trait Extractor: Send + Sync {
        /// Per-step output shape (without the step axis).
        fn output_shape(&self) -> RVec<Dim>;

        /// Computes the feature for one step.
        #[sabi(last_prefix_field)]
        fn extract_step(&self, input: &StepInput<'_>) -> RResult<FeatureValue, RString>;
    }

    /// An owned, type-erased extractor created by a plugin.
    pub type ExtractorBox = Extractor_TO<'static, RBox<()>>;
}

/// Description of one parameter, for validation messages and listings.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub name: RString,
    /// Human-readable type, e.g. `float`, `bool`, `one of: forward, reverse, both`.
    pub kind: RString,
    /// Default as JSON text (`null` when there is none).
    pub default_json: RString,
    pub doc: RString,
}

/// Description of one extractor a plugin offers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ExtractorInfo {
    /// Namespaced name, e.g. `transfer.gm_max`.
    pub name: RString,
    pub input: InputKind,
    pub description: RString,
    pub unit: RString,
    pub params: RVec<ParamInfo>,
}

/// Identity of a plugin library.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginInfo {
    pub name: RString,
    pub version: RString,
    /// The `oect-plugin-api` version the plugin was built against.
    pub api_version: RString,
}

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRef)))]
#[sabi(missing_field(panic))]
pub struct Plugin {
    pub info: extern "C" fn() -> PluginInfo,
    pub extractors: extern "C" fn() -> RVec<ExtractorInfo>,
    /// Creates extractor `name` from its parameters (a JSON object), validating them.
    #[sabi(last_prefix_field)]
    pub create:
        extern "C" fn(name: RStr<'_>, params_json: RStr<'_>) -> RResult<ExtractorBox, RString>,
}

impl RootModule for PluginRef {
    declare_root_module_statics! {PluginRef}
    const BASE_NAME: &'static str = "oect_plugin";
    const NAME: &'static str = "oect_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
