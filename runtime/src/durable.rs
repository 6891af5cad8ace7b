//! Files that survive a crash: written whole or not at all, and the temp files a crash leaves
//! behind cleaned at the next start.

use std::io::Write as _;
use std::path::Path;

/// Temp file, fsync, rename, fsync the directory: after a crash the file is either the old
/// one or the new one, never half written.
pub fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `name` is a temp file of [`write_durably`] (`<stem>.tmp-<pid>`).
fn is_temp_file(name: &str) -> bool {
    name.rsplit_once(".tmp-").is_some_and(|(stem, pid)| {
        !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes the temp files of [`write_durably`] under `dir` and its subdirectories (two levels:
/// `functions/<name>/`, `kv/`). Run at start, before the node writes anything: any such file is
/// then left by a process that died mid-write (an upload's module can be megabytes). Returns
/// how many were removed; files it cannot remove are logged and left.
pub fn remove_temp_files(dir: &Path) -> usize {
    fn sweep(dir: &Path, depth: u8, removed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() && depth > 0 {
                sweep(&path, depth - 1, removed);
            } else if kind.is_file() && is_temp_file(&entry.file_name().to_string_lossy()) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "removed a temp file left by a crash");
                        *removed += 1;
                    }
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "cannot remove a temp file left by a crash");
                    }
                }
            }
        }
    }
    let mut removed = 0;
    sweep(dir, 2, &mut removed);
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temp_files_are_swept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let functions = dir.path().join("functions/tag");
        std::fs::create_dir_all(&functions).expect("mkdir");
        write_durably(&functions.join("stages.json"), b"{}").expect("write");
        for name in ["stages.tmp-4242", "0123abcd.tmp-7"] {
            std::fs::write(functions.join(name), b"half").expect("write");
        }
        std::fs::write(dir.path().join("kv.tmp-1"), b"half").expect("write");
        for keep in ["notes.tmp-", "a.tmp-12x", "tmp-12"] {
            std::fs::write(dir.path().join(keep), b"mine").expect("write");
        }
        assert_eq!(remove_temp_files(dir.path()), 3);
        let mut left: Vec<String> = walk(dir.path());
        left.sort();
        assert_eq!(
            left,
            [
                "a.tmp-12x",
                "functions/tag/stages.json",
                "notes.tmp-",
                "tmp-12"
            ]
        );
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![root.to_owned()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
                if entry.path().is_dir() {
                    dirs.push(entry.path());
                } else if let Ok(rel) = entry.path().strip_prefix(root) {
                    files.push(rel.display().to_string());
                }
            }
        }
        files
    }
}
