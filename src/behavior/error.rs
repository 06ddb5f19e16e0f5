//! Errors of the behaviour host. Every script error names the file, and where known the line,
//! column, function and output field, so an analyst can go straight to it.

use rhai::{EvalAltResult, Position};

/// What went wrong loading or running a persona set.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BehaviorError {
    /// The set's folder or script does not exist.
    #[error(
        "persona set `{name}` not found: {path} does not exist (sets found in {dir}: {available})"
    )]
    UnknownSet {
        /// Set name.
        name: String,
        /// The missing path.
        path: String,
        /// The behaviours folder.
        dir: String,
        /// Sets that do exist.
        available: String,
    },
    /// The set name is not a plain folder name.
    #[error(
        "persona set name `{0}` is not valid: use letters, digits, `_` or `-` (a folder in the behaviours directory)"
    )]
    BadSetName(String),
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The script (or an imported helper) does not compile, or an import is not allowed.
    #[error("{file}:{line}:{column}: {message}")]
    Compile {
        /// The script file.
        file: String,
        /// Line (1-based; 0 when unknown).
        line: usize,
        /// Column (1-based; 0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A required decision function is not defined (with the right number of parameters).
    #[error("{file}: function `{function}` is missing: define `fn {function}({params})`")]
    MissingFunction {
        /// The script file.
        file: String,
        /// The function.
        function: String,
        /// Its parameters.
        params: String,
    },
    /// A decision function failed while running (including hitting a limit).
    #[error("{file}:{line}:{column}: in {function}: {message}")]
    Runtime {
        /// The script file where the error happened.
        file: String,
        /// Line (0 when unknown).
        line: usize,
        /// Column (0 when unknown).
        column: usize,
        /// The decision function called.
        function: String,
        /// What went wrong.
        message: String,
    },
    /// A decision function returned something the host cannot use.
    #[error("{file}: {function} returned a bad value: field `{field}` {message}")]
    Output {
        /// The script file.
        file: String,
        /// The decision function.
        function: String,
        /// The field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The set is valid Rhai but breaks a rule of the host (e.g. a category not in the vocabulary).
    #[error("persona set `{set}`: {message}")]
    Invalid {
        /// Set name.
        set: String,
        /// What is wrong.
        message: String,
    },
}

impl BehaviorError {
    /// The error of a failed call, pointing at the innermost script position.
    pub fn runtime(file: &str, function: &str, err: &EvalAltResult) -> Self {
        let (src, pos, inner) = innermost(err);
        BehaviorError::Runtime {
            file: src.unwrap_or_else(|| file.to_string()),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            function: function.to_string(),
            message: strip_position(&inner.to_string()),
        }
    }
}

/// Walks nested "error in function call" wrappers down to the real error.
fn innermost(err: &EvalAltResult) -> (Option<String>, Position, &EvalAltResult) {
    let mut src: Option<String> = None;
    let mut cur = err;
    let mut pos = err.position();
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(_, s, inner, p) => {
                if !s.is_empty() {
                    src = Some(s.clone());
                }
                if !p.is_none() {
                    pos = *p;
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(_, inner, p) => {
                if !p.is_none() {
                    pos = *p;
                }
                cur = inner;
            }
            _ => {
                if !cur.position().is_none() {
                    pos = cur.position();
                }
                return (src, pos, cur);
            }
        }
    }
}

/// Rhai appends ` (line L, position C)` to messages; the host prints file:line:column itself.
pub fn strip_position(msg: &str) -> String {
    match msg.rfind(" (line ") {
        Some(i) if msg.ends_with(')') => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}
