//! Types that cross the dynamic-library boundary.
//!
//! Everything here is `#[repr(C)]` + [`StableAbi`]: abi_stable checks the layout of
//! the whole root module when the host loads a library, so a plugin compiled
//! against an incompatible version of this crate is refused with an error instead
//! of corrupting memory. Plugin authors do not write these types; the SDK
//! ([`crate::extractor`], [`crate::Params`], the step views) builds them.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// A measured data source of an experiment file.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Transfer sweeps (`/transfer/measurement_data`).
    Transfer,
    /// Transient pulse trains (`/transient/measurement_data`).
    Transient,
}

impl Source {
    /// The name used in configs (`input: transfer`) and listings.
    pub fn name(self) -> &'static str {
        match self {
            Source::Transfer => "transfer",
            Source::Transient => "transient",
        }
    }

    /// The source called `name` in a config.
    pub fn parse(name: &str) -> Option<Source> {
        match name {
            "transfer" => Some(Source::Transfer),
            "transient" => Some(Source::Transient),
            _ => None,
        }
    }
}

/// One measured channel. An extractor declares the channels it reads, and the host
/// reads and decodes only those.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Gate voltage of a transfer sweep, V.
    Vg,
    /// Drain current of a transfer sweep, A.
    Id,
    /// Time of a transient sample (`continuous_time`), s.
    Time,
    /// Drain current of a transient sample (`drain_current`), A.
    Current,
}

impl Channel {
    /// The source this channel belongs to.
    pub fn source(self) -> Source {
        match self {
            Channel::Vg | Channel::Id => Source::Transfer,
            Channel::Time | Channel::Current => Source::Transient,
        }
    }

    /// The field of the step view that holds it (`vg`, `id`, `t`, `i`).
    pub fn field(self) -> &'static str {
        match self {
            Channel::Vg => "vg",
            Channel::Id => "id",
            Channel::Time => "t",
            Channel::Current => "i",
        }
    }
}

/// What an extractor reads.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// Steps of a measured data source (the channels are declared beside it).
    Source(Source),
    /// Per-step values of other features, one input per feature of the config's `input:` list.
    Features,
}

impl InputKind {
    /// The name used in listings: `transfer`, `transient` or `features`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Source(s) => s.name(),
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

/// Why a step has no value.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The extractor rejected the step's data (too short, not finite, …): an `Err` it returned.
    InvalidInput,
    /// The extractor ran but the step has no answer (no fit, no peak): a `None` it returned.
    /// Not a fault: such steps are counted apart from failed ones.
    NoResult,
    /// The extractor panicked (caught at the library boundary).
    Panic,
    /// The call gave no answer within `--step-timeout`; the host ended its worker process.
    Timeout,
    /// The host did not call the extractor because an input feature failed at this step.
    InputFailed,
    /// The value's shape disagrees with the extractor's declaration (a plugin bug).
    WrongShape,
    /// The call took the worker process down (a signal, an abort, an exit, the memory
    /// limit), in this run or often enough in earlier ones that it is no longer made. Only
    /// the host records it; an extractor never returns it.
    Crashed,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::InvalidInput,
        FailureKind::NoResult,
        FailureKind::Panic,
        FailureKind::Timeout,
        FailureKind::InputFailed,
        FailureKind::WrongShape,
        FailureKind::Crashed,
    ];

    /// The kind's name in metadata, JSON summaries and worker protocols.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidInput => "invalid_input",
            FailureKind::NoResult => "no_result",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::InputFailed => "input_failed",
            FailureKind::WrongShape => "wrong_shape",
            FailureKind::Crashed => "crashed",
        }
    }

    /// The kind called `name` (see [`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the step counts as failed (exit status 1); "no result" does not.
    pub fn is_fault(self) -> bool {
        self != FailureKind::NoResult
    }
}

/// A step without a value: what kind of failure, and a message for the researcher.
///
/// Extractors return it to say more than `Err(text)` does, e.g.
/// `Err(StepFailure::no_result("no fit: the decay is flat"))`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct StepFailure {
    pub kind: FailureKind,
    pub message: RString,
}

