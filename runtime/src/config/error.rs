//! Config errors: every one names the file, and where it can, the line and key.

use std::path::PathBuf;

/// A config file that cannot be used; the node refuses to start (or keeps its old config).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape (toml names the line).
    #[error("{file}: {message}")]
    Parse {
        /// The file name as given.
        file: String,
        /// The TOML error, with its line and column.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{file}:{line}: `{key}`: {message}")]
    Invalid {
        /// The file name as given.
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// Dotted key path, e.g. `behaviors[0].origin`.
        key: String,
        /// What is wrong, and what would be accepted.
        message: String,
    },
}
