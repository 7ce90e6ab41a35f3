//! Python plugins: a `.py` file of extractor classes (the predecessor's `BaseExtractor`
//! subclasses, registered with `@register('ns.feature')`) is a plugin.
//!
//! Each oect process that needs one starts **one** long-lived Python child (the
//! interpreter of [`interpreter`]) running the bootstrap `python_host.py`, compiled into
//! the binary, which provides the module `oect.extractors` and answers requests on its
//! stdin/stdout in the frames of the worker protocol (`docs/WORKER_PROTOCOL.md`): load a
//! file (its extractors' metadata), create an extractor with parameters (its declared
//! shape), extract one step (the channels as raw little-endian f64 buffers, which numpy
//! wraps without copying element by element). A run's N worker processes thus have N
//! Python processes, so the GIL never serialises steps.
//!
//! A Python child that dies (a signal, `os._exit`, the OOM killer) costs the step it was
//! computing, recorded as `crashed`; the next step starts a fresh child, which loads the
//! files and creates the extractors again.

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RString, RVec};
use oect_plugin_api::abi::{
    Channel, Extractor, ExtractorBox, Extractor_TO, InputKind, ParamInfo, ParamKind, Source,
    StepInput,
};
use oect_plugin_api::testkit;
use oect_plugin_api::{Dim, ExtractorInfo, FailureKind, FeatureValue, PluginInfo, StepFailure};
use serde_json::{json, Value};

use crate::frame;

const BOOTSTRAP: &str = include_str!("python_host.py");

/// Whether `path` is a Python plugin file: `*.py`, not a helper module (`_name.py`).
pub fn is_python(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.extension().is_some_and(|e| e == "py") && !name.starts_with('_') && !name.starts_with('.')
}

/// The interpreter that runs Python plugins: `OECT_PYTHON`, else the active virtualenv's
/// `python3`, else `python3` on `PATH`.
pub fn interpreter() -> PathBuf {
    if let Some(p) = std::env::var_os("OECT_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        let python = Path::new(&venv).join("bin/python3");
        if python.is_file() {
            return python;
        }
    }
    PathBuf::from("python3")
}

/// What a Python plugin file offers.
pub struct PyPlugin {
    /// The module's `__version__`, `0.0.0` when it sets none.
    pub version: String,
    pub extractors: Vec<ExtractorInfo>,
    /// Per extractor: its declared per-step shape with the default parameters.
    pub shapes: Vec<Vec<Dim>>,
    /// Per extractor: whether it declares no `params` and so takes any (the
    /// predecessor's classes).
    pub any_params: Vec<bool>,
    /// One line per registered class that cannot be used, and why.
    pub problems: Vec<String>,
}

/// Imports `path` in this process's Python child and reads its extractors' metadata, or
/// says in one line (naming the file) why it cannot be used.
pub fn load(path: &Path) -> Result<PyPlugin, String> {
    let shown = path.display();
    let reply = with_server(|s| s.load(path)).map_err(|e| format!("{shown}: skipped, {e}"))?;
    let mut plugin = PyPlugin {
        version: reply["version"].as_str().unwrap_or("0.0.0").to_string(),
        extractors: Vec::new(),
        shapes: Vec::new(),
        any_params: Vec::new(),
        problems: Vec::new(),
    };
    for p in reply["problems"].as_array().into_iter().flatten() {
        plugin.problems.push(format!(
            "{shown}: extractor {} skipped: {}",
            p["name"].as_str().unwrap_or("?"),
            p["message"].as_str().unwrap_or("")
        ));
    }
    for e in reply["extractors"].as_array().into_iter().flatten() {
        let info = extractor_info(e).map_err(|why| format!("{shown}: skipped, {why}"))?;
        plugin.shapes.push(dims(&e["shape"]));
        plugin
            .any_params
            .push(e["any_params"].as_bool().unwrap_or(false));
        plugin.extractors.push(info);
    }
    if plugin.extractors.is_empty() && plugin.problems.is_empty() {
        return Err(format!(
            "{shown}: skipped, registers no extractors (no class decorated with @register)"
        ));
    }
    Ok(plugin)
}

