//! Experiment mode: one task per experiment, everything inside it serial.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rayon::prelude::*;

use super::compute::{self, Part};
use super::{Ctx, Outcome, Phase, Prepared, Progress};
use crate::graph::{Op, Rows};

pub(super) fn run(ctx: &Arc<Ctx>, inputs: &[PathBuf], progress: &Progress) -> Vec<Outcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ctx.opts.workers.max(1))
        .thread_name(|i| format!("oect-worker-{i}"))
        .build()
        .expect("worker pool");
    pool.install(|| {
        inputs
            .par_iter()
            .with_max_len(1)
            .map(|path| {
                if super::stopping() {
                    let input = path.clone();
                    return Outcome::Interrupted { input };
                }
                let outcome = match ctx.prepare(path) {
                    Ok(prep) => compute_experiment(ctx, &prep),
                    Err(outcome) => outcome,
                };
                progress.settled(&outcome);
                outcome
            })
            .collect()
    })
}

fn compute_experiment(ctx: &Ctx, prep: &Prepared) -> Outcome {
    let graph = &ctx.graph;
    let mut columns: Vec<Option<Part>> = vec![None; graph.nodes.len()];
    for (&source, ranges) in &prep.chunks {
        for range in ranges {
            if super::stopping() {
                let input = prep.exp.path.clone();
                return Outcome::Interrupted { input };
            }
            let block = match ctx.read_block(&prep.exp, source, range.clone()) {
                Ok(b) => b,
                Err(e) => {
                    return Outcome::Failed {
                        input: prep.exp.path.clone(),
                        reason: e.message,
                    }
                }
            };
            let per_step = graph
                .nodes
                .iter()
                .filter(|n| n.rows == Rows::Source(source) && matches!(n.op, Op::Extract(_)))
                .count();
            ctx.tasks.fetch_add(per_step, Ordering::Relaxed);
            let chunk_parts = ctx.timed(Phase::Extract, || {
                compute::block_parts(
                    &ctx.graph,
                    source,
                    &block,
                    &prep.id,
                    &prep.sampling,
                    &ctx.limits,
                )
            });
            for (column, part) in columns.iter_mut().zip(chunk_parts) {
                if let Some(part) = part {
                    match column {
                        Some(c) => c.append(&part),
                        None => *column = Some(part),
                    }
                }
            }
        }
    }
    ctx.finish(prep, columns)
}
