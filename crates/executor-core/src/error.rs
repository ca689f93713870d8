//! The crate's errors: a script that does not compile, and a run that did not finish.

use serde::Serialize;

/// A script's source does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// 1-based line of the error (0 when the error has no position).
    pub line: usize,
    /// 1-based column of the error (0 when the error has no position).
    pub column: usize,
}

/// Why a run did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The script threw, or a limit other than time stopped it; the text says which, with
    /// the position when there is one.
    #[error("{0}")]
    Failed(String),
    /// The run took longer than its time limit.
    #[error("the script ran longer than its limit of {0} ms")]
    Timeout(u64),
    /// Every worker is busy and the queue is full: try again later.
    #[error("every script worker is busy; try again later")]
    Overloaded,
    /// The executor has stopped (the server is shutting down).
    #[error("the script executor has stopped")]
    Stopped,
}

impl RunError {
    /// A short label for metrics and run logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            RunError::Failed(_) => "error",
            RunError::Timeout(_) => "timeout",
            RunError::Overloaded => "overloaded",
            RunError::Stopped => "stopped",
        }
    }
}
