//! Script outputs: plain decisions, validated before the host acts on them.
//!
//! Every parser returns a [`FieldError`] naming the field (`sessions[2].minute`); the set layer
//! adds the script file and function. Think times are simulated seconds, at least 1, so the
//! simulated time of every step comes from the plan, never from a moving clock.

use rhai::{Array, Dynamic, Map};
use serde::{Deserialize, Serialize};

/// Longest think time (a day, in simulated seconds).
pub const MAX_THINK: u32 = 86_400;
/// Most sessions in one day plan.
pub const MAX_SESSIONS: usize = 24;
/// Most steps in one session plan.
pub const MAX_STEPS: usize = 200;
/// Largest quantity of one add.
pub const MAX_QTY: u32 = 99;

/// A wrong output: which field and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path of the field (`sessions[0].minute`, or `(return value)`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn ferr(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn as_map(v: Dynamic, what: &str) -> Result<Map, FieldError> {
    let t = v.type_name();
    v.try_cast::<Map>().ok_or_else(|| {
        ferr(
            "(return value)",
            format!("must be a map like {what}, got {t}"),
        )
    })
}

fn get<'a>(m: &'a Map, field: &str, path: &str) -> Result<&'a Dynamic, FieldError> {
    m.get(field).ok_or_else(|| ferr(path, "is missing"))
}

fn int_in(m: &Map, field: &str, path: &str, lo: i64, hi: i64) -> Result<i64, FieldError> {
    let v = get(m, field, path)?;
    let i = v
        .as_int()
        .map_err(|t| ferr(path, format!("must be an int, got {t}")))?;
    if i < lo || i > hi {
        return Err(ferr(path, format!("must be {lo}..={hi}, got {i}")));
    }
    Ok(i)
}

fn think(m: &Map, path: &str) -> Result<u32, FieldError> {
    let p = format!("{path}think");
    let v = get(m, "think", &p)?;
    // Accept a float (scripts draw think times from continuous distributions): rounded.
    let x = v
        .as_float()
        .or_else(|_| v.as_int().map(|i| i as f64))
        .map_err(|t| {
            ferr(
                &p,
                format!("must be a number of simulated seconds, got {t}"),
            )
        })?;
    if !x.is_finite() || x.round() < 1.0 || x.round() > f64::from(MAX_THINK) {
        return Err(ferr(
            &p,
            format!("must be 1..={MAX_THINK} simulated seconds, got {x}"),
        ));
    }
    Ok(x.round() as u32)
}

fn bool_field(m: &Map, field: &str, path: &str) -> Result<bool, FieldError> {
    get(m, field, path)?
        .as_bool()
        .map_err(|t| ferr(path, format!("must be true or false, got {t}")))
}

fn array_field(m: &Map, field: &str, path: &str) -> Result<Array, FieldError> {
    let v = get(m, field, path)?;
    let t = v.type_name();
    v.clone()
        .try_cast::<Array>()
        .ok_or_else(|| ferr(path, format!("must be an array, got {t}")))
}

fn no_extra(m: &Map, allowed: &[&str], prefix: &str) -> Result<(), FieldError> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ferr(
                format!("{prefix}{k}"),
                format!("is not a known field (expected: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A planned session: when and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSession {
    /// Minute of the simulated day the session starts (0–1439).
    pub minute: u16,
    /// Store index.
    pub store: u32,
}

/// The day plan. No sessions means the agent does not shop today.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayPlan {
    /// Sessions, in time order.
    pub sessions: Vec<PlannedSession>,
}

impl DayPlan {
    /// True when the agent shops today.
    pub fn shops(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Parses `#{ sessions: [#{ minute, store }] }`.
    pub fn parse(v: Dynamic, stores: usize) -> Result<Self, FieldError> {
        let m = as_map(v, "#{ sessions: [#{ minute: 600, store: 0 }] }")?;
        no_extra(&m, &["sessions"], "")?;
        let arr = array_field(&m, "sessions", "sessions")?;
        if arr.len() > MAX_SESSIONS {
            return Err(ferr(
                "sessions",
                format!("at most {MAX_SESSIONS} sessions a day, got {}", arr.len()),
            ));
        }
        let mut sessions = Vec::with_capacity(arr.len());
        for (i, s) in arr.into_iter().enumerate() {
            let p = format!("sessions[{i}]");
            let t = s.type_name();
            let s = s
                .try_cast::<Map>()
                .ok_or_else(|| ferr(&p, format!("must be a map #{{ minute, store }}, got {t}")))?;
            no_extra(&s, &["minute", "store"], &format!("{p}."))?;
            let minute = int_in(&s, "minute", &format!("{p}.minute"), 0, 1439)? as u16;
            let hi = stores as i64 - 1;
            if hi < 0 {
                return Err(ferr(format!("{p}.store"), "the catalog has no stores"));
            }
            let store = int_in(&s, "store", &format!("{p}.store"), 0, hi)? as u32;
            sessions.push(PlannedSession { minute, store });
        }
        sessions.sort_by_key(|s| s.minute);
        Ok(DayPlan { sessions })
    }
}

/// What a session step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    /// View a product.
    View {
        /// Product index.
        product: u32,
    },
    /// Add a product to the cart.
    Add {
        /// Product index.
        product: u32,
        /// Quantity.
        qty: u32,
    },
}

