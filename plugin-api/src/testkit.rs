//! Conformance checks for extractor plugins, and helpers for a plugin's own tests.
//!
//! The same checks run in two places, through the small [`Target`] trait:
//!
//! - in a plugin author's own `cargo test`, over the extractors registered in the
//!   test binary ([`InProcess`], or simply [`assert_conforms`]);
//! - in the host, over the FFI on a loaded library (`oect plugins check PATH`): a
//!   loaded [`PluginRef`] is itself a [`Target`].
//!
//! [`check`] returns a [`Report`] with one [`Item`] per (subject, check). Subjects are
//! `plugin` and each extractor's name; the checks are:
//!
//! | check | passes when |
//! |---|---|
//! | `metadata` | plugin name, version and api_version are present; versions look like semver; the API version is one this kit's host would load |
//! | `extractors` | the plugin offers extractors (and every name in [`CheckOptions::only`]) |
//! | `name` | the name is `namespace.feature` (lowercase namespace, identifier feature) and unique |
//! | `input` | a measured input declares channels, all of its source; a features input none |
//! | `docs` | the description and every parameter doc are non-empty |
//! | `defaults` | every declared default validates, alone and all together |
//! | `unknown_key` | an undeclared key is rejected with a message naming it |
//! | `wrong_type` | a value of the wrong type, and one just outside each declared limit, is rejected naming the key |
//! | `examples` | every declared example gives its expected output |
//! | `shape` | values on generated steps have the declared shape (`Dyn` axes free) |
//! | `determinism` | a repeated call on the same step gives a bit-identical result |
//! | `threads` | four threads sharing one instance at once get exactly the sequential results |
//! | `edge_inputs` | no panic (failures are fine) on empty, one-point, NaN, ±inf, constant and long steps, and without recorded settings |
//! | `timing` | reports time per step; fails only above [`CheckOptions::max_step_time`] |
//!
//! Checks that need an instance are skipped when the extractor cannot be created with
//! its defaults (the `defaults` item then says why).
//!
//! # Generated inputs
//!
//! An extractor gets only the channels it declares, in its order, like from the host.
//!
//! - `transfer`: `vg`, `id` from [`transfer_sweep`], an N-type sigmoid swept
//!   −0.6 → 0.6 → −0.6 V, at 41, 121, 241 and 481 points; the context records a drain
//!   voltage of 0.1 V and the sweep's gate start, end and step.
//! - `transient`: `t`, `i` from [`pulse_train`], a 0.25 s square-wave pulse train
//!   sampled at 1 kHz, 2, 5 and 12 cycles; the context records period 0.25 s, rate
//!   1000 Hz, 125 ms off at −0.3 V and 125 ms on at 0.6 V, and the number of cycles.
//! - `features`: the ABI does not say how many inputs a feature extractor takes, so
//!   it gets [`CheckOptions::feature_inputs`] scalar inputs (shape `[]`) named
//!   `input_0`, `input_1`, … in that order, over six steps.
//!
//! A panic is a failure of kind [`FailureKind::Panic`] across the FFI; the kit also
//! catches panics that unwind to it from an in-process [`Target`].
//!
//! # In a plugin's own tests
//!
//! An extractor is a plain function, so a test inside the crate can call it directly.
//! To go through the registration as the host does (parameters as JSON, the declared
//! channels, panic containment), [`create`] an [`Instance`] and [`run`](Instance::run)
//! it on a [`Step`]: `create("mylab.subthreshold_swing", &json!({"window_points": 7}))?
//! .run(&Step::transfer(&vg, &id))`.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RStr};
use serde_json::{json, Value};

use crate::abi::{
    Bound, Channel, Dim, Example, Expected, Extractor, ExtractorBox, ExtractorInfo, FailureKind,
    FeatureValue, InputKind, ParamInfo, ParamKind, PluginInfo, PluginRef, Source, StepArray,
    StepContext, StepFailure, StepInput, StepSettings,
};
use crate::export::panic_message;

/// What the kit checks: a plugin's descriptions and a way to create its extractors.
pub trait Target {
    /// Extractor descriptions (name, input, channels, params, examples, description, unit).
    fn extractors(&self) -> Vec<ExtractorInfo>;
    fn plugin(&self) -> PluginInfo;
    /// Create with JSON params; Err = validation message.
    fn create(&self, name: &str, params_json: &str) -> Result<Box<dyn CheckedExtractor>, String>;
}

/// A created extractor, as the kit calls it.
pub trait CheckedExtractor: Send + Sync {
    fn output_shape(&self) -> Vec<Dim>;
    fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, StepFailure>;
}

impl Target for PluginRef {
    fn extractors(&self) -> Vec<ExtractorInfo> {
        PluginRef::extractors(self)().into_vec()
    }

    fn plugin(&self) -> PluginInfo {
        PluginRef::info(self)()
    }

    fn create(&self, name: &str, params_json: &str) -> Result<Box<dyn CheckedExtractor>, String> {
        match PluginRef::create(self)(RStr::from_str(name), RStr::from_str(params_json)) {
            RResult::ROk(extractor) => Ok(Box::new(extractor)),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }
}

impl CheckedExtractor for ExtractorBox {
    fn output_shape(&self) -> Vec<Dim> {
        Extractor::output_shape(self).into_vec()
    }

    fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, StepFailure> {
        self.extract_step(input).into_result()
    }
}

/// The extractors registered in the current binary (a plugin's own test).
///
/// Goes through the same root module that `export_plugin!` exports, so parameter
/// JSON, validation and panic containment are exactly what the host gets. The
/// plugin's name and version are the package's, from the `CARGO_PKG_NAME` and
/// `CARGO_PKG_VERSION` variables Cargo sets when it runs a test; they are empty
/// (and `metadata` fails) when the binary runs outside Cargo.
pub struct InProcess;

impl InProcess {
    fn module() -> PluginRef {
        // `root_module` leaks a new module on each call; one is enough.
        static MODULE: OnceLock<PluginRef> = OnceLock::new();
        *MODULE.get_or_init(crate::export::root_module)
    }
}

impl Target for InProcess {
    fn extractors(&self) -> Vec<ExtractorInfo> {
        Target::extractors(&Self::module())
    }

    fn plugin(&self) -> PluginInfo {
        let var = |name| std::env::var(name).unwrap_or_default();
        PluginInfo {
            name: var("CARGO_PKG_NAME").into(),
            version: var("CARGO_PKG_VERSION").into(),
            api_version: crate::API_VERSION.into(),
        }
    }

    fn create(&self, name: &str, params_json: &str) -> Result<Box<dyn CheckedExtractor>, String> {
        Target::create(&Self::module(), name, params_json)
    }
}

/// An extractor of the current binary, created through its registration.
pub struct Instance {
    info: ExtractorInfo,
    extractor: Box<dyn CheckedExtractor>,
}

/// Creates the registered extractor `name` with `params` (a JSON object), validating
/// them exactly as the host does; the error is the validation message.
pub fn create(name: &str, params: &Value) -> Result<Instance, String> {
    let info = InProcess
        .extractors()
        .into_iter()
        .find(|e| e.name.as_str() == name)
        .ok_or_else(|| format!("no extractor '{name}' is registered in this binary"))?;
    let extractor = InProcess.create(name, &params.to_string())?;
    Ok(Instance { info, extractor })
}

impl Instance {
    /// The per-step shape it declares with these parameters.
    pub fn shape(&self) -> Vec<Dim> {
        self.extractor.output_shape()
    }

    /// Runs it on `step`, handing over the channels it declares as the host would.
    pub fn run(&self, step: &Step) -> Result<FeatureValue, StepFailure> {
        step.with_input(&self.info.channels, |input| self.extractor.extract(input))
    }
}

/// One step as an extractor receives it: measured channels (or feature inputs) and what
/// the file records about the step.
#[derive(Debug, Clone)]
pub struct Step {
    label: String,
    measured: Vec<(Channel, Vec<f64>)>,
    /// `(name, shape, data)` of each feature input.
    features: Vec<(String, Vec<u64>, Vec<f64>)>,
    settings: StepSettings,
    /// The context's step index; generated steps count up from 0 like a file's.
    index: u64,
}

impl Step {
    /// A transfer sweep (no recorded settings).
    pub fn transfer(vg: &[f64], id: &[f64]) -> Step {
        Step::measured(
            "transfer step",
            vec![(Channel::Vg, vg.to_vec()), (Channel::Id, id.to_vec())],
        )
    }

    /// A transient pulse train (no recorded settings).
    pub fn transient(t: &[f64], i: &[f64]) -> Step {
        Step::measured(
            "transient step",
            vec![(Channel::Time, t.to_vec()), (Channel::Current, i.to_vec())],
        )
    }

