//! oect host: extract per-step features from OECT experiment files.
//!
//! Modules follow the data's way through a run:
//! [`plugins`] (discover and load extractor libraries) → [`config`] (parse and
//! validate a feature config) → [`graph`] (feature DAG, safe `func:` expressions) →
//! [`ingest`] (raw instrument exports → HDF5, synthetic generator) →
//! [`source`] (HDF5 experiment reader) → [`exec`] (step and
//! experiment schedulers) → [`sink`] (Parquet output, skip / force) → [`view`] (figures
//! and the HTML report) → [`cli`]. [`frame`] is the wire format of the worker processes and
//! of Python plugin children, below both.

pub mod cli;
pub mod config;
pub mod exec;
pub mod frame;
pub mod graph;
pub mod ingest;
pub mod plugins;
pub mod sink;
pub mod source;
pub mod suggest;
pub mod view;
