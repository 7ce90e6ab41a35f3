//! Step mode: a reader thread, a worker pool, one consumer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::compute::{self, Part};
use super::{Ctx, Outcome, Phase, Prepared, Progress};
use crate::graph::{Input, Op, Rows};
use crate::source::StepBlock;

enum Msg {
    /// Experiment `exp` is open; its parts follow.
    Begin { exp: usize, prep: Arc<Prepared> },
    /// A computed chunk of one per-step feature.
    Part {
        exp: usize,
        node: usize,
        chunk: usize,
        part: Part,
    },
    /// Experiment `exp` was given up after it began: reading failed (`Some(reason)`)
    /// or the run is stopping (`None`).
    Abort { exp: usize, reason: Option<String> },
    /// An experiment that needed no computing (skipped, failed to open, filtered).
    Settled(Outcome),
    /// Nothing more will come from the reader.
    ReaderDone,
}

/// A chunk of raw steps, shared by the tasks that read it; dropping the last
/// reference lets the reader load another chunk.
struct Chunk {
    block: StepBlock,
    permits: Receiver<()>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let _ = self.permits.try_recv();
    }
}

pub(super) fn run(ctx: &Arc<Ctx>, inputs: &[PathBuf], progress: &Progress) -> Vec<Outcome> {
    let workers = ctx.opts.workers.max(1);
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("oect-worker-{i}"))
            .build()
            .expect("worker pool"),
    );
    let (tx, rx) = unbounded::<Msg>();
    // Experiments open at once: the reader sends before opening, the consumer receives
    // when one is settled.
    let (slot_tx, slot_rx) = bounded::<()>(ctx.opts.in_flight.max(1));
    // Chunks of raw data alive at once.
    let (permit_tx, permit_rx) = bounded::<()>(2 * workers + 2);

    std::thread::scope(|scope| {
        let reader = {
            let (ctx, pool, tx) = (Arc::clone(ctx), Arc::clone(&pool), tx.clone());
            scope
                .spawn(move || read_all(&ctx, &pool, inputs, &tx, &slot_tx, &permit_tx, &permit_rx))
        };
        let outcomes = consume(ctx, &pool, &rx, &tx, &slot_rx, progress);
        reader.join().expect("reader thread");
        outcomes
    })
}

fn read_all(
    ctx: &Arc<Ctx>,
    pool: &Arc<rayon::ThreadPool>,
    inputs: &[PathBuf],
    tx: &Sender<Msg>,
    slots: &Sender<()>,
    permits: &Sender<()>,
    permits_rx: &Receiver<()>,
) {
    for (exp, path) in inputs.iter().enumerate() {
        if super::stopping() {
            let input = path.clone();
            let _ = tx.send(Msg::Settled(Outcome::Interrupted { input }));
            continue;
        }
        let prep = match ctx.prepare(path) {
            Ok(p) => Arc::new(p),
            Err(outcome) => {
                let _ = tx.send(Msg::Settled(outcome));
                continue;
            }
        };
        if slots.send(()).is_err() {
            return;
        }
        let _ = tx.send(Msg::Begin {
            exp,
            prep: Arc::clone(&prep),
        });
        if let Err(reason) = read_experiment(ctx, pool, exp, &prep, tx, permits, permits_rx) {
            let _ = tx.send(Msg::Abort { exp, reason });
        }
    }
    let _ = tx.send(Msg::ReaderDone);
}

fn read_experiment(
    ctx: &Arc<Ctx>,
    pool: &Arc<rayon::ThreadPool>,
    exp: usize,
    prep: &Arc<Prepared>,
    tx: &Sender<Msg>,
    permits: &Sender<()>,
    permits_rx: &Receiver<()>,
) -> Result<(), Option<String>> {
    for (&source, ranges) in &prep.chunks {
        let readers: Vec<usize> = (0..ctx.graph.nodes.len())
            .filter(|&i| ctx.graph.nodes[i].inputs == [Input::Source(source)])
            .collect();
        for (chunk, range) in ranges.iter().enumerate() {
            if super::stopping() {
                return Err(None);
            }
            permits
                .send(())
                .map_err(|_| Some("run stopped".to_string()))?;
            let block = ctx
                .read_block(&prep.exp, source, range.clone())
                .map_err(|e| Some(e.message))?;
            let data = Arc::new(Chunk {
                block,
                permits: permits_rx.clone(),
            });
            for &node in &readers {
                let (ctx2, prep, data, tx) = (
                    Arc::clone(ctx),
                    Arc::clone(prep),
                    Arc::clone(&data),
                    tx.clone(),
                );
                ctx.tasks.fetch_add(1, Ordering::Relaxed);
                pool.spawn(move || {
                    let part = ctx2.timed(Phase::Extract, || {
                        compute::source_chunk(
                            &ctx2.graph,
                            node,
                            source,
                            &data.block,
                            &prep.id,
                            &prep.sampling,
                            &ctx2.limits,
                        )
                    });
                    drop(data);
                    let _ = tx.send(Msg::Part {
                        exp,
                        node,
                        chunk,
                        part,
                    });
                });
            }
        }
    }
    Ok(())
}

