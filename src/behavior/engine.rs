//! The sandboxed Rhai engine and the import resolver.
//!
//! Scripts can compute and return values, nothing else: no file access except `import` of
//! helpers in the behaviours folder's `lib/` (resolved once at compile time), no network, no
//! clock (`timestamp` is compiled out with `no_time`), no `eval`, no process access. Every call
//! is bounded in operations, call depth, expression depth and string/array/map sizes, so a
//! runaway loop fails its one decision in milliseconds. `print`/`debug` go to the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope};

type SharedModule = Arc<Module>;

use super::error::BehaviorError;
use super::{calendar, inputs, persona, rng};

/// Operations one call may perform (a real decision needs a few thousand; a runaway loop hits
/// this in roughly 10–50 ms).
pub const MAX_OPERATIONS: u64 = 500_000;
/// Nested function calls.
pub const MAX_CALL_LEVELS: usize = 32;
/// Longest string a script may build.
pub const MAX_STRING_SIZE: usize = 10_000;
/// Largest array a script may build.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Largest map a script may build.
pub const MAX_MAP_SIZE: usize = 1_000;

/// Builds an engine with the sandbox, limits and the host's types. `resolver` is the import
/// resolver used while compiling; engines that only run compiled sets get one that refuses
/// everything (compiled sets carry their imports with them).
pub fn build(resolver: Option<Box<dyn ModuleResolver>>) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_variables(256)
        .set_max_functions(256)
        .set_max_modules(16)
        // Typos in property names are errors, not silent `()`.
        .set_fail_on_invalid_map_property(true)
        .set_strict_variables(true);
    e.disable_symbol("eval");
    e.on_print(|s| tracing::info!(target: "shopsim::behavior::script", "{s}"));
    e.on_debug(|s, src, pos| {
        tracing::debug!(target: "shopsim::behavior::script", source = src.unwrap_or(""), %pos, "{s}")
    });
    match resolver {
        Some(r) => {
            e.set_module_resolver(BoxedResolver(r));
        }
        None => {
            e.set_module_resolver(DummyModuleResolver::new());
        }
    }
    rng::register(&mut e);
    persona::register(&mut e);
    calendar::register(&mut e);
    inputs::register(&mut e);
    e
}

struct BoxedResolver(Box<dyn ModuleResolver>);

impl ModuleResolver for BoxedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        self.0.resolve(engine, source, path, pos)
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Option<Result<rhai::AST, Box<EvalAltResult>>> {
        self.0.resolve_ast(engine, source, path, pos)
    }
}

/// A helper file a set imported, with its content (part of the set's version).
#[derive(Debug, Clone)]
pub struct ImportedFile {
    /// Path as displayed (`<behaviors>/lib/<name>.rhai`).
    pub display: String,
    /// Its source.
    pub source: String,
}

/// Resolves `import "name"` to `<behaviors>/lib/name.rhai` and nothing else, records what it
/// read, and keeps a precise error (file:line:column) for the loader.
pub struct LibResolver {
    lib_dir: PathBuf,
    lib_display: String,
    /// Sources of the files that may contain imports (main script first), to locate an import.
    sources: Mutex<Vec<(String, String)>>,
    /// Files resolved so far.
    pub imported: Arc<Mutex<Vec<ImportedFile>>>,
    /// The first error, with its real location.
    pub error: Arc<Mutex<Option<BehaviorError>>>,
}

impl LibResolver {
    /// A resolver for the behaviours folder `root`, compiling `main` (display name, source).
    pub fn new(root: &Path, main_display: &str, main_source: &str) -> Self {
        let lib_dir = root.join("lib");
        LibResolver {
            lib_display: lib_dir.display().to_string(),
            lib_dir,
            sources: Mutex::new(vec![(main_display.to_string(), main_source.to_string())]),
            imported: Arc::default(),
            error: Arc::default(),
        }
    }

    /// Where `import "path"` appears (file, line, column), for error messages.
    fn locate(&self, path: &str) -> (String, usize, usize) {
        let needle = format!("\"{path}\"");
        for (file, src) in self.sources.lock().iter() {
            for (i, line) in src.lines().enumerate() {
                if let Some(c) = line.find(&needle)
                    && line[..c].contains("import")
                {
                    let col = line.find("import").unwrap_or(c);
                    return (file.clone(), i + 1, col + 1);
                }
            }
        }
        let first = self
            .sources
            .lock()
            .first()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        (first, 0, 0)
    }

    fn fail(&self, err: BehaviorError) -> Box<EvalAltResult> {
        let msg = err.to_string();
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(err);
        }
        Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE))
    }

    fn import_error(&self, path: &str, message: String) -> Box<EvalAltResult> {
        let (file, line, column) = self.locate(path);
        self.fail(BehaviorError::Compile {
            file,
            line,
            column,
            message,
        })
    }

    fn load_ast(&self, engine: &Engine, path: &str) -> Result<rhai::AST, Box<EvalAltResult>> {
        let valid = !path.is_empty()
            && path.len() <= 64
            && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(self.import_error(
                path,
                format!(
                    "forbidden import \"{path}\": scripts may only import helpers from {} by plain name (letters, digits, `_`), e.g. `import \"dist\" as dist;`",
                    self.lib_display
                ),
            ));
        }
        let file = self.lib_dir.join(format!("{path}.rhai"));
        let display = file.display().to_string();
        // Refuse symlinks that lead out of the behaviours folder.
        let inside = match (file.canonicalize(), self.lib_dir.canonicalize()) {
            (Ok(f), Ok(d)) => f.starts_with(d),
            _ => false,
        };
        if !inside {
            return Err(self.import_error(
                path,
                format!(
                    "import \"{path}\": {display} does not exist (helpers live in {})",
                    self.lib_display
                ),
            ));
        }
        let source = std::fs::read_to_string(&file).map_err(|e| {
            self.import_error(
                path,
                format!("import \"{path}\": cannot read {display}: {e}"),
            )
        })?;
        let mut ast = engine.compile(&source).map_err(|e| {
            self.fail(BehaviorError::Compile {
                file: display.clone(),
                line: e.1.line().unwrap_or(0),
                column: e.1.position().unwrap_or(0),
                message: e.0.to_string(),
            })
        })?;
        ast.set_source(display.as_str());
        {
            let mut imported = self.imported.lock();
            if !imported.iter().any(|f| f.display == display) {
                imported.push(ImportedFile {
                    display: display.clone(),
                    source: source.clone(),
                });
            }
        }
        self.sources.lock().push((display, source));
        Ok(ast)
    }
}

impl ModuleResolver for LibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        _pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let ast = self.load_ast(engine, path)?;
        let display = ast.source().unwrap_or_default().to_string();
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(|e| {
            let err = BehaviorError::runtime(&display, "(module top level)", &e);
            self.fail(match err {
                BehaviorError::Runtime {
                    file,
                    line,
                    column,
                    message,
                    ..
                } => BehaviorError::Compile {
                    file,
                    line,
                    column,
                    message: format!("while loading the helper: {message}"),
                },
                other => other,
            })
        })?;
        Ok(module.into())
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        _pos: Position,
    ) -> Option<Result<rhai::AST, Box<EvalAltResult>>> {
        Some(self.load_ast(engine, path))
    }
}
