//! The schema as data: one description of every table, rendered as DDL for PostgreSQL and
//! SQLite and used again by `shopsim migrate --check` to judge an existing database.
//!
//! Contract tables are the VoiceOffers tables with the contract's PostgreSQL types; columns
//! marked `extension` are shopsim additions that a real VoiceOffers database may lack (nothing
//! requires them there). Tables starting with `sim_` belong to shopsim.

/// A column's logical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// UUID (text on SQLite).
    Uuid,
    /// Unbounded text.
    Text,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    BigInt,
    /// Auto-incrementing integer primary key.
    Serial,
    /// Boolean (0/1 on SQLite).
    Bool,
    /// DECIMAL(10,2) on PostgreSQL, integer cents on SQLite.
    Money,
    /// Double precision (persona traits, shares).
    Float,
    /// TIMESTAMPTZ (fixed-width UTC text on SQLite).
    Timestamp,
    /// DATE.
    Date,
    /// JSONB (text on SQLite).
    Json,
}

impl Ty {
    /// The PostgreSQL column type.
    pub fn postgres(self) -> &'static str {
        match self {
            Ty::Uuid => "UUID",
            Ty::Text => "TEXT",
            Ty::Int => "INTEGER",
            Ty::BigInt => "BIGINT",
            Ty::Serial => "SERIAL",
            Ty::Bool => "BOOLEAN",
            Ty::Money => "DECIMAL(10,2)",
            Ty::Float => "DOUBLE PRECISION",
            Ty::Timestamp => "TIMESTAMPTZ",
            Ty::Date => "DATE",
            Ty::Json => "JSONB",
        }
    }

    /// The SQLite column type (chosen for its affinity: money must stay INTEGER, never REAL).
    pub fn sqlite(self) -> &'static str {
        match self {
            Ty::Uuid | Ty::Text | Ty::Timestamp | Ty::Date | Ty::Json => "TEXT",
            Ty::Int | Ty::BigInt | Ty::Serial | Ty::Bool | Ty::Money => "INTEGER",
            Ty::Float => "REAL",
        }
    }

    /// PostgreSQL `information_schema.columns.udt_name` values this type accepts in an existing
    /// database (a real database may use a wider or older type that still works).
    pub fn postgres_compatible(self) -> &'static [&'static str] {
        match self {
            Ty::Uuid => &["uuid"],
            Ty::Text => &["text", "varchar", "bpchar", "citext"],
            Ty::Int | Ty::BigInt | Ty::Serial => &["int2", "int4", "int8"],
            Ty::Bool => &["bool"],
            Ty::Money => &["numeric"],
            Ty::Float => &["float4", "float8", "numeric"],
            Ty::Timestamp => &["timestamptz", "timestamp"],
            Ty::Date => &["date", "timestamptz", "timestamp"],
            Ty::Json => &["jsonb", "json", "text"],
        }
    }
}

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    /// Column name.
    pub name: &'static str,
    /// Logical type.
    pub ty: Ty,
    /// NOT NULL.
    pub not_null: bool,
    /// Portable SQL default expression.
    pub default: Option<&'static str>,
    /// Single-column primary key.
    pub pk: bool,
    /// UNIQUE.
    pub unique: bool,
    /// `REFERENCES table(column)`.
    pub references: Option<(&'static str, &'static str)>,
    /// CHECK expression.
    pub check: Option<&'static str>,
    /// A shopsim addition to a contract table: created with the table, never required.
    pub extension: bool,
}

const fn col(name: &'static str, ty: Ty) -> Col {
    Col {
        name,
        ty,
        not_null: false,
        default: None,
        pk: false,
        unique: false,
        references: None,
        check: None,
        extension: false,
    }
}

impl Col {
    const fn nn(mut self) -> Self {
        self.not_null = true;
        self
    }
    const fn pk(mut self) -> Self {
        self.pk = true;
        self.not_null = true;
        self
    }
    const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    const fn default(mut self, expr: &'static str) -> Self {
        self.default = Some(expr);
        self
    }
    const fn refs(mut self, table: &'static str, column: &'static str) -> Self {
        self.references = Some((table, column));
        self
    }
    const fn check(mut self, expr: &'static str) -> Self {
        self.check = Some(expr);
        self
    }
    const fn ext(mut self) -> Self {
        self.extension = true;
        self
    }
}

