//! A compiled persona set: the script, compiled once, its version, and the decision calls.
//!
//! A set is the folder `<behaviors>/<name>/` with a `main.rhai` defining the six functions
//! documented in `behaviors/README.md`. Its version is a content hash of `main.rhai` and every
//! helper it imports, so each decision can record exactly which behaviour made it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Scope};
use sha2::{Digest, Sha256};

use super::calendar::Calendar;
use super::engine::{self, LibResolver};
use super::error::BehaviorError;
use super::inputs::{CartState, CatalogView, History, HistoryView, Offer, Wallet, WalletView};
use super::outputs::{
    CheckoutDecision, DayPlan, FieldError, OfferChoice, PlannedSession, Reaction, SessionPlan,
};
use super::persona::{Persona, PersonaSchema};
use super::rng::{Purpose, StreamKey};

/// The decision functions every set defines, with their parameters.
pub const FUNCTIONS: [(&str, &str); 6] = [
    ("make_persona", "vocab, rng"),
    (
        "plan_day",
        "persona, history, calendar, catalog, wallet, rng",
    ),
    (
        "plan_session",
        "persona, history, calendar, catalog, session, rng",
    ),
    (
        "choose_offers",
        "persona, history, calendar, catalog, cart, rng",
    ),
    (
        "decide_checkout",
        "persona, history, calendar, catalog, cart, rng",
    ),
    (
        "on_outcome",
        "persona, history, calendar, catalog, outcome, rng",
    ),
];

/// The engine that runs compiled sets (no resolver: compiled sets carry their imports).
static RUN_ENGINE: LazyLock<Engine> = LazyLock::new(|| engine::build(None));

/// A decision and the version of the scripts that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<T> {
    /// The validated decision.
    pub value: T,
    /// Content hash of the scripts that made it.
    pub version: Arc<str>,
}

/// What a persona generator is told about the world.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Category names (the shared vocabulary), sorted.
    pub categories: Vec<String>,
    /// Number of stores.
    pub stores: usize,
}

/// Everything about one agent a decision reads. The host owns all of it; nothing is copied
/// except reference counts.
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    /// Run seed.
    pub seed: u64,
    /// Stable agent key (`agent_001`).
    pub key: &'a str,
    /// The persona.
    pub persona: &'a Persona,
    /// The history.
    pub history: &'a Arc<History>,
    /// Active offers.
    pub wallet: &'a Wallet,
}

/// Something the host reports back to the script.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An add failed: not enough stock.
    OutOfStock {
        /// Product index.
        product: u32,
        /// Quantity asked for.
        requested: u32,
        /// Units available.
        available: u32,
    },
    /// Applying an offer was refused.
    OfferRejected {
        /// The offer (its `index` is its position in `cart.eligible`).
        offer: Offer,
        /// Index in the eligible list.
        index: usize,
        /// The server's reason.
        reason: String,
    },
    /// A request failed (network, 5xx, timeout) after the host's own retries.
    RequestFailed {
        /// The step: `view`, `add`, `apply`, `checkout`.
        step: String,
        /// HTTP status, 0 when there was no response.
        status: u16,
        /// The error.
        message: String,
    },
}

impl Outcome {
    fn to_map(&self, attempt: u32, today: chrono::NaiveDate) -> Map {
        let mut m = Map::new();
        m.insert("attempt".into(), Dynamic::from_int(i64::from(attempt)));
        match self {
            Outcome::OutOfStock {
                product,
                requested,
                available,
            } => {
                m.insert("kind".into(), "out_of_stock".into());
                m.insert("product".into(), Dynamic::from_int(i64::from(*product)));
                m.insert("requested".into(), Dynamic::from_int(i64::from(*requested)));
                m.insert("available".into(), Dynamic::from_int(i64::from(*available)));
            }
            Outcome::OfferRejected {
                offer,
                index,
                reason,
            } => {
                m.insert("kind".into(), "offer_rejected".into());
                m.insert(
                    "offer".into(),
                    Dynamic::from_map(offer.to_map(*index, today)),
                );
                m.insert("reason".into(), reason.as_str().into());
            }
            Outcome::RequestFailed {
                step,
                status,
                message,
            } => {
                m.insert("kind".into(), "request_failed".into());
                m.insert("step".into(), step.as_str().into());
                m.insert("status".into(), Dynamic::from_int(i64::from(*status)));
                m.insert("message".into(), message.as_str().into());
            }
        }
        m
    }
}