impl StepFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        StepFailure {
            kind,
            message: message.into().into(),
        }
    }

    /// The step's data cannot be processed.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        StepFailure::new(FailureKind::InvalidInput, message)
    }

    /// The step was processed but has no answer.
    pub fn no_result(message: impl Into<String>) -> Self {
        StepFailure::new(FailureKind::NoResult, message)
    }
}

/// A named array handed to an extractor for one step.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct StepArray<'a> {
    /// The measured channel's view field (`vg`, `id`, `t`, `i`), or the input feature's name.
    pub name: RStr<'a>,
    /// Shape of `data` (`[n]` for a measured channel, the feature's shape for a feature input).
    pub shape: RSlice<'a, u64>,
    pub data: RSlice<'a, f64>,
}

impl<'a> StepArray<'a> {
    pub fn new(name: &'a str, shape: &'a [u64], data: &'a [f64]) -> Self {
        StepArray {
            name: RStr::from_str(name),
            shape: RSlice::from_slice(shape),
            data: RSlice::from_slice(data),
        }
    }
}

/// The instrument settings the file records for a step, in SI units (V, s, Hz); each
/// `RNone` when the file does not record it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq)]
pub struct StepSettings {
    pub drain_voltage: ROption<f64>,
    pub source_voltage: ROption<f64>,
    /// Transfer sweeps: first gate voltage, turning point and increment.
    pub gate_start: ROption<f64>,
    pub gate_end: ROption<f64>,
    pub gate_step: ROption<f64>,
    /// Transfer sweeps: the sweep returns to `gate_start`.
    pub sweep_back: ROption<bool>,
    /// Transient pulse trains: gate voltage of the off and on part of each cycle.
    pub gate_bottom: ROption<f64>,
    pub gate_top: ROption<f64>,
    /// Transient pulse trains: duration of the off and on part of each cycle.
    pub bottom_time: ROption<f64>,
    pub top_time: ROption<f64>,
    pub cycles: ROption<u64>,
    /// Time between samples.
    pub time_step: ROption<f64>,
    /// Transient pulse trains: `bottom_time + top_time`.
    pub period: ROption<f64>,
    /// `1 / time_step`.
    pub sample_rate: ROption<f64>,
}

/// A scalar root attribute of the experiment file (device metadata such as channel
/// geometry, when the instrument recorded it).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    Text(RStr<'a>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One root attribute.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Attribute<'a> {
    pub name: RStr<'a>,
    pub value: AttrValue<'a>,
}

/// Where a step comes from and what the file records about it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// Experiment identifier (`chip-device`), for messages.
    pub experiment: RStr<'a>,
    /// 0-based index of the step within its kind.
    pub step_index: u64,
    pub settings: StepSettings,
    /// When the step started, in seconds since 1970-01-01 00:00 on the instrument's clock
    /// (the files store local time without a zone).
    pub start_time: ROption<f64>,
    /// 1-based iteration of the workflow loop the step ran in.
    pub loop_iteration: ROption<u64>,
    /// The experiment's scalar root attributes.
    pub attributes: RSlice<'a, Attribute<'a>>,
}

impl<'a> StepContext<'a> {
    /// A context that records nothing about the step.
    pub fn new(experiment: &'a str, step_index: u64) -> Self {
        StepContext {
            experiment: RStr::from_str(experiment),
            step_index,
            settings: StepSettings::default(),
            start_time: ROption::RNone,
            loop_iteration: ROption::RNone,
            attributes: RSlice::EMPTY,
        }
    }
}

/// Everything an extractor sees for one step.
///
/// For a measured source, `arrays` are the extractor's declared channels, in the
/// declared order, all of the same length (the host checks that once per block of
/// steps). For a features extractor, they are its input features in the config's order.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub arrays: RSlice<'a, StepArray<'a>>,
    pub context: StepContext<'a>,
}

impl<'a> StepInput<'a> {
    pub fn new(arrays: &'a [StepArray<'a>], context: StepContext<'a>) -> Self {
        StepInput {
            arrays: RSlice::from_slice(arrays),
            context,
        }
    }
}

pub use extractor_trait::{Extractor, ExtractorBox, Extractor_TO};

mod extractor_trait {
    // `#[sabi_trait]` expands to impls inside consts, which this lint flags.
    #![allow(non_local_definitions)]

    use abi_stable::{
        sabi_trait,
        std_types::{RBox, RResult, RVec},
    };