    /// The same step with these recorded settings.
    pub fn with_settings(self, settings: StepSettings) -> Step {
        Step { settings, ..self }
    }

    /// The same step recording the sampling of a pulse train (period in s, rate in Hz).
    pub fn with_sampling(mut self, period: f64, sample_rate: f64) -> Step {
        let s = &mut self.settings;
        s.period = Some(period).into();
        s.sample_rate = Some(sample_rate).into();
        s.time_step = Some(1.0 / sample_rate).into();
        self
    }

    fn measured(label: &str, measured: Vec<(Channel, Vec<f64>)>) -> Step {
        Step {
            label: label.to_string(),
            measured,
            features: Vec::new(),
            settings: StepSettings::default(),
            index: 0,
        }
    }

    fn labelled(self, label: String) -> Step {
        Step { label, ..self }
    }

    /// Calls `f` with the step as an extractor declaring `channels` receives it (all
    /// feature inputs when it declares none).
    fn with_input<R>(&self, channels: &[Channel], f: impl FnOnce(&StepInput<'_>) -> R) -> R {
        let shapes: Vec<[u64; 1]> = channels
            .iter()
            .map(|c| [self.samples(*c).len() as u64])
            .collect();
        let arrays: Vec<StepArray<'_>> = if channels.is_empty() {
            self.features
                .iter()
                .map(|(n, s, d)| StepArray::new(n, s, d))
                .collect()
        } else {
            channels
                .iter()
                .zip(&shapes)
                .map(|(c, shape)| StepArray::new(c.field(), shape, self.samples(*c)))
                .collect()
        };
        let mut context = StepContext::new("testkit", self.index);
        context.settings = self.settings;
        f(&StepInput::new(&arrays, context))
    }

    /// The samples of `channel`; empty when the step lacks it (a kind mismatch, which the
    /// `input` check reports).
    fn samples(&self, channel: Channel) -> &[f64] {
        self.measured
            .iter()
            .find(|(c, _)| *c == channel)
            .map_or(&[], |(_, d)| d.as_slice())
    }
}

/// How [`check`] runs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Check only these extractors; names are still checked for uniqueness against all.
    pub only: Option<Vec<String>>,
    /// `timing` fails when a generated step takes longer; `None` only reports.
    pub max_step_time: Option<Duration>,
    /// Number of `input_<i>` channels given to `features` extractors.
    pub feature_inputs: usize,
    /// Points in the "long step" edge input.
    pub long_step_len: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            only: None,
            // Generous: the generated steps are at most a few thousand points.
            max_step_time: Some(Duration::from_secs(5)),
            feature_inputs: 1,
            long_step_len: 100_000,
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run because an earlier check failed.
    Skip,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// One line of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `plugin`, or an extractor's name.
    pub subject: String,
    /// The check's name (see the [module docs](self)).
    pub check: &'static str,
    pub outcome: Outcome,
    pub message: String,
}

/// Everything [`check`] found.
#[derive(Debug, Clone)]
pub struct Report {
    pub plugin: PluginInfo,
    pub items: Vec<Item>,
}

impl Report {
    /// True when no check failed (skipped checks follow a failed one).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn failures(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.outcome == Outcome::Fail)
    }

    /// The item of `check` for `subject`.
    pub fn item(&self, subject: &str, check: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.subject == subject && i.check == check)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "plugin": {
                "name": self.plugin.name.as_str(),
                "version": self.plugin.version.as_str(),
                "api_version": self.plugin.api_version.as_str(),
            },
            "passed": self.passed(),
            "checks": self.items.iter().map(|i| json!({
                "subject": i.subject,
                "check": i.check,
                "result": i.outcome.as_str().to_lowercase(),
                "message": i.message,
            })).collect::<Vec<_>>(),
        })
    }

    fn push(&mut self, subject: &str, check: &'static str, problems: Vec<String>, ok: String) {
        let (outcome, message) = if problems.is_empty() {
            (Outcome::Pass, ok)
        } else {
            (Outcome::Fail, problems.join("; "))
        };
        self.items.push(Item {
            subject: subject.to_string(),
            check,
            outcome,
            message,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plugin {} {} (oect-plugin-api {})",
            self.plugin.name, self.plugin.version, self.plugin.api_version
        )?;
        let subject_w = self
            .items
            .iter()
            .map(|i| i.subject.len())
            .max()
            .unwrap_or(0);
        let check_w = self.items.iter().map(|i| i.check.len()).max().unwrap_or(0);
        let (subject_w, check_w) = (subject_w.max(7), check_w.max(5));
        writeln!(
            f,
            "{:<subject_w$}  {:<check_w$}  result  message",
            "subject", "check"
        )?;
        for i in &self.items {
            writeln!(
                f,
                "{:<subject_w$}  {:<check_w$}  {:<6}  {}",
                i.subject,
                i.check,
                i.outcome.as_str(),
                i.message
            )?;
        }
        let count = |o| self.items.iter().filter(|i| i.outcome == o).count();
        write!(
            f,
            "{} checks: {} passed, {} failed, {} skipped",
            self.items.len(),
            count(Outcome::Pass),
            count(Outcome::Fail),
            count(Outcome::Skip)
        )
    }
}

/// Runs every check on `target`.
pub fn check(target: &dyn Target, opts: &CheckOptions) -> Report {
    let plugin = target.plugin();
    let mut report = Report {
        plugin: plugin.clone(),
        items: Vec::new(),
    };
    report.push(
        "plugin",
        "metadata",
        metadata_problems(&plugin),
        format!("{} {}", plugin.name, plugin.version),
    );

    let all = target.extractors();
    let selected: Vec<&ExtractorInfo> = all
        .iter()
        .filter(|e| match &opts.only {
            Some(only) => only.iter().any(|n| n == e.name.as_str()),
            None => true,
        })
        .collect();
    let mut problems = Vec::new();
    if let Some(only) = &opts.only {
        for name in only
            .iter()
            .filter(|n| !all.iter().any(|e| e.name.as_str() == *n))
        {
            problems.push(format!("no extractor named '{name}'"));
        }
    }
    if all.is_empty() {
        problems
            .push("the plugin offers no extractors (is the crate linked into the test?)".into());
    }
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    report.push(
        "plugin",
        "extractors",
        problems,
        format!(
            "{} offered, {} checked: {}",
            all.len(),
            selected.len(),
            names.join(", ")
        ),
    );

    for info in selected {
        check_extractor(target, info, &all, opts, &mut report);
    }
    report
}

/// Runs [`check`] on the extractors of the current binary and panics with the report
/// if anything failed. Call it from an integration test of the plugin crate, after
/// `use my_plugin as _;` so that the plugin's registrations are linked in.
pub fn assert_conforms() {
    let report = check(&InProcess, &CheckOptions::default());
    if !report.passed() {
        panic!("the plugin does not conform:\n{report}");
    }
    println!("{report}");
}

fn check_extractor(
    target: &dyn Target,
    info: &ExtractorInfo,
    all: &[ExtractorInfo],
    opts: &CheckOptions,
    report: &mut Report,
) {
    let name = info.name.as_str();
    let copies = all.iter().filter(|e| e.name == info.name).count();
    let mut problems: Vec<String> = name_problem(name).into_iter().collect();
    if copies > 1 {
        problems.push(format!("'{name}' is offered {copies} times"));
    }
    report.push(name, "name", problems, "namespaced and unique".into());

    let (problems, ok) = match input_problem(info) {
        Some(p) => (vec![p], String::new()),
        None => (Vec::new(), input_text(info)),
    };
    report.push(name, "input", problems, ok);

    let mut problems = Vec::new();
    if info.description.trim().is_empty() {
        problems.push("the description is empty".to_string());
    }
    for p in info.params.iter().filter(|p| p.doc.trim().is_empty()) {
        problems.push(format!("parameter '{}' has no doc", p.name));
    }
    report.push(
        name,
        "docs",
        problems,
        "description and parameter docs present".into(),
    );

    let instance = param_checks(target, info, report);
    report.push(
        name,
        "examples",
        example_problems(target, info),
        match info.examples.len() {
            0 => "none declared".to_string(),
            n => format!("{n} gave the expected output"),
        },
    );
    match instance {
        Some(extractor) => run_checks(name, info, &*extractor, opts, report),
        None => {
            for check in ["shape", "determinism", "threads", "edge_inputs", "timing"] {
                report.items.push(Item {
                    subject: name.to_string(),
                    check,
                    outcome: Outcome::Skip,
                    message: "not run: cannot be created with its default parameters".into(),
                });
            }
        }
    }
}