/// Creates extractor `name` of file `path` with `params` (a JSON object): validated by
/// the Python side against the class's declared `params`; the error names the key.
pub fn create(path: &Path, name: &str, params: &Value) -> Result<ExtractorBox, String> {
    let key = Key {
        path: path.to_path_buf(),
        name: name.to_string(),
        params: match params {
            Value::Null => "{}".to_string(),
            p => p.to_string(),
        },
    };
    let (source, shape) = with_server(|s| s.created(&key).map(|(_, src, shape)| (src, shape)))
        .map_err(|e| e.to_string())?;
    let extractor = PyExtractor {
        key: Arc::new(key),
        source,
        shape,
    };
    Ok(Extractor_TO::from_value(extractor, TD_Opaque))
}

/// The channels a Python extractor of `source` gets, in the order of its `step_data`.
fn channels(source: Source) -> Vec<Channel> {
    match source {
        Source::Transfer => vec![Channel::Vg, Channel::Id],
        Source::Transient => vec![Channel::Time, Channel::Current],
    }
}

fn dims(shape: &Value) -> Vec<Dim> {
    shape
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| match d.as_u64() {
            Some(k) => Dim::Fixed(k),
            None => Dim::Dyn(RString::from(d.as_str().unwrap_or("n"))),
        })
        .collect()
}

fn extractor_info(e: &Value) -> Result<ExtractorInfo, String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let source = Source::parse(e["input"].as_str().unwrap_or(""))
        .ok_or_else(|| format!("extractor {} has no input", e["name"]))?;
    let params = e["params"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ParamInfo {
            name: text(&p["name"]).into(),
            kind: match &p["kind"] {
                Value::Object(o) => ParamKind::Choice(
                    o["choice"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| RString::from(c.as_str().unwrap_or("")))
                        .collect(),
                ),
                k => match k.as_str().unwrap_or("") {
                    "bool" => ParamKind::Bool,
                    "count" => ParamKind::Count,
                    "text" => ParamKind::Text,
                    "float_pair" => ParamKind::FloatPair,
                    _ => ParamKind::Float,
                },
            },
            nullable: p["default"].is_null(),
            default_json: p["default"].to_string().into(),
            doc: text(&p["doc"]).into(),
            min: None.into(),
            max: None.into(),
        })
        .collect::<Vec<_>>();
    Ok(ExtractorInfo {
        name: text(&e["name"]).into(),
        input: InputKind::Source(source),
        channels: channels(source).into(),
        description: text(&e["description"]).into(),
        unit: text(&e["unit"]).into(),
        params: params.into(),
        examples: RVec::new(),
    })
}

/// An extractor as a config configured it: the file, the class's name, the parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    name: String,
    /// The parameters as JSON text.
    params: String,
}

/// A configured Python extractor; every call goes to this process's Python child.
struct PyExtractor {
    key: Arc<Key>,
    source: Source,
    shape: Vec<Dim>,
}

impl Extractor for PyExtractor {
    fn output_shape(&self) -> RVec<Dim> {
        self.shape.clone().into()
    }

    fn extract_step(&self, input: &StepInput<'_>) -> RResult<FeatureValue, StepFailure> {
        debug_assert_eq!(input.arrays.len(), channels(self.source).len());
        let lens: Vec<usize> = input.arrays.iter().map(|a| a.data.len()).collect();
        let payload: Vec<f64> = input
            .arrays
            .iter()
            .flat_map(|a| a.data.iter().copied())
            .collect();
        let context = json!({
            "experiment": input.context.experiment.as_str(),
            "step_index": input.context.step_index,
            "time_step": input.context.settings.time_step.into_option(),
        });
        let result = with_server(|s| {
            let (id, _, _) = s.created(&self.key)?;
            let request = json!({"type": "extract", "id": id, "lens": lens, "context": context});
            s.call(&request, &payload)
        });
        match result {
            Ok((reply, data)) => step_result(&reply, data),
            Err(Lost::Died(cause)) => Err(StepFailure::new(
                FailureKind::Crashed,
                format!(
                    "the Python process running {} died during this step ({cause}); the next step starts a new one",
                    self.key.name
                ),
            )),
            Err(Lost::Refused(message)) => Err(StepFailure::new(FailureKind::Panic, message)),
        }
        .into()
    }
}

