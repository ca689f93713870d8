//! Compiling a script's source.

use std::sync::Arc;

use rhai::{Engine, AST};

use crate::error::CompileError;

/// Longest script source, in bytes.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// Compiles scripts with the sandboxed engine's rules, without running them: what the
/// control plane uses to refuse a script that does not compile before storing it.
pub struct Compiler {
    engine: Engine,
}

impl Compiler {
    /// A compiler whose engine has `limits` (depth limits apply to parsing).
    pub fn new(limits: &crate::sandbox::Limits) -> Self {
        Compiler {
            engine: crate::sandbox::engine(limits),
        }
    }

    /// Compiles `source`.
    pub fn compile(&self, source: &str) -> Result<Script, CompileError> {
        Script::compile(&self.engine, source)
    }
}

/// A compiled script, cheap to clone and share between threads.
#[derive(Clone)]
pub struct Script {
    ast: Arc<AST>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("functions", &self.function_names())
            .finish()
    }
}

impl Script {
    /// Compiles `source` with `engine` (the sandboxed engine: its limits apply to the
    /// parse too).
    pub fn compile(engine: &Engine, source: &str) -> Result<Script, CompileError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CompileError {
                message: format!("the script is longer than {MAX_SOURCE_BYTES} bytes"),
                line: 0,
                column: 0,
            });
        }
        match engine.compile(source) {
            Ok(ast) => Ok(Script { ast: Arc::new(ast) }),
            Err(error) => Err(CompileError {
                message: error.err_type().to_string(),
                line: error.position().line().unwrap_or(0),
                column: error.position().position().unwrap_or(0),
            }),
        }
    }

    /// Whether the script defines a function `name` taking `params` parameters.
    pub fn defines(&self, name: &str, params: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == params)
    }

    /// The names of the functions the script defines.
    pub fn function_names(&self) -> Vec<String> {
        self.ast
            .iter_functions()
            .map(|f| f.name.to_owned())
            .collect()
    }

    pub(crate) fn ast(&self) -> &AST {
        &self.ast
    }
}
