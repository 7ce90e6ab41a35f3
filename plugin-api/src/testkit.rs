//! Conformance checks for extractor plugins.
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
//! | `metadata` | plugin name, version and api_version are present; versions look like semver |
//! | `extractors` | the plugin offers extractors (and every name in [`CheckOptions::only`]) |
//! | `name` | the name is `namespace.feature` (lowercase namespace, identifier feature) and unique |
//! | `docs` | the description and every parameter doc are non-empty |
//! | `defaults` | every declared default is JSON and validates, alone and all together |
//! | `unknown_key` | an undeclared key is rejected with a message naming it |
//! | `wrong_type` | a value of the wrong type for each parameter is rejected, naming the key |
//! | `shape` | values on generated steps have the declared shape (`Dyn` axes free) |
//! | `determinism` | a repeated call on the same step gives a bit-identical result |
//! | `threads` | four threads sharing one instance at once get exactly the sequential results |
//! | `edge_inputs` | no panic (errors are fine) on empty, one-point, NaN, ±inf, constant and long steps |
//! | `timing` | reports time per step; fails only above [`CheckOptions::max_step_time`] |
//!
//! Checks that need an instance are skipped when the extractor cannot be created with
//! its defaults (the `defaults` item then says why).
//!
//! # Generated inputs
//!
//! - `transfer`: channels `Vg`, `Id` from [`transfer_sweep`], an N-type sigmoid swept
//!   −0.6 → 0.6 → −0.6 V, at 41, 121, 241 and 481 points.
//! - `transient`: channels `continuous_time`, `drain_current` from [`pulse_train`], a
//!   0.25 s square-wave pulse train sampled at 1 kHz, 2, 5 and 12 cycles, with the
//!   context's sampling set to period 0.25 s and rate 1000 Hz.
//! - `features`: the ABI does not say how many inputs a feature extractor takes, so
//!   it gets [`CheckOptions::feature_inputs`] scalar channels (shape `[]`) named
//!   `input_0`, `input_1`, … in that order, over six steps.
//!
//! Across the FFI, the SDK turns a panic into the error `extractor panicked: …`;
//! the kit counts such errors as panics, and also catches panics that unwind to it
//! from an in-process [`Target`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RStr};
use serde_json::{json, Value};

use crate::abi::{
    Channel, Dim, Extractor, ExtractorBox, ExtractorInfo, FeatureValue, InputKind, PluginInfo,
    PluginRef, StepContext, StepInput,
};
use crate::sdk::panic_message;

/// What the kit checks: a plugin's descriptions and a way to create its extractors.
pub trait Target {
    /// Extractor descriptions (name, input kind, params with kind/default/doc, description, unit).
    fn extractors(&self) -> Vec<ExtractorInfo>;
    fn plugin(&self) -> PluginInfo;
    /// Create with JSON params; Err = validation message.
    fn create(&self, name: &str, params_json: &str) -> Result<Box<dyn CheckedExtractor>, String>;
}

/// A created extractor, as the kit calls it.
pub trait CheckedExtractor: Send + Sync {
    fn output_shape(&self) -> Vec<Dim>;
    fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, String>;
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

    fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        self.extract_step(input)
            .into_result()
            .map_err(|e| e.into_string())
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
        *MODULE.get_or_init(crate::sdk::export::root_module)
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

