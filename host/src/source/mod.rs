//! Experiment files: the HDF5 reader the scheduler pulls steps from.

mod chunked;
pub mod reader;
pub mod steps;

pub use reader::{
    check_regular, AttrValue, Experiment, ExperimentInfo, Overview, SourceError, StepBlock,
    TransferLayout, TransferOverview, TransientLayout, TransientOverview,
};
pub use steps::{keys, step_record, Sampling, StepKey, StepParams, StepRecord};

#[cfg(test)]
mod tests;