/// Why the declared input is inconsistent, if it is.
fn input_problem(info: &ExtractorInfo) -> Option<String> {
    match info.input {
        InputKind::Source(source) => {
            if info.channels.is_empty() {
                return Some(format!("reads {} but declares no channel", source.name()));
            }
            let foreign: Vec<&str> = info
                .channels
                .iter()
                .filter(|c| c.source() != source)
                .map(|c| c.field())
                .collect();
            (!foreign.is_empty()).then(|| {
                format!(
                    "reads {} but declares channels of another source: {}",
                    source.name(),
                    foreign.join(", ")
                )
            })
        }
        InputKind::Features => (!info.channels.is_empty())
            .then(|| "reads features but declares measured channels".to_string()),
    }
}

/// `transfer (vg, id)`, `features`.
fn input_text(info: &ExtractorInfo) -> String {
    let channels: Vec<&str> = info.channels.iter().map(|c| c.field()).collect();
    if channels.is_empty() {
        info.input.as_str().to_string()
    } else {
        format!("{} ({})", info.input.as_str(), channels.join(", "))
    }
}

/// The `defaults`, `unknown_key` and `wrong_type` checks; returns the extractor created
/// with its defaults, if it can be.
fn param_checks(
    target: &dyn Target,
    info: &ExtractorInfo,
    report: &mut Report,
) -> Option<Box<dyn CheckedExtractor>> {
    let name = info.name.as_str();
    let create = |params: &str| guard("create", || target.create(name, params));
    let mut problems = Vec::new();
    for p in &info.params {
        let pname = p.name.as_str();
        match serde_json::from_str::<Value>(&p.default_json) {
            Err(e) => problems.push(format!(
                "parameter '{pname}': default `{}` is not JSON: {e}",
                p.default_json
            )),
            Ok(default) => {
                if let Err(e) = create(&json!({ pname: default }).to_string()) {
                    problems.push(format!("parameter '{pname}' given its own default: {e}"));
                }
            }
        }
    }
    let instance = create("{}");
    if let Err(e) = &instance {
        problems.push(format!("with default parameters: {e}"));
    }
    report.push(
        name,
        "defaults",
        problems,
        if info.params.is_empty() {
            "no parameters".to_string()
        } else {
            format!("defaults validate: {}", param_names(info))
        },
    );

    let key = "testkit_unknown_key";
    let problems = match create(&json!({ key: 1 }).to_string()) {
        Ok(_) => vec![format!("accepted the undeclared parameter '{key}'")],
        Err(e) if !e.contains(key) => vec![format!("rejected '{key}' without naming it: {e}")],
        Err(_) => Vec::new(),
    };
    report.push(name, "unknown_key", problems, format!("'{key}' rejected"));

    let mut problems = Vec::new();
    let mut limits = 0;
    for p in &info.params {
        let pname = p.name.as_str();
        let outside = outside_limits(p);
        limits += outside.len();
        for (wrong, why) in std::iter::once((wrong_value(&p.kind), "for kind"))
            .chain(outside.into_iter().map(|v| (v, "outside the limits of")))
        {
            match create(&json!({ pname: wrong }).to_string()) {
                Ok(_) => problems.push(format!(
                    "accepted {pname} = {wrong} {why} '{}'",
                    p.accepts()
                )),
                Err(e) if !names_key(&e, pname) => problems.push(format!(
                    "rejected {pname} = {wrong} without naming '{pname}': {e}"
                )),
                Err(_) => {}
            }
        }
    }
    let ok = match (info.params.is_empty(), limits) {
        (true, _) => "no parameters".to_string(),
        (false, 0) => format!(
            "wrong-typed values rejected, naming the key: {}",
            param_names(info)
        ),
        (false, n) => format!(
            "wrong-typed values and {n} out-of-range values rejected, naming the key: {}",
            param_names(info)
        ),
    };
    report.push(name, "wrong_type", problems, ok);
    instance.ok()
}

/// Runs every declared example through `target`.
fn example_problems(target: &dyn Target, info: &ExtractorInfo) -> Vec<String> {
    let mut problems = Vec::new();
    for ex in &info.examples {
        let what = format!("example '{}'", ex.description);
        let created = guard("create", || target.create(&info.name, &ex.params_json));
        let extractor = match created {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!(
                    "{what}: parameters {} rejected: {e}",
                    ex.params_json
                ));
                continue;
            }
        };
        if ex.arrays.len() != info.channels.len() {
            problems.push(format!(
                "{what}: gives {} arrays for {} channels",
                ex.arrays.len(),
                info.channels.len()
            ));
            continue;
        }
        let step = example_step(info, ex);
        let got = call(&*extractor, &step, &info.channels);
        if let Some(p) = example_mismatch(&ex.expected, &got) {
            problems.push(format!("{what}: {p}"));
        }
    }
    problems
}

fn example_step(info: &ExtractorInfo, ex: &Example) -> Step {
    let measured = info
        .channels
        .iter()
        .zip(&ex.arrays)
        .map(|(c, a)| (*c, a.to_vec()))
        .collect();
    Step::measured(&ex.description, measured).with_settings(ex.settings)
}

/// How `got` departs from what the example expects, if it does.
fn example_mismatch(expected: &Expected, got: &Call) -> Option<String> {
    match (expected, got) {
        (Expected::Value { value, tolerance }, Call::Value(v)) => {
            let close = |a: f64, b: f64| {
                a.to_bits() == b.to_bits()
                    || (a.is_nan() && b.is_nan())
                    || (a - b).abs() <= tolerance * b.abs().max(a.abs())
            };
            let same = v.shape == value.shape
                && v.data.len() == value.data.len()
                && v.data
                    .iter()
                    .zip(value.data.iter())
                    .all(|(a, b)| close(*a, *b));
            (!same).then(|| {
                format!(
                    "expected {} (relative tolerance {tolerance:e}), got {}",
                    value_text(value),
                    value_text(v)
                )
            })
        }
        (Expected::Failure(kind), Call::Failure(f)) if f.kind == *kind => None,
        (Expected::Failure(kind), got) => Some(format!(
            "expected a failure of kind {}, got {}",
            kind.as_str(),
            got.describe()
        )),
        (Expected::Value { value, .. }, got) => Some(format!(
            "expected {}, got {}",
            value_text(value),
            got.describe()
        )),
    }
}

/// `1e6`, `[1, 2]`, `shape [3, 2]: [..]`.
pub(crate) fn value_text(v: &FeatureValue) -> String {
    let values: Vec<String> = v.data.iter().take(6).map(|x| format!("{x:?}")).collect();
    let more = if v.data.len() > 6 { ", …" } else { "" };
    match v.shape.as_slice() {
        [] => values.first().cloned().unwrap_or_default(),
        [_] => format!("[{}{more}]", values.join(", ")),
        shape => format!("shape {shape:?}: [{}{more}]", values.join(", ")),
    }
}

fn run_checks(
    name: &str,
    info: &ExtractorInfo,
    extractor: &dyn CheckedExtractor,
    opts: &CheckOptions,
    report: &mut Report,
) {
    let channels = &info.channels;
    let declared = guard("output_shape", || Ok(extractor.output_shape()));
    let steps = generated_steps(info.input, opts.feature_inputs);
    let first: Vec<(Call, Duration)> = steps
        .iter()
        .map(|s| timed_call(extractor, s, channels))
        .collect();
    let reference: Vec<&Call> = first.iter().map(|(c, _)| c).collect();

    let (problems, ok) = shape_findings(&declared, &steps, &reference);
    report.push(name, "shape", problems, ok);

    let problems: Vec<String> = steps
        .iter()
        .zip(&reference)
        .filter_map(|(step, a)| {
            let (x, y) = a.difference(&call(extractor, step, channels))?;
            Some(format!(
                "{}: first call gave {x}, second gave {y}",
                step.label
            ))
        })
        .collect();
    report.push(
        name,
        "determinism",
        problems,
        "repeated calls bit-identical".into(),
    );

    report.push(
        name,
        "threads",
        thread_problems(extractor, &steps, &reference, channels),
        format!("{THREADS} threads × {ROUNDS} rounds matched the sequential results"),
    );

    let edges = edge_steps(info.input, opts.feature_inputs);
    let long = long_step(info.input, opts);
    let (long_result, long_time) = timed_call(extractor, &long, channels);
    let mut problems = ByCause::default();
    let mut failures = 0;
    let results = edges
        .iter()
        .map(|s| (s, call(extractor, s, channels)))
        .chain([(&long, long_result)]);
    for (step, result) in results {
        match (&result, &declared) {
            (Call::Panic(m), _) => problems.add(format!("panicked: {m}"), &step.label),
            (Call::Failure(_), _) => failures += 1,
            (Call::Value(v), Ok(declared)) => {
                if let Some(p) = shape_problem(declared, v) {
                    problems.add(p, &step.label);
                }
            }
            (Call::Value(_), Err(_)) => {}
        }
    }
    report.push(
        name,
        "edge_inputs",
        problems.into_problems(),
        format!(
            "no panic on {} edge inputs ({failures} returned a failure)",
            edges.len() + 1
        ),
    );

    let mut times: Vec<Duration> = first.iter().map(|(_, t)| *t).collect();
    times.sort();
    let (slowest, max) = steps
        .iter()
        .zip(&first)
        .map(|(s, (_, t))| (s.label.as_str(), *t))
        .max_by_key(|(_, t)| *t)
        .unwrap_or(("", Duration::ZERO));
    let problems = match opts.max_step_time {
        Some(limit) if max > limit => {
            vec![format!(
                "{slowest} took {max:?}, over the limit of {limit:?}"
            )]
        }
        _ => Vec::new(),
    };
    report.push(
        name,
        "timing",
        problems,
        format!(
            "median {:?}, max {max:?} per generated step; {long_time:?} on the {}",
            times.get(times.len() / 2).copied().unwrap_or_default(),
            long.label
        ),
    );
}

