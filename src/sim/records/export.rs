//! `shopsim export RUN_ID`: the run's dataset for analysts and model training, as CSV or JSON
//! lines, byte-identical for the same dataset on SQLite and PostgreSQL.
//!
//! Files (each `<name>.csv` or `<name>.jsonl`):
//! - `agents`: agent id, persona set, script version, holdout flag and the persona's
//!   attributes (ground truth from `sim_personas`; in CSV flattened to sorted `persona.*`
//!   columns, in JSON lines one `persona` object);
//! - `sessions`: every planned session with how far it got and the shop's view of it;
//! - `events`: every session event, payload ids replaced by natural keys;
//! - `orders` and `order_items`;
//! - `offers`: offer assignments with shown / applied / redeemed and the holdout flag.
//!
//! Rows are sorted canonically: agent (by number), simulated time, then a sequence (event
//! number in its session, SKU, coupon code). Generated ids never appear: agents are
//! `agent_001`, products their SKU, coupons their code, stores their name, sessions their
//! (date, number) in the agent's plan, orders their (agent, time).
//!
//! Rows are streamed: agents are taken in chunks and each chunk's rows are read in pages with
//! keyset pagination, so memory stays bounded however long the run was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sea_orm::Value;
use serde_json::Value as Json;
use uuid::Uuid;

use super::RecordsError;
use super::format::{Cell, Format, TableWriter, canonical_json, flatten};
use super::runs::{RunRecord, require_run};
use super::scope::{NaturalKeys, RunAgent, agents_cte, run_agents};
use crate::ids;
use crate::store::{Db, Row, Tx};

/// How an export reads: agents per chunk and rows per page. The defaults suit any run size;
/// tests use tiny values to exercise page boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Agents per chunk (three statement parameters each).
    pub agent_chunk: usize,
    /// Rows per page.
    pub page: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            agent_chunk: 50,
            page: 2000,
        }
    }
}
/// Largest event number searched for when recovering an event's number from its id.
const MAX_EVENT_SEQ: usize = 4096;

/// The files of an export, in the order written.
pub const FILES: [&str; 6] = [
    "agents",
    "sessions",
    "events",
    "orders",
    "order_items",
    "offers",
];

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    /// The run.
    pub run_id: String,
    /// The directory written.
    pub dir: PathBuf,
    /// The format.
    pub format: Format,
    /// Each file with its row count, in the order written.
    pub files: Vec<(String, u64)>,
}

/// Writes the run's dataset into `out` (created if missing; files of the same names are
/// replaced).
pub async fn export_run(
    db: &Db,
    run_id: &str,
    format: Format,
    out: &Path,
) -> Result<ExportReport, RecordsError> {
    export_run_with(db, run_id, format, out, ExportOptions::default()).await
}

/// [`export_run`] with explicit chunk and page sizes (the output does not depend on them).
pub async fn export_run_with(
    db: &Db,
    run_id: &str,
    format: Format,
    out: &Path,
    options: ExportOptions,
) -> Result<ExportReport, RecordsError> {
    let options = ExportOptions {
        agent_chunk: options.agent_chunk.clamp(1, 1000),
        page: options.page.max(1),
    };
    let run = require_run(db, run_id).await?;
    std::fs::create_dir_all(out).map_err(|e| RecordsError::io(out, e))?;
    let tx = db.read().await?;
    let agents = run_agents(&tx, run_id).await?;
    let keys = NaturalKeys::load(&tx).await?;
    let ctx = Ctx {
        tx: &tx,
        run: &run,
        agents: &agents,
        keys: &keys,
        format,
        dir: out,
        options,
    };
    let mut files = Vec::with_capacity(6);
    for name in FILES {
        let started = std::time::Instant::now();
        let rows = match name {
            "agents" => ctx.agents_file().await?,
            "sessions" => ctx.sessions_file().await?,
            "events" => ctx.events_file().await?,
            "orders" => ctx.orders_file().await?,
            "order_items" => ctx.order_items_file().await?,
            _ => ctx.offers_file().await?,
        };
        tracing::debug!(
            file = name,
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "exported"
        );
        files.push((name.to_string(), rows));
    }
    tx.commit().await?;
    Ok(ExportReport {
        run_id: run_id.to_string(),
        dir: out.to_path_buf(),
        format,
        files,
    })
}

