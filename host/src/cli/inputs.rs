//! Finding the experiment files of a batch: `.h5` files under the inputs, each once.
//!
//! Folders are searched recursively, following symbolic links, but every folder is
//! entered once (by device and inode), so a link loop (`ln -s . x`, two links pointing
//! at each other) neither hangs the search nor counts files twice; a file reached by two
//! paths is kept once, under the first path in sorted order. Anything that is not a folder
//! is kept (a FIFO or device named `*.h5` included): the run refuses such a file by name,
//! without opening it, and carries on with the others.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `.h5` files under `inputs`, sorted, each once.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut search = Search::default();
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(m) if m.is_dir() => {
                let before = search.files.len();
                search.walk(input, &m)?;
                if search.files.len() == before {
                    bail!("{}: no .h5 files in this folder", input.display());
                }
            }
            Ok(m) => search.files.push((input.clone(), Some((m.dev(), m.ino())))),
            Err(e) if input.symlink_metadata().is_ok() => {
                // A link that cannot be followed: the run reports it by name.
                let _ = e;
                search.files.push((input.clone(), None));
            }
            Err(_) => bail!("{}: no such file or folder", input.display()),
        }
    }
    let mut files = search.files;
    files.sort();
    let mut seen = HashSet::new();
    files.retain(|(_, id)| id.is_none_or(|id| seen.insert(id)));
    let mut paths: Vec<PathBuf> = files.into_iter().map(|(p, _)| p).collect();
    paths.dedup();
    Ok(paths)
}

#[derive(Default)]
struct Search {
    /// (path, (device, inode) of what it points at, if it can be followed).
    files: Vec<(PathBuf, Option<(u64, u64)>)>,
    /// Folders entered, by (device, inode), with the path first used.
    folders: Vec<((u64, u64), PathBuf)>,
}

impl Search {
    fn walk(&mut self, dir: &Path, meta: &std::fs::Metadata) -> Result<()> {
        let id = (meta.dev(), meta.ino());
        if let Some((_, first)) = self.folders.iter().find(|(f, _)| *f == id) {
            warning!("{}: the same folder as {} (a symbolic link loop or a second link to it); not searched again",
                dir.display(),
                first.display()
            );
            return Ok(());
        }
        self.folders.push((id, dir.to_path_buf()));
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read folder", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}: cannot read folder", dir.display()))?;
        entries.sort();
        for path in entries {
            let is_h5 = path.extension().is_some_and(|e| e == "h5");
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.walk(&path, &m)?,
                Ok(m) if is_h5 => self.files.push((path, Some((m.dev(), m.ino())))),
                Ok(_) => {}
                Err(_) if is_h5 => self.files.push((path, None)),
                Err(e) => {
                    if path
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                    {
                        warning!(
                            "{}: a symbolic link that cannot be followed ({e}); skipped",
                            path.display()
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn link_loops_are_searched_once_and_files_counted_once() {
        let dir = std::env::temp_dir().join(format!("oect-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.h5"), b"x").unwrap();
        std::fs::write(dir.join("sub/b.h5"), b"x").unwrap();
        symlink(".", dir.join("x")).unwrap(); // `ln -s . x`
        symlink("..", dir.join("sub/up")).unwrap();
        symlink("p", dir.join("q")).unwrap(); // two links pointing at each other
        symlink("q", dir.join("p")).unwrap();
        symlink("a.h5", dir.join("alias.h5")).unwrap();
        let files = collect_inputs(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(files, vec![dir.join("a.h5"), dir.join("sub/b.h5")]);
        // The same file given twice, once through a link, is one input.
        let twice = collect_inputs(&[dir.join("alias.h5"), dir.join("a.h5")]).unwrap();
        assert_eq!(twice, vec![dir.join("a.h5")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
