//! Transient extractors (wired up with the transient issue).