/// The type of a keyset column, to carry its last value into the next page.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Int,
    Ts,
    Uuid,
    Date,
}

/// One column of a keyset: its SQL expression and the alias it is selected as.
struct Key {
    expr: &'static str,
    alias: &'static str,
    kind: KeyKind,
}

const fn key(expr: &'static str, alias: &'static str, kind: KeyKind) -> Key {
    Key { expr, alias, kind }
}

/// Runs `select` (which must end in a `WHERE` condition) page by page in the order of `keys`,
/// calling `each` for every row.
async fn paged(
    tx: &Tx,
    page: usize,
    select: &str,
    values: &[Value],
    keys: &[Key],
    mut each: impl FnMut(&Row) -> Result<(), RecordsError>,
) -> Result<(), RecordsError> {
    let codec = tx.codec();
    let order = keys.iter().map(|k| k.expr).collect::<Vec<_>>().join(", ");
    let mut last: Option<Vec<Value>> = None;
    loop {
        let mut sql = select.to_string();
        let mut params = values.to_vec();
        if let Some(last) = &last {
            let first = params.len() + 1;
            let marks = (0..last.len())
                .map(|i| format!("${}", first + i))
                .collect::<Vec<_>>()
                .join(", ");
            // The row comparison alone would not let the planner skip earlier agents: repeat
            // the first key (always the agent position) as a plain bound.
            sql.push_str(&format!(
                " AND {} >= ${first} AND ({order}) > ({marks})",
                keys[0].expr
            ));
            params.extend(last.iter().cloned());
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {page}"));
        let rows = tx.query(&sql, params).await?;
        for r in &rows {
            each(r)?;
        }
        let Some(tail) = rows.last() else { break };
        let mut next = Vec::with_capacity(keys.len());
        for k in keys {
            next.push(match k.kind {
                KeyKind::Int => Value::from(tail.i64(k.alias)?),
                KeyKind::Ts => codec.ts(tail.ts(k.alias)?),
                KeyKind::Uuid => codec.uuid(tail.uuid(k.alias)?),
                KeyKind::Date => codec.date(tail.date(k.alias)?),
            });
        }
        last = Some(next);
        if rows.len() < page {
            break;
        }
    }
    Ok(())
}

/// Rows that share a group key (e.g. the same agent and instant) are buffered and written
/// sorted by their sort key once the group is complete.
struct Grouped<K: PartialEq, S: Ord> {
    key: Option<K>,
    rows: Vec<(S, Vec<Cell>)>,
}

impl<K: PartialEq, S: Ord> Grouped<K, S> {
    fn new() -> Self {
        Self {
            key: None,
            rows: Vec::new(),
        }
    }

    fn push<W: std::io::Write>(
        &mut self,
        key: K,
        sort: S,
        cells: Vec<Cell>,
        w: &mut TableWriter<W>,
    ) -> std::io::Result<()> {
        if self.key.as_ref() != Some(&key) {
            self.flush(w)?;
            self.key = Some(key);
        }
        self.rows.push((sort, cells));
        Ok(())
    }

    fn flush<W: std::io::Write>(&mut self, w: &mut TableWriter<W>) -> std::io::Result<()> {
        self.rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, cells) in self.rows.drain(..) {
            w.write(&cells)?;
        }
        Ok(())
    }
}

/// Recovers an event's number in its session from its id (`child_uuid(session, "event", n)`,
/// as the domain writes it). Ids written by another server are not derivable: `None`.
struct EventSeq {
    session: Option<Uuid>,
    ids: Vec<Uuid>,
}

impl EventSeq {
    fn new() -> Self {
        Self {
            session: None,
            ids: Vec::new(),
        }
    }