    match param_checks(target, info, report) {
        Some(extractor) => run_checks(name, info.input, &*extractor, opts, report),
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
    let mut untried = Vec::new();
    for p in &info.params {
        let pname = p.name.as_str();
        let Some(wrong) = wrong_value(&p.kind) else {
            untried.push(pname);
            continue;
        };
        match create(&json!({ pname: wrong }).to_string()) {
            Ok(_) => problems.push(format!("accepted {pname} = {wrong} for kind '{}'", p.kind)),
            Err(e) if !names_key(&e, pname) => problems.push(format!(
                "rejected {pname} = {wrong} without naming '{pname}': {e}"
            )),
            Err(_) => {}
        }
    }
    let mut ok = if info.params.is_empty() {
        "no parameters".to_string()
    } else {
        format!(
            "wrong-typed values rejected, naming the key: {}",
            param_names(info)
        )
    };
    if !untried.is_empty() {
        ok.push_str(&format!(
            "; not tried (unknown kind): {}",
            untried.join(", ")
        ));
    }
    report.push(name, "wrong_type", problems, ok);
    instance.ok()
}

fn run_checks(
    name: &str,
    kind: InputKind,
    extractor: &dyn CheckedExtractor,
    opts: &CheckOptions,
    report: &mut Report,
) {
    let declared = guard("output_shape", || Ok(extractor.output_shape()));
    let steps = generated_steps(kind, opts.feature_inputs);
    let first: Vec<(Call, Duration)> = steps.iter().map(|s| timed_call(extractor, s)).collect();
    let reference: Vec<&Call> = first.iter().map(|(c, _)| c).collect();

    let (problems, ok) = shape_findings(&declared, &steps, &reference);
    report.push(name, "shape", problems, ok);

    let problems: Vec<String> = steps
        .iter()
        .zip(&reference)
        .filter_map(|(step, a)| {
            let (x, y) = a.difference(&call(extractor, step))?;
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
        thread_problems(extractor, &steps, &reference),
        format!("{THREADS} threads × {ROUNDS} rounds matched the sequential results"),
    );

    let edges = edge_steps(kind, opts.feature_inputs);
    let long = long_step(kind, opts);
    let (long_result, long_time) = timed_call(extractor, &long);
    let mut problems = ByCause::default();
    let mut errors = 0;
    let results = edges
        .iter()
        .map(|s| (s, call(extractor, s)))
        .chain([(&long, long_result)]);
    for (step, result) in results {
        match (&result, &declared) {
            (Call::Panic(m), _) => problems.add(format!("panicked: {m}"), &step.label),
            (Call::Error(_), _) => errors += 1,
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
            "no panic on {} edge inputs ({errors} returned an error)",
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
    let mut errors = ByCause::default();
    let mut error_count = 0;
    // "no fit: …" is a result ("this step has none"), not a failure: a decay time of a
    // pulse train. Only other errors on every step fail the check.
    let mut no_fit_count = 0;
    for (step, result) in steps.iter().zip(results) {
        match result {
            Call::Value(v) => {
                if let Some(p) = shape_problem(declared, v) {
                    problems.add(p, &step.label);
                }
            }
            Call::Error(e) => {
                error_count += 1;
                no_fit_count += usize::from(e.starts_with("no fit: "));
                errors.add(e.clone(), &step.label);
            }
            Call::Panic(m) => problems.add(format!("panicked: {m}"), &step.label),
        }
    }
    let mut problems = problems.into_problems();
    let errors = errors.into_problems().join("; ");
    if error_count == steps.len() && no_fit_count < error_count {
        problems.push(format!("an error on every generated step: {errors}"));
    }
    let shape = shape_text(declared);
    let ok = if error_count == 0 {
        format!("{shape} on {} generated steps", steps.len())
    } else {
        format!(
            "{shape} on {} of {} generated steps; errors: {errors}",
            steps.len() - error_count,
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
) -> Vec<String> {
    let barrier = Barrier::new(THREADS);
    let results: Vec<Vec<Call>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    (0..ROUNDS)
                        .flat_map(|_| steps.iter().map(|s| call(extractor, s)))
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
    Error(String),
    Panic(String),
}

impl Call {
    /// Where `self` and `other` differ (each side's part), or `None` when they are
    /// bit-identical values or the same error.
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
            Call::Error(e) => format!("error '{e}'"),
            Call::Panic(m) => format!("panic '{m}'"),
        }
    }
}

/// The error text the SDK's FFI guard gives a panic inside `extract_step`.
const PANIC_PREFIX: &str = "extractor panicked: ";

fn call(extractor: &dyn CheckedExtractor, step: &Step) -> Call {
    step.with_input(
        |input| match catch_unwind(AssertUnwindSafe(|| extractor.extract(input))) {
            Ok(Ok(v)) => Call::Value(v),
            Ok(Err(e)) => match e.strip_prefix(PANIC_PREFIX) {
                Some(m) => Call::Panic(m.to_string()),
                None => Call::Error(e),
            },
            Err(payload) => Call::Panic(panic_message(&*payload)),
        },
    )
}

fn timed_call(extractor: &dyn CheckedExtractor, step: &Step) -> (Call, Duration) {
    let start = Instant::now();
    let result = call(extractor, step);
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

/// A value of the wrong type for a parameter kind, as the SDK's `ParamKind` prints it.
fn wrong_value(kind: &str) -> Option<Value> {
    Some(match kind {
        "bool" => json!("yes"),
        "non-negative integer" => json!(-1),
        "number" => json!("1.5"),
        "string" => json!(1),
        "[number, number]" => json!([1.0]),
        "number or [min, max]" => json!("wide"),
        k if k.starts_with("one of: ") => json!("testkit-not-an-option"),
        _ => return None,
    })
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

/// An owned step: named channels with their shapes, and the sampling context.
struct Step {
    label: String,
    channels: Vec<(String, Vec<u64>, Vec<f64>)>,
    sampling: Option<(f64, f64)>,
    /// The context's step index; generated steps count up from 0 like a file's.
    index: u64,
}

impl Step {
    /// A step of two measured 1-D channels.
    fn measured(label: String, names: [&str; 2], data: (Vec<f64>, Vec<f64>)) -> Step {
        let channels = [(names[0], data.0), (names[1], data.1)]
            .into_iter()
            .map(|(n, d)| (n.to_string(), vec![d.len() as u64], d))
            .collect();
        Step {
            label,
            channels,
            sampling: None,
            index: 0,
        }
    }

    fn with_sampling(self) -> Step {
        Step {
            sampling: Some((PERIOD_S, RATE_HZ)),
            ..self
        }
    }

    fn with_input<R>(&self, f: impl FnOnce(&StepInput<'_>) -> R) -> R {
        let channels: Vec<Channel<'_>> = self
            .channels
            .iter()
            .map(|(n, s, d)| Channel::new(n, s, d))
            .collect();
        let context = StepContext::new("testkit", self.index)
            .with_sampling(self.sampling.map(|s| s.0), self.sampling.map(|s| s.1));
        f(&StepInput::new(&channels, context))
    }
}

const TRANSFER: [&str; 2] = ["Vg", "Id"];
const TRANSIENT: [&str; 2] = ["continuous_time", "drain_current"];
const PERIOD_S: f64 = 0.25;
const RATE_HZ: f64 = 1000.0;
const SAMPLES_PER_CYCLE: usize = 250;

/// The realistic steps of `kind`, indexed 0, 1, … in order.
fn generated_steps(kind: InputKind, feature_inputs: usize) -> Vec<Step> {
    let steps: Vec<Step> = match kind {
        InputKind::Transfer => [41, 121, 241, 481]
            .into_iter()
            .map(|n| Step::measured(format!("sweep of {n} points"), TRANSFER, transfer_sweep(n)))
            .collect(),
        InputKind::Transient => [2, 5, 12]
            .into_iter()
            .map(|c| {
                let label = format!("pulse train of {c} cycles");
                Step::measured(label, TRANSIENT, pulse_train(c)).with_sampling()
            })
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

/// `input_<i>` channels of the given shape, one per value, each filled with its value.
fn features_step(label: String, values: &[f64], shape: &[u64]) -> Step {
    let len = shape.iter().product::<u64>() as usize;
    Step {
        label,
        channels: values
            .iter()
            .enumerate()
            .map(|(i, &v)| (format!("input_{i}"), shape.to_vec(), vec![v; len]))
            .collect(),
        sampling: None,
        index: 0,
    }
}

/// Inputs that break naive code: empty, one point, non-finite values, flat data.
fn edge_steps(kind: InputKind, feature_inputs: usize) -> Vec<Step> {
    if kind == InputKind::Features {
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
    let (names, base) = match kind {
        InputKind::Transfer => (TRANSFER, transfer_sweep(121)),
        _ => (TRANSIENT, pulse_train(2)),
    };
    let n = base.0.len();
    let with = |edit: &dyn Fn(&mut Vec<f64>, &mut Vec<f64>)| {
        let (mut x, mut y) = base.clone();
        edit(&mut x, &mut y);
        (x, y)
    };
    let cases = vec![
        ("empty", (Vec::new(), Vec::new())),
        ("one point", (vec![base.0[0]], vec![base.1[0]])),
        ("all NaN", (vec![f64::NAN; n], vec![f64::NAN; n])),
        (
            "NaN inside",
            with(&|x, y| {
                x[n / 3] = f64::NAN;
                y[10] = f64::NAN;
            }),
        ),
        ("+inf inside", with(&|_, y| y[20] = f64::INFINITY)),
        ("-inf inside", with(&|_, y| y[20] = f64::NEG_INFINITY)),
        ("constant", (vec![base.0[0]; n], vec![1e-6; n])),
        ("zero current", with(&|_, y| y.fill(0.0))),
    ];
    let mut steps: Vec<Step> = cases
        .into_iter()
        .map(|(label, data)| {
            let step = Step::measured(label.to_string(), names, data);
            if kind == InputKind::Transient {
                step.with_sampling()
            } else {
                step
            }
        })
        .collect();
    if kind == InputKind::Transient {
        // The host passes no sampling parameters when neither the file nor the
        // workflow records them.
        steps.push(Step::measured("no sampling parameters".into(), names, base));
    }
    steps
}

/// A step far longer than real ones, to catch quadratic or stack-hungry code.
fn long_step(kind: InputKind, opts: &CheckOptions) -> Step {
    let n = opts.long_step_len;
    let label = format!("long step of {n} points");
    match kind {
        InputKind::Transfer => Step::measured(label, TRANSFER, transfer_sweep(n)),
        InputKind::Transient => {
            let (mut t, mut i) = pulse_train(n.div_ceil(SAMPLES_PER_CYCLE));
            t.truncate(n);
            i.truncate(n);
            Step::measured(label, TRANSIENT, (t, i)).with_sampling()
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
    use crate::{register_extractor, ExtractorSpec, ParamKind, ParamSpec, Params, StepExtractor};

    /// max |Id| over the finite samples, declaring `shape` (scalar when good).
    struct MaxAbsId(Vec<Dim>);

    impl StepExtractor for MaxAbsId {
        fn output_shape(&self) -> Vec<Dim> {
            self.0.clone()
        }

        fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
            let id = input.require("Id")?;
            id.iter()
                .filter(|v| v.is_finite())
                .map(|v| v.abs())
                .reduce(f64::max)
                .map(FeatureValue::scalar)
                .ok_or_else(|| "no finite Id".to_string())
        }
    }

    const DOC: &str = "a test parameter";
    const EVERY_KIND: &[ParamSpec] = &[
        ParamSpec {
            name: "flag",
            kind: ParamKind::Bool,
            default: "false",
            doc: DOC,
        },
        ParamSpec {
            name: "n",
            kind: ParamKind::Count,
            default: "3",
            doc: DOC,
        },
        ParamSpec {
            name: "scale",
            kind: ParamKind::Float,
            default: "1.0",
            doc: DOC,
        },
        ParamSpec {
            name: "label",
            kind: ParamKind::Str,
            default: "\"x\"",
            doc: DOC,
        },
        ParamSpec {
            name: "mode",
            kind: ParamKind::Choice(&["a", "b"]),
            default: "\"a\"",
            doc: DOC,
        },
        ParamSpec {
            name: "window",
            kind: ParamKind::FloatPair,
            default: "[0, 1]",
            doc: DOC,
        },
        ParamSpec {
            name: "range",
            kind: ParamKind::FloatOrRange,
            default: "null",
            doc: DOC,
        },
    ];

    register_extractor!(ExtractorSpec {
        name: "kit.good",
        input: InputKind::Transfer,
        description: "max |Id|",
        unit: "A",
        params: EVERY_KIND,
        create: |_| Ok(Box::new(MaxAbsId(vec![]))),
    });

    register_extractor!(ExtractorSpec {
        name: "kit.wrong_shape",
        input: InputKind::Transfer,
        description: "max |Id|, declared as a pair",
        unit: "A",
        params: &[],
        create: |_| Ok(Box::new(MaxAbsId(vec![Dim::Fixed(2)]))),
    });

    /// One mean current per cycle, using the step's sampling parameters.
    struct CycleMeans;

    impl StepExtractor for CycleMeans {
        fn output_shape(&self) -> Vec<Dim> {
            vec![Dim::Dyn("n_cycles".into())]
        }

        fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
            let current = input.require("drain_current")?;
            let (Some(period), Some(rate)) = (
                input.context.period.into_option(),
                input.context.sample_rate.into_option(),
            ) else {
                return Err("no sampling parameters".into());
            };
            let per_cycle = (period * rate).round();
            if per_cycle.is_nan() || per_cycle < 1.0 {
                return Err(format!("{per_cycle} samples per cycle"));
            }
            Ok(FeatureValue::vector(
                current
                    .chunks_exact(per_cycle as usize)
                    .map(|c| c.iter().sum::<f64>() / c.len() as f64)
                    .collect(),
            ))
        }
    }

    register_extractor!(ExtractorSpec {
        name: "kit.cycle_means",
        input: InputKind::Transient,
        description: "mean current of each cycle",
        unit: "A",
        params: &[],
        create: |_| Ok(Box::new(CycleMeans)),
    });

    /// input_0 + input_1: relies on the documented channel names.
    struct SumOfTwo;

    impl StepExtractor for SumOfTwo {
        fn output_shape(&self) -> Vec<Dim> {
            vec![]
        }

        fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
            let (a, b) = (input.require("input_0")?, input.require("input_1")?);
            match (a, b) {
                ([a], [b]) => Ok(FeatureValue::scalar(a + b)),
                _ => Err("inputs must be scalars".into()),
            }
        }
    }

    register_extractor!(ExtractorSpec {
        name: "kit.sum",
        input: InputKind::Features,
        description: "sum of two features",
        unit: "",
        params: &[],
        create: |_| Ok(Box::new(SumOfTwo)),
    });

    /// Step length, but panics when the current holds a NaN.
    struct PanicsOnNan;

    impl StepExtractor for PanicsOnNan {
        fn output_shape(&self) -> Vec<Dim> {
            vec![]
        }

        fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
            let current = input.require("drain_current")?;
            assert!(!current.iter().any(|v| v.is_nan()), "NaN in drain_current");
            Ok(FeatureValue::scalar(current.len() as f64))
        }
    }

    register_extractor!(ExtractorSpec {
        name: "kit.nan_panic",
        input: InputKind::Transient,
        description: "length of the step",
        unit: "",
        params: &[],
        create: |_| Ok(Box::new(PanicsOnNan)),
    });

    static CALLS: AtomicU64 = AtomicU64::new(0);

    /// Returns how often it has been called.
    struct Counter;

    impl StepExtractor for Counter {
        fn output_shape(&self) -> Vec<Dim> {
            vec![]
        }

        fn extract_step(&self, _: &StepInput<'_>) -> Result<FeatureValue, String> {
            Ok(FeatureValue::scalar(
                CALLS.fetch_add(1, Ordering::Relaxed) as f64
            ))
        }
    }

    register_extractor!(ExtractorSpec {
        name: "kit.counter",
        input: InputKind::Transfer,
        description: "number of calls so far",
        unit: "",
        params: &[],
        create: |_| Ok(Box::new(Counter)),
    });

    register_extractor!(ExtractorSpec {
        name: "Kit.bad-name",
        input: InputKind::Transfer,
        description: " ",
        unit: "A",
        params: &[ParamSpec {
            name: "level",
            kind: ParamKind::Float,
            default: "0.5",
            doc: ""
        }],
        create: |_| Ok(Box::new(MaxAbsId(vec![]))),
    });

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
    enum Mode {
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
    }

    struct Fake {
        info: PluginInfo,
        mode: Mode,
    }

    impl Fake {
        fn new(mode: Mode) -> Fake {
            Fake {
                info: PluginInfo {
                    name: "fake".into(),
                    version: "1.2.3".into(),
                    api_version: crate::API_VERSION.into(),
                },
                mode,
            }
        }
    }

    struct Unguarded(Box<dyn StepExtractor>);

    impl CheckedExtractor for Unguarded {
        fn output_shape(&self) -> Vec<Dim> {
            self.0.output_shape()
        }

        fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
            self.0.extract_step(input)
        }
    }

    impl Target for Fake {
        fn extractors(&self) -> Vec<ExtractorInfo> {
            let mut all = InProcess.extractors();
            if self.mode == Mode::Duplicate {
                let good = all.iter().find(|e| e.name.as_str() == "kit.good").cloned();
                all.extend(good);
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
            match self.mode {
                Mode::Honest | Mode::Duplicate => InProcess.create(name, params_json),
                Mode::Lenient => InProcess.create(name, "{}"),
                Mode::Vague if params_json != "{}" => Err("invalid parameters".into()),
                Mode::Vague => InProcess.create(name, params_json),
                Mode::Unguarded => {
                    let spec = ExtractorSpec::find(name).ok_or("no such extractor")?;
                    let params = serde_json::from_str(params_json).map_err(|e| e.to_string())?;
                    Ok(Box::new(Unguarded(spec.instantiate(&params)?)))
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
        let subjects = ["kit.good", "kit.cycle_means", "kit.sum"];
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
                    "docs",
                    "defaults",
                    "unknown_key",
                    "wrong_type",
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
            "wrong-typed values rejected, naming the key: flag, n, scale, label, mode, window, range"
        );
        assert_eq!(
            item(&report, "kit.cycle_means", "shape").message,
            "[n_cycles] on 3 generated steps"
        );
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
        for target in [&InProcess as &dyn Target, &Fake::new(Mode::Unguarded)] {
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
    fn parameter_checks_fail_when_validation_is_missing_or_vague() {
        let lenient = check(&Fake::new(Mode::Lenient), &opts(&["kit.good"]));
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
        assert_eq!(i.message.matches("accepted").count(), 7, "{}", i.message);

        let vague = check(&Fake::new(Mode::Vague), &opts(&["kit.good"]));
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
        let report = check(&Fake::new(Mode::Duplicate), &opts(&["kit.good"]));
        assert_fails(&report, "kit.good", "name", "'kit.good' is offered 2 times");

        let mut fake = Fake::new(Mode::Honest);
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
    }

    #[test]
    fn an_extractor_that_cannot_be_created_skips_the_runtime_checks() {
        struct Broken;
        impl Target for Broken {
            fn extractors(&self) -> Vec<ExtractorInfo> {
                InProcess.extractors()
            }
            fn plugin(&self) -> PluginInfo {
                Fake::new(Mode::Honest).info
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
                "{} checks: 20 passed, 2 failed, 0 skipped",
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
    fn every_param_kind_has_a_wrong_value_the_sdk_rejects() {
        let kinds = [
            ParamKind::Bool,
            ParamKind::Count,
            ParamKind::Float,
            ParamKind::Str,
            ParamKind::Choice(&["x", "y"]),
            ParamKind::FloatPair,
            ParamKind::FloatOrRange,
        ];
        for kind in kinds {
            let wrong = wrong_value(&kind.to_string()).unwrap_or_else(|| panic!("{kind}"));
            let spec = [ParamSpec {
                name: "p",
                kind,
                default: "null",
                doc: DOC,
            }];
            let e = Params::validate(&spec, &json!({ "p": wrong })).unwrap_err();
            assert!(names_key(&e, "p"), "{kind}: {e}");
        }
        assert_eq!(wrong_value("colour"), None);
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
    fn no_fit_on_every_step_is_a_result_but_other_errors_fail_the_shape_check() {
        let steps = generated_steps(InputKind::Transient, 0);
        let no_fit = Call::Error("no fit: not one decay".into());
        let error = Call::Error("boom".into());
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
    }
}