/// The step's value or failure from a reply to `extract`.
fn step_result(reply: &Value, data: Vec<f64>) -> Result<FeatureValue, StepFailure> {
    match reply["type"].as_str() {
        Some("value") => {
            let shape: Vec<u64> = reply["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            FeatureValue::array(shape, data).map_err(StepFailure::invalid_input)
        }
        _ => Err(failure(reply)),
    }
}

fn failure(reply: &Value) -> StepFailure {
    let kind = reply["kind"]
        .as_str()
        .and_then(FailureKind::parse)
        .unwrap_or(FailureKind::Panic);
    StepFailure::new(kind, reply["message"].as_str().unwrap_or("").to_string())
}

/// Why a request got no answer.
#[derive(Debug)]
enum Lost {
    /// The Python child is gone (how, in words).
    Died(String),
    /// It answered with an error (a file that cannot be imported, a parameter refused).
    Refused(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Died(cause) => write!(f, "the Python process died ({cause})"),
            Lost::Refused(message) => f.write_str(message),
        }
    }
}

/// This process's Python child; `None` until first needed and after it died.
static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Runs `f` on the Python child, starting one if there is none; a child that died in `f`
/// is dropped so that the next call starts a fresh one.
fn with_server<T>(f: impl FnOnce(&mut Server) -> Result<T, Lost>) -> Result<T, Lost> {
    let mut guard = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(Server::start()?);
    }
    let server = guard.as_mut().expect("started above");
    let result = f(server);
    if let Err(Lost::Died(_)) = &result {
        *guard = None;
    }
    result
}

struct Server {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// Extractors created in this child: id, source, declared shape.
    created: HashMap<Key, (u64, Source, Vec<Dim>)>,
}

impl Server {
    fn start() -> Result<Server, Lost> {
        let python = interpreter();
        let mut command = Command::new(&python);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // A Python step cannot outlive the oect process that asked for it (e.g. a
                // worker its watchdog ended). The signal follows the forking *thread*, so
                // the bootstrap also watches its parent pid, for children started from a
                // thread that ends before the process does.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command
            .arg("-c")
            .arg(BOOTSTRAP)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("PYTHONUNBUFFERED", "1")
            // Importing a plugin must not write __pycache__ folders into plugin folders.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .spawn()
            .map_err(|e| {
                Lost::Refused(format!(
                    "the Python interpreter '{}' cannot be started ({e}); set OECT_PYTHON",
                    python.display()
                ))
            })?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut server = Server {
            child,
            input,
            output,
            created: HashMap::new(),
        };
        match server.read()? {
            (hello, _) if hello["type"] == "hello" => Ok(server),
            (reply, _) => {
                let _ = server.child.wait();
                Err(Lost::Refused(
                    reply["message"]
                        .as_str()
                        .unwrap_or("the Python bootstrap did not start")
                        .to_string(),
                ))
            }
        }
    }