/// The `shape` check over the results of the generated steps: (problems, pass message).
fn shape_findings(
    declared: &Result<Vec<Dim>, String>,
    steps: &[Step],
    results: &[&Call],
) -> (Vec<String>, String) {
    let declared = match declared {
        Ok(d) => d,
        Err(e) => return (vec![e.clone()], String::new()),
    };
    let mut problems = ByCause::default();
    let mut failures = ByCause::default();
    let mut failure_count = 0;
    // "No result" (a fit that found nothing) is an answer ("this step has none"), not a
    // fault: a decay time of a pulse train. Only other failures on every step fail the check.
    let mut no_result_count = 0;
    for (step, result) in steps.iter().zip(results) {
        match result {
            Call::Value(v) => {
                if let Some(p) = shape_problem(declared, v) {
                    problems.add(p, &step.label);
                }
            }
            Call::Failure(f) => {
                failure_count += 1;
                no_result_count += usize::from(f.kind == FailureKind::NoResult);
                failures.add(f.message.to_string(), &step.label);
            }
            Call::Panic(m) => problems.add(format!("panicked: {m}"), &step.label),
        }
    }
    let mut problems = problems.into_problems();
    let failures = failures.into_problems().join("; ");
    if failure_count == steps.len() && no_result_count < failure_count {
        problems.push(format!("a failure on every generated step: {failures}"));
    }
    let shape = shape_text(declared);
    let ok = if failure_count == 0 {
        format!("{shape} on {} generated steps", steps.len())
    } else {
        format!(
            "{shape} on {} of {} generated steps; failures: {failures}",
            steps.len() - failure_count,
            steps.len()
        )
    };
    (problems, ok)
}

/// Problems seen on several steps, grouped so that each cause is one line.
#[derive(Default)]
struct ByCause(Vec<(String, Vec<String>)>);

impl ByCause {
    fn add(&mut self, cause: String, step: &str) {
        match self.0.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, steps)) => steps.push(step.to_string()),
            None => self.0.push((cause, vec![step.to_string()])),
        }
    }

    fn into_problems(self) -> Vec<String> {
        self.0
            .into_iter()
            .map(|(cause, steps)| format!("{cause} ({})", steps.join(", ")))
            .collect()
    }
}

const THREADS: usize = 4;
const ROUNDS: usize = 2;