    use super::{Dim, FeatureValue, StepFailure, StepInput};

    /// A configured extractor living in a plugin.
    #[sabi_trait]
    pub trait Extractor: Send + Sync {
        /// Per-step output shape (without the step axis).
        fn output_shape(&self) -> RVec<Dim>;

        /// Computes the feature for one step.
        #[sabi(last_prefix_field)]
        fn extract_step(&self, input: &StepInput<'_>) -> RResult<FeatureValue, StepFailure>;
    }

    /// An owned, type-erased extractor created by a plugin.
    pub type ExtractorBox = Extractor_TO<'static, RBox<()>>;
}

/// The type of a parameter's value.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ParamKind {
    Bool,
    /// A non-negative integer.
    Count,
    Float,
    Text,
    /// One of these strings, exactly.
    Choice(RVec<RString>),
    /// Two numbers `[a, b]`.
    FloatPair,
    /// A number, or a `[min, max]` pair whose ends may be `null`.
    FloatOrRange,
}

impl std::fmt::Display for ParamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamKind::Bool => f.write_str("bool"),
            ParamKind::Count => f.write_str("non-negative integer"),
            ParamKind::Float => f.write_str("number"),
            ParamKind::Text => f.write_str("string"),
            ParamKind::Choice(options) => {
                let options: Vec<&str> = options.iter().map(RString::as_str).collect();
                write!(f, "one of: {}", options.join(", "))
            }
            ParamKind::FloatPair => f.write_str("[number, number]"),
            ParamKind::FloatOrRange => f.write_str("number or [min, max]"),
        }
    }
}

/// A limit on a numeric parameter.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub value: f64,
    /// Whether `value` itself is allowed.
    pub inclusive: bool,
}

/// Description of one parameter, for validation messages, listings and the test kit.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub name: RString,
    pub kind: ParamKind,
    /// Whether `null` is accepted (an optional parameter).
    pub nullable: bool,
    /// Default as JSON text.
    pub default_json: RString,
    pub doc: RString,
    /// Numeric limits, checked by the plugin when it validates the parameter.
    pub min: ROption<Bound>,
    pub max: ROption<Bound>,
}

impl ParamInfo {
    /// The accepted values in words, e.g. `number > 0` or `non-negative integer ≥ 2, or null`.
    pub fn accepts(&self) -> String {
        let mut text = self.kind.to_string();
        let limits = limits_text(self.min.into_option(), self.max.into_option());
        if !limits.is_empty() {
            text = format!("{text} {limits}");
        }
        if self.nullable {
            text.push_str(", or null");
        }
        text
    }
}

/// `≥ 2`, `> 0 and ≤ 1`; empty without limits.
pub(crate) fn limits_text(min: Option<Bound>, max: Option<Bound>) -> String {
    let limit = |b: Option<Bound>, above: bool| {
        b.map(|b| {
            let op = match (above, b.inclusive) {
                (true, true) => "≥",
                (true, false) => ">",
                (false, true) => "≤",
                (false, false) => "<",
            };
            format!("{op} {}", b.value)
        })
    };
    let limits: Vec<String> = [limit(min, true), limit(max, false)]
        .into_iter()
        .flatten()
        .collect();
    limits.join(" and ")
}

/// What an example expects.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum Expected {
    /// This value, within a relative tolerance (NaN matches NaN).
    Value { value: FeatureValue, tolerance: f64 },
    /// A failure of this kind.
    Failure(FailureKind),
}

/// An example declared on an extractor: input → expected output. `oect plugins list`
/// shows them and the test kit runs them.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Example {
    pub description: RString,
    /// The parameters, as a JSON object of those that differ from the defaults.
    pub params_json: RString,
    /// The declared channels' samples, in the declared order.
    pub arrays: RVec<RVec<f64>>,
    pub settings: StepSettings,
    pub expected: Expected,
}

/// Description of one extractor a plugin offers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ExtractorInfo {
    /// Namespaced name, e.g. `transfer.gm_max`.
    pub name: RString,
    pub input: InputKind,
    /// The measured channels it reads, in the order it gets them (empty for `Features`).
    pub channels: RVec<Channel>,
    pub description: RString,
    pub unit: RString,
    pub params: RVec<ParamInfo>,
    pub examples: RVec<Example>,
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
