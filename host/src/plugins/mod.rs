//! Plugin discovery, loading and the extractor registry.
//!
//! Libraries are searched in this order: every `--plugin-dir`, then the folders in
//! `OECT_PLUGIN_PATH`, then the executable's own folder and `<exe>/../lib/oect/plugins`.
//! A built workspace therefore finds its plugins in `target/<profile>/` with no set-up.
//! In the explicit folders every shared library is tried; in the executable's folders
//! only `liboect_*` libraries are, so unrelated libraries next to the binary are not
//! probed. A library that is not a plugin, or was built against an incompatible
//! `oect-plugin-api`, is reported in one line and skipped. Compatibility is the version
//! policy of [`oect_plugin_api::check_api_version`] (0.x: the same minor), checked against
//! the API version the library's header declares before anything of it runs; then
//! abi_stable checks the layout of every type that crosses the boundary.
//!
//! A `.py` file in an explicit folder is a Python plugin ([`python`]): its extractor
//! classes run in a Python child of each process that uses them.
//!
//! When two libraries offer the same extractor name, the one found first wins (so a
//! `--plugin-dir` can override a built-in) and a warning names both libraries.
//! Libraries are never unloaded.

pub mod python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{RResult, RStr};
use oect_plugin_api::abi::{Channel, Example, Expected, ExtractorBox, InputKind, StepInput};
use oect_plugin_api::{Dim, ExtractorInfo, FeatureValue, PluginRef, StepFailure};

/// Parameter description of an extractor, as the plugin declares it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParamDoc {
    pub name: String,
    /// The type, e.g. `one of: forward, reverse, both`.
    pub kind: String,
    /// The accepted values in words, with limits, e.g. `non-negative integer ≥ 2`.
    pub accepts: String,
    pub nullable: bool,
    /// Default as JSON text.
    pub default: String,
    pub doc: String,
}

/// An example declared on an extractor: input → expected output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExampleDoc {
    pub description: String,
    /// The parameters that differ from the defaults.
    pub params: serde_json::Value,
    /// The samples of each channel, by the view's field name, in the extractor's order.
    #[serde(serialize_with = "as_map")]
    pub inputs: Vec<(&'static str, Vec<f64>)>,
    /// The expected value (e.g. `0.002` or `[2, 1]`), or `no_result` and the like.
    pub expected: String,
}

impl ExampleDoc {
    fn new(example: &Example, channels: &[Channel]) -> ExampleDoc {
        ExampleDoc {
            description: example.description.to_string(),
            params: serde_json::from_str(&example.params_json).unwrap_or_default(),
            inputs: channels
                .iter()
                .zip(&example.arrays)
                .map(|(c, a)| (c.field(), a.to_vec()))
                .collect(),
            expected: match &example.expected {
                Expected::Value { value, .. } => value_text(value),
                Expected::Failure(kind) => kind.as_str().to_string(),
            },
        }
    }
}

