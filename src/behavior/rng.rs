//! The script-facing random generator.
//!
//! Every decision gets its own stream, named by `(run seed, agent, simulated day, session,
//! purpose)` and derived with [`crate::ids::rng`] (ChaCha8), so a decision replayed after a crash
//! or on another shard draws the same numbers, whatever the call order. Scripts never see a
//! generator they could reseed, and nothing else in a script is random.

use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};
use rhai::{Array, Dynamic, Engine, EvalAltResult, INT, Position};

use crate::ids;

/// What a stream is for. Each decision stage draws from its own stream so that changing one
/// stage's script does not shift the numbers another stage sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Generating a persona.
    Persona,
    /// The day plan.
    Day,
    /// A session plan.
    Session,
    /// Choosing offers.
    Offers,
    /// Checking out or abandoning.
    Checkout,
    /// Reacting to an outcome reported by the host.
    Outcome,
}

impl Purpose {
    /// Stable label used in the stream name (part of the reproducibility contract: never rename).
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Persona => "persona",
            Purpose::Day => "day",
            Purpose::Session => "session",
            Purpose::Offers => "offers",
            Purpose::Checkout => "checkout",
            Purpose::Outcome => "outcome",
        }
    }
}

/// Names one decision's stream. `agent` is the agent's stable key (e.g. `agent_001`), never a
/// database id; `day` counts simulated days from the run's start; `session` is the session's
/// number within the day; `step` distinguishes repeated calls of one stage (e.g. the n-th
/// outcome of a session).
#[derive(Debug, Clone, Copy)]
pub struct StreamKey<'a> {
    /// The run seed.
    pub seed: u64,
    /// The agent's stable key.
    pub agent: &'a str,
    /// Simulated date as days since the Common Era (0 for persona generation).
    pub day: u32,
    /// Session number within the day (0 for day-level decisions).
    pub session: u32,
    /// Which stage.
    pub purpose: Purpose,
    /// Repeat counter within the stage (0 for the first call).
    pub step: u32,
}

impl StreamKey<'_> {
    /// The generator for this stream.
    pub fn rng(&self) -> ScriptRng {
        ScriptRng::new(ids::rng(
            self.seed,
            &[
                "behavior".into(),
                self.agent.into(),
                u64::from(self.day).into(),
                u64::from(self.session).into(),
                self.purpose.label().into(),
                u64::from(self.step).into(),
            ],
        ))
    }
}

/// The generator scripts receive as `rng`. Cloning shares the state (a script may pass `rng` to
/// its helper functions and keep drawing new numbers), so it is an `Arc<Mutex<…>>`; a decision
/// runs on one thread, so the lock is never contended.
#[derive(Debug, Clone)]
pub struct ScriptRng(Arc<Mutex<ChaCha8Rng>>);

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn bad(msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE))
}

fn finite(name: &str, what: &str, x: f64) -> RhaiResult<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(bad(format!(
            "rng.{name}: {what} must be a finite number, got {x}"
        )))
    }
}

impl ScriptRng {
    /// Wraps a generator.
    pub fn new(rng: ChaCha8Rng) -> Self {
        ScriptRng(Arc::new(Mutex::new(rng)))
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&self) -> f64 {
        self.0.lock().random::<f64>()
    }

    fn uniform_range(&self, lo: f64, hi: f64) -> RhaiResult<f64> {
        finite("uniform", "lo", lo)?;
        finite("uniform", "hi", hi)?;
        if hi < lo {
            return Err(bad(format!(
                "rng.uniform(lo, hi): hi ({hi}) is below lo ({lo})"
            )));
        }
        Ok(lo + (hi - lo) * self.uniform())
    }

    fn int(&self, lo: INT, hi: INT) -> RhaiResult<INT> {
        if hi < lo {
            return Err(bad(format!(
                "rng.int(lo, hi): hi ({hi}) is below lo ({lo})"
            )));
        }
        Ok(self.0.lock().random_range(lo..=hi))
    }

    fn bernoulli(&self, p: f64) -> RhaiResult<bool> {
        finite("bernoulli", "p", p)?;
        // Probabilities outside [0, 1] are clamped: scripts compute them from formulas and a
        // hard error on 1.0000001 would be unhelpful.
        Ok(self.uniform() < p.clamp(0.0, 1.0))
    }