/// A compiled, validated persona set.
pub struct PersonaSet {
    name: String,
    file: String,
    files: Vec<String>,
    version: Arc<str>,
    ast: AST,
    source: String,
    schema: OnceLock<Arc<PersonaSchema>>,
}

impl std::fmt::Debug for PersonaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonaSet")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("version", &self.version)
            .finish()
    }
}

fn valid_set_name(name: &str) -> bool {
    !name.is_empty()
        && name != "lib"
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Sets present in a behaviours folder (folders with a `main.rhai`), sorted.
pub fn available_sets(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("main.rhai").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Path of a set's script.
pub fn script_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("main.rhai")
}

impl PersonaSet {
    /// Loads and compiles `<dir>/<name>/main.rhai` (with its `lib/` imports) and checks that
    /// every decision function is defined.
    pub fn load(dir: &Path, name: &str) -> Result<Self, BehaviorError> {
        if !valid_set_name(name) {
            return Err(BehaviorError::BadSetName(name.to_string()));
        }
        let path = script_path(dir, name);
        let file = path.display().to_string();
        if !path.is_file() {
            return Err(BehaviorError::UnknownSet {
                name: name.to_string(),
                path: file,
                dir: dir.display().to_string(),
                available: available_sets(dir).join(", "),
            });
        }
        let source = std::fs::read_to_string(&path).map_err(|e| BehaviorError::Io {
            path: file.clone(),
            message: e.to_string(),
        })?;
        Self::compile(dir, name, &file, &source)
    }

    /// Compiles a set from its main source (`file` is the name used in messages).
    pub fn compile(
        dir: &Path,
        name: &str,
        file: &str,
        source: &str,
    ) -> Result<Self, BehaviorError> {
        let resolver = LibResolver::new(dir, file, source);
        let imported = resolver.imported.clone();
        let resolver_error = resolver.error.clone();
        let engine = engine::build(Some(Box::new(resolver)));
        let mut ast = match engine.compile_into_self_contained(&Scope::new(), source) {
            Ok(ast) => ast,
            Err(e) => {
                if let Some(err) = resolver_error.lock().take() {
                    return Err(err);
                }
                return Err(match *e {
                    rhai::EvalAltResult::ErrorParsing(ref t, pos) => BehaviorError::Compile {
                        file: file.to_string(),
                        line: pos.line().unwrap_or(0),
                        column: pos.position().unwrap_or(0),
                        message: t.to_string(),
                    },
                    ref other => {
                        let pos = other.position();
                        BehaviorError::Compile {
                            file: file.to_string(),
                            line: pos.line().unwrap_or(0),
                            column: pos.position().unwrap_or(0),
                            message: super::error::strip_position(&other.to_string()),
                        }
                    }
                });
            }
        };
        ast.set_source(file);
        for (function, params) in FUNCTIONS {
            let arity = params.split(',').count();
            if !ast
                .iter_functions()
                .any(|f| f.name == function && f.params.len() == arity)
            {
                return Err(BehaviorError::MissingFunction {
                    file: file.to_string(),
                    function: function.to_string(),
                    params: params.to_string(),
                });
            }
        }
        let mut h = Sha256::new();
        let mut files = vec![file.to_string()];
        h.update(b"main.rhai\0");
        h.update(source.as_bytes());
        let mut libs = imported.lock().clone();
        libs.sort_by(|a, b| a.display.cmp(&b.display));
        for lib in &libs {
            let base = Path::new(&lib.display)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            h.update(b"\0lib/");
            h.update(base.as_bytes());
            h.update(b"\0");
            h.update(lib.source.as_bytes());
            files.push(lib.display.clone());
        }
        let digest = h.finalize();
        let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(PersonaSet {
            name: name.to_string(),
            file: file.to_string(),
            files,
            version: version.into(),
            ast,
            source: source.to_string(),
            schema: OnceLock::new(),
        })
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Content hash of the scripts (16 hex digits).
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// The files the version covers (main script first).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    fn call(&self, function: &str, args: Vec<Dynamic>) -> Result<Dynamic, BehaviorError> {
        let mut scope = Scope::new();
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        RUN_ENGINE
            .call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, function, args)
            .map_err(|e| {
                let mut err = BehaviorError::runtime(&self.file, function, &e);
                // Some limit errors (operations) carry no position: point at the function.
                if let BehaviorError::Runtime {
                    file, line, column, ..
                } = &mut err
                    && *line == 0
                    && *file == self.file
                    && let Some((l, c)) = self.function_line(function)
                {
                    *line = l;
                    *column = c;
                }
                err
            })
    }

    /// Line and column of `fn name(` in the main script.
    fn function_line(&self, name: &str) -> Option<(usize, usize)> {
        let needle = format!("fn {name}(");
        self.source
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(&needle).map(|c| (i + 1, c + 1)))
    }

    fn output<T>(
        &self,
        function: &str,
        r: Result<T, FieldError>,
    ) -> Result<Decision<T>, BehaviorError> {
        r.map(|value| Decision {
            value,
            version: self.version.clone(),
        })
        .map_err(|e| BehaviorError::Output {
            file: self.file.clone(),
            function: function.to_string(),
            field: e.field,
            message: e.message,
        })
    }

    /// Generates the persona of agent `key` (stream: seed, key, day 0, session 0, "persona").
    pub fn make_persona(
        &self,
        seed: u64,
        key: &str,
        vocab: &Vocab,
    ) -> Result<Persona, BehaviorError> {
        let rng = StreamKey {
            seed,
            agent: key,
            day: 0,
            session: 0,
            purpose: Purpose::Persona,
            step: 0,
        }
        .rng();
        let mut v = Map::new();
        v.insert(
            "categories".into(),
            Dynamic::from_array(
                vocab
                    .categories
                    .iter()
                    .map(|c| Dynamic::from(c.clone()))
                    .collect(),
            ),
        );
        v.insert("stores".into(), Dynamic::from_int(vocab.stores as i64));
        let out = self.call(
            "make_persona",
            vec![Dynamic::from_map(v), Dynamic::from(rng)],
        )?;
        let t = out.type_name();
        let map = out.try_cast::<Map>().ok_or_else(|| BehaviorError::Output {
            file: self.file.clone(),
            function: "make_persona".into(),
            field: "(return value)".into(),
            message: format!("must be a map of attributes, got {t}"),
        })?;
        let schema = self
            .schema
            .get_or_init(|| Arc::new(PersonaSchema::from_map(&map)));
        let persona = Persona::from_map(schema, &map).map_err(|e| BehaviorError::Output {
            file: self.file.clone(),
            function: "make_persona".into(),
            field: e.field,
            message: e.message,
        })?;
        // One vocabulary: category attributes must name catalog categories.
        for attr in schema.names() {
            if !(attr.ends_with("categories") || attr.as_str() == "category") {
                continue;
            }
            let names: Vec<String> = match persona
                .get(attr)
                .as_ref()
                .map(super::persona::dynamic_to_json)
            {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(serde_json::Value::String(s)) => vec![s],
                _ => vec![],
            };
            if let Some(bad) = names.iter().find(|n| !vocab.categories.contains(n)) {
                return Err(BehaviorError::Output {
                    file: self.file.clone(),
                    function: "make_persona".into(),
                    field: attr.to_string(),
                    message: format!(
                        "names category `{bad}`, which is not in the vocabulary (pick from vocab.categories)"
                    ),
                });
            }
        }
        Ok(persona)
    }

    fn base_args(&self, a: &Agent<'_>, cal: &Calendar, catalog: &CatalogView) -> Vec<Dynamic> {
        vec![
            Dynamic::from(a.persona.clone()),
            Dynamic::from(HistoryView {
                history: a.history.clone(),
                today: cal.date,
            }),
            Dynamic::from(cal.clone()),
            Dynamic::from(catalog.clone()),
        ]
    }

    fn key<'a>(
        a: &Agent<'a>,
        cal: &Calendar,
        session: u32,
        purpose: Purpose,
        step: u32,
    ) -> StreamKey<'a> {
        StreamKey {
            seed: a.seed,
            agent: a.key,
            // The date itself, not the day of the run: two runs over different dates draw
            // different numbers, and a resumed run draws the same.
            day: chrono::Datelike::num_days_from_ce(&cal.date) as u32,
            session,
            purpose,
            step,
        }
    }

    /// The day plan for `cal`'s day.
    pub fn plan_day(
        &self,
        a: &Agent<'_>,
        cal: &Calendar,
        catalog: &CatalogView,
    ) -> Result<Decision<DayPlan>, BehaviorError> {
        let mut args = self.base_args(a, cal, catalog);
        args.push(Dynamic::from(WalletView {
            offers: a.wallet.clone(),
            catalog: catalog.clone(),
            today: cal.date,
        }));
        args.push(Dynamic::from(Self::key(a, cal, 0, Purpose::Day, 0).rng()));
        let out = self.call("plan_day", args)?;
        self.output("plan_day", DayPlan::parse(out, catalog.0.store_count()))
    }

    /// The plan of session `number` (0-based within the day), planned as `planned`.
    pub fn plan_session(
        &self,
        a: &Agent<'_>,
        cal: &Calendar,
        catalog: &CatalogView,
        number: u32,
        planned: PlannedSession,
    ) -> Result<Decision<SessionPlan>, BehaviorError> {
        let cal = cal.at_minute(planned.minute);
        let mut s = Map::new();
        s.insert("number".into(), Dynamic::from_int(i64::from(number)));
        s.insert(
            "minute".into(),
            Dynamic::from_int(i64::from(planned.minute)),
        );
        s.insert("store".into(), Dynamic::from_int(i64::from(planned.store)));
        s.insert(
            "wallet".into(),
            Dynamic::from(WalletView {
                offers: a.wallet.clone(),
                catalog: catalog.clone(),
                today: cal.date,
            }),
        );
        let mut args = self.base_args(a, &cal, catalog);
        args.push(Dynamic::from_map(s));
        args.push(Dynamic::from(
            Self::key(a, &cal, number, Purpose::Session, 0).rng(),
        ));
        let out = self.call("plan_session", args)?;
        self.output("plan_session", SessionPlan::parse(out, catalog.0.len()))
    }

    /// Which of `cart.eligible` to apply.
    pub fn choose_offers(
        &self,
        a: &Agent<'_>,
        cal: &Calendar,
        catalog: &CatalogView,
        number: u32,
        cart: &CartState,
    ) -> Result<Decision<OfferChoice>, BehaviorError> {
        let mut args = self.base_args(a, cal, catalog);
        args.push(Dynamic::from_map(cart.to_map(&catalog.0, cal.date)));
        args.push(Dynamic::from(
            Self::key(a, cal, number, Purpose::Offers, 0).rng(),
        ));
        let out = self.call("choose_offers", args)?;
        self.output(
            "choose_offers",
            OfferChoice::parse(out, cart.eligible.len()),
        )
    }

    /// Check out or abandon.
    pub fn decide_checkout(
        &self,
        a: &Agent<'_>,
        cal: &Calendar,
        catalog: &CatalogView,
        number: u32,
        cart: &CartState,
    ) -> Result<Decision<CheckoutDecision>, BehaviorError> {
        let mut args = self.base_args(a, cal, catalog);
        args.push(Dynamic::from_map(cart.to_map(&catalog.0, cal.date)));
        args.push(Dynamic::from(
            Self::key(a, cal, number, Purpose::Checkout, 0).rng(),
        ));
        let out = self.call("decide_checkout", args)?;
        self.output("decide_checkout", CheckoutDecision::parse(out))
    }

    /// The reaction to the `attempt`-th outcome (0-based, counted per session) of session `number`.
    pub fn on_outcome(
        &self,
        a: &Agent<'_>,
        cal: &Calendar,
        catalog: &CatalogView,
        number: u32,
        outcome: &Outcome,
        attempt: u32,
    ) -> Result<Decision<Reaction>, BehaviorError> {
        let mut args = self.base_args(a, cal, catalog);
        args.push(Dynamic::from_map(outcome.to_map(attempt, cal.date)));
        args.push(Dynamic::from(
            Self::key(a, cal, number, Purpose::Outcome, attempt).rng(),
        ));
        let out = self.call("on_outcome", args)?;
        self.output("on_outcome", Reaction::parse(out, catalog.0.len()))
    }
}