    fn read(&mut self) -> Result<(Value, Vec<f64>), Lost> {
        match frame::read_frame::<Value>(&mut self.output) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) | Err(_) => Err(self.died()),
        }
    }

    /// How the child ended (it is killed first if it is still running, e.g. after a
    /// frame it garbled).
    fn died(&mut self) -> Lost {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                let _ = self.child.kill();
                match self.child.wait() {
                    Ok(status) => status,
                    Err(e) => return Lost::Died(e.to_string()),
                }
            }
        };
        Lost::Died(frame::ended(status))
    }

    fn call(&mut self, request: &Value, payload: &[f64]) -> Result<(Value, Vec<f64>), Lost> {
        if frame::write_frame(&mut self.input, request, payload).is_err() {
            return Err(self.died());
        }
        self.read()
    }

    /// A request whose answer is `want` or an error.
    fn ask(&mut self, request: &Value, want: &str) -> Result<Value, Lost> {
        let (reply, _) = self.call(request, &[])?;
        if reply["type"] == want {
            Ok(reply)
        } else {
            Err(Lost::Refused(failure(&reply).message.into_string()))
        }
    }

    fn load(&mut self, path: &Path) -> Result<Value, Lost> {
        self.ask(&json!({"type": "load", "path": path}), "loaded")
    }

    /// The extractor `key` in this child, created on first use.
    fn created(&mut self, key: &Key) -> Result<(u64, Source, Vec<Dim>), Lost> {
        if let Some(c) = self.created.get(key) {
            return Ok(c.clone());
        }
        let loaded = self.load(&key.path)?;
        let source = loaded["extractors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == key.name.as_str())
            .and_then(|e| Source::parse(e["input"].as_str().unwrap_or("")))
            .ok_or_else(|| {
                Lost::Refused(format!(
                    "{} offers no extractor {}",
                    key.path.display(),
                    key.name
                ))
            })?;
        let id = self.created.len() as u64;
        let params: Value = serde_json::from_str(&key.params).unwrap_or_default();
        let request = json!({"type": "create", "id": id, "path": key.path, "name": key.name, "params": params});
        let reply = self.ask(&request, "created")?;
        let entry = (id, source, dims(&reply["shape"]));
        self.created.insert(key.clone(), entry.clone());
        Ok(entry)
    }
}

/// A Python plugin file as the conformance checks see it (`oect plugins check FILE.py`).
pub struct PyTarget {
    path: PathBuf,
    plugin: PyPlugin,
}

impl PyTarget {
    pub fn load(path: &Path) -> Result<PyTarget, String> {
        Ok(PyTarget {
            path: path.to_path_buf(),
            plugin: load(path)?,
        })
    }
}

impl testkit::Target for PyTarget {
    fn extractors(&self) -> Vec<ExtractorInfo> {
        self.plugin.extractors.clone()
    }

    fn plugin(&self) -> PluginInfo {
        PluginInfo {
            name: plugin_name(&self.path).into(),
            version: self.plugin.version.clone().into(),
            api_version: oect_plugin_api::API_VERSION.into(),
        }
    }

    fn create(
        &self,
        name: &str,
        params_json: &str,
    ) -> Result<Box<dyn testkit::CheckedExtractor>, String> {
        let params: Value = serde_json::from_str(params_json).map_err(|e| e.to_string())?;
        Ok(Box::new(create(&self.path, name, &params)?))
    }
}

/// A Python plugin's name: its file's stem.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_files_are_plugins_except_helpers() {
        assert!(is_python(Path::new("dir/mylab.py")));
        assert!(!is_python(Path::new("dir/_helpers.py")));
        assert!(!is_python(Path::new("dir/__init__.py")));
        assert!(!is_python(Path::new("dir/.hidden.py")));
        assert!(!is_python(Path::new("dir/mylab.pyc")));
    }

    #[test]
    fn declared_shapes_keep_lengths_and_named_axes() {
        assert_eq!(dims(&json!([])), vec![]);
        assert_eq!(
            dims(&json!(["n_cycles", 2])),
            vec![Dim::Dyn(RString::from("n_cycles")), Dim::Fixed(2)]
        );
    }

    #[test]
    fn replies_become_values_or_typed_failures() {
        let v = step_result(&json!({"type": "value", "shape": [2]}), vec![1.0, 2.0]).unwrap();
        assert_eq!(
            (v.shape.as_slice(), v.data.as_slice()),
            (&[2][..], &[1.0, 2.0][..])
        );
        let f = step_result(
            &json!({"type": "failure", "kind": "invalid_input", "message": "ValueError: x"}),
            vec![],
        )
        .unwrap_err();
        assert_eq!(
            (f.kind, f.message.as_str()),
            (FailureKind::InvalidInput, "ValueError: x")
        );
        let f = step_result(&json!({"type": "value", "shape": [3]}), vec![1.0]).unwrap_err();
        assert_eq!(f.kind, FailureKind::InvalidInput);
    }
}