fn as_map<S: serde::Serializer>(inputs: &[(&str, Vec<f64>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(inputs.iter().map(|(k, v)| (k, v)))
}

/// A number as a short text: `0.25`, `-6.25e-3`, `1e-9`.
pub fn number_text(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-3..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A value as a short text: `2e-3`, `[2, 1]`.
fn value_text(v: &FeatureValue) -> String {
    let values: Vec<String> = v.data.iter().map(|x| number_text(*x)).collect();
    match v.shape.as_slice() {
        [] => values.join(""),
        _ => format!("[{}]", values.join(", ")),
    }
}

/// An extractor offered by a loaded plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractorDoc {
    pub name: String,
    #[serde(serialize_with = "input_kind_name")]
    pub input: InputKind,
    /// The measured channels it reads, in the order it gets them (empty for features).
    #[serde(serialize_with = "channel_fields")]
    pub channels: Vec<Channel>,
    pub description: String,
    pub unit: String,
    pub params: Vec<ParamDoc>,
    pub examples: Vec<ExampleDoc>,
    /// The per-step shape with the default parameters (`a scalar`, `[n_cycles, 2]`), if
    /// it can be created with them.
    pub shape: Option<String>,
    /// Name of the plugin that provides it.
    pub plugin: String,
    /// It declares no parameters and takes any (a Python class without `params`, as the
    /// predecessor's were): the host does not check the names a config gives it.
    #[serde(skip)]
    pub any_params: bool,
}

impl ExtractorDoc {
    /// The description of `info`, or why it is unusable (a declared input that the host
    /// cannot feed).
    fn new(info: &ExtractorInfo, plugin: &str) -> Result<ExtractorDoc, String> {
        let channels: Vec<Channel> = info.channels.to_vec();
        match info.input {
            InputKind::Source(source) if channels.is_empty() => {
                return Err(format!("reads {} but declares no channel", source.name()))
            }
            InputKind::Source(source) if channels.iter().any(|c| c.source() != source) => {
                return Err(format!(
                    "declares channels of another source than {}",
                    source.name()
                ))
            }
            InputKind::Features if !channels.is_empty() => {
                return Err("reads features but declares measured channels".into())
            }
            _ => {}
        }
        Ok(ExtractorDoc {
            name: info.name.to_string(),
            input: info.input,
            description: info.description.to_string(),
            unit: info.unit.to_string(),
            params: info
                .params
                .iter()
                .map(|p| ParamDoc {
                    name: p.name.to_string(),
                    kind: p.kind.to_string(),
                    accepts: p.accepts(),
                    nullable: p.nullable,
                    default: p.default_json.to_string(),
                    doc: p.doc.to_string(),
                })
                .collect(),
            examples: info
                .examples
                .iter()
                .map(|e| ExampleDoc::new(e, &channels))
                .collect(),
            channels,
            shape: None,
            plugin: plugin.to_string(),
            any_params: false,
        })
    }

    /// `transfer (vg, id)`, `features`.
    pub fn reads(&self) -> String {
        let fields: Vec<&str> = self.channels.iter().map(|c| c.field()).collect();
        if fields.is_empty() {
            self.input.as_str().to_string()
        } else {
            format!("{} ({})", self.input.as_str(), fields.join(", "))
        }
    }
}

fn input_kind_name<S: serde::Serializer>(k: &InputKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

fn channel_fields<S: serde::Serializer>(c: &[Channel], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(c.iter().map(|c| c.field()))
}

/// A loaded plugin library.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginDoc {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub path: PathBuf,
    pub extractors: Vec<String>,
}

struct Loaded {
    doc: PluginDoc,
    module: Module,
}

/// How a plugin's extractors are created.
enum Module {
    Native(PluginRef),
    /// A Python file, served by this process's Python child.
    Python,
}

/// All plugins found, and the extractors they offer.
pub struct Registry {
    plugins: Vec<Loaded>,
    /// Extractor name → (plugin index, description).
    extractors: BTreeMap<String, (usize, ExtractorDoc)>,
    /// One line per library that was skipped or shadowed.
    pub warnings: Vec<String>,
}

/// A configured extractor, ready to be called from any worker thread.
pub struct Extractor {
    inner: ExtractorBox,
    pub shape: Vec<Dim>,
    /// The measured channels it reads, in the order it takes them.
    pub channels: Vec<Channel>,
}

impl Extractor {
    pub fn extract(&self, input: &StepInput<'_>) -> Result<FeatureValue, StepFailure> {
        self.inner.extract_step(input).into_result()
    }
}

/// SHA-256 (hex) of a plugin library's file: outputs record it and their `hash8` covers it,
/// so a plugin rebuilt with a changed body but the same version is recognised as changed.
/// A file is hashed once per process while its [`FileId`] stays the same, and a worker
/// starts from the supervisor's hashes ([`known_hashes`], [`trust_hashes`]): hashing is
/// about 20 ms per 10 MB library, which every worker would otherwise pay again at start.
pub fn library_sha256(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let unreadable =
        |e: std::io::Error| format!("{}: cannot read the plugin library: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let id = FileId::of(&file.metadata().map_err(unreadable)?);
    let mut known = HASHES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = known.iter().find(|h| h.path == path && h.id == id) {
        return Ok(h.sha256.clone());
    }
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(unreadable)?;
    let sha256: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    known.push(LibraryHash {
        path: path.to_path_buf(),
        id,
        sha256: sha256.clone(),
    });
    Ok(sha256)
}

/// A file as `stat` sees it. Rebuilding a library (a new file, or one written in place)
/// changes at least its inode or modification time, so an unchanged `FileId` means the
/// hash of the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_s: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
        }
    }
}

