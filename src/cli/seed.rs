//! `shopsim seed`: migrate if needed, write the catalog (generated, or from a CSV file) and
//! create agent users.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;

use super::common::DbArgs;
use crate::behavior::{BehaviorError, PersonaSet, population};
use crate::catalog::{self, AgentOptions, CatalogSpec, PersonaSource};
use crate::store;
use parking_lot::Mutex;

/// Write the catalog and agents (idempotent: seeding again with the same flags inserts nothing).
#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    db: DbArgs,

    /// Seed of every generated id and value: the same seed gives the identical catalog and
    /// agents, a different seed a different catalog.
    #[arg(long, env = "SHOPSIM_SEED", default_value_t = 42)]
    seed: u64,

    /// Load products from this CSV file instead of generating them (columns
    /// sku,name,category,brand,price required; description,rating,review_count,in_stock
    /// optional; see docs/catalog-csv.md). Stores, inventory and coupons are still generated
    /// from --seed around the file's products.
    #[arg(long, value_name = "FILE.csv")]
    catalog: Option<PathBuf>,

    /// Number of stores to generate.
    #[arg(long, default_value_t = CatalogSpec::default().stores)]
    stores: usize,

    /// Number of products to generate (not allowed with --catalog, which brings its own).
    #[arg(long, default_value_t = CatalogSpec::default().products, conflicts_with = "catalog")]
    products: usize,

    /// Number of coupons to generate (all kinds and discount types).
    #[arg(long, default_value_t = CatalogSpec::default().coupons)]
    coupons: usize,

    /// Number of agent users to create: agent_001 … agent_<N>. Existing agents are kept.
    #[arg(long, default_value_t = 0)]
    agents: u64,

    /// Agents per write transaction (progress is reported after each).
    #[arg(long, default_value_t = catalog::agents::DEFAULT_BATCH)]
    agent_batch: usize,

    /// Simulated instant stamped as created_at/updated_at of the users and agents (RFC 3339).
    #[arg(long, default_value = "2025-01-01T00:00:00Z", value_parser = parse_instant)]
    created_at: DateTime<Utc>,

    /// Persona set (a folder of --behaviors) that generates the new agents' personas, stored
    /// with them (agent columns where names match, the full attributes in sim_personas).
    /// Without it agents are created without persona attributes.
    #[arg(long, env = "SHOPSIM_PERSONA_SET", value_name = "NAME")]
    persona_set: Option<String>,

    /// Folder of persona sets (imports resolve only inside it).
    #[arg(
        long,
        env = "SHOPSIM_BEHAVIORS",
        default_value = "behaviors",
        value_name = "DIR"
    )]
    behaviors: PathBuf,

    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 instant ({e}); use e.g. 2025-01-01T00:00:00Z")
        })
}

pub async fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let spec = CatalogSpec {
        stores: args.stores,
        products: args.products,
        coupons: args.coupons,
        ..CatalogSpec::default()
    };
    // Build (and validate) the catalog before touching the database.
    let catalog = match &args.catalog {
        Some(path) => catalog::catalog_from_csv(path, args.seed, &spec)?,
        None => catalog::generate_with(args.seed, &spec)?,
    };
    // Compile the persona set (and make one persona) before touching the database, so a broken
    // script fails fast with its file:line:column.
    let persona_set = match &args.persona_set {
        Some(name) => {
            let set = PersonaSet::load(&args.behaviors, name)?;
            let vocab = population::vocab(catalog.stores.len());
            set.make_persona(args.seed, &catalog::agent_name(1), &vocab)?;
            Some((set, vocab))
        }
        None => None,
    };
    let db = args.db.connect().await?;
    let migrated = store::migrate(&db)
        .await
        .context("creating missing tables before seeding")?;
    let started = Instant::now();
    let loaded = catalog::seed_catalog(&db, &catalog)
        .await
        .context("writing the catalog")?;

    // Personas are made per agent as it is inserted (a million agents never sit in memory as
    // JSON); the first script error is kept and fails the command.
    let persona_error: Mutex<Option<BehaviorError>> = Mutex::new(None);
    let make_persona = persona_set
        .as_ref()
        .map(|(set, vocab)| population::persona_source(set, args.seed, vocab, &persona_error));
    let personas: Option<PersonaSource<'_>> = make_persona.as_ref().map(|f| f as PersonaSource<'_>);
    let opts = AgentOptions {
        batch_size: args.agent_batch.max(1),
        ..AgentOptions::new(args.seed, args.agents, args.created_at)
    };
    let show_progress = args.agents > opts.batch_size as u64;
    let progress = |done: u64, total: u64| {
        if show_progress {
            tracing::info!(done, total, "agents created");
        }
    };
    let agents = catalog::create_agents(&db, &opts, personas, &progress)
        .await
        .context("creating agents")?;
    if let Some(e) = persona_error.lock().take() {
        return Err(anyhow::Error::new(e)
            .context("generating personas (agents created before the error were kept)"));
    }
    let elapsed = started.elapsed();

    if args.json {
        let v = serde_json::json!({
            "database": db.url().to_string(),
            "seed": args.seed,
            "catalog_file": args.catalog.as_ref().map(|p| p.display().to_string()),
            "tables_created": migrated.created,
            "catalog": loaded,
            "agents": agents,
            "seconds": elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("database: {}", db.url());
        if !migrated.created.is_empty() {
            println!("created {} table(s) first", migrated.created.len());
        }
        match &args.catalog {
            Some(p) => println!("seed {} with products from {}", args.seed, p.display()),
            None => println!("seed {} (generated catalog)", args.seed),
        }
        for (table, t) in loaded.tables() {
            println!(
                "  {table:<16} inserted {:>7}  already there {:>7}",
                t.inserted, t.existing
            );
        }
        println!(
            "  {:<16} inserted {:>7}  already there {:>7}",
            "agents", agents.agents_inserted, agents.agents_existing
        );
        if agents.personas_inserted > 0 {
            println!("  personas inserted {}", agents.personas_inserted);
        }
        println!(
            "inserted {} row(s) in {:.2}s",
            loaded.inserted()
                + agents.users_inserted
                + agents.agents_inserted
                + agents.personas_inserted,
            elapsed.as_secs_f64()
        );
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