    fn trials(&self, n: INT, p: f64) -> RhaiResult<Array> {
        finite("trials", "p", p)?;
        if !(0..=10_000).contains(&n) {
            return Err(bad(format!(
                "rng.trials(n, p): n must be 0..=10000, got {n}"
            )));
        }
        let p = p.clamp(0.0, 1.0);
        let mut g = self.0.lock();
        Ok((0..n)
            .filter(|_| g.random::<f64>() < p)
            .map(Dynamic::from_int)
            .collect())
    }

    fn normal(&self, mean: f64, sd: f64) -> RhaiResult<f64> {
        finite("normal", "mean", mean)?;
        finite("normal", "sd", sd)?;
        if sd < 0.0 {
            return Err(bad(format!(
                "rng.normal(mean, sd): sd must be >= 0, got {sd}"
            )));
        }
        let d = Normal::new(mean, sd)
            .map_err(|e| bad(format!("rng.normal(mean, sd): {e} (sd must be >= 0)")))?;
        Ok(d.sample(&mut *self.0.lock()))
    }

    fn lognormal(&self, mu: f64, sigma: f64) -> RhaiResult<f64> {
        finite("lognormal", "mu", mu)?;
        finite("lognormal", "sigma", sigma)?;
        if sigma < 0.0 {
            return Err(bad(format!(
                "rng.lognormal(mu, sigma): sigma must be >= 0, got {sigma}"
            )));
        }
        let d = LogNormal::new(mu, sigma).map_err(|e| {
            bad(format!(
                "rng.lognormal(mu, sigma): {e} (sigma must be >= 0)"
            ))
        })?;
        Ok(d.sample(&mut *self.0.lock()))
    }

    fn poisson(&self, lambda: f64) -> RhaiResult<INT> {
        finite("poisson", "lambda", lambda)?;
        if lambda == 0.0 {
            return Ok(0);
        }
        if !(0.0..=1.0e6).contains(&lambda) {
            return Err(bad(format!(
                "rng.poisson(lambda): lambda must be in 0..=1e6, got {lambda}"
            )));
        }
        let d = Poisson::new(lambda).map_err(|e| bad(format!("rng.poisson(lambda): {e}")))?;
        Ok(d.sample(&mut *self.0.lock()) as INT)
    }

    fn gamma(&self, shape: f64, scale: f64) -> RhaiResult<f64> {
        finite("gamma", "shape", shape)?;
        finite("gamma", "scale", scale)?;
        let d = Gamma::new(shape, scale)
            .map_err(|e| bad(format!("rng.gamma(shape, scale): {e} (both must be > 0)")))?;
        Ok(d.sample(&mut *self.0.lock()))
    }

    fn weighted(&self, weights: Array) -> RhaiResult<INT> {
        let mut ws = Vec::with_capacity(weights.len());
        for (i, w) in weights.iter().enumerate() {
            let x = w
                .as_float()
                .or_else(|_| w.as_int().map(|v| v as f64))
                .map_err(|t| {
                    bad(format!(
                        "rng.weighted(weights): weight {i} is a {t}, not a number"
                    ))
                })?;
            if !x.is_finite() || x < 0.0 {
                return Err(bad(format!(
                    "rng.weighted(weights): weight {i} must be a finite number >= 0, got {x}"
                )));
            }
            ws.push(x);
        }
        let total: f64 = ws.iter().sum();
        if total <= 0.0 {
            return Err(bad(
                "rng.weighted(weights): needs at least one weight above 0".to_string(),
            ));
        }
        let mut r = self.uniform() * total;
        for (i, w) in ws.iter().enumerate() {
            if r < *w {
                return Ok(i as INT);
            }
            r -= w;
        }
        // Rounding can leave r just above the last bucket: take the last positive weight.
        Ok(ws.iter().rposition(|w| *w > 0.0).unwrap_or(0) as INT)
    }

    fn choice(&self, items: Array) -> RhaiResult<Dynamic> {
        if items.is_empty() {
            return Err(bad("rng.choice(array): the array is empty".to_string()));
        }
        let i = self.0.lock().random_range(0..items.len());
        Ok(items[i].clone())
    }