/// A library's hash, with the identity of the file it was computed from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LibraryHash {
    pub path: PathBuf,
    pub id: FileId,
    pub sha256: String,
}

static HASHES: std::sync::Mutex<Vec<LibraryHash>> = std::sync::Mutex::new(Vec::new());

/// Every library hash this process computed.
pub fn known_hashes() -> Vec<LibraryHash> {
    HASHES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Takes another process's hashes as this one's: each applies only while its file's
/// [`FileId`] is unchanged, so a library rebuilt since is hashed again (and a worker then
/// refuses the run, its graph hash differing from the supervisor's).
pub fn trust_hashes(hashes: Vec<LibraryHash>) {
    HASHES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(hashes);
}

/// The folders searched for plugins, in priority order.
pub fn search_path(plugin_dirs: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut dirs: Vec<(PathBuf, bool)> = plugin_dirs.iter().map(|d| (d.clone(), true)).collect();
    if let Some(path) = std::env::var_os("OECT_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&path).map(|d| (d, true)));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push((exe_dir.clone(), false));
        dirs.push((exe_dir.join("../lib/oect/plugins"), false));
        // `cargo test` binaries live in target/<profile>/deps; the plugins one level up.
        if exe_dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(profile_dir) = exe_dir.parent() {
                dirs.push((profile_dir.to_path_buf(), false));
            }
        }
    }
    dirs
}

fn is_library(path: &Path, explicit: bool) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if explicit && python::is_python(path) {
        return true;
    }
    let ext = std::env::consts::DLL_EXTENSION;
    let is_dylib = path.extension().is_some_and(|e| e == ext);
    is_dylib && (explicit || name.starts_with(&format!("{}oect_", std::env::consts::DLL_PREFIX)))
}