/// Results gathered for one open experiment.
struct Pending {
    prep: Arc<Prepared>,
    /// node → chunk → part (only per-step nodes have entries).
    parts: Vec<Vec<Option<Arc<Part>>>>,
    spawned: Vec<Vec<bool>>,
    missing: usize,
}

fn consume(
    ctx: &Arc<Ctx>,
    pool: &Arc<rayon::ThreadPool>,
    rx: &Receiver<Msg>,
    tx: &Sender<Msg>,
    slots: &Receiver<()>,
    progress: &Progress,
) -> Vec<Outcome> {
    let graph = &ctx.graph;
    let mut outcomes = Vec::new();
    let mut open: HashMap<usize, Pending> = HashMap::new();
    let mut reader_done = false;
    let settle = |outcomes: &mut Vec<Outcome>, o: Outcome| {
        progress.settled(&o);
        outcomes.push(o);
    };
    while !(reader_done && open.is_empty()) {
        let Ok(msg) = rx.recv() else { break };
        match msg {
            Msg::ReaderDone => reader_done = true,
            Msg::Settled(o) => settle(&mut outcomes, o),
            Msg::Begin { exp, prep } => {
                // Only extractor nodes run per chunk; expressions run on the whole table.
                let chunks_of = |node: usize| match (&graph.nodes[node].op, graph.nodes[node].rows)
                {
                    (Op::Extract(_), Rows::Source(s)) => prep.chunks.get(&s).map_or(0, Vec::len),
                    _ => 0,
                };
                let parts: Vec<Vec<Option<Arc<Part>>>> = (0..graph.nodes.len())
                    .map(|n| vec![None; chunks_of(n)])
                    .collect();
                let missing = parts.iter().map(Vec::len).sum();
                let spawned = parts.iter().map(|p| vec![false; p.len()]).collect();
                open.insert(
                    exp,
                    Pending {
                        prep,
                        parts,
                        spawned,
                        missing,
                    },
                );
            }
            Msg::Abort { exp, reason } => {
                if let Some(p) = open.remove(&exp) {
                    let _ = slots.recv();
                    let input = p.prep.exp.path.clone();
                    let outcome = match reason {
                        Some(reason) => Outcome::Failed { input, reason },
                        None => Outcome::Interrupted { input },
                    };
                    settle(&mut outcomes, outcome);
                }
            }
            Msg::Part {
                exp,
                node,
                chunk,
                part,
            } => {
                let Some(pending) = open.get_mut(&exp) else {
                    continue; // the experiment was aborted
                };
                pending.parts[node][chunk] = Some(Arc::new(part));
                pending.missing -= 1;
                spawn_ready(ctx, pool, tx, exp, pending, node, chunk);
                if pending.missing == 0 {
                    let pending = open.remove(&exp).expect("open experiment");
                    let outcome = finish(ctx, pending);
                    let _ = slots.recv();
                    settle(&mut outcomes, outcome);
                }
            }
        }
    }
    outcomes
}

/// Starts every per-step feature that reads `node` and now has all inputs for `chunk`.
fn spawn_ready(
    ctx: &Arc<Ctx>,
    pool: &Arc<rayon::ThreadPool>,
    tx: &Sender<Msg>,
    exp: usize,
    pending: &mut Pending,
    node: usize,
    chunk: usize,
) {
    let graph = &ctx.graph;
    for (d, dependent) in graph.nodes.iter().enumerate() {
        // Only dependents of `node`, which share its data source and so its chunking.
        if !matches!(dependent.op, Op::Extract(_))
            || !dependent.inputs.contains(&Input::Feature(node))
            || pending.spawned[d].get(chunk) != Some(&false)
        {
            continue;
        }
        let inputs: Option<Vec<Arc<Part>>> = dependent
            .inputs
            .iter()
            .map(|i| match i {
                Input::Feature(j) => pending.parts[*j][chunk].clone(),
                Input::Source(_) => None,
            })
            .collect();
        let Some(inputs) = inputs else { continue };
        pending.spawned[d][chunk] = true;
        let (ctx, prep, tx) = (Arc::clone(ctx), Arc::clone(&pending.prep), tx.clone());
        ctx.tasks.fetch_add(1, Ordering::Relaxed);
        pool.spawn(move || {
            let refs: Vec<&Part> = inputs.iter().map(Arc::as_ref).collect();
            let range = refs[0].first..refs[0].first + refs[0].len();
            let part = ctx.timed(Phase::Extract, || {
                compute::derived_chunk(&ctx.graph, d, &refs, range, &prep.id, &ctx.limits)
            });
            let _ = tx.send(Msg::Part {
                exp,
                node: d,
                chunk,
                part,
            });
        });
    }
}

fn finish(ctx: &Ctx, pending: Pending) -> Outcome {
    let columns = pending
        .parts
        .into_iter()
        .map(|chunks| {
            let mut chunks = chunks.into_iter().map(|c| c.expect("complete"));
            let first = chunks.next()?;
            let mut column = Arc::unwrap_or_clone(first);
            for c in chunks {
                column.append(&c);
            }
            Some(column)
        })
        .collect();
    ctx.finish(&pending.prep, columns)
}
