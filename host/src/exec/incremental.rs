//! A feature graph computed a range of steps at a time by a caller that keeps the results
//! (`oect watch`, which gets new steps while a test runs). The same per-chunk computation
//! ([`compute::block_parts`]) and table assembly as the schedulers, so the table written from
//! kept parts equals the one a run writes for the same steps.

use std::path::PathBuf;
use std::time::Instant;

use oect_plugin_api::abi::Source;

use super::compute::{self, Part, Recorded};
use super::{Ctx, Mode, Outcome, ProgressMode, RunOptions, TableSource, WorkerCommand};
use crate::config::FeatureConfig;
use crate::graph::{FeatureGraph, Op};
use crate::sink::Sink;
use crate::source::StepBlock;

/// Everything needed to compute steps and write tables for one config.
pub struct Incremental {
    ctx: Ctx,
}

impl Incremental {
    /// Extractors run in this process, without a time limit: `watch` is not yet contained
    /// by worker processes as `run` is (see `docs/FAULTS.md`).
    pub fn new(graph: FeatureGraph, config: FeatureConfig, sink: Sink) -> Incremental {
        let opts = RunOptions {
            mode: Mode::Experiment,
            workers: 1,
            in_flight: 1,
            force: false,
            chip_id: None,
            device_id: None,
            progress: ProgressMode::None,
            step_timeout: None,
            read_timeout: None,
            max_memory: None,
            // Never started: this computes in the calling process.
            worker: WorkerCommand {
                program: PathBuf::new(),
                args: Vec::new(),
            },
        };
        Incremental {
            ctx: Ctx::new(graph, config, sink, opts),
        }
    }

    pub fn graph(&self) -> &FeatureGraph {
        &self.ctx.graph
    }

    pub fn sink(&self) -> &Sink {
        &self.ctx.sink
    }

    /// Empty columns for every per-step node, to append computed parts to.
    pub fn empty_columns(&self) -> Vec<Option<Part>> {
        self.ctx
            .graph
            .nodes
            .iter()
            .map(|n| {
                matches!(n.op, Op::Extract(_)).then(|| Part {
                    first: 0,
                    values: Vec::new(),
                    offsets: vec![0],
                    shapes: Vec::new(),
                    failures: Vec::new(),
                })
            })
            .collect()
    }

    /// The per-step features of `source` over the steps of `block` (indexed like the graph's
    /// nodes; `None` for nodes of other sources and expressions). `block` holds the channels
    /// [`FeatureGraph::channels`] declares for `source`; `recorded.steps[k]` belongs to file
    /// step `k`, as in a run.
    pub fn compute(
        &self,
        source: Source,
        block: &StepBlock,
        recorded: Recorded<'_>,
    ) -> Vec<Option<Part>> {
        compute::block_parts(&self.ctx.graph, source, block, recorded, &compute::NoWatch)
    }

    /// Assembles the table from complete per-step columns (expressions evaluated over them)
    /// and writes it atomically, replacing the experiment's earlier table.
    pub fn write(&self, src: &TableSource, columns: Vec<Option<Part>>) -> Outcome {
        self.ctx.write(src, columns, Instant::now())
    }
}