    fn shuffle(&self, mut items: Array) -> Array {
        let mut g = self.0.lock();
        // Fisher–Yates written out so the sequence does not depend on a library's choice.
        for i in (1..items.len()).rev() {
            let j = g.random_range(0..=i);
            items.swap(i, j);
        }
        items
    }

    fn sample(&self, items: Array, k: INT) -> RhaiResult<Array> {
        if k < 0 {
            return Err(bad(format!(
                "rng.sample(array, k): k must be >= 0, got {k}"
            )));
        }
        let k = (k as usize).min(items.len());
        let mut items = items;
        let mut g = self.0.lock();
        // Partial Fisher–Yates: the first k positions become a uniform sample without repeats.
        for i in 0..k {
            let j = g.random_range(i..items.len());
            items.swap(i, j);
        }
        items.truncate(k);
        Ok(items)
    }
}

/// Registers the `Rng` type and its methods (documented in `behaviors/README.md`).
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<ScriptRng>("Rng")
        .register_fn("uniform", |r: &mut ScriptRng| r.uniform())
        .register_fn("uniform", |r: &mut ScriptRng, lo: f64, hi: f64| {
            r.uniform_range(lo, hi)
        })
        .register_fn("int", |r: &mut ScriptRng, lo: INT, hi: INT| r.int(lo, hi))
        .register_fn("bernoulli", |r: &mut ScriptRng, p: f64| r.bernoulli(p))
        .register_fn("trials", |r: &mut ScriptRng, n: INT, p: f64| r.trials(n, p))
        .register_fn("normal", |r: &mut ScriptRng, m: f64, s: f64| r.normal(m, s))
        .register_fn("lognormal", |r: &mut ScriptRng, m: f64, s: f64| {
            r.lognormal(m, s)
        })
        .register_fn("poisson", |r: &mut ScriptRng, l: f64| r.poisson(l))
        .register_fn("gamma", |r: &mut ScriptRng, k: f64, s: f64| r.gamma(k, s))
        .register_fn("weighted", |r: &mut ScriptRng, w: Array| r.weighted(w))
        .register_fn("choice", |r: &mut ScriptRng, a: Array| r.choice(a))
        .register_fn("shuffle", |r: &mut ScriptRng, a: Array| r.shuffle(a))
        .register_fn("sample", |r: &mut ScriptRng, a: Array, k: INT| {
            r.sample(a, k)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(purpose: Purpose) -> StreamKey<'static> {
        StreamKey {
            seed: 7,
            agent: "agent_001",
            day: 3,
            session: 0,
            purpose,
            step: 0,
        }
    }

    #[test]
    fn streams_are_reproducible_and_separate() {
        let a = key(Purpose::Day).rng().uniform();
        let b = key(Purpose::Day).rng().uniform();
        let c = key(Purpose::Session).rng().uniform();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn clones_share_state() {
        let r = key(Purpose::Day).rng();
        let r2 = r.clone();
        let x = r.uniform();
        let y = r2.uniform();
        assert_ne!(x, y);
    }

    #[test]
    fn distributions_check_their_parameters() {
        let r = key(Purpose::Day).rng();
        assert!(r.normal(0.0, -1.0).is_err());
        assert!(r.gamma(0.0, 1.0).is_err());
        assert!(r.weighted(vec![Dynamic::from_float(0.0)]).is_err());
        assert!(r.int(5, 1).is_err());
        assert!(r.choice(Array::new()).is_err());
        let w = r
            .weighted(vec![Dynamic::from_float(0.0), Dynamic::from_int(3)])
            .unwrap();
        assert_eq!(w, 1);
        let n: Vec<INT> = (0..2000).map(|_| r.poisson(3.0).unwrap()).collect();
        let mean = n.iter().sum::<INT>() as f64 / n.len() as f64;
        assert!((mean - 3.0).abs() < 0.2, "poisson mean {mean}");
        let s = r
            .sample((0..10).map(Dynamic::from_int).collect(), 4)
            .unwrap();
        assert_eq!(s.len(), 4);
    }
}