/// One table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Table name.
    pub name: &'static str,
    /// Columns in order.
    pub cols: &'static [Col],
    /// Composite primary key, if any.
    pub primary_key: &'static [&'static str],
    /// Composite unique constraints.
    pub uniques: &'static [&'static [&'static str]],
    /// Indexes: (name, columns).
    pub indexes: &'static [(&'static str, &'static [&'static str])],
    /// A VoiceOffers contract table (never dropped or altered) rather than one of shopsim's.
    pub contract: bool,
}

use Ty::*;

/// The VoiceOffers contract tables, in dependency order.
pub const CONTRACT_TABLES: &[Table] = &[
    Table {
        name: "users",
        cols: &[
            col("id", Uuid).pk(),
            col("email", Text).nn().unique(),
            col("full_name", Text),
            col("created_at", Timestamp).nn(),
            col("updated_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "agents",
        cols: &[
            col("id", Uuid).pk(),
            col("agent_id", Text).nn().unique(),
            col("user_id", Uuid).nn().unique().refs("users", "id"),
            col("is_active", Bool).nn().default("TRUE"),
            col("age", Int),
            col("age_group", Text),
            col("gender", Text),
            col("income_bracket", Text),
            col("household_size", Int),
            col("has_children", Bool),
            col("location_region", Text),
            col("price_sensitivity", Float),
            col("brand_loyalty", Float),
            col("impulsivity", Float),
            col("tech_savviness", Float),
            col("coupon_affinity", Float),
            col("preferred_categories", Text),
            col("weekly_budget", Money),
            col("shopping_frequency", Text),
            col("avg_cart_value", Money),
            col("pref_day_weekday", Float),
            col("pref_day_saturday", Float),
            col("pref_day_sunday", Float),
            col("pref_time_morning", Float),
            col("pref_time_afternoon", Float),
            col("pref_time_evening", Float),
            col("deal_seeking_behavior", Text),
            col("backstory", Text),
            col("created_at", Timestamp).nn(),
            col("updated_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "stores",
        cols: &[col("id", Uuid).pk(), col("name", Text).nn().unique()],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "products",
        cols: &[
            col("id", Uuid).pk(),
            col("name", Text).nn(),
            col("description", Text),
            col("price", Money).nn(),
            col("rating", Float),
            col("review_count", Int),
            col("category", Text).nn(),
            col("brand", Text),
            col("in_stock", Bool).nn().default("TRUE"),
            col("sku", Text).unique().ext(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[
            ("idx_products_category", &["category"]),
            ("idx_products_brand", &["brand"]),
        ],
        contract: true,
    },
    Table {
        name: "store_inventory",
        cols: &[
            col("store_id", Uuid).nn().refs("stores", "id"),
            col("product_id", Uuid).nn().refs("products", "id"),
            col("quantity", Int)
                .nn()
                .default("0")
                .check("quantity >= 0"),
        ],
        primary_key: &[],
        uniques: &[&["store_id", "product_id"]],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "coupons",
        cols: &[
            col("id", Uuid).pk(),
            col("type", Text)
                .nn()
                .check("type IN ('frontstore', 'category', 'brand')"),
            col("discount_details", Text),
            col("category_or_brand", Text),
            col("discount_type", Text)
                .nn()
                .check("discount_type IN ('percent', 'fixed', 'bogo', 'free_shipping')"),
            col("discount_value", Money).nn(),
            col("min_purchase_amount", Money),
            col("max_discount", Money),
            col("expiration_date", Timestamp),
            col("is_active", Bool).nn().default("TRUE"),
            col("code", Text).unique().ext(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "offer_cycles",
        cols: &[
            col("id", Uuid).pk(),
            col("cycle_number", Int).nn(),
            col("started_at", Timestamp).nn(),
            col("ends_at", Timestamp).nn(),
            col("is_simulation", Bool).nn().default("FALSE"),
            col("holdout_percentage", Float),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "user_coupons",
        cols: &[
            col("id", Serial).pk(),
            col("user_id", Uuid).nn().refs("users", "id"),
            col("coupon_id", Uuid).nn().refs("coupons", "id"),
            col("assigned_at", Timestamp).nn(),
            col("eligible_until", Timestamp),
            col("status", Text)
                .nn()
                .default("'active'")
                .check("status IN ('active', 'expired', 'used', 'removed')"),
            col("offer_cycle_id", Uuid),
            col("is_simulation", Bool).nn().default("FALSE"),
            col("order_id", Uuid),
            col("redeemed_at", Timestamp),
        ],
        primary_key: &[],
        uniques: &[&["user_id", "coupon_id"]],
        indexes: &[("idx_user_coupons_user_status", &["user_id", "status"])],
        contract: true,
    },
    Table {
        name: "user_offer_cycles",
        cols: &[
            col("user_id", Uuid).pk().refs("users", "id"),
            col("current_cycle_id", Uuid),
            col("last_refresh_at", Timestamp),
            col("next_refresh_at", Timestamp),
            col("is_holdout", Bool).nn().default("FALSE"),
            col("is_simulation", Bool).nn().default("FALSE"),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "cart_items",
        cols: &[
            col("id", Uuid).pk(),
            col("user_id", Uuid).nn().refs("users", "id"),
            col("store_id", Uuid).nn().refs("stores", "id"),
            col("product_id", Uuid).nn().refs("products", "id"),
            col("quantity", Int).nn().check("quantity > 0"),
            col("created_at", Timestamp),
            col("updated_at", Timestamp),
        ],
        primary_key: &[],
        uniques: &[&["user_id", "store_id", "product_id"]],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "cart_coupons",
        cols: &[
            col("user_id", Uuid).nn().refs("users", "id"),
            col("coupon_id", Uuid).nn().refs("coupons", "id"),
            col("created_at", Timestamp),
        ],
        primary_key: &[],
        uniques: &[&["user_id", "coupon_id"]],
        indexes: &[],
        contract: true,
    },
    Table {
        name: "shopping_sessions",
        cols: &[
            col("id", Uuid).pk(),
            col("user_id", Uuid).nn().refs("users", "id"),
            col("store_id", Uuid),
            col("status", Text).nn().default("'active'"),
            col("started_at", Timestamp).nn(),
            col("last_seen_at", Timestamp),
            col("ended_at", Timestamp),
            col("is_simulated", Bool).nn().default("FALSE"),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[("idx_shopping_sessions_user", &["user_id", "started_at"])],
        contract: true,
    },
    Table {
        name: "shopping_session_events",
        cols: &[
            col("id", Uuid).pk(),
            col("session_id", Uuid).nn().refs("shopping_sessions", "id"),
            col("user_id", Uuid).nn(),
            col("event_type", Text).nn(),
            col("payload", Json),
            col("created_at", Timestamp).nn(),
            col("is_simulated", Bool).nn().default("FALSE"),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[
            ("idx_session_events_session", &["session_id", "created_at"]),
            ("idx_session_events_user", &["user_id", "created_at"]),
        ],
        contract: true,
    },
    Table {
        name: "orders",
        cols: &[
            col("id", Uuid).pk(),
            col("user_id", Uuid).nn().refs("users", "id"),
            col("store_id", Uuid),
            col("subtotal", Money).nn(),
            col("discount_total", Money).nn(),
            col("final_total", Money).nn(),
            col("status", Text).nn(),
            col("item_count", Int).nn(),
            col("shopping_session_id", Uuid),
            col("is_simulated", Bool).nn().default("FALSE"),
            col("created_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[
            ("idx_orders_user_created", &["user_id", "created_at"]),
            ("idx_orders_session", &["shopping_session_id"]),
        ],
        contract: true,
    },
    Table {
        name: "order_items",
        cols: &[
            col("id", Uuid).pk(),
            col("order_id", Uuid).nn().refs("orders", "id"),
            col("product_id", Uuid).nn(),
            col("product_name", Text).nn(),
            col("product_price", Money).nn(),
            col("quantity", Int).nn(),
            col("applied_coupon_id", Uuid),
            col("discount_amount", Money).nn(),
            col("line_total", Money).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[("idx_order_items_order", &["order_id"])],
        contract: true,
    },
];

/// shopsim's own tables.
pub const SIM_TABLES: &[Table] = &[
    // The reference server's store selection (PUT /api/user/store).
    Table {
        name: "sim_user_stores",
        cols: &[
            col("user_id", Uuid).pk(),
            col("store_id", Uuid).nn(),
            col("updated_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Idempotency records of the reference server: one per (user, key).
    Table {
        name: "sim_idempotency",
        cols: &[
            col("user_id", Uuid).nn(),
            col("idem_key", Text).nn(),
            col("request_hash", Text).nn(),
            col("state", Text).nn(),
            col("status_code", Int),
            col("response", Text),
            col("created_at", Timestamp).nn(),
        ],
        primary_key: &["user_id", "idem_key"],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Restocking at simulated midnight: one row per simulated day done.
    Table {
        name: "sim_restocks",
        cols: &[
            col("day", Date).pk(),
            col("level", Int).nn(),
            col("rows_restocked", BigInt).nn(),
            col("done_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Personas as generated by a persona set (ground truth for exports).
    Table {
        name: "sim_personas",
        cols: &[
            col("agent_id", Text).nn(),
            col("persona_set", Text).nn(),
            col("seed", BigInt).nn(),
            col("script_version", Text).nn(),
            col("attributes", Json).nn(),
            col("created_at", Timestamp).nn(),
        ],
        primary_key: &["agent_id", "persona_set"],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Simulation runs and their immutable configuration.
    Table {
        name: "sim_runs",
        cols: &[
            col("run_id", Text).pk(),
            col("status", Text).nn(),
            col("config", Json).nn(),
            col("seed", BigInt).nn(),
            col("persona_set", Text).nn(),
            col("agents", BigInt).nn(),
            col("sim_start", Timestamp).nn(),
            col("sim_end", Timestamp).nn(),
            col("checkpoint_at", Timestamp),
            col("clock", Json),
            col("created_at", Timestamp).nn(),
            col("updated_at", Timestamp).nn(),
            col("finished_at", Timestamp),
        ],
        primary_key: &[],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // One agent's decision for one simulated day ("should shop today"), recorded before acting.
    Table {
        name: "sim_agent_days",
        cols: &[
            col("run_id", Text).nn(),
            col("agent_id", Text).nn(),
            col("sim_date", Date).nn(),
            col("shops", Bool).nn(),
            col("plan", Json).nn(),
            col("script_version", Text).nn(),
            col("created_at", Timestamp).nn(),
        ],
        primary_key: &["run_id", "agent_id", "sim_date"],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Planned shopping sessions and how far each got.
    Table {
        name: "sim_sessions",
        cols: &[
            col("session_id", Uuid).pk(),
            col("run_id", Text).nn(),
            col("agent_id", Text).nn(),
            col("sim_date", Date).nn(),
            col("seq", Int).nn(),
            col("planned_at", Timestamp).nn(),
            col("status", Text).nn(),
            col("steps_done", Int).nn().default("0"),
            col("outcome", Json),
            col("updated_at", Timestamp).nn(),
        ],
        primary_key: &[],
        uniques: &[&["run_id", "agent_id", "sim_date", "seq"]],
        indexes: &[("idx_sim_sessions_run_status", &["run_id", "status"])],
        contract: false,
    },
    // The shards of a run: one row per shard, its lease (owner, fencing number, heartbeat) and
    // its progress. A single-process run is shard 0 of 1.
    Table {
        name: "sim_shards",
        cols: &[
            col("run_id", Text).nn(),
            col("shard", Int).nn(),
            col("shards", Int).nn(),
            col("status", Text).nn(),
            col("owner", Text).nn(),
            col("fence", BigInt).nn(),
            col("heartbeat_at", Timestamp).nn(),
            col("lease_until", Timestamp).nn(),
            col("checkpoint_at", Timestamp),
            col("sim_time", Timestamp),
            col("lag_p99_ms", Float),
            col("sessions_ended", BigInt).nn().default("0"),
            col("started_at", Timestamp).nn(),
        ],
        primary_key: &["run_id", "shard"],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
    // Per-interval metrics and serialised HDR latency histograms of a run (per shard).
    Table {
        name: "sim_metrics",
        cols: &[
            col("run_id", Text).nn(),
            col("shard", Int).nn(),
            col("seq", BigInt).nn(),
            col("sim_time", Timestamp).nn(),
            col("wall_time", Timestamp).nn(),
            col("counters", Json).nn(),
            col("histograms", Text),
        ],
        primary_key: &["run_id", "shard", "seq"],
        uniques: &[],
        indexes: &[],
        contract: false,
    },
];

/// Every table shopsim knows, contract tables first.
pub fn all_tables() -> impl Iterator<Item = &'static Table> {
    CONTRACT_TABLES.iter().chain(SIM_TABLES.iter())
}

/// Which dialect to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// `CREATE TABLE IF NOT EXISTS …` and its indexes for one table.
pub fn create_statements(table: &Table, dialect: Dialect) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in table.cols {
        let mut s = String::new();
        let ty = match dialect {
            Dialect::Postgres => c.ty.postgres(),
            Dialect::Sqlite => c.ty.sqlite(),
        };
        s.push_str(&format!("{} {}", quote(c.name), ty));
        if c.pk {
            s.push_str(" PRIMARY KEY");
            if c.ty == Ty::Serial && dialect == Dialect::Sqlite {
                s.push_str(" AUTOINCREMENT");
            }
        }
        if c.not_null && !c.pk {
            s.push_str(" NOT NULL");
        }
        if c.unique {
            s.push_str(" UNIQUE");
        }
        if let Some(d) = c.default {
            let d = match (dialect, d) {
                (Dialect::Sqlite, "TRUE") => "1",
                (Dialect::Sqlite, "FALSE") => "0",
                (_, d) => d,
            };
            s.push_str(&format!(" DEFAULT {d}"));
        }
        if let Some((t, col)) = c.references {
            s.push_str(&format!(" REFERENCES {}({})", quote(t), quote(col)));
        }
        if let Some(chk) = c.check {
            s.push_str(&format!(" CHECK ({chk})"));
        }
        parts.push(s);
    }
    if !table.primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", join(table.primary_key)));
    }
    for u in table.uniques {
        parts.push(format!("UNIQUE ({})", join(u)));
    }
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
        quote(table.name),
        parts.join(",\n  ")
    )];
    for (name, cols) in table.indexes {
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote(name),
            quote(table.name),
            join(cols)
        ));
    }
    out
}

fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

fn join(cols: &[&str]) -> String {
    cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_never_real_on_sqlite() {
        for t in all_tables() {
            for c in t.cols {
                if c.ty == Ty::Money {
                    assert_eq!(c.ty.sqlite(), "INTEGER", "{}.{}", t.name, c.name);
                }
            }
        }
    }

    #[test]
    fn renders_both_dialects() {
        let users = &CONTRACT_TABLES[0];
        let pg = create_statements(users, Dialect::Postgres).join(";");
        assert!(
            pg.contains("\"id\" UUID PRIMARY KEY") && pg.contains("TIMESTAMPTZ NOT NULL"),
            "{pg}"
        );
        let uc = CONTRACT_TABLES
            .iter()
            .find(|t| t.name == "user_coupons")
            .unwrap();
        let lite = create_statements(uc, Dialect::Sqlite).join(";");
        assert!(lite.contains("INTEGER PRIMARY KEY AUTOINCREMENT"), "{lite}");
        assert!(
            lite.contains("DEFAULT 0") && lite.contains("UNIQUE (\"user_id\", \"coupon_id\")"),
            "{lite}"
        );
        for t in all_tables() {
            assert_eq!(t.contract, !t.name.starts_with("sim_"), "{}", t.name);
        }
    }
}