impl Registry {
    /// Loads every plugin on the search path built from `plugin_dirs`.
    pub fn discover(plugin_dirs: &[PathBuf]) -> Registry {
        let mut registry = Registry {
            plugins: Vec::new(),
            extractors: BTreeMap::new(),
            warnings: Vec::new(),
        };
        let mut seen = Vec::new();
        for (dir, explicit) in search_path(plugin_dirs) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                if explicit {
                    registry
                        .warnings
                        .push(format!("plugin folder {} cannot be read", dir.display()));
                }
                continue;
            };
            let mut libs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_library(p, explicit))
                .collect();
            libs.sort();
            for lib in libs {
                let canonical = lib.canonicalize().unwrap_or_else(|_| lib.clone());
                if seen.contains(&canonical) {
                    continue;
                }
                seen.push(canonical);
                registry.load(&lib);
            }
        }
        registry
    }

    /// Loads exactly `libraries`, in this order: a worker process loads the libraries its
    /// supervisor's discovery chose, so both resolve every extractor name alike.
    pub fn from_libraries(libraries: &[PathBuf]) -> Registry {
        let mut registry = Registry {
            plugins: Vec::new(),
            extractors: BTreeMap::new(),
            warnings: Vec::new(),
        };
        for lib in libraries {
            registry.load(lib);
        }
        registry
    }

    fn load(&mut self, path: &Path) {
        if python::is_python(path) {
            return self.load_python(path);
        }
        let module = match load_module(path) {
            Ok(m) => m,
            Err(e) => {
                self.warnings.push(e);
                return;
            }
        };
        let info = (module.info())();
        let name = info.name.to_string();
        if let Some(first) = self.plugins.iter().find(|p| p.doc.name == name) {
            if first.doc.version != info.version.as_str() {
                self.warnings.push(format!(
                    "{}: plugin {name} {} is shadowed by version {} from {}",
                    path.display(),
                    info.version,
                    first.doc.version,
                    first.doc.path.display()
                ));
            }
            return;
        }
        let infos = (module.extractors())().into_vec();
        let shapes = infos
            .iter()
            .map(
                |ex| match (module.create())(ex.name.as_rstr(), RStr::from_str("{}")) {
                    RResult::ROk(e) => Some(e.output_shape().into_vec()),
                    RResult::RErr(_) => None,
                },
            )
            .collect();
        let doc = PluginDoc {
            name,
            version: info.version.to_string(),
            api_version: info.api_version.to_string(),
            path: path.to_path_buf(),
            extractors: Vec::new(),
        };
        self.add(doc, Module::Native(module), infos, shapes, Vec::new());
    }

    /// Loads a Python plugin file (its name is the file's stem).
    fn load_python(&mut self, path: &Path) {
        let plugin = match python::load(path) {
            Ok(p) => p,
            Err(e) => {
                self.warnings.push(e);
                return;
            }
        };
        self.warnings.extend(plugin.problems);
        let doc = PluginDoc {
            name: python::plugin_name(path),
            version: plugin.version,
            // Served by this host's own bootstrap, so compatible by construction.
            api_version: oect_plugin_api::API_VERSION.to_string(),
            path: path.to_path_buf(),
            extractors: Vec::new(),
        };
        let shapes = plugin.shapes.into_iter().map(Some).collect();
        let any = plugin.any_params;
        self.add(doc, Module::Python, plugin.extractors, shapes, any);
    }

    /// Registers a loaded plugin's extractors (those whose names are not taken).
    fn add(
        &mut self,
        mut doc: PluginDoc,
        module: Module,
        infos: Vec<ExtractorInfo>,
        shapes: Vec<Option<Vec<Dim>>>,
        any_params: Vec<bool>,
    ) {
        let path = doc.path.clone();
        let name = doc.name.clone();
        let index = self.plugins.len();
        let mut names = Vec::new();
        let any_params = any_params.into_iter().chain(std::iter::repeat(false));
        for ((ex, shape), any_params) in infos.into_iter().zip(shapes).zip(any_params) {
            let doc = match ExtractorDoc::new(&ex, &name) {
                Ok(doc) => doc,
                Err(why) => {
                    self.warnings.push(format!(
                        "{}: extractor {} skipped: {why}",
                        path.display(),
                        ex.name
                    ));
                    continue;
                }
            };
            if let Some((other, _)) = self.extractors.get(&doc.name) {
                self.warnings.push(format!(
                    "{}: extractor {} is already provided by {}; using that one",
                    path.display(),
                    doc.name,
                    self.plugins[*other].doc.path.display()
                ));
                continue;
            }
            let doc = ExtractorDoc {
                shape: shape.map(|s| crate::graph::describe(&s)),
                any_params,
                ..doc
            };
            names.push(doc.name.clone());
            self.extractors.insert(doc.name.clone(), (index, doc));
        }
        doc.extractors = names;
        self.plugins.push(Loaded { doc, module });
    }

    pub fn plugins(&self) -> impl Iterator<Item = &PluginDoc> {
        self.plugins.iter().map(|p| &p.doc)
    }

    pub fn extractors(&self) -> impl Iterator<Item = &ExtractorDoc> {
        self.extractors.values().map(|(_, d)| d)
    }

    pub fn extractor(&self, name: &str) -> Option<&ExtractorDoc> {
        self.extractors.get(name).map(|(_, d)| d)
    }

    /// The plugin providing extractor `name`.
    pub fn plugin_of(&self, name: &str) -> Option<&PluginDoc> {
        self.extractors
            .get(name)
            .map(|(i, _)| &self.plugins[*i].doc)
    }

    /// Creates extractor `name` with `params` (a JSON object). Errors are the plugin's
    /// validation message, or a list of the available extractors for an unknown name.
    pub fn create(&self, name: &str, params: &serde_json::Value) -> Result<Extractor, String> {
        let Some((plugin, doc)) = self.extractors.get(name) else {
            let available: Vec<&str> = self.extractors.keys().map(String::as_str).collect();
            return Err(if available.is_empty() {
                format!(
                    "unknown extractor '{name}': no plugins are loaded (see `oect plugins list`)"
                )
            } else {
                format!(
                    "unknown extractor '{name}'; available: {}",
                    available.join(", ")
                )
            });
        };
        let json = params.to_string();
        let loaded = &self.plugins[*plugin];
        let inner = match &loaded.module {
            Module::Native(module) => {
                match (module.create())(RStr::from_str(name), RStr::from_str(&json)) {
                    RResult::ROk(inner) => inner,
                    RResult::RErr(e) => return Err(e.into_string()),
                }
            }
            Module::Python => python::create(&loaded.doc.path, name, params)?,
        };
        let shape = inner.output_shape().into_vec();
        Ok(Extractor {
            inner,
            shape,
            channels: doc.channels.clone(),
        })
    }
}