/// One step of a session plan, taken `think` simulated seconds after the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub action: StepAction,
    /// Simulated seconds before this step.
    pub think: u32,
}

/// The session plan: views and adds in order. Offers and checkout are separate stages, decided
/// once the host knows the cart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionPlan {
    /// Steps in order.
    pub steps: Vec<Step>,
}

fn product_field(m: &Map, path: &str, products: usize) -> Result<u32, FieldError> {
    let hi = products as i64 - 1;
    if hi < 0 {
        return Err(ferr(path, "the catalog has no products"));
    }
    Ok(int_in(m, "product", path, 0, hi)? as u32)
}

impl SessionPlan {
    /// Parses `#{ steps: [#{ view: p, think: s } | #{ add: p, qty: q, think: s }] }`.
    pub fn parse(v: Dynamic, products: usize) -> Result<Self, FieldError> {
        let m = as_map(
            v,
            "#{ steps: [#{ action: \"view\", product: 3, think: 20 }] }",
        )?;
        no_extra(&m, &["steps"], "")?;
        let arr = array_field(&m, "steps", "steps")?;
        if arr.len() > MAX_STEPS {
            return Err(ferr(
                "steps",
                format!("at most {MAX_STEPS} steps, got {}", arr.len()),
            ));
        }
        let mut steps = Vec::with_capacity(arr.len());
        for (i, s) in arr.into_iter().enumerate() {
            let p = format!("steps[{i}]");
            let t = s.type_name();
            let s = s.try_cast::<Map>().ok_or_else(|| {
                ferr(
                    &p,
                    format!("must be a map #{{ action, product, think }}, got {t}"),
                )
            })?;
            let action = get(&s, "action", &format!("{p}.action"))?
                .clone()
                .into_immutable_string()
                .map_err(|t| {
                    ferr(
                        format!("{p}.action"),
                        format!("must be \"view\" or \"add\", got {t}"),
                    )
                })?;
            let product = product_field(&s, &format!("{p}.product"), products)?;
            let action = match action.as_str() {
                "view" => {
                    no_extra(&s, &["action", "product", "think"], &format!("{p}."))?;
                    StepAction::View { product }
                }
                "add" => {
                    no_extra(&s, &["action", "product", "qty", "think"], &format!("{p}."))?;
                    let qty = int_in(&s, "qty", &format!("{p}.qty"), 1, i64::from(MAX_QTY))? as u32;
                    StepAction::Add { product, qty }
                }
                other => {
                    return Err(ferr(
                        format!("{p}.action"),
                        format!("must be \"view\" or \"add\", got \"{other}\""),
                    ));
                }
            };
            steps.push(Step {
                action,
                think: think(&s, &format!("{p}."))?,
            });
        }
        Ok(SessionPlan { steps })
    }
}

/// Which eligible offers to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OfferChoice {
    /// Indices into the eligible list, without repeats, in the order to apply them.
    pub apply: Vec<usize>,
    /// Simulated seconds before the first apply (and between applies).
    pub think: u32,
}

impl OfferChoice {
    /// Parses `#{ apply: [i…], think: s }`.
    pub fn parse(v: Dynamic, eligible: usize) -> Result<Self, FieldError> {
        let m = as_map(v, "#{ apply: [0], think: 10 }")?;
        no_extra(&m, &["apply", "think"], "")?;
        let arr = array_field(&m, "apply", "apply")?;
        let mut apply = Vec::with_capacity(arr.len());
        for (i, x) in arr.iter().enumerate() {
            let p = format!("apply[{i}]");
            let k = x
                .as_int()
                .map_err(|t| ferr(&p, format!("must be an index into cart.eligible, got {t}")))?;
            if k < 0 || k as usize >= eligible {
                return Err(ferr(
                    &p,
                    format!("must be 0..{eligible} (an index into cart.eligible), got {k}"),
                ));
            }
            if apply.contains(&(k as usize)) {
                return Err(ferr(&p, format!("offer {k} is listed twice")));
            }
            apply.push(k as usize);
        }
        Ok(OfferChoice {
            apply,
            think: think(&m, "")?,
        })
    }
}

/// Check out or abandon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckoutDecision {
    /// True to check out, false to abandon the cart.
    pub checkout: bool,
    /// Simulated seconds before doing it.
    pub think: u32,
}

