//! Personas for a population of agents (what `shopsim seed --persona-set` stores).

use super::error::BehaviorError;
use super::persona::Persona;
use super::set::{PersonaSet, Vocab};

/// Generated personas, in the order of `agent_keys`, with the script version that made them.
#[derive(Debug, Clone)]
pub struct Population {
    /// Content hash of the set's scripts.
    pub script_version: String,
    /// `(agent key, persona)`.
    pub personas: Vec<(String, Persona)>,
}

impl Population {
    /// The personas as JSON objects (one per agent), for `sim_personas.attributes`.
    pub fn to_json(&self) -> Vec<(String, serde_json::Value)> {
        self.personas
            .iter()
            .map(|(k, p)| (k.clone(), p.to_json()))
            .collect()
    }
}

/// Generates the persona of every agent. Each persona depends only on (seed, agent key), so
/// adding agents never changes existing ones.
pub fn generate_personas(
    set: &PersonaSet,
    seed: u64,
    agent_keys: &[String],
    vocab: &Vocab,
) -> Result<Population, BehaviorError> {
    let personas = agent_keys
        .iter()
        .map(|k| Ok((k.clone(), set.make_persona(seed, k, vocab)?)))
        .collect::<Result<Vec<_>, BehaviorError>>()?;
    Ok(Population {
        script_version: set.version().to_string(),
        personas,
    })
}

/// The vocabulary personas are generated against: the shared category names and a store count.
pub fn vocab(stores: usize) -> Vocab {
    let mut categories: Vec<String> = crate::catalog::vocabulary::category_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    categories.sort();
    Vocab { categories, stores }
}

/// Personas for `catalog::create_agents`, made one agent at a time as agents are inserted (a
/// million agents never sit in memory as JSON). A script error makes that agent's persona
/// missing and is kept in `first_error` (the first one wins), for the caller to report.
pub fn persona_source<'a>(
    set: &'a PersonaSet,
    seed: u64,
    vocab: &'a Vocab,
    first_error: &'a parking_lot::Mutex<Option<BehaviorError>>,
) -> impl Fn(&str) -> Option<crate::catalog::agents::PersonaRecord> + Send + Sync + 'a {
    move |key: &str| match set.make_persona(seed, key, vocab) {
        Ok(p) => Some(crate::catalog::agents::PersonaRecord {
            persona_set: set.name().to_string(),
            script_version: set.version().to_string(),
            attributes: p.to_json(),
        }),
        Err(e) => {
            first_error.lock().get_or_insert(e);
            None
        }
    }
}
