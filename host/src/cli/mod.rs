//! The `oect` command line: parses arguments and wires the stages together.

#[macro_use]
mod output;
mod batch;
mod check;
mod convert;
mod inputs;
mod report;
mod shell;
#[cfg(test)]
mod tests;
mod validate;
mod view;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, FromArgMatches, Parser, Subcommand};

use crate::config::{self, FeatureConfig};
use crate::exec::{self, Mode, ProgressMode, RunOptions};
use crate::graph::FeatureGraph;
use crate::ingest::synth;
use crate::plugins::Registry;
use crate::sink::Sink;

/// Exit status when every experiment succeeded.
const OK: u8 = 0;
/// Some experiment failed or has failed steps.
const PARTIAL: u8 = 1;
/// Bad arguments, config or inputs: nothing was computed.
const USAGE: u8 = 2;

/// The exit codes, shown by `oect --help` and every command's `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0    everything succeeded (every experiment written or up to date, without a failed step)
  1    some experiment or step failed, or a check found a problem (the rest carried on)
  2    nothing ran: bad arguments, config or inputs (a filter that matches nothing included)
  130  stopped by Ctrl-C or SIGTERM; running the same command again finishes the rest";

#[derive(Parser)]
#[command(
    name = "oect",
    version,
    about = "Extract per-step features from OECT experiment files with plugin extractors",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Extra folder to load plugins from (repeatable; searched before OECT_PLUGIN_PATH
    /// and the executable's folder).
    #[arg(long = "plugin-dir", global = true, value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Print only errors, FAILED lines and the command's results: no progress bar,
    /// warnings, notes or run summary (`--json` output is kept).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: a run lists every experiment with its status and output.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Colour `error`, `warning` and `FAILED` on stderr: auto (on a terminal, unless
    /// NO_COLOR is set), always or never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    color: clap::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

/// The command tree, with the exit codes under every command's help and the help's own
/// colours following `--color` (clap's default already honours NO_COLOR).
fn command() -> clap::Command {
    fn with_exit_codes(cmd: clap::Command) -> clap::Command {
        cmd.after_help(EXIT_CODES).mut_subcommands(with_exit_codes)
    }
    let args: Vec<String> = std::env::args().collect();
    let color = args
        .iter()
        .zip(args.iter().skip(1).map(Some).chain([None]))
        .find_map(|(a, next)| match a.strip_prefix("--color") {
            Some(v) if v.starts_with('=') => Some(v[1..].to_string()),
            Some("") => next.cloned(),
            _ => None,
        });
    let color = match color.as_deref() {
        Some("never") => clap::ColorChoice::Never,
        Some("always") => clap::ColorChoice::Always,
        _ => clap::ColorChoice::Auto,
    };
    with_exit_codes(<Cli as clap::CommandFactory>::command()).color(color)
}

#[derive(Subcommand)]
enum Command {
    /// Compute a feature config over experiment files; one Parquet file per experiment.
    Run(RunArgs),
    /// Validate feature configs without reading any data: every problem of each is
    /// reported (exit 2); a valid one is summarised with its features' layers.
    Check {
        /// Configs: shipped names or paths to .yaml/.yml/.json files.
        #[arg(required = true, value_name = "CONFIG")]
        configs: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a small dataset, run a shipped config on it and show the results.
    Demo {
        /// Folder for the generated data and the outputs.
        #[arg(short, long, value_name = "DIR", default_value = "oect-demo")]
        out: PathBuf,
    },
    /// Convert the instrument's raw export folders (CSV + JSON) into HDF5 files.
    Convert(convert::ConvertArgs),
    /// Follow export folders while tests run: compute new steps' features as they appear.
    Watch(watch::WatchArgs),
    /// Write synthetic experiment files in the lab's HDF5 layout, with ground truth.
    Generate(GenerateArgs),
    /// Show experiment files' attributes and step counts.
    Inspect {
        /// Experiment files (.h5), or folders searched recursively for them.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print JSON: one object for a single file, else a list.
        #[arg(long)]
        json: bool,
    },
    /// Loaded plugins and their extractors.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Shipped feature configs.
    Configs {
        #[command(subcommand)]
        command: ConfigsCommand,
    },
    /// Which experiments of a batch have an up-to-date output, and which shards lack some.
    Status(StatusArgs),
    /// Run a batch as a Slurm job array, one task per shard.
    Slurm {
        #[command(subcommand)]
        command: SlurmCommand,
    },
    /// Print a shell completion script (e.g. `oect completions bash > ~/.local/share/bash-completion/completions/oect`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a folder.
    Man {
        /// Folder for `oect.1`, `oect-run.1`, … (e.g. /usr/local/share/man/man1).
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// A worker process of a run (started by oect itself; speaks the worker protocol on
    /// its stdin).
    #[command(name = "__worker", hide = true)]
    Worker,
    /// A contained `plugins check` child (started by oect itself).
    #[command(name = "__check", hide = true)]
    CheckChild {
        library: PathBuf,
        /// Start at this extractor (the ones before it were checked by an earlier child).
        #[arg(long)]
        from: Option<usize>,
    },
    /// Figures (PNG or SVG) of feature outputs and experiment files.
    Plot(view::PlotArgs),
    /// One self-contained HTML page for a batch: summary table and every figure.
    Report(view::ReportArgs),
    /// Merge one config's outputs into a single Parquet file, keeping every experiment's
    /// metadata.
    Collect {
        /// Output folder of `oect run` (its `-o`).
        out_dir: PathBuf,
        /// Config whose outputs are merged (shipped name or path, as given to `run`).
        #[arg(short, long)]
        config: String,
        /// The merged file (`--output` is accepted too, its earlier name).
        #[arg(short, long = "out", visible_alias = "output", value_name = "FILE")]
        out: PathBuf,
    },
}

/// What a batch is: its input files, its config and its output folder.
#[derive(Args)]
struct BatchArgs {
    /// Experiment files (.h5) or folders searched recursively; `run` also takes the
    /// instrument's export folders (converted first, see --h5-dir).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Shipped config name or path to a .yaml/.yml/.json config.
    #[arg(short, long)]
    config: String,
    /// Output folder.
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Number of shards the batch is split into.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Print every experiment's state and the incomplete shards as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SlurmCommand {
    /// Write an sbatch array script (one task per shard) and submit it.
    Submit(SubmitArgs),
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Number of shards the batch is split into (one array task each).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Run options, passed on to every array task.
    #[command(flatten)]
    options: RunOptionArgs,
    /// Slurm partition to submit to [default: the cluster's default partition].
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per task, in Slurm's format (e.g. 02:00:00).
    #[arg(long)]
    time: Option<String>,
    /// CPUs per task; each task runs that many workers.
    #[arg(long, default_value_t = 1)]
    cpus_per_task: usize,
    /// Only submit the shards that still have experiments without an up-to-date output.
    #[arg(long)]
    resume: bool,
    /// Print the script instead of submitting it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List plugins, their extractors and parameters.
    List {
        /// Print the plugins, extractors and warnings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite on a plugin library; exit 1 if a check fails. The checks
    /// run in a child process, so an extractor that crashes, aborts, exits or hangs is a
    /// named failure.
    Check {
        /// The plugin's shared library (e.g. target/release/libmy_plugin.so).
        library: PathBuf,
        /// Print the check results as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds the checks of one extractor may take before it counts as hung.
        #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
        timeout: f64,
    },
}

#[derive(Subcommand)]
enum ConfigsCommand {
    /// List the shipped configs.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shipped config.
    Show {
        /// The config's name (see `oect configs list`).
        name: String,
    },
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    options: RunOptionArgs,
    /// Worker processes, which open the files and run the extractors [default: the cores
    /// available to oect, or SLURM_CPUS_PER_TASK when set]. Each decodes HDF5 chunks on its
    /// own pool of one thread per available core.
    #[arg(short = 'j', long)]
    workers: Option<usize>,
    /// Only the files at positions ≡ I (mod N) of the sorted input list (0 <= I < N).
    #[arg(long, value_name = "I/N")]
    shard: Option<batch::Shard>,
}

/// How `run` computes a batch: all of its options except the inputs and what a Slurm
/// array task sets for itself (`--workers`, `--shard`). `slurm submit` takes the same
/// options and passes every one on to each task (`batch::forward`).
#[derive(Args, Debug, Clone, PartialEq)]
struct RunOptionArgs {
    /// How the work is split: `step` (tasks are chunks of steps of any experiment, best
    /// for few large experiments) or `experiment` (one task per experiment).
    #[arg(long, value_enum, default_value_t = Mode::Step)]
    mode: Mode,
    /// Experiments open at once in step mode (bounds memory).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Recompute even when an up-to-date output exists.
    #[arg(long)]
    force: bool,
    /// Only experiments of this chip.
    #[arg(long)]
    chip_id: Option<String>,
    /// Only experiments of this device number.
    #[arg(long)]
    device_id: Option<String>,
    /// Give up an extractor call that takes longer than this many seconds: the worker
    /// process making it is ended (nothing keeps running) and that step becomes NaN with
    /// the error; every other step and experiment keeps the feature. Off by default.
    #[arg(long, value_name = "SECONDS")]
    step_timeout: Option<f64>,
    /// Give up opening a file or reading one chunk of its steps after this many seconds
    /// (a hung file system, a damaged file); that experiment fails.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READ_TIMEOUT)]
    read_timeout: f64,
    /// Resident memory each worker process may use (e.g. 2G, 512M); a worker over it is
    /// ended and what it was computing fails with "memory limit".
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Progress display: `bar`, `json` (one JSON object per event on stderr, for
    /// programs driving oect) or `none` [default: bar on a terminal unless --json].
    #[arg(long, value_enum, value_name = "MODE")]
    progress: Option<ProgressMode>,
    /// Where export folders among the inputs are converted to HDF5 [default: OUT/h5].
    #[arg(long, value_name = "DIR")]
    h5_dir: Option<PathBuf>,
}

impl RunOptionArgs {
    /// The run's settings, with `workers` worker processes.
    fn run_options(&self, workers: usize) -> Result<RunOptions> {
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        let seconds = |name: &str, s: f64| {
            if s > 0.0 && s.is_finite() {
                Ok(std::time::Duration::from_secs_f64(s))
            } else {
                Err(anyhow::anyhow!(
                    "--{name} must be a positive number of seconds, got {s}"
                ))
            }
        };
        let step_timeout = self
            .step_timeout
            .map(|s| seconds("step-timeout", s))
            .transpose()?;
        Ok(RunOptions {
            step_timeout,
            read_timeout: Some(seconds("read-timeout", self.read_timeout)?),
            max_memory: self.max_memory,
            worker: exec::WorkerCommand::this_exe().context("locating the oect binary")?,
            mode: self.mode,
            workers,
            in_flight: self.in_flight,
            force: self.force,
            chip_id: self.chip_id.clone(),
            device_id: self.device_id.clone(),
            progress: self.progress.unwrap_or(
                if !self.json
                    && output::verbosity() > output::Verbosity::Quiet
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
                {
                    ProgressMode::Bar
                } else {
                    ProgressMode::None
                },
            ),
        })
    }
}

#[derive(Args)]
struct GenerateArgs {
    /// Output folder.
    #[arg(short, long)]
    out: PathBuf,
    /// Experiment files (one test of one device each).
    #[arg(long, default_value_t = 1)]
    experiments: usize,
    /// Measurement steps per experiment (one transfer and one transient each).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Points per transfer sweep (forward + reverse) [default: from the Vg range, 242].
    #[arg(long)]
    points: Option<usize>,
    /// Pulse cycles per transient step.
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// Pulse period, s.
    #[arg(long, default_value_t = 0.25)]
    period: f64,
    /// Transient sample rate, Hz (whole milliseconds per sample).
    #[arg(long, default_value_t = 1000.0)]
    sample_rate: f64,
    /// Switch-on time constant of the transient current, ms.
    #[arg(long, default_value_t = 8.0)]
    tau_on_ms: f64,
    /// Switch-off time constant of the transient current, ms.
    #[arg(long, default_value_t = 3.0)]
    tau_off_ms: f64,
    /// Log-normal per-cycle jitter of tau (0 = constant within a step).
    #[arg(long, default_value_t = 0.0)]
    tau_jitter: f64,
    /// Device polarity: N (positive current) or P.
    #[arg(long, default_value = "N", value_parser = ["N", "P"])]
    device_type: String,
    /// Vary step lengths (shortened sweeps, ±10 % cycles).
    #[arg(long)]
    ragged: bool,
    /// Append one more transfer step after the loop (like real files).
    #[arg(long)]
    final_transfer: bool,
    /// Only transfer steps (no transient group in the files).
    #[arg(long, conflicts_with = "transient_only")]
    transfer_only: bool,
    /// Only transient steps (no transfer group in the files).
    #[arg(long)]
    transient_only: bool,
    /// On-current scale, A.
    #[arg(long, default_value_t = 6e-4)]
    ion: f64,
    /// Absolute noise, A rms.
    #[arg(long, default_value_t = 1e-7)]
    noise_abs: f64,
    /// Relative noise (fraction of |Id|).
    #[arg(long, default_value_t = 0.002)]
    noise_rel: f64,
    /// Seed of the noise and jitter: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chip id prefix; experiment k gets `<prefix><k>`.
    #[arg(long, default_value = "#SYN", conflicts_with = "chip")]
    chip_prefix: String,
    /// Put every experiment on this one chip (devices 1..N) instead of one chip each.
    #[arg(long, value_name = "ID")]
    chip: Option<String>,
    /// Several devices per chip, as in a real batch: experiment k is device k mod N + 1 of chip
    /// k / N + 1 [default: one experiment per chip, device k].
    #[arg(long, value_name = "N", conflicts_with = "chip")]
    devices_per_chip: Option<usize>,
    /// Write the instrument's raw export folders (test_info.json, workflow.json, one CSV per
    /// step) instead of HDF5 files: the input of `oect convert` and `oect watch`.
    #[arg(long)]
    raw_export: bool,
}

/// Seconds opening a file or reading a chunk may take by default: far above any healthy
/// read (milliseconds), so only a hang reaches it.
const DEFAULT_READ_TIMEOUT: f64 = 120.0;

/// `2G`, `512M`, `64k` or a number of bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 2G, 512M)"))?;
    let scale = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("'{s}': unknown unit (use K, M, G or T)")),
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("'{s}': the size must be positive"));
    }
    Ok((n * scale as f64) as u64)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => output::Verbosity::Quiet,
        (_, true) => output::Verbosity::Verbose,
        _ => output::Verbosity::Normal,
    };
    output::configure(verbosity, output::use_color(cli.color));
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            USAGE
        }
    };
    // A summary that could not be written is a failure, unless its reader left early.
    ExitCode::from(if output::failed() {
        code.max(PARTIAL)
    } else {
        code
    })
}