impl CheckoutDecision {
    /// Parses `#{ checkout: bool, think: s }`.
    pub fn parse(v: Dynamic) -> Result<Self, FieldError> {
        let m = as_map(v, "#{ checkout: true, think: 30 }")?;
        no_extra(&m, &["checkout", "think"], "")?;
        Ok(CheckoutDecision {
            checkout: bool_field(&m, "checkout", "checkout")?,
            think: think(&m, "")?,
        })
    }
}

/// What to do after the host reports an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReactionAction {
    /// Carry on with the rest of the plan.
    Skip,
    /// Repeat the failed step (the host allows a bounded number of retries, then skips).
    Retry,
    /// Add another product instead (out of stock).
    Substitute {
        /// Product index.
        product: u32,
        /// Quantity.
        qty: u32,
    },
    /// End the session now, abandoning the cart.
    Abandon,
}

/// A reaction with its think time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reaction {
    /// What to do.
    #[serde(flatten)]
    pub action: ReactionAction,
    /// Simulated seconds before doing it.
    pub think: u32,
}

impl Reaction {
    /// Parses `#{ action: "skip"|"retry"|"abandon"|"substitute", [product, qty,] think }`.
    pub fn parse(v: Dynamic, products: usize) -> Result<Self, FieldError> {
        let m = as_map(v, "#{ action: \"skip\", think: 5 }")?;
        let action = get(&m, "action", "action")?
            .clone()
            .into_immutable_string()
            .map_err(|t| ferr("action", format!("must be a string, got {t}")))?;
        let action = match action.as_str() {
            "skip" | "retry" | "abandon" => {
                no_extra(&m, &["action", "think"], "")?;
                match action.as_str() {
                    "skip" => ReactionAction::Skip,
                    "retry" => ReactionAction::Retry,
                    _ => ReactionAction::Abandon,
                }
            }
            "substitute" => {
                no_extra(&m, &["action", "product", "qty", "think"], "")?;
                ReactionAction::Substitute {
                    product: product_field(&m, "product", products)?,
                    qty: int_in(&m, "qty", "qty", 1, i64::from(MAX_QTY))? as u32,
                }
            }
            other => {
                return Err(ferr(
                    "action",
                    format!(
                        "must be \"skip\", \"retry\", \"substitute\" or \"abandon\", got \"{other}\""
                    ),
                ));
            }
        };
        Ok(Reaction {
            action,
            think: think(&m, "")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Engine;

    fn eval(src: &str) -> Dynamic {
        Engine::new().eval::<Dynamic>(src).unwrap()
    }

    #[test]
    fn day_plans_validate() {
        let p = DayPlan::parse(
            eval("#{ sessions: [#{ minute: 900, store: 1 }, #{ minute: 60, store: 0 }] }"),
            2,
        )
        .unwrap();
        assert_eq!(p.sessions[0].minute, 60);
        let e =
            DayPlan::parse(eval("#{ sessions: [#{ minute: 1440, store: 0 }] }"), 1).unwrap_err();
        assert_eq!(e.field, "sessions[0].minute");
        let e = DayPlan::parse(eval("#{ sessions: [#{ minute: 1, store: 2 }] }"), 2).unwrap_err();
        assert_eq!(e.field, "sessions[0].store");
        let e = DayPlan::parse(eval("42"), 1).unwrap_err();
        assert_eq!(e.field, "(return value)");
        let e = DayPlan::parse(eval("#{ session: [] }"), 1).unwrap_err();
        assert_eq!(e.field, "session");
    }

    #[test]
    fn session_plans_validate() {
        let p = SessionPlan::parse(
            eval(r#"#{ steps: [#{ action: "view", product: 2, think: 12.4 }, #{ action: "add", product: 2, qty: 3, think: 5 }] }"#),
            3,
        )
        .unwrap();
        assert_eq!(p.steps[0].think, 12);
        assert_eq!(p.steps[1].action, StepAction::Add { product: 2, qty: 3 });
        let e = SessionPlan::parse(
            eval(r#"#{ steps: [#{ action: "view", product: 2, think: 0 }] }"#),
            3,
        )
        .unwrap_err();
        assert_eq!(e.field, "steps[0].think");
        let e = SessionPlan::parse(
            eval(r#"#{ steps: [#{ action: "add", product: 2, think: 3 }] }"#),
            3,
        )
        .unwrap_err();
        assert_eq!(e.field, "steps[0].qty");
        let e = OfferChoice::parse(eval("#{ apply: [0, 0], think: 3 }"), 2).unwrap_err();
        assert_eq!(e.field, "apply[1]");
        let e = CheckoutDecision::parse(eval("#{ checkout: 1, think: 3 }")).unwrap_err();
        assert_eq!(e.field, "checkout");
        let r = Reaction::parse(
            eval(r#"#{ action: "substitute", product: 1, qty: 1, think: 3 }"#),
            2,
        )
        .unwrap();
        assert_eq!(r.action, ReactionAction::Substitute { product: 1, qty: 1 });
    }
}