/// Calls `extractor` on every step from [`THREADS`] threads released together, and
/// compares each result with the sequential `reference`.
fn thread_problems(
    extractor: &dyn CheckedExtractor,
    steps: &[Step],
    reference: &[&Call],
    channels: &[Channel],
) -> Vec<String> {
    let barrier = Barrier::new(THREADS);
    let results: Vec<Vec<Call>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    (0..ROUNDS)
                        .flat_map(|_| steps.iter().map(|s| call(extractor, s, channels)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // `call` contains the extractor's panics; anything else is a bug of the kit.
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut problems = Vec::new();
    for (t, calls) in results.iter().enumerate() {
        for (i, got) in calls.iter().enumerate() {
            let step = i % steps.len();
            if let Some((x, y)) = got.difference(reference[step]) {
                problems.push(format!(
                    "thread {t}, {}: got {x}, sequential call gave {y}",
                    steps[step].label
                ));
            }
        }
    }
    // A few examples diagnose the problem; the count says how widespread it is.
    const SHOWN: usize = 4;
    if problems.len() > SHOWN {
        let more = problems.len() - SHOWN;
        problems.truncate(SHOWN);
        problems.push(format!("{more} more mismatches"));
    }
    problems
}

/// What one call produced.
#[derive(Debug)]
enum Call {
    Value(FeatureValue),
    /// A failure other than a panic.
    Failure(StepFailure),
    Panic(String),
}

impl Call {
    /// Where `self` and `other` differ (each side's part), or `None` when they are
    /// bit-identical values or the same failure.
    fn difference(&self, other: &Call) -> Option<(String, String)> {
        match (self, other) {
            (Call::Value(a), Call::Value(b)) if a.shape != b.shape => Some((
                format!("shape {:?}", a.shape.as_slice()),
                format!("shape {:?}", b.shape.as_slice()),
            )),
            (Call::Value(a), Call::Value(b)) => {
                let bits = |v: &FeatureValue, i: usize| v.data.get(i).map(|x| x.to_bits());
                let i = (0..a.data.len().max(b.data.len())).find(|&i| bits(a, i) != bits(b, i))?;
                let at = |v: &FeatureValue| match v.data.get(i) {
                    Some(x) => format!("[{i}] = {x:?}"),
                    None => format!("no [{i}]"),
                };
                Some((at(a), at(b)))
            }
            (a, b) => (a.describe() != b.describe()).then(|| (a.describe(), b.describe())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Call::Value(v) => {
                let head: Vec<String> = v.data.iter().take(4).map(|x| format!("{x:?}")).collect();
                let more = if v.data.len() > 4 { ", …" } else { "" };
                format!("[{}{more}]", head.join(", "))
            }
            Call::Failure(f) => format!("{} '{}'", f.kind.as_str(), f.message),
            Call::Panic(m) => format!("panic '{m}'"),
        }
    }
}

fn call(extractor: &dyn CheckedExtractor, step: &Step, channels: &[Channel]) -> Call {
    step.with_input(channels, |input| {
        match catch_unwind(AssertUnwindSafe(|| extractor.extract(input))) {
            Ok(Ok(v)) => Call::Value(v),
            Ok(Err(f)) if f.kind == FailureKind::Panic => Call::Panic(f.message.into_string()),
            Ok(Err(f)) => Call::Failure(f),
            Err(payload) => Call::Panic(panic_message(&*payload)),
        }
    })
}

fn timed_call(
    extractor: &dyn CheckedExtractor,
    step: &Step,
    channels: &[Channel],
) -> (Call, Duration) {
    let start = Instant::now();
    let result = call(extractor, step, channels);
    (result, start.elapsed())
}

fn param_names(info: &ExtractorInfo) -> String {
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    names.join(", ")
}

/// Runs `f`, turning a panic into an error naming `what`.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(format!("{what} panicked: {}", panic_message(&*p))))
}

fn metadata_problems(p: &PluginInfo) -> Vec<String> {
    let mut problems = Vec::new();
    if p.name.trim().is_empty() {
        problems.push("the plugin name is empty".to_string());
    }
    for (what, v) in [("version", &p.version), ("api_version", &p.api_version)] {
        if v.is_empty() {
            problems.push(format!("{what} is empty"));
        } else if !looks_like_semver(v) {
            problems.push(format!("{what} '{v}' is not MAJOR.MINOR.PATCH"));
        }
    }
    if looks_like_semver(&p.api_version) {
        problems.extend(crate::check_api_version(&p.api_version).err());
    }
    problems
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` suffixes.
fn looks_like_semver(v: &str) -> bool {
    let (rest, build) = v.split_once('+').unwrap_or((v, "x"));
    let (core, pre) = rest.split_once('-').unwrap_or((rest, "x"));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !pre.is_empty()
        && !build.is_empty()
}

/// Why `name` is not `namespace.feature`, if it is not.
fn name_problem(name: &str) -> Option<String> {
    let Some((ns, feature)) = name.split_once('.') else {
        return Some(format!(
            "'{name}' has no namespace; use <namespace>.<feature>"
        ));
    };
    let ns_ok = ns.starts_with(|c: char| c.is_ascii_lowercase())
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let feature_ok = feature.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && feature
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ns_ok {
        Some(format!(
            "namespace '{ns}' of '{name}' must be lowercase letters, digits and _, starting with a letter"
        ))
    } else if !feature_ok {
        Some(format!(
            "feature '{feature}' of '{name}' must be letters, digits and _, not starting with a digit"
        ))
    } else {
        None
    }
}

/// A value of the wrong type for a parameter kind.
fn wrong_value(kind: &ParamKind) -> Value {
    match kind {
        ParamKind::Bool => json!("yes"),
        ParamKind::Count => json!(-1),
        ParamKind::Float => json!("1.5"),
        ParamKind::Text => json!(1),
        ParamKind::Choice(_) => json!("testkit-not-an-option"),
        ParamKind::FloatPair => json!([1.0]),
        ParamKind::FloatOrRange => json!("wide"),
    }
}

/// Values just outside the parameter's declared limits.
fn outside_limits(p: &ParamInfo) -> Vec<Value> {
    let integer = p.kind == ParamKind::Count;
    let step = |b: Bound, below: bool| -> Option<f64> {
        let v = b.value;
        let out = match (integer, b.inclusive, below) {
            (true, true, true) => v - 1.0,
            (true, true, false) => v + 1.0,
            (true, false, _) => v,
            (false, true, true) => v - v.abs().max(1.0) * 1e-6,
            (false, true, false) => v + v.abs().max(1.0) * 1e-6,
            (false, false, _) => v,
        };
        // A count below 0 is a type error already, not a limit test.
        (!(integer && out < 0.0)).then_some(out)
    };
    let mut out = Vec::new();
    for (bound, below) in [(p.min.into_option(), true), (p.max.into_option(), false)] {
        if let Some(b) = bound {
            if let Some(v) = step(b, below) {
                out.push(if integer { json!(v as u64) } else { json!(v) });
            }
        }
    }
    out
}

/// Whether a validation message names `key` in quotes.
fn names_key(message: &str, key: &str) -> bool {
    ["'", "\"", "`"]
        .iter()
        .any(|q| message.contains(&format!("{q}{key}{q}")))
}

fn shape_text(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Dyn(name) => name.to_string(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Why `value` does not fit `declared`, if it does not.
fn shape_problem(declared: &[Dim], value: &FeatureValue) -> Option<String> {
    let n: u64 = value.shape.iter().product();
    if n != value.data.len() as u64 {
        return Some(format!(
            "returned shape {:?} with {} values",
            value.shape.as_slice(),
            value.data.len()
        ));
    }
    let fits = value.shape.len() == declared.len()
        && declared
            .iter()
            .zip(value.shape.iter())
            .all(|(d, &got)| match d {
                Dim::Fixed(want) => *want == got,
                Dim::Dyn(_) => true,
            });
    (!fits).then(|| {
        format!(
            "returned shape {:?}, declared {}",
            value.shape.as_slice(),
            shape_text(declared)
        )
    })
}

const PERIOD_S: f64 = 0.25;
const RATE_HZ: f64 = 1000.0;
const SAMPLES_PER_CYCLE: usize = 250;

/// A generated transfer step of `points` samples, with the settings its sweep implies.
fn sweep_step(label: String, points: usize) -> Step {
    let (vg, id) = transfer_sweep(points);
    let mut settings = StepSettings {
        drain_voltage: Some(0.1).into(),
        gate_start: Some(-0.6).into(),
        gate_end: Some(0.6).into(),
        sweep_back: Some(true).into(),
        ..StepSettings::default()
    };
    if points > 2 {
        settings.gate_step = Some(2.4 / (points - 1) as f64).into();
    }
    Step::transfer(&vg, &id)
        .labelled(label)
        .with_settings(settings)
}

/// A generated transient step, with the settings its pulse train implies.
fn pulse_step(label: String, (t, i): (Vec<f64>, Vec<f64>), cycles: usize) -> Step {
    let half = PERIOD_S / 2.0;
    let settings = StepSettings {
        drain_voltage: Some(0.1).into(),
        gate_bottom: Some(-0.3).into(),
        gate_top: Some(0.6).into(),
        bottom_time: Some(half).into(),
        top_time: Some(half).into(),
        cycles: Some(cycles as u64).into(),
        ..StepSettings::default()
    };
    Step::transient(&t, &i)
        .labelled(label)
        .with_settings(settings)
        .with_sampling(PERIOD_S, RATE_HZ)
}

/// The realistic steps of `input`, indexed 0, 1, … in order.
fn generated_steps(input: InputKind, feature_inputs: usize) -> Vec<Step> {
    let steps: Vec<Step> = match input {
        InputKind::Source(Source::Transfer) => [41, 121, 241, 481]
            .into_iter()
            .map(|n| sweep_step(format!("sweep of {n} points"), n))
            .collect(),
        InputKind::Source(Source::Transient) => [2, 5, 12]
            .into_iter()
            .map(|c| pulse_step(format!("pulse train of {c} cycles"), pulse_train(c), c))
            .collect(),
        InputKind::Features => (0..6)
            .map(|k| {
                let values: Vec<f64> = (0..feature_inputs)
                    .map(|i| 1e-3 * (1.0 + 0.37 * k as f64) * (i + 1) as f64)
                    .collect();
                features_step(format!("feature step {k}"), &values, &[])
            })
            .collect(),
    };
    steps
        .into_iter()
        .zip(0..)
        .map(|(step, index)| Step { index, ..step })
        .collect()
}

/// `input_<i>` inputs of the given shape, one per value, each filled with its value.
fn features_step(label: String, values: &[f64], shape: &[u64]) -> Step {
    let len = shape.iter().product::<u64>() as usize;
    Step {
        features: values
            .iter()
            .enumerate()
            .map(|(i, &v)| (format!("input_{i}"), shape.to_vec(), vec![v; len]))
            .collect(),
        ..Step::measured(&label, Vec::new())
    }
}

/// Inputs that break naive code: empty, one point, non-finite values, flat data, and a
/// step whose file records no settings.
fn edge_steps(input: InputKind, feature_inputs: usize) -> Vec<Step> {
    let source = match input {
        InputKind::Source(s) => s,
        InputKind::Features => {
            let n = feature_inputs;
            return vec![
                features_step("no inputs".into(), &[], &[]),
                features_step("empty inputs".into(), &vec![1.0; n], &[0]),
                features_step("NaN inputs".into(), &vec![f64::NAN; n], &[]),
                features_step("+inf inputs".into(), &vec![f64::INFINITY; n], &[]),
                features_step("-inf inputs".into(), &vec![f64::NEG_INFINITY; n], &[]),
                features_step("zero inputs".into(), &vec![0.0; n], &[]),
            ];
        }
    };
    let base = match source {
        Source::Transfer => sweep_step(String::new(), 121),
        Source::Transient => pulse_step(String::new(), pulse_train(2), 2),
    };
    let edit = |label: &str, f: &dyn Fn(usize, &mut Vec<f64>)| {
        let mut step = base.clone().labelled(label.to_string());
        for (k, (_, data)) in step.measured.iter_mut().enumerate() {
            f(k, data);
        }
        step
    };
    let n = base.measured[0].1.len();
    let mut steps = vec![
        edit("empty", &|_, d| d.clear()),
        edit("one point", &|_, d| d.truncate(1)),
        edit("all NaN", &|_, d| d.fill(f64::NAN)),
        edit("NaN inside", &|k, d| {
            d[if k == 0 { n / 3 } else { 10 }] = f64::NAN
        }),
        edit("+inf inside", &|k, d| {
            if k == 1 {
                d[20] = f64::INFINITY
            }
        }),
        edit("-inf inside", &|k, d| {
            if k == 1 {
                d[20] = f64::NEG_INFINITY
            }
        }),
        edit("constant", &|k, d| {
            let v = if k == 0 { d[0] } else { 1e-6 };
            d.fill(v)
        }),
        edit("zero current", &|k, d| {
            if k == 1 {
                d.fill(0.0)
            }
        }),
    ];
    // The host passes no settings when neither the file nor its workflow records them.
    steps.push(
        base.clone()
            .labelled("no recorded settings".into())
            .with_settings(StepSettings::default()),
    );
    steps
}

/// A step far longer than real ones, to catch quadratic or stack-hungry code.
fn long_step(input: InputKind, opts: &CheckOptions) -> Step {
    let n = opts.long_step_len;
    let label = format!("long step of {n} points");
    match input {
        InputKind::Source(Source::Transfer) => sweep_step(label, n),
        InputKind::Source(Source::Transient) => {
            let cycles = n.div_ceil(SAMPLES_PER_CYCLE);
            let (mut t, mut i) = pulse_train(cycles);
            t.truncate(n);
            i.truncate(n);
            pulse_step(label, (t, i), cycles)
        }
        InputKind::Features => features_step(label, &vec![1.0; opts.feature_inputs], &[n as u64]),
    }
}

/// The kit's transfer sweep of `points` samples: `(Vg, Id)` of an N-type device,
/// Vg −0.6 → 0.6 → −0.6 V (turning point at index `(points − 1) / 2`), Id a 0.6 mA
/// sigmoid of width 60 mV over a 1 nA floor, with 30 mV of hysteresis and 0.2 % noise.
pub fn transfer_sweep(points: usize) -> (Vec<f64>, Vec<f64>) {
    let last = points.saturating_sub(1).max(1) as f64;
    let mut noise = Noise::new(points as u64);
    (0..points)
        .map(|i| {
            let phase = i as f64 / last;
            let vg = -0.6 + 1.2 * (1.0 - (2.0 * phase - 1.0).abs());
            let vth = if phase > 0.5 { 0.08 } else { 0.05 };
            let id = 1e-9 + 6e-4 / (1.0 + (-(vg - vth) / 0.06).exp());
            (vg, id * (1.0 + 2e-3 * noise.next()))
        })
        .unzip()
}

/// The kit's transient step of `cycles` pulses: `(continuous_time, drain_current)`
/// sampled at 1 kHz from t = 5 s. Each 0.25 s cycle holds the gate on for its first
/// half; the current relaxes exponentially from 0.4 mA towards 0.1 mA when the gate
/// turns on (τ = 8 ms) and back when it turns off (τ = 3 ms), with 0.2 % noise.
pub fn pulse_train(cycles: usize) -> (Vec<f64>, Vec<f64>) {
    const OFF_A: f64 = 4e-4;
    const ON_A: f64 = 1e-4;
    let half = SAMPLES_PER_CYCLE / 2;
    let mut noise = Noise::new(cycles as u64 + 1);
    let mut level = OFF_A;
    let mut start = OFF_A;
    (0..cycles * SAMPLES_PER_CYCLE)
        .map(|i| {
            let j = i % SAMPLES_PER_CYCLE;
            if j % half == 0 {
                start = level;
            }
            let (target, tau) = if j < half {
                (ON_A, 8e-3)
            } else {
                (OFF_A, 3e-3)
            };
            let since_edge = (j % half) as f64 / RATE_HZ;
            level = target + (start - target) * (-since_edge / tau).exp();
            let t = 5.0 + i as f64 / RATE_HZ;
            (t, level * (1.0 + 2e-3 * noise.next()))
        })
        .unzip()
}

/// A tiny deterministic noise source (xorshift64), so generated steps are reproducible.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [−1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{extractor, Choice, Context, Current, Features, NumberOrRange, Params, Transfer};

    #[derive(Choice, Clone, Copy, Default)]
    enum Mode {
        #[default]
        A,
        B,
    }

    #[derive(Params)]
    struct EveryKind {
        /// a test parameter
        #[param(default = false)]
        flag: bool,
        /// a test parameter
        #[param(default = 3, min = 1)]
        n: usize,
        /// a test parameter
        #[param(default = 1.0, positive)]
        scale: f64,
        /// a test parameter
        #[param(default = "x".to_string())]
        label: String,
        /// a test parameter
        #[param(default)]
        mode: Mode,
        /// a test parameter
        #[param(default = (0.0, 1.0))]
        window: (f64, f64),
        /// a test parameter
        range: Option<NumberOrRange>,
    }

    fn max_abs(id: &[f64]) -> Option<f64> {
        id.iter()
            .filter(|v| v.is_finite())
            .map(|v| v.abs())
            .reduce(f64::max)
    }

    /// max |Id|
    #[extractor(name = "kit.good", unit = "A",
        example("the largest magnitude", vg = [0.0, 0.1, 0.2], id = [1e-6, -3e-3, 2e-3], output = 3e-3),
        example("no finite current", vg = [0.0], id = [f64::NAN], no_result))]
    fn good(step: Transfer, _p: &EveryKind) -> Option<f64> {
        max_abs(step.id)
    }

    /// max |Id|, declared as a pair
    #[extractor(name = "kit.wrong_shape", unit = "A", shape = [2])]
    fn wrong_shape(step: Transfer) -> Result<FeatureValue, String> {
        max_abs(step.id)
            .map(FeatureValue::scalar)
            .ok_or("no finite Id".into())
    }

    /// mean current of each cycle
    #[extractor(name = "kit.cycle_means", unit = "A", shape = ["n_cycles"])]
    fn cycle_means(step: Current, ctx: Context) -> Result<Vec<f64>, String> {
        let (Some(period), Some(rate)) = (ctx.period, ctx.sample_rate) else {
            return Err("no sampling parameters".into());
        };
        let per_cycle = (period * rate).round();
        if per_cycle.is_nan() || per_cycle < 1.0 {
            return Err(format!("{per_cycle} samples per cycle"));
        }
        Ok(step
            .i
            .chunks_exact(per_cycle as usize)
            .map(|c| c.iter().sum::<f64>() / c.len() as f64)
            .collect())
    }

    /// sum of two features
    #[extractor(name = "kit.sum", unit = "")]
    fn sum(inputs: Features) -> Result<f64, String> {
        Ok(inputs.scalar(0)? + inputs.scalar(1)?)
    }

    /// length of the step
    #[extractor(name = "kit.nan_panic", unit = "")]
    fn nan_panic(step: Current) -> f64 {
        assert!(!step.i.iter().any(|v| v.is_nan()), "NaN in drain_current");
        step.i.len() as f64
    }

    static CALLS: AtomicU64 = AtomicU64::new(0);

    /// number of calls so far
    #[extractor(name = "kit.counter", unit = "")]
    fn counter(_step: Transfer) -> f64 {
        CALLS.fetch_add(1, Ordering::Relaxed) as f64
    }

    #[derive(Params)]
    struct Level {
        #[param(default = 0.5)]
        level: f64,
    }

    #[extractor(name = "Kit.bad-name", unit = "A")]
    fn bad_name(step: Transfer, _p: &Level) -> Option<f64> {
        max_abs(step.id)
    }

    #[derive(Params)]
    struct Offset {
        /// added to the result
        #[param(default = 0.0)]
        offset: f64,
    }

    /// max |Id| plus an offset, with examples that are wrong on purpose
    #[extractor(name = "kit.bad_examples", unit = "A",
        example("wrong value", vg = [0.0, 0.1], id = [1.0, 2.0], output = 3.0),
        example("right value", vg = [0.0, 0.1], id = [1.0, 2.0], params(offset = 1.0), output = 3.0),
        example("expects a failure", vg = [0.0], id = [1.0], no_result),
        example("tolerated", vg = [0.0], id = [1.0], output = 1.001, tolerance = 0.01))]
    fn bad_examples(step: Transfer, p: &Offset) -> Option<f64> {
        Some(max_abs(step.id)? + p.offset)
    }

    /// drain voltage and gate range of a transfer step
    #[extractor(name = "kit.settings", unit = "V",
        example("a sweep at 0.1 V", vg = [0.0], id = [0.0],
                context(drain_voltage = 0.1, gate_start = -0.6, gate_end = 0.6),
                output = [0.1, -0.6, 0.6]))]
    fn settings(_step: Transfer, ctx: Context) -> Option<[f64; 3]> {
        Some([ctx.drain_voltage?, ctx.gate_start?, ctx.gate_end?])
    }

    fn opts(only: &[&str]) -> CheckOptions {
        CheckOptions {
            only: Some(only.iter().map(|s| s.to_string()).collect()),
            max_step_time: None,
            feature_inputs: 2,
            long_step_len: 20_000,
        }
    }

    /// How [`Fake`] departs from the in-process plugin.
    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        /// Only the metadata differs.
        Honest,
        /// Ignores the parameters it is given.
        Lenient,
        /// Rejects any parameter with a message that names nothing.
        Vague,
        /// Offers `kit.good` twice.
        Duplicate,
        /// Calls extractors directly, so their panics unwind into the kit.
        Unguarded,
        /// Declares `kit.good` as reading transient current.
        MixedInput,
    }

    struct Fake {
        info: PluginInfo,
        fault: Fault,
    }

    impl Fake {
        fn new(fault: Fault) -> Fake {
            Fake {
                info: PluginInfo {
                    name: "fake".into(),
                    version: "1.2.3".into(),
                    api_version: crate::API_VERSION.into(),
                },
                fault,
            }
        }
    }

    /// Calls a [`Run`](crate::export::Run) without the SDK's panic guard.
    struct Unguarded(Box<dyn crate::export::Run>);

    impl CheckedExtractor for Unguarded {
        fn output_shape(&self) -> Vec<Dim> {
            self.0.shape()
        }

        fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, StepFailure> {
            self.0.call(input)
        }
    }

    impl Target for Fake {
        fn extractors(&self) -> Vec<ExtractorInfo> {
            let mut all = InProcess.extractors();
            let good = all.iter().position(|e| e.name.as_str() == "kit.good");
            match (self.fault, good) {
                (Fault::Duplicate, Some(g)) => all.push(all[g].clone()),
                (Fault::MixedInput, Some(g)) => all[g].channels.push(Channel::Current),
                _ => {}
            }
            all
        }

        fn plugin(&self) -> PluginInfo {
            self.info.clone()
        }

        fn create(
            &self,
            name: &str,
            params_json: &str,
        ) -> Result<Box<dyn CheckedExtractor>, String> {
            match self.fault {
                Fault::Honest | Fault::Duplicate | Fault::MixedInput => {
                    InProcess.create(name, params_json)
                }
                Fault::Lenient => InProcess.create(name, "{}"),
                Fault::Vague if params_json != "{}" => Err("invalid parameters".into()),
                Fault::Vague => InProcess.create(name, params_json),
                Fault::Unguarded => {
                    let registration = inventory::iter::<crate::export::Registration>
                        .into_iter()
                        .find(|r| r.name == name)
                        .ok_or("no such extractor")?;
                    let params = serde_json::from_str(params_json).map_err(|e| e.to_string())?;
                    Ok(Box::new(Unguarded((registration.create)(&params)?)))
                }
            }
        }
    }

    fn item<'r>(report: &'r Report, subject: &str, check: &str) -> &'r Item {
        report
            .item(subject, check)
            .unwrap_or_else(|| panic!("no {check} item for {subject}:\n{report}"))
    }

    fn assert_fails<'r>(report: &'r Report, subject: &str, check: &str, needle: &str) -> &'r Item {
        let i = item(report, subject, check);
        assert_eq!(i.outcome, Outcome::Fail, "{check} of {subject}:\n{report}");
        assert!(
            i.message.contains(needle),
            "{check} of {subject}: {:?} lacks {needle:?}",
            i.message
        );
        i
    }

    #[test]
    fn good_extractors_of_every_input_kind_pass_every_check() {
        let subjects = ["kit.good", "kit.cycle_means", "kit.sum", "kit.settings"];
        let report = check(&InProcess, &opts(&subjects));
        assert!(report.passed(), "{report}");
        assert_eq!(
            item(&report, "plugin", "metadata").message,
            format!("oect-plugin-api {}", crate::API_VERSION)
        );
        for subject in subjects {
            let checks: Vec<&str> = report
                .items
                .iter()
                .filter(|i| i.subject == subject)
                .map(|i| i.check)
                .collect();
            assert_eq!(
                checks,
                [
                    "name",
                    "input",
                    "docs",
                    "defaults",
                    "unknown_key",
                    "wrong_type",
                    "examples",
                    "shape",
                    "determinism",
                    "threads",
                    "edge_inputs",
                    "timing"
                ]
            );
        }
        assert_eq!(
            item(&report, "kit.good", "wrong_type").message,
            "wrong-typed values and 2 out-of-range values rejected, naming the key: flag, n, \
             scale, label, mode, window, range"
        );
        assert_eq!(
            item(&report, "kit.good", "input").message,
            "transfer (vg, id)"
        );
        assert_eq!(
            item(&report, "kit.cycle_means", "input").message,
            "transient (i)"
        );
        assert_eq!(item(&report, "kit.sum", "input").message, "features");
        assert_eq!(
            item(&report, "kit.good", "examples").message,
            "2 gave the expected output"
        );
        assert_eq!(
            item(&report, "kit.cycle_means", "shape").message,
            "[n_cycles] on 3 generated steps"
        );
        // The generated transfer steps record their sweep, which kit.settings returns.
        assert_eq!(
            item(&report, "kit.settings", "shape").message,
            "[3] on 4 generated steps"
        );
    }

    #[test]
    fn examples_are_run_and_mismatches_named() {
        let report = check(&InProcess, &opts(&["kit.bad_examples"]));
        let i = assert_fails(
            &report,
            "kit.bad_examples",
            "examples",
            "example 'wrong value': expected 3.0 (relative tolerance 1e-9), got 2.0",
        );
        assert!(
            i.message.contains(
                "example 'expects a failure': expected a failure of kind no_result, got [1.0]"
            ),
            "{}",
            i.message
        );
        assert!(
            !i.message.contains("right value") && !i.message.contains("tolerated"),
            "{}",
            i.message
        );
        assert_eq!(report.failures().count(), 1, "{report}");
    }

    #[test]
    fn a_wrong_shape_fails_the_shape_check_on_every_step() {
        let report = check(&InProcess, &opts(&["kit.wrong_shape"]));
        assert_fails(
            &report,
            "kit.wrong_shape",
            "shape",
            "returned shape [], declared [2] (sweep of 41 points, sweep of 121 points, \
             sweep of 241 points, sweep of 481 points)",
        );
        assert_eq!(
            item(&report, "kit.wrong_shape", "determinism").outcome,
            Outcome::Pass
        );
    }

    #[test]
    fn a_panic_on_nan_fails_edge_inputs_through_the_sdk_guard_and_unguarded() {
        for target in [&InProcess as &dyn Target, &Fake::new(Fault::Unguarded)] {
            let report = check(target, &opts(&["kit.nan_panic"]));
            let i = assert_fails(
                &report,
                "kit.nan_panic",
                "edge_inputs",
                "panicked: NaN in drain_current (all NaN, NaN inside)",
            );
            assert!(!i.message.contains("+inf"), "{}", i.message);
            assert_eq!(report.failures().count(), 1, "{report}");
        }
    }

    #[test]
    fn a_counter_fails_determinism_and_threads() {
        let report = check(&InProcess, &opts(&["kit.counter"]));
        assert_fails(
            &report,
            "kit.counter",
            "determinism",
            "sweep of 41 points: first call gave [",
        );
        assert_fails(&report, "kit.counter", "threads", "sequential call gave");
        assert_eq!(item(&report, "kit.counter", "shape").outcome, Outcome::Pass);
    }

    #[test]
    fn a_bad_name_and_missing_docs_are_named() {
        let report = check(&InProcess, &opts(&["Kit.bad-name"]));
        assert_fails(
            &report,
            "Kit.bad-name",
            "name",
            "namespace 'Kit' of 'Kit.bad-name'",
        );
        let i = assert_fails(&report, "Kit.bad-name", "docs", "the description is empty");
        assert!(
            i.message.contains("parameter 'level' has no doc"),
            "{}",
            i.message
        );
        assert_eq!(report.failures().count(), 2, "{report}");
    }

    #[test]
    fn an_input_of_mixed_sources_is_named() {
        let report = check(&Fake::new(Fault::MixedInput), &opts(&["kit.good"]));
        assert_fails(
            &report,
            "kit.good",
            "input",
            "reads transfer but declares channels of another source: i",
        );
    }

    #[test]
    fn parameter_checks_fail_when_validation_is_missing_or_vague() {
        let lenient = check(&Fake::new(Fault::Lenient), &opts(&["kit.good"]));
        assert_fails(
            &lenient,
            "kit.good",
            "unknown_key",
            "accepted the undeclared parameter 'testkit_unknown_key'",
        );
        let i = assert_fails(
            &lenient,
            "kit.good",
            "wrong_type",
            "accepted flag = \"yes\" for kind 'bool'",
        );
        assert!(
            i.message
                .contains("accepted n = 0 outside the limits of 'non-negative integer ≥ 1'"),
            "{}",
            i.message
        );
        assert!(
            i.message
                .contains("accepted scale = 0.0 outside the limits of 'number > 0'"),
            "{}",
            i.message
        );
        assert_eq!(i.message.matches("accepted").count(), 9, "{}", i.message);

        let vague = check(&Fake::new(Fault::Vague), &opts(&["kit.good"]));
        assert_fails(
            &vague,
            "kit.good",
            "unknown_key",
            "without naming it: invalid parameters",
        );
        assert_fails(
            &vague,
            "kit.good",
            "wrong_type",
            "rejected n = -1 without naming 'n'",
        );
        // The defaults are given explicitly too, so a vague validator fails them.
        assert_fails(
            &vague,
            "kit.good",
            "defaults",
            "parameter 'flag' given its own default",
        );
    }

    #[test]
    fn duplicates_metadata_and_missing_names_are_reported() {
        let report = check(&Fake::new(Fault::Duplicate), &opts(&["kit.good"]));
        assert_fails(&report, "kit.good", "name", "'kit.good' is offered 2 times");

        let mut fake = Fake::new(Fault::Honest);
        fake.info.name = "".into();
        fake.info.version = "1.0".into();
        let report = check(&fake, &opts(&["kit.good", "kit.missing"]));
        let i = assert_fails(&report, "plugin", "metadata", "the plugin name is empty");
        assert!(
            i.message.contains("version '1.0' is not MAJOR.MINOR.PATCH"),
            "{}",
            i.message
        );
        assert_fails(
            &report,
            "plugin",
            "extractors",
            "no extractor named 'kit.missing'",
        );

        let mut fake = Fake::new(Fault::Honest);
        fake.info.api_version = "0.1.0".into();
        let report = check(&fake, &opts(&["kit.good"]));
        assert_fails(
            &report,
            "plugin",
            "metadata",
            "built against oect-plugin-api 0.1.0 but this host uses",
        );
    }

    #[test]
    fn an_extractor_that_cannot_be_created_skips_the_runtime_checks() {
        struct Broken;
        impl Target for Broken {
            fn extractors(&self) -> Vec<ExtractorInfo> {
                InProcess.extractors()
            }
            fn plugin(&self) -> PluginInfo {
                Fake::new(Fault::Honest).info
            }
            fn create(&self, _: &str, _: &str) -> Result<Box<dyn CheckedExtractor>, String> {
                panic!("cannot build")
            }
        }
        let report = check(&Broken, &opts(&["kit.good"]));
        assert_fails(
            &report,
            "kit.good",
            "defaults",
            "with default parameters: create panicked: cannot build",
        );
        for check in ["shape", "determinism", "threads", "edge_inputs", "timing"] {
            assert_eq!(item(&report, "kit.good", check).outcome, Outcome::Skip);
        }
    }

    #[test]
    fn report_renders_as_a_table_and_as_json() {
        let report = check(&InProcess, &opts(&["kit.good", "Kit.bad-name"]));
        let text = report.to_string();
        let mut lines = text.lines();
        assert!(
            lines.next().unwrap().starts_with("plugin oect-plugin-api "),
            "{text}"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("subject       check        result  message"),
            "{text}"
        );
        assert!(
            text.contains("\nKit.bad-name  name         FAIL    namespace 'Kit'"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "{} checks: 24 passed, 2 failed, 0 skipped",
                report.items.len()
            )),
            "{text}"
        );

        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["plugin"]["api_version"], crate::API_VERSION);
        let checks = json["checks"].as_array().unwrap();
        assert_eq!(checks.len(), report.items.len());
        assert!(
            checks.contains(&json!({
                "subject": "kit.good", "check": "unknown_key", "result": "pass",
                "message": "'testkit_unknown_key' rejected",
            })),
            "{json}"
        );
    }

    #[test]
    #[should_panic(expected = "the plugin does not conform")]
    fn assert_conforms_panics_with_the_report() {
        // This binary registers the deliberately broken extractors above.
        assert_conforms();
    }

    #[test]
    fn instances_run_through_the_registration() {
        let good = create("kit.good", &json!({"n": 2})).unwrap();
        assert_eq!(good.shape(), vec![]);
        let v = good
            .run(&Step::transfer(&[0.0, 1.0], &[1e-3, -2e-3]))
            .unwrap();
        assert_eq!(v.data.as_slice(), &[2e-3]);
        let e = good.run(&Step::transfer(&[0.0], &[f64::NAN])).unwrap_err();
        assert_eq!(e.kind, FailureKind::NoResult);
        let e = create("kit.good", &json!({"n": 0})).err().unwrap();
        assert_eq!(e, "parameter 'n': must be ≥ 1, got 0");
        assert!(create("kit.none", &json!({})).is_err());

        let means = create("kit.cycle_means", &json!({})).unwrap();
        let (t, i) = pulse_train(2);
        let step = Step::transient(&t, &i);
        let e = means.run(&step).unwrap_err();
        assert_eq!(e.message.as_str(), "no sampling parameters");
        let v = means.run(&step.with_sampling(PERIOD_S, RATE_HZ)).unwrap();
        assert_eq!(v.shape.as_slice(), &[2]);

        let panics = create("kit.nan_panic", &json!({})).unwrap();
        let e = panics
            .run(&Step::transient(&[0.0], &[f64::NAN]))
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (FailureKind::Panic, "NaN in drain_current")
        );
    }

    #[test]
    fn every_param_kind_has_a_wrong_value_the_sdk_rejects() {
        for p in EveryKind::describe() {
            let wrong = wrong_value(&p.kind);
            let e = EveryKind::from_json(&json!({ p.name.as_str(): wrong }))
                .err()
                .unwrap();
            assert!(names_key(&e, &p.name), "{}: {e}", p.name);
            for outside in outside_limits(&p) {
                let e = EveryKind::from_json(&json!({ p.name.as_str(): outside }))
                    .err()
                    .unwrap();
                assert!(e.contains("must be"), "{}: {e}", p.name);
            }
        }
    }

    #[test]
    fn names_and_versions_are_judged() {
        for good in ["transfer.Von", "transfer.absI_max", "my_lab2._x"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("gm_max", "has no namespace"),
            ("Lab.x", "namespace 'Lab'"),
            ("2lab.x", "namespace '2lab'"),
            (".x", "namespace ''"),
            ("lab.1x", "feature '1x'"),
            ("lab.", "feature ''"),
            ("lab.a.b", "feature 'a.b'"),
            ("lab.a-b", "feature 'a-b'"),
        ] {
            let p = name_problem(bad).unwrap_or_default();
            assert!(p.contains(why), "{bad}: {p}");
        }
        for good in [
            "0.1.0",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "1.0.0-a+b",
        ] {
            assert!(looks_like_semver(good), "{good}");
        }
        for bad in [
            "1.0", "v1.0.0", "1.0.0.0", "1..0", "1.0.0-", "1.0.0+", "1.a.0",
        ] {
            assert!(!looks_like_semver(bad), "{bad}");
        }
    }

    #[test]
    fn no_result_on_every_step_is_an_answer_but_other_failures_fail_the_shape_check() {
        let steps = generated_steps(InputKind::Source(Source::Transient), 0);
        let no_fit = Call::Failure(StepFailure::no_result("no fit: not one decay"));
        let error = Call::Failure(StepFailure::invalid_input("no fit: boom"));
        let (problems, ok) = shape_findings(&Ok(vec![]), &steps, &vec![&no_fit; steps.len()]);
        assert!(
            problems.is_empty() && ok.contains("no fit"),
            "{problems:?} {ok}"
        );
        let (problems, _) = shape_findings(&Ok(vec![]), &steps, &vec![&error; steps.len()]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn generated_steps_are_what_the_docs_say() {
        let (vg, id) = transfer_sweep(5);
        let expected = [-0.6, 0.0, 0.6, 0.0, -0.6];
        for (v, e) in vg.iter().zip(expected) {
            assert!((v - e).abs() < 1e-12, "{vg:?}");
        }
        assert!(id[2] > 5e-4 && id[0] < 2e-8, "{id:?}");
        // Hysteresis: the reverse half lags the forward one at the same Vg.
        assert!(id[3] < id[1], "{id:?}");
        let step = sweep_step("s".into(), 5);
        assert_eq!(step.settings.gate_step.into_option(), Some(0.6));

        let (t, i) = pulse_train(2);
        assert_eq!((t.len(), i.len()), (500, 500));
        assert!((t[0] - 5.0).abs() < 1e-12 && (t[499] - 5.499).abs() < 1e-9);
        let near = |x: f64, want: f64| (x - want).abs() < 0.01 * want;
        // Settled at the end of each half: gate on (low current), then off.
        assert!(
            near(i[124], 1e-4) && near(i[249], 4e-4) && near(i[374], 1e-4),
            "{i:?}"
        );
        // Relaxing, not settled, 3 ms after an edge.
        assert!(i[128] > 1.5e-4 && i[253] < 3.5e-4, "{} {}", i[128], i[253]);
        assert_eq!(transfer_sweep(121), transfer_sweep(121));
        let step = pulse_step("p".into(), pulse_train(2), 2);
        let ctx = step.with_input(&[Channel::Current], |input| {
            assert_eq!(input.arrays.len(), 1);
            assert_eq!(input.arrays[0].name.as_str(), "i");
            Context::from(&input.context).period
        });
        assert_eq!(ctx, Some(PERIOD_S));
    }
}