/// `error: …` on stderr; a config with several problems gets one such line for each.
fn report_error(e: &anyhow::Error) {
    match e.downcast_ref::<config::ConfigError>() {
        Some(problems) => problems.problems().for_each(|p| error!("{p}")),
        None => error!("{e:#}"),
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run(&cli.plugin_dirs, args),
        Command::Check { configs, json } => validate::check(&cli.plugin_dirs, &configs, json),
        Command::Demo { out } => demo(&cli.plugin_dirs, &out),
        Command::Convert(args) => convert::convert(&args),
        Command::Watch(args) => watch::watch(&cli.plugin_dirs, &args),
        Command::Generate(args) => {
            let spec = generate_spec(&args);
            // Each file is listed as it is written, under a bar on a terminal.
            let bar = if output::verbosity() > output::Verbosity::Quiet
                && std::io::IsTerminal::is_terminal(&std::io::stderr())
            {
                indicatif::ProgressBar::new(spec.n_experiments as u64)
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{bar:25}] {pos}/{len} experiments written, ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
            synth::generate_reporting(&spec, &args.out, args.raw_export, &mut |f| {
                bar.suspend(|| outln!("{}", f.path.display()));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            Ok(OK)
        }
        Command::Inspect { files, json } => {
            let single = files.len() == 1 && !files[0].is_dir();
            let paths = collect_inputs(&files)?;
            let results = exec::probe::inspect_all(&paths)?;
            report::inspect(&paths, results, json && single, json)
        }
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { out } => shell::man(out.as_deref()),
        Command::Worker => Ok(exec::worker::main()),
        Command::CheckChild { library, from } => Ok(check::child(&library, from.unwrap_or(0))),
        Command::Plugins {
            command: PluginsCommand::List { json },
        } => report::plugins(&Registry::discover(&cli.plugin_dirs), json),
        Command::Plugins {
            command:
                PluginsCommand::Check {
                    library,
                    json,
                    timeout,
                },
        } => check::run(&library, json, timeout),
        Command::Status(args) => status(&cli.plugin_dirs, &args),
        Command::Slurm {
            command: SlurmCommand::Submit(args),
        } => submit(&cli.plugin_dirs, &args),
        Command::Plot(args) => view::plot(&args),
        Command::Report(args) => view::report(&args),
        Command::Collect {
            out_dir,
            config,
            out: output,
        } => {
            let config = config::load(&config)?;
            let report = batch::collect(&out_dir, &config, &output)?;
            outln!(
                "{}: {}, {}",
                output.display(),
                report::count(report.experiments, "experiment"),
                report::count(report.rows, "row")
            );
            for (path, why) in &report.skipped {
                outln!("  skipped {}: {why}", path.display());
            }
            Ok(if report.unreadable > 0 { PARTIAL } else { OK })
        }
        Command::Configs {
            command: ConfigsCommand::List { json },
        } => {
            if json {
                let list: Vec<_> = config::builtin()
                    .map(|(name, summary)| serde_json::json!({"name": name, "summary": summary}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&list)?);
            }
            for (name, summary) in config::builtin().filter(|_| !json) {
                outln!("{name:<24} {summary}");
            }
            Ok(OK)
        }
        Command::Configs {
            command: ConfigsCommand::Show { name },
        } => match config::builtin_text(&name) {
            Some(text) => {
                out!("{text}");
                Ok(OK)
            }
            None => bail!("no shipped config '{name}' (see `oect configs list`)"),
        },
    }
}

fn generate_spec(a: &GenerateArgs) -> synth::SynthSpec {
    synth::SynthSpec {
        n_experiments: a.experiments,
        n_steps: a.steps,
        transfer_points: a.points,
        n_cycles: a.cycles,
        period: a.period,
        sample_rate: a.sample_rate,
        tau_on_ms: a.tau_on_ms,
        tau_off_ms: a.tau_off_ms,
        tau_jitter: a.tau_jitter,
        device_type: if a.device_type == "P" {
            synth::DeviceType::P
        } else {
            synth::DeviceType::N
        },
        ragged: a.ragged,
        final_transfer: a.final_transfer,
        transfer: !a.transient_only,
        transient: !a.transfer_only,
        ion: a.ion,
        noise_abs: a.noise_abs,
        noise_rel: a.noise_rel,
        seed: a.seed,
        chip_prefix: a.chip_prefix.clone(),
        chip_id: a.chip.clone(),
        devices_per_chip: a.devices_per_chip,
        ..synth::SynthSpec::default()
    }
}

use inputs::collect_inputs;

/// Worker processes when `-j` is not given: one per core this process may use.
///
/// The supervisor is a light thread (it waits on pipes), so it needs no core of its own;
/// `docs/BENCHMARKS.md` ("Default worker count") measures `-j 1` against `-j 2` on 2 cores.
fn default_workers() -> usize {
    workers_for(
        std::env::var("SLURM_CPUS_PER_TASK").ok().as_deref(),
        std::thread::available_parallelism().ok().map(|n| n.get()),
    )
}

/// The default worker count from Slurm's CPUs per task (when set and valid) and the cores
/// `available_parallelism` reports (it honours the affinity mask and cgroup quotas).
fn workers_for(slurm_cpus: Option<&str>, available: Option<usize>) -> usize {
    slurm_cpus
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or(available)
        .unwrap_or(1)
        .max(1)
}

/// What `run`, `demo` and the batch commands build from the plugins, a config and an
/// output folder.
struct Job {
    config: FeatureConfig,
    graph: FeatureGraph,
    sink: Sink,
}

fn job(plugin_dirs: &[PathBuf], config: &str, out: &Path) -> Result<Job> {
    let registry = Registry::discover(plugin_dirs);
    for w in &registry.warnings {
        warning!("{w}");
    }
    let (config, graph) = validate::load(&registry, config)?;
    let sink = Sink::open(
        out,
        &config.name,
        &config.identity,
        &graph.content_hash[..8],
    )?;
    Ok(Job {
        config,
        graph,
        sink,
    })
}

/// Runs `job` until done or stopped by Ctrl-C / SIGTERM, prints the summary and returns the
/// exit status with it.
fn execute(
    job: Job,
    inputs: &[PathBuf],
    opts: RunOptions,
    json: bool,
) -> Result<(u8, exec::Summary)> {
    exec::stop_on_signals().context("cannot install the Ctrl-C handler")?;
    // Fail fast: a folder that cannot be written is found before any file is read.
    job.sink.create_folder()?;
    let out = job.sink.dir().to_path_buf();
    let filters = [
        ("--chip-id", opts.chip_id.clone()),
        ("--device-id", opts.device_id.clone()),
    ];
    let summary = exec::run(job.graph, job.config, job.sink, inputs, opts);
    if summary.experiments.is_empty() && !summary.filtered.is_empty() {
        unmatched_filters(&filters, &summary.filtered);
        return Ok((USAGE, summary));
    }
    report::summary(&summary, &out, json)?;
    if summary.interrupted {
        /// The shell's status for a command stopped by SIGINT.
        const INTERRUPTED: u8 = 130;
        let left = summary.count(|o| matches!(o, exec::Outcome::Interrupted { .. }));
        errln!(
            "interrupted: {left} experiments not done and nothing partial written; run the same command again to finish them"
        );
        return Ok((INTERRUPTED, summary));
    }
    Ok((if summary.all_ok() { OK } else { PARTIAL }, summary))
}

/// Every experiment was left out by the filters: says so, with the chips and devices
/// there are and the nearest to each filter (`SYN0001` for `#SYN0001`).
fn unmatched_filters(filters: &[(&str, Option<String>); 2], found: &[(String, String)]) {
    let mut chips: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    let mut devices: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
    for list in [&mut chips, &mut devices] {
        list.sort();
        list.dedup();
    }
    let (mut given, mut hints) = (Vec::new(), String::new());
    for ((flag, value), known) in filters.iter().zip([&chips, &devices]) {
        if let Some(value) = value {
            given.push(format!("{flag} '{value}'"));
            hints += &crate::suggest::hint(value, known.iter().copied());
        }
    }
    error!(
        "{} {} none of the {} {} (chips: {}; devices: {}){hints}",
        given.join(" and "),
        if given.len() == 1 { "matches" } else { "match" },
        found.len(),
        if found.len() == 1 {
            "experiment"
        } else {
            "experiments"
        },
        chips.join(", "),
        devices.join(", ")
    );
}

fn run(plugin_dirs: &[PathBuf], args: RunArgs) -> Result<u8> {
    let workers = args.workers.unwrap_or_else(default_workers);
    let opts = args.options.run_options(workers)?;
    // The worker processes start while this one loads the plugins and builds the graph.
    exec::pool::prestart(&opts.worker, workers);
    let job = job(plugin_dirs, &args.batch.config, &args.batch.out)?;
    let h5_dir = args
        .options
        .h5_dir
        .clone()
        .unwrap_or_else(|| args.batch.out.join("h5"));
    let (inputs, failed) = convert::run_inputs(&args.batch.inputs, &h5_dir, args.shard, workers)?;
    let (status, _) = execute(job, &inputs, opts, args.options.json)?;
    // an export that could not be converted is a failed experiment
    Ok(if status == OK && !failed.is_empty() {
        PARTIAL
    } else {
        status
    })
}

fn demo(plugin_dirs: &[PathBuf], out: &Path) -> Result<u8> {
    let data = out.join("data");
    let features = out.join("features");
    let spec = synth::SynthSpec {
        n_experiments: 3,
        n_steps: 200,
        transfer_points: Some(182),
        transient: false,
        seed: 7,
        ..synth::SynthSpec::default()
    };
    outln!(
        "generating 3 experiments × 200 transfer steps in {}",
        data.display()
    );
    let files = synth::generate(&spec, &data)?;
    let job = job(plugin_dirs, "v2_transfer_basic", &features)?;
    let inputs: Vec<PathBuf> = files.into_iter().map(|g| g.path).collect();
    let opts = RunOptions {
        mode: Mode::Step,
        workers: default_workers(),
        in_flight: 4,
        force: true,
        chip_id: None,
        device_id: None,
        progress: ProgressMode::None,
        step_timeout: None,
        read_timeout: Some(std::time::Duration::from_secs_f64(DEFAULT_READ_TIMEOUT)),
        max_memory: None,
        worker: exec::WorkerCommand::this_exe().context("locating the oect binary")?,
    };
    let (status, summary) = execute(job, &inputs, opts, false)?;
    if !summary.interrupted {
        report::demo_table(&summary)?;
    }
    Ok(status)
}

/// The sink a batch's outputs go to, as `run` would build it.
fn batch_sink(plugin_dirs: &[PathBuf], config: &str, out: &Path) -> Result<Sink> {
    Ok(job(plugin_dirs, config, out)?.sink)
}

fn status(plugin_dirs: &[PathBuf], args: &StatusArgs) -> Result<u8> {
    use batch::State;
    let sink = batch_sink(plugin_dirs, &args.batch.config, &args.batch.out)?;
    let files = collect_inputs(&args.batch.inputs)?;
    let infos = exec::probe::open_all(&files)?;
    let states = batch::status(&files, infos, &sink, args.shards);
    let count = |want: fn(&State) -> bool| states.iter().filter(|s| want(&s.2)).count();
    let incomplete = batch::incomplete_shards(&states);
    let all_done = states.iter().all(|s| s.2 == State::Done);
    if args.json {
        let doc = serde_json::json!({
            "experiments": states.iter().map(|(f, shard, state)| serde_json::json!({
                "input": f, "shard": shard, "state": state,
            })).collect::<Vec<_>>(),
            "incomplete_shards": incomplete,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        outln!(
            "{}: {} done, {} done with failed steps, {} missing, {} failed; shards with work left: {:?}",
            report::count(states.len(), "experiment"),
            count(|s| *s == State::Done),
            count(|s| matches!(s, State::DoneWithFailedSteps { .. })),
            count(|s| *s == State::Missing),
            count(|s| matches!(s, State::Failed(_))),
            incomplete
        );
        for (f, shard, state) in &states {
            match state {
                State::Missing => outln!("  missing (shard {shard}) {}", f.display()),
                State::Failed(why) => {
                    outln!("  FAILED (shard {shard}) {}: {why}", f.display())
                }
                State::DoneWithFailedSteps { failed_steps, .. } => outln!(
                    "  done with {failed_steps} failed steps (shard {shard}) {}",
                    f.display()
                ),
                State::Done => {}
            }
        }
    }
    Ok(if all_done { OK } else { PARTIAL })
}

fn submit(plugin_dirs: &[PathBuf], args: &SubmitArgs) -> Result<u8> {
    let Some((script, indices)) = array_script(plugin_dirs, args)? else {
        outln!("nothing to submit: every experiment has an up-to-date output");
        return Ok(OK);
    };
    let (shards, log_dir) = (args.shards, log_dir(&args.batch.out));
    if args.dry_run {
        out!("{script}");
        return Ok(OK);
    }
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("{}: cannot create", log_dir.display()))?;
    let script_path = log_dir.join("oect-array.sbatch");
    std::fs::write(&script_path, &script)
        .with_context(|| format!("{}: cannot write", script_path.display()))?;
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&script_path)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let job = String::from_utf8_lossy(&out.stdout);
    let job = job.trim().split(';').next().unwrap_or("").to_string();
    outln!("{job}");
    errln!(
        "submitted job array {job}: shards {indices:?} of {}; logs in {}",
        shards,
        log_dir.display()
    );
    Ok(OK)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where the array tasks write their logs (and `submit` its script).
fn log_dir(out: &Path) -> PathBuf {
    absolute(out).join("slurm-logs")
}

/// The sbatch script `submit` would submit and the shards it runs; `None` if no shard has
/// work left (`--resume`).
fn array_script(
    plugin_dirs: &[PathBuf],
    args: &SubmitArgs,
) -> Result<Option<(String, Vec<usize>)>> {
    let (b, shards) = (&args.batch, args.shards);
    if shards == 0 || args.cpus_per_task == 0 {
        bail!("--shards and --cpus-per-task must be at least 1");
    }
    // Refused here rather than by every task.
    args.options.run_options(args.cpus_per_task)?;
    let indices: Vec<usize> = if args.resume {
        let sink = batch_sink(plugin_dirs, &b.config, &b.out)?;
        let files = collect_inputs(&b.inputs)?;
        let infos = exec::probe::open_all(&files)?;
        batch::incomplete_shards(&batch::status(&files, infos, &sink, shards))
    } else {
        (0..shards).collect()
    };
    if indices.is_empty() {
        return Ok(None);
    }
    let mut run_args: Vec<String> = b
        .inputs
        .iter()
        .map(|p| absolute(p).display().to_string())
        .collect();
    let config = if Path::new(&b.config).exists() {
        absolute(Path::new(&b.config)).display().to_string()
    } else {
        b.config.clone()
    };
    run_args.extend([
        "-c".into(),
        config,
        "-o".into(),
        absolute(&b.out).display().to_string(),
    ]);
    // paths as absolute as the batch's, whatever folder a task starts in
    let options = RunOptionArgs {
        h5_dir: args.options.h5_dir.as_deref().map(absolute),
        ..args.options.clone()
    };
    run_args.extend(batch::forward(&options));
    for dir in plugin_dirs {
        run_args.push(format!("--plugin-dir={}", absolute(dir).display()));
    }
    let oect = std::env::current_exe().context("locating the oect binary")?;
    let script = batch::sbatch_script(&batch::ArrayJob {
        oect: &oect,
        run_args: &run_args,
        shards,
        indices: &indices,
        partition: args.partition.as_deref(),
        time: args.time.as_deref(),
        cpus_per_task: args.cpus_per_task,
        log_dir: &log_dir(&b.out),
    });
    Ok(Some((script, indices)))
}
