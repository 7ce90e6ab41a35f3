//! Experiment files: the HDF5 reader the scheduler pulls steps from, and the synthetic
//! generator behind `oect generate`.

mod chunked;
pub mod reader;
pub mod steps;
pub mod synth;

pub use reader::{AttrValue, Experiment, SourceError, StepBlock, TransferLayout, TransientLayout};
pub use steps::{Sampling, StepParams, StepRecord};
pub use synth::{generate, DeviceType, Generated, SynthSpec};

#[cfg(test)]
mod tests;