    fn of(&mut self, session: Uuid, event: Uuid) -> Option<u64> {
        if self.session != Some(session) {
            self.session = Some(session);
            self.ids.clear();
        }
        loop {
            if let Some(i) = self.ids.iter().position(|id| *id == event) {
                return Some(i as u64 + 1);
            }
            if self.ids.len() >= MAX_EVENT_SEQ {
                return None;
            }
            let target = (self.ids.len() * 2).clamp(32, MAX_EVENT_SEQ);
            for n in self.ids.len() + 1..=target {
                self.ids
                    .push(ids::child_uuid(&session, "event", &n.to_string()));
            }
        }
    }
}

/// Rewrites an event payload with natural keys: `product_id` → `sku`, `coupon_id` → `code`,
/// `eligible_ids` / `ineligible_ids` → sorted `eligible_codes` / `ineligible_codes`, and
/// `order_id` dropped (an order is known by its agent and time, the event's).
fn natural_payload(payload: &Json, keys: &NaturalKeys) -> Json {
    let Json::Object(map) = payload else {
        return payload.clone();
    };
    let parse = |v: &Json| v.as_str().and_then(|s| s.parse::<Uuid>().ok());
    let blank = |v: Option<&Json>| match v {
        None | Some(Json::Null) => true,
        Some(Json::String(s)) => s.is_empty(),
        _ => false,
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        match k.as_str() {
            "product_id" | "coupon_id" | "order_id" => {}
            "eligible_ids" | "ineligible_ids" => {
                let mut codes: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(parse)
                    .map(|id| keys.code_of(id))
                    .collect();
                codes.sort();
                let name = k.replace("_ids", "_codes");
                out.insert(name, Json::from(codes));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(id) = map.get("product_id").and_then(parse)
        && blank(out.get("sku"))
    {
        out.insert("sku".into(), Json::from(keys.sku_of(id)));
    }
    if let Some(id) = map.get("coupon_id").and_then(parse)
        && blank(out.get("code"))
    {
        out.insert("code".into(), Json::from(keys.code_of(id)));
    }
    Json::Object(out)
}

/// Everything one export needs.
struct Ctx<'a> {
    tx: &'a Tx,
    run: &'a RunRecord,
    agents: &'a [RunAgent],
    keys: &'a NaturalKeys,
    format: Format,
    dir: &'a Path,
    options: ExportOptions,
}

type Out = TableWriter<BufWriter<File>>;

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RecordsError + '_ {
    move |e| RecordsError::io(path, e)
}

impl<'a> Ctx<'a> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.{}", self.format.extension()))
    }

    fn writer(&self, name: &str, columns: Vec<String>) -> Result<(Out, PathBuf), RecordsError> {
        let path = self.path(name);
        let file = File::create(&path).map_err(|e| RecordsError::io(&path, e))?;
        let w = TableWriter::new(self.format, columns, BufWriter::new(file))
            .map_err(|e| RecordsError::io(&path, e))?;
        Ok((w, path))
    }

    /// Agent chunks: (first position, agents).
    fn chunks(&self) -> impl Iterator<Item = (usize, &'a [RunAgent])> + 'a {
        let n = self.options.agent_chunk;
        self.agents
            .chunks(n)
            .enumerate()
            .map(move |(i, c)| (i * n, c))
    }

    /// `(cte, values)` for a chunk, with `$1` = run id and `$2` = persona set / extra.
    fn cte(&self, first_pos: usize, chunk: &[RunAgent], fixed: usize) -> (String, Vec<Value>) {
        agents_cte(self.tx.codec(), chunk, first_pos, fixed + 1)
    }

    async fn agents_file(&self) -> Result<u64, RecordsError> {
        let query = |cte: &str| {
            format!(
                "{cte}SELECT k.pos, k.agent_id, p.script_version, p.attributes, \
                   {HOLDOUT} \
                 FROM k LEFT JOIN sim_personas p ON p.agent_id = k.agent_id AND p.persona_set = $1 \
                 LEFT JOIN user_offer_cycles uoc ON uoc.user_id = k.user_id \
                 ORDER BY k.pos"
            )
        };
        // CSV needs every persona column up front: one pass for the column names.
        let mut persona_cols: BTreeSet<String> = BTreeSet::new();
        if self.format == Format::Csv {
            for (pos, chunk) in self.chunks() {
                let (cte, mut values) = self.cte(pos, chunk, 1);
                values.insert(0, self.run.persona_set.clone().into());
                for r in self.tx.query(&query(&cte), values).await? {
                    let mut flat = BTreeMap::new();
                    let attrs = r.json("attributes")?;
                    if attrs.is_object() {
                        flatten("persona", &attrs, &mut flat);
                    }
                    persona_cols.extend(flat.into_keys());
                }
            }
        }
        let mut columns = cols(&["agent_id", "persona_set", "script_version", "is_holdout"]);
        match self.format {
            Format::Csv => columns.extend(persona_cols.iter().cloned()),
            Format::Jsonl => columns.push("persona".into()),
        }
        let (mut w, path) = self.writer("agents", columns)?;
        for (pos, chunk) in self.chunks() {
            let (cte, mut values) = self.cte(pos, chunk, 1);
            values.insert(0, self.run.persona_set.clone().into());
            for r in self.tx.query(&query(&cte), values).await? {
                let agent_id = r.string("agent_id")?;
                let version = r.opt_string("script_version")?;
                let attrs = r.json("attributes")?;
                let holdout = r.opt_i64("holdout")?.map(|n| n != 0);
                let has_persona = version.is_some();
                let mut cells = vec![
                    Cell::Text(agent_id),
                    if has_persona {
                        Cell::Text(self.run.persona_set.clone())
                    } else {
                        Cell::Null
                    },
                    Cell::opt_text(version),
                    Cell::opt_bool(holdout),
                ];
                match self.format {
                    Format::Csv => {
                        let mut flat = BTreeMap::new();
                        if attrs.is_object() {
                            flatten("persona", &attrs, &mut flat);
                        }
                        for c in &persona_cols {
                            cells.push(flat.remove(c).unwrap_or(Cell::Null));
                        }
                    }
                    Format::Jsonl => cells.push(if attrs.is_null() {
                        Cell::Null
                    } else {
                        Cell::Json(attrs)
                    }),
                }
                w.write(&cells).map_err(io_err(&path))?;
            }
        }
        w.finish().map_err(io_err(&path))
    }

    async fn sessions_file(&self) -> Result<u64, RecordsError> {
        let (mut w, path) = self.writer(
            "sessions",
            cols(&[
                "agent_id",
                "session_date",
                "session_seq",
                "planned_at",
                "status",
                "steps_done",
                "started_at",
                "ended_at",
                "shop_status",
                "store",
                "events",
            ]),
        )?;
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("s.planned_at", "planned_at", KeyKind::Ts),
            key("s.sim_date", "sim_date", KeyKind::Date),
            key("s.seq", "seq", KeyKind::Int),
        ];
        for (pos, chunk) in self.chunks() {
            let (cte, mut values) = self.cte(pos, chunk, 1);
            values.insert(0, self.run.run_id.clone().into());
            let sql = format!(
                "{cte}SELECT k.pos, k.agent_id, s.session_id, s.sim_date, s.seq, s.planned_at, \
                   s.status, s.steps_done, ss.started_at, ss.ended_at, ss.status AS shop_status, \
                   ss.store_id, (SELECT COUNT(*) FROM shopping_session_events e \
                     WHERE e.session_id = s.session_id) AS events \
                 FROM k JOIN sim_sessions s ON s.agent_id = k.agent_id \
                 LEFT JOIN shopping_sessions ss ON ss.id = s.session_id \
                 WHERE s.run_id = $1"
            );
            let mut err = None;
            paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
                let shop_started = r.opt_ts("started_at")?;
                let cells = vec![
                    Cell::Text(r.string("agent_id")?),
                    Cell::Date(r.date("sim_date")?),
                    Cell::Int(r.i64("seq")?),
                    Cell::Ts(r.ts("planned_at")?),
                    Cell::Text(r.string("status")?),
                    Cell::Int(r.i64("steps_done")?),
                    Cell::opt_ts(shop_started),
                    Cell::opt_ts(r.opt_ts("ended_at")?),
                    Cell::opt_text(r.opt_string("shop_status")?),
                    Cell::opt_text(r.opt_uuid("store_id")?.map(|id| self.keys.store_of(id))),
                    Cell::Int(r.i64("events")?),
                ];
                if let Err(e) = w.write(&cells) {
                    err = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = err {
                return Err(RecordsError::io(&path, e));
            }
        }
        w.finish().map_err(io_err(&path))
    }

    async fn events_file(&self) -> Result<u64, RecordsError> {
        let (mut w, path) = self.writer(
            "events",
            cols(&[
                "agent_id",
                "at",
                "session_date",
                "session_seq",
                "seq",
                "event_type",
                "payload",
            ]),
        )?;
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("e.created_at", "created_at", KeyKind::Ts),
            key("e.session_id", "session_id", KeyKind::Uuid),
            key("e.id", "id", KeyKind::Uuid),
        ];
        let mut seqs = EventSeq::new();
        // Group: (agent, instant, session); order inside: event number, then content.
        type Sort = (Option<u64>, String, String);
        let mut group: Grouped<(i64, DateTime<Utc>, Uuid), Sort> = Grouped::new();
        for (pos, chunk) in self.chunks() {
            let (cte, mut values) = self.cte(pos, chunk, 1);
            values.insert(0, self.run.run_id.clone().into());
            let sql = format!(
                "{cte}SELECT k.pos, k.agent_id, e.id, e.session_id, e.created_at, e.event_type, \
                   e.payload, s.sim_date, s.seq \
                 FROM k JOIN shopping_session_events e ON e.user_id = k.user_id \
                 JOIN sim_sessions s ON s.session_id = e.session_id \
                 WHERE s.run_id = $1"
            );
            let mut err = None;
            paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
                let session = r.uuid("session_id")?;
                let at = r.ts("created_at")?;
                let seq = seqs.of(session, r.uuid("id")?);
                let event_type = r.string("event_type")?;
                let payload = natural_payload(&r.json("payload")?, self.keys);
                let text = canonical_json(&payload);
                let cells = vec![
                    Cell::Text(r.string("agent_id")?),
                    Cell::Ts(at),
                    Cell::Date(r.date("sim_date")?),
                    Cell::Int(r.i64("seq")?),
                    seq.map_or(Cell::Null, |n| Cell::Int(n as i64)),
                    Cell::Text(event_type.clone()),
                    Cell::Json(payload),
                ];
                if let Err(e) = group.push(
                    (r.i64("pos")?, at, session),
                    (seq, event_type, text),
                    cells,
                    &mut w,
                ) {
                    err = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = err {
                return Err(RecordsError::io(&path, e));
            }
        }
        group.flush(&mut w).map_err(io_err(&path))?;
        w.finish().map_err(io_err(&path))
    }

    async fn orders_file(&self) -> Result<u64, RecordsError> {
        let (mut w, path) = self.writer(
            "orders",
            cols(&[
                "agent_id",
                "ordered_at",
                "session_date",
                "session_seq",
                "store",
                "subtotal",
                "discount_total",
                "final_total",
                "status",
                "item_count",
                "frontstore_coupon",
            ]),
        )?;
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("o.created_at", "created_at", KeyKind::Ts),
            key("o.id", "id", KeyKind::Uuid),
        ];
        for (pos, chunk) in self.chunks() {
            let frontstore = self.frontstore_coupons(pos, chunk).await?;
            let (cte, mut values) = self.cte(pos, chunk, 1);
            values.insert(0, self.run.run_id.clone().into());
            let sql = format!(
                "{cte}SELECT k.pos, k.agent_id, o.id, o.created_at, o.store_id, o.subtotal, \
                   o.discount_total, o.final_total, o.status, o.item_count, s.sim_date, s.seq \
                 FROM k JOIN orders o ON o.user_id = k.user_id \
                 JOIN sim_sessions s ON s.session_id = o.shopping_session_id \
                 WHERE s.run_id = $1"
            );
            let mut err = None;
            paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
                let cells = vec![
                    Cell::Text(r.string("agent_id")?),
                    Cell::Ts(r.ts("created_at")?),
                    Cell::Date(r.date("sim_date")?),
                    Cell::Int(r.i64("seq")?),
                    Cell::opt_text(r.opt_uuid("store_id")?.map(|id| self.keys.store_of(id))),
                    Cell::Money(r.money("subtotal")?),
                    Cell::Money(r.money("discount_total")?),
                    Cell::Money(r.money("final_total")?),
                    Cell::Text(r.string("status")?),
                    Cell::Int(r.i64("item_count")?),
                    Cell::opt_text(
                        frontstore
                            .get(&r.uuid("id")?)
                            .map(|id| self.keys.code_of(*id)),
                    ),
                ];
                if let Err(e) = w.write(&cells) {
                    err = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = err {
                return Err(RecordsError::io(&path, e));
            }
        }
        w.finish().map_err(io_err(&path))
    }

    /// The frontstore offer each order of a chunk's agents redeemed: order → coupon. Read per
    /// user (indexed), not per order (`user_coupons.order_id` has no index).
    async fn frontstore_coupons(
        &self,
        first_pos: usize,
        chunk: &[RunAgent],
    ) -> Result<HashMap<Uuid, Uuid>, RecordsError> {
        let (cte, values) = self.cte(first_pos, chunk, 0);
        let rows = self
            .tx
            .query(
                &format!(
                    "{cte}SELECT uc.order_id, uc.coupon_id FROM k \
                     JOIN user_coupons uc ON uc.user_id = k.user_id \
                     WHERE uc.order_id IS NOT NULL"
                ),
                values,
            )
            .await?;
        let mut out: HashMap<Uuid, Uuid> = HashMap::new();
        for r in &rows {
            let coupon = r.uuid("coupon_id")?;
            if self.keys.coupon_type.get(&coupon).map(String::as_str) != Some("frontstore") {
                continue;
            }
            // At most one frontstore offer per order; keep the smallest id if data says more.
            let order = r.uuid("order_id")?;
            let e = out.entry(order).or_insert(coupon);
            *e = (*e).min(coupon);
        }
        Ok(out)
    }

    async fn order_items_file(&self) -> Result<u64, RecordsError> {
        let (mut w, path) = self.writer(
            "order_items",
            cols(&[
                "agent_id",
                "ordered_at",
                "sku",
                "product_name",
                "product_price",
                "quantity",
                "coupon",
                "discount_amount",
                "line_total",
            ]),
        )?;
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("o.created_at", "created_at", KeyKind::Ts),
            key("oi.id", "id", KeyKind::Uuid),
        ];
        let mut group: Grouped<(i64, DateTime<Utc>), (String, String)> = Grouped::new();
        for (pos, chunk) in self.chunks() {
            let (cte, mut values) = self.cte(pos, chunk, 1);
            values.insert(0, self.run.run_id.clone().into());
            let sql = format!(
                "{cte}SELECT k.pos, k.agent_id, o.created_at, oi.id, oi.product_id, \
                   oi.product_name, oi.product_price, oi.quantity, oi.applied_coupon_id, \
                   oi.discount_amount, oi.line_total \
                 FROM k JOIN orders o ON o.user_id = k.user_id \
                 JOIN sim_sessions s ON s.session_id = o.shopping_session_id \
                 JOIN order_items oi ON oi.order_id = o.id \
                 WHERE s.run_id = $1"
            );
            let mut err = None;
            paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
                let at = r.ts("created_at")?;
                let sku = self.keys.sku_of(r.uuid("product_id")?);
                let name = r.string("product_name")?;
                let cells = vec![
                    Cell::Text(r.string("agent_id")?),
                    Cell::Ts(at),
                    Cell::Text(sku.clone()),
                    Cell::Text(name.clone()),
                    Cell::Money(r.money("product_price")?),
                    Cell::Int(r.i64("quantity")?),
                    Cell::opt_text(
                        r.opt_uuid("applied_coupon_id")?
                            .map(|id| self.keys.code_of(id)),
                    ),
                    Cell::Money(r.money("discount_amount")?),
                    Cell::Money(r.money("line_total")?),
                ];
                if let Err(e) = group.push((r.i64("pos")?, at), (sku, name), cells, &mut w) {
                    err = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = err {
                return Err(RecordsError::io(&path, e));
            }
        }
        group.flush(&mut w).map_err(io_err(&path))?;
        w.finish().map_err(io_err(&path))
    }

    /// When each agent of a chunk saw (view_coupons) and applied (coupon_apply) each coupon:
    /// (agent position, coupon) → instants.
    #[allow(clippy::type_complexity)]
    async fn coupon_sightings(
        &self,
        first_pos: usize,
        chunk: &[RunAgent],
    ) -> Result<
        (
            HashMap<(i64, Uuid), Vec<DateTime<Utc>>>,
            HashMap<(i64, Uuid), Vec<DateTime<Utc>>>,
        ),
        RecordsError,
    > {
        let (cte, mut values) = self.cte(first_pos, chunk, 1);
        values.insert(0, self.run.run_id.clone().into());
        let sql = format!(
            "{cte}SELECT k.pos, e.id, e.created_at, e.event_type, e.payload \
             FROM k JOIN shopping_session_events e ON e.user_id = k.user_id \
             JOIN sim_sessions s ON s.session_id = e.session_id \
             WHERE s.run_id = $1 AND e.event_type IN ('view_coupons', 'coupon_apply')"
        );
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("e.created_at", "created_at", KeyKind::Ts),
            key("e.id", "id", KeyKind::Uuid),
        ];
        let mut shown: HashMap<(i64, Uuid), Vec<DateTime<Utc>>> = HashMap::new();
        let mut applied: HashMap<(i64, Uuid), Vec<DateTime<Utc>>> = HashMap::new();
        paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
            let pos = r.i64("pos")?;
            let at = r.ts("created_at")?;
            let payload = r.json("payload")?;
            let parse = |v: &Json| v.as_str().and_then(|s| s.parse::<Uuid>().ok());
            if r.string("event_type")? == "coupon_apply" {
                if let Some(id) = payload.get("coupon_id").and_then(parse) {
                    applied.entry((pos, id)).or_default().push(at);
                }
            } else {
                for list in ["eligible_ids", "ineligible_ids"] {
                    for id in payload
                        .get(list)
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(parse)
                    {
                        shown.entry((pos, id)).or_default().push(at);
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok((shown, applied))
    }

    async fn offers_file(&self) -> Result<u64, RecordsError> {
        let (mut w, path) = self.writer(
            "offers",
            cols(&[
                "agent_id",
                "coupon",
                "coupon_type",
                "cycle_number",
                "assigned_at",
                "eligible_until",
                "status",
                "shown",
                "applied",
                "redeemed",
                "redeemed_at",
                "is_holdout",
            ]),
        )?;
        const KEYS: &[Key] = &[
            key("k.pos", "pos", KeyKind::Int),
            key("uc.assigned_at", "assigned_at", KeyKind::Ts),
            key("uc.id", "id", KeyKind::Int),
        ];
        let codec = self.tx.codec();
        let mut group: Grouped<(i64, DateTime<Utc>), String> = Grouped::new();
        for (pos, chunk) in self.chunks() {
            let (shown, applied) = self.coupon_sightings(pos, chunk).await?;
            let (cte, mut values) = self.cte(pos, chunk, 2);
            values.insert(0, codec.ts(self.run.sim_start));
            values.insert(1, codec.ts(self.run.sim_end));
            let sql = format!(
                "{cte}SELECT k.pos, k.agent_id, uc.id, uc.coupon_id, uc.assigned_at, \
                   uc.eligible_until, uc.status, uc.redeemed_at, uc.order_id, \
                   oc.cycle_number, {HOLDOUT} \
                 FROM k JOIN user_coupons uc ON uc.user_id = k.user_id \
                 LEFT JOIN offer_cycles oc ON oc.id = uc.offer_cycle_id \
                 LEFT JOIN user_offer_cycles uoc ON uoc.user_id = k.user_id \
                 WHERE uc.assigned_at >= $1 AND uc.assigned_at <= $2"
            );
            let mut err = None;
            paged(self.tx, self.options.page, &sql, &values, KEYS, |r| {
                let p = r.i64("pos")?;
                let coupon = r.uuid("coupon_id")?;
                let assigned = r.ts("assigned_at")?;
                let until = r.opt_ts("eligible_until")?;
                let redeemed_at = r.opt_ts("redeemed_at")?;
                // Only sightings of this assignment count: from its start, while usable.
                let within = |t: &DateTime<Utc>| {
                    *t >= assigned
                        && until.is_none_or(|u| *t < u)
                        && redeemed_at.is_none_or(|x| *t <= x)
                };
                let seen = |m: &HashMap<(i64, Uuid), Vec<DateTime<Utc>>>| {
                    m.get(&(p, coupon)).is_some_and(|ts| ts.iter().any(within))
                };
                let status = r.string("status")?;
                let code = self.keys.code_of(coupon);
                let cells = vec![
                    Cell::Text(r.string("agent_id")?),
                    Cell::Text(code.clone()),
                    Cell::opt_text(self.keys.coupon_type.get(&coupon).cloned()),
                    match r.opt_i64("cycle_number")? {
                        Some(n) => Cell::Int(n),
                        None => Cell::Null,
                    },
                    Cell::Ts(assigned),
                    Cell::opt_ts(until),
                    Cell::Text(status.clone()),
                    Cell::Bool(seen(&shown)),
                    Cell::Bool(seen(&applied)),
                    Cell::Bool(status == "used" || r.opt_uuid("order_id")?.is_some()),
                    Cell::opt_ts(redeemed_at),
                    Cell::opt_bool(r.opt_i64("holdout")?.map(|n| n != 0)),
                ];
                if let Err(e) = group.push((p, assigned), code, cells, &mut w) {
                    err = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = err {
                return Err(RecordsError::io(&path, e));
            }
        }
        group.flush(&mut w).map_err(io_err(&path))?;
        w.finish().map_err(io_err(&path))
    }
}

/// `user_offer_cycles.is_holdout` of a LEFT JOINed `uoc` as 1 / 0 / NULL on both backends
/// (NULL: the user never had an offer refresh). The report's holdout groups read it too.
pub(crate) const HOLDOUT: &str = "CASE WHEN uoc.user_id IS NULL THEN NULL WHEN uoc.is_holdout THEN 1 ELSE 0 END \
     AS holdout";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_ids_become_natural_keys() {
        let mut keys = NaturalKeys::default();
        let p = Uuid::from_u128(1);
        let c1 = Uuid::from_u128(2);
        let c2 = Uuid::from_u128(3);
        keys.sku.insert(p, "SKU-1".into());
        keys.code.insert(c1, "ZED".into());
        keys.code.insert(c2, "ABC".into());
        let out = natural_payload(
            &json!({"product_id": p, "sku": null, "quantity": 2,
                    "eligible_ids": [c1, c2], "ineligible_ids": [],
                    "eligible": 2, "order_id": Uuid::from_u128(9)}),
            &keys,
        );
        assert_eq!(
            canonical_json(&out),
            r#"{"eligible":2,"eligible_codes":["ABC","ZED"],"ineligible_codes":[],"quantity":2,"sku":"SKU-1"}"#
        );
        let out = natural_payload(&json!({"coupon_id": c1, "code": ""}), &keys);
        assert_eq!(canonical_json(&out), r#"{"code":"ZED"}"#);
    }

    #[test]
    fn event_numbers_come_back_from_ids() {
        let session = Uuid::from_u128(77);
        let mut seqs = EventSeq::new();
        let id = |n: u64| ids::child_uuid(&session, "event", &n.to_string());
        assert_eq!(seqs.of(session, id(3)), Some(3));
        assert_eq!(seqs.of(session, id(100)), Some(100));
        assert_eq!(seqs.of(session, Uuid::from_u128(5)), None);
        assert_eq!(seqs.of(Uuid::from_u128(78), id(1)), None);
    }
}