/// Loads one library's root module, or explains in one line why it is not usable.
pub fn load_module(path: &Path) -> Result<PluginRef, String> {
    let shown = path.display();
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => {
            format!("{shown}: skipped, not an oect plugin (no plugin root module)")
        }
        LibraryError::OpenError { err, .. } => format!("{shown}: skipped, cannot be loaded: {err}"),
        other => format!("{shown}: skipped: {}", one_line(&other.to_string())),
    })?;
    // Before any of the library's code runs: abi_stable alone would accept a newer minor
    // whose layout happens to match (or is not recorded).
    oect_plugin_api::check_api_version(&header_version(header))
        .map_err(|why| format!("{shown}: skipped, {why}"))?;
    header.init_root_module::<PluginRef>().map_err(|e| match e {
        LibraryError::AbiInstability(_) | LibraryError::InvalidAbiHeader(_) => format!(
            "{shown}: skipped, incompatible plugin ABI (built against oect-plugin-api {}, host uses {}): {}",
            header_version(header),
            oect_plugin_api::API_VERSION,
            one_line(&e.to_string())
        ),
        other => format!("{shown}: skipped: {}", one_line(&other.to_string())),
    })
}

fn header_version(header: &abi_stable::library::LibHeader) -> String {
    header.version_strings().version.to_string()
}

/// The first `Error:`-like line of abi_stable's multi-line reports.
fn one_line(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.starts_with("Error:"))
        .or_else(|| lines.first())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_explicit_folders_load_any_library() {
        let lib = format!(
            "{}mine.{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_EXTENSION
        );
        let ours = format!(
            "{}oect_transfer.{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_EXTENSION
        );
        assert!(is_library(Path::new(&lib), true));
        assert!(!is_library(Path::new(&lib), false));
        assert!(is_library(Path::new(&ours), false));
        assert!(!is_library(Path::new("liboect_x.rlib"), true));
    }

    #[test]
    fn extractors_whose_input_the_host_cannot_feed_are_refused() {
        use oect_plugin_api::abi::Source;
        let info = |input, channels: Vec<Channel>| ExtractorInfo {
            name: "x.y".into(),
            input,
            channels: channels.into(),
            description: "d".into(),
            unit: "".into(),
            params: Default::default(),
            examples: Default::default(),
        };
        let transient = InputKind::Source(Source::Transient);
        let doc = ExtractorDoc::new(&info(transient, vec![Channel::Current]), "p").unwrap();
        assert_eq!(doc.reads(), "transient (i)");
        let e = ExtractorDoc::new(&info(transient, vec![Channel::Vg]), "p").unwrap_err();
        assert!(e.contains("another source than transient"), "{e}");
        assert!(ExtractorDoc::new(&info(transient, vec![]), "p").is_err());
        assert!(ExtractorDoc::new(&info(InputKind::Features, vec![Channel::Id]), "p").is_err());
        let doc = ExtractorDoc::new(&info(InputKind::Features, vec![]), "p").unwrap();
        assert_eq!(doc.reads(), "features");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_reported_in_one_line() {
        let dir = std::env::temp_dir().join(format!("oect-plugins-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join(format!("libfake.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let reg = Registry::discover(std::slice::from_ref(&dir));
        let w: Vec<&String> = reg
            .warnings
            .iter()
            .filter(|w| w.contains("libfake"))
            .collect();
        assert_eq!(w.len(), 1, "{:?}", reg.warnings);
        assert!(w[0].contains("cannot be loaded"), "{}", w[0]);
        assert!(!w[0].contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
