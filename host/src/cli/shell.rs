//! Shell integration generated from the clap command tree, so it never drifts from the
//! options: completion scripts (`clap_complete`) and man pages (`clap_mangen`).

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{Cli, OK};

/// Prints the completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "oect", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(OK)
}

/// Prints the `oect(1)` page as roff, or with `dir` writes it and one page per subcommand
/// (`oect-run.1`, …) there and lists them.
pub(super) fn man(dir: Option<&Path>) -> Result<u8> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        out!("{}", String::from_utf8_lossy(&buf));
        return Ok(OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("{}: cannot write the man pages", dir.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    for p in pages {
        outln!("{}", p.display());
    }
    Ok(OK)
}
