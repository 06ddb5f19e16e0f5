//! Personas as compact Rust values.
//!
//! A run may hold a million agents, so a persona is a shared schema (attribute names, one per
//! set version) plus a boxed slice of small values: numbers and booleans inline, strings
//! interned (every agent with `frequency = "regular"` shares one allocation), short arrays.
//! About 30 attributes take ~0.5 KiB. Scripts read it through the read-only `Persona` type
//! (`persona.impulsivity`, `persona["impulsivity"]`); nothing is converted per call.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};

/// Longest string attribute a persona may hold (a backstory fits; a novel does not).
pub const MAX_STRING: usize = 512;
/// Most elements of an array attribute.
pub const MAX_ARRAY: usize = 32;
/// Most attributes of a persona.
pub const MAX_ATTRIBUTES: usize = 64;
/// Strings up to this length are interned; longer ones (backstories) are unique anyway.
const INTERN_MAX: usize = 48;

/// The attribute names of a persona set, in order (Rhai maps are sorted by key).
#[derive(Debug)]
pub struct PersonaSchema {
    names: Vec<ImmutableString>,
    index: HashMap<ImmutableString, usize>,
}

impl PersonaSchema {
    /// The schema of a generated attribute map.
    pub fn from_map(map: &Map) -> Self {
        let names: Vec<ImmutableString> = map.keys().map(|k| k.as_str().into()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        PersonaSchema { names, index }
    }

    /// Attribute names in order.
    pub fn names(&self) -> &[ImmutableString] {
        &self.names
    }

    /// Position of an attribute.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// One agent's persona: immutable once generated, cheap to share with a call.
#[derive(Debug, Clone)]
pub struct Persona {
    schema: Arc<PersonaSchema>,
    values: Arc<[Dynamic]>,
}

/// Why a generated attribute map is not a valid persona (the set layer adds file and function).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaFieldError {
    /// The attribute.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Interns persona strings for one set.
#[derive(Debug, Default)]
pub struct Interner(Mutex<HashMap<String, ImmutableString>>);

impl Interner {
    fn intern(&self, s: &ImmutableString) -> ImmutableString {
        if s.len() > INTERN_MAX {
            return s.clone();
        }
        let mut m = self.0.lock();
        if let Some(v) = m.get(s.as_str()) {
            return v.clone();
        }
        m.insert(s.to_string(), s.clone());
        s.clone()
    }
}

fn field_err(field: &str, message: impl Into<String>) -> PersonaFieldError {
    PersonaFieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn compact(
    field: &str,
    v: &Dynamic,
    interner: &Interner,
    nested: bool,
) -> Result<Dynamic, PersonaFieldError> {
    if v.is_bool() || v.is_int() {
        return Ok(v.clone());
    }
    if let Ok(f) = v.as_float() {
        if !f.is_finite() {
            return Err(field_err(
                field,
                format!("must be a finite number, got {f}"),
            ));
        }
        return Ok(v.clone());
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        if s.len() > MAX_STRING {
            return Err(field_err(
                field,
                format!("string longer than {MAX_STRING} characters"),
            ));
        }
        return Ok(Dynamic::from(interner.intern(&s)));
    }
    if !nested && let Some(a) = v.read_lock::<rhai::Array>() {
        if a.len() > MAX_ARRAY {
            return Err(field_err(
                field,
                format!("array longer than {MAX_ARRAY} elements"),
            ));
        }
        let items = a
            .iter()
            .map(|x| compact(field, x, interner, true))
            .collect::<Result<rhai::Array, _>>()?;
        return Ok(Dynamic::from_array(items));
    }
    Err(field_err(
        field,
        format!(
            "is a {}; persona attributes must be bool, int, float, string{}",
            v.type_name(),
            if nested { "" } else { " or an array of those" }
        ),
    ))
}

impl Persona {
    /// Validates and compacts a generated attribute map against `schema` (same keys).
    pub fn from_map(
        schema: &Arc<PersonaSchema>,
        map: &Map,
        interner: &Interner,
    ) -> Result<Self, PersonaFieldError> {
        if map.len() > MAX_ATTRIBUTES {
            return Err(field_err(
                "(persona)",
                format!("more than {MAX_ATTRIBUTES} attributes"),
            ));
        }
        for k in map.keys() {
            if schema.position(k).is_none() {
                return Err(field_err(
                    k,
                    "is not produced for every persona (a set's personas must all have the same attributes)",
                ));
            }
        }
        let mut values = Vec::with_capacity(schema.names.len());
        for name in &schema.names {
            let v = map.get(name.as_str()).ok_or_else(|| {
                field_err(
                    name,
                    "is missing (a set's personas must all have the same attributes)",
                )
            })?;
            values.push(compact(name, v, interner, false)?);
        }
        Ok(Persona {
            schema: schema.clone(),
            values: values.into(),
        })
    }

    /// An attribute's value.
    pub fn get(&self, name: &str) -> Option<&Dynamic> {
        self.schema.position(name).map(|i| &self.values[i])
    }

    /// A numeric attribute as `f64` (ints widen).
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        let v = self.get(name)?;
        v.as_float()
            .ok()
            .or_else(|| v.as_int().ok().map(|i| i as f64))
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<PersonaSchema> {
        &self.schema
    }

    /// The persona as a JSON object (what `shopsim seed` stores).
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for (n, v) in self.schema.names.iter().zip(self.values.iter()) {
            obj.insert(n.to_string(), dynamic_to_json(v));
        }
        serde_json::Value::Object(obj)
    }

    /// Approximate heap bytes held by this persona alone (strings may be shared).
    pub fn approx_bytes(&self) -> usize {
        let mut n =
            std::mem::size_of::<Self>() + 16 + self.values.len() * std::mem::size_of::<Dynamic>();
        for v in self.values.iter() {
            if let Some(a) = v.read_lock::<rhai::Array>() {
                n += 24 + a.len() * std::mem::size_of::<Dynamic>();
            } else if let Some(s) = v.read_lock::<ImmutableString>()
                && s.len() > INTERN_MAX
            {
                n += s.len() + 16;
            }
        }
        n
    }
}

/// Converts a persona value to JSON.
pub fn dynamic_to_json(v: &Dynamic) -> serde_json::Value {
    if let Ok(b) = v.as_bool() {
        return b.into();
    }
    if let Ok(i) = v.as_int() {
        return i.into();
    }
    if let Ok(f) = v.as_float() {
        return serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into);
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return s.as_str().into();
    }
    if let Some(a) = v.read_lock::<rhai::Array>() {
        return a.iter().map(dynamic_to_json).collect::<Vec<_>>().into();
    }
    serde_json::Value::Null
}

fn persona_get(p: &mut Persona, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    match p.get(name) {
        Some(v) => Ok(v.clone()),
        None => Err(Box::new(EvalAltResult::ErrorRuntime(
            format!(
                "persona has no attribute `{name}` (it has: {})",
                p.schema
                    .names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into(),
            Position::NONE,
        ))),
    }
}

/// Registers the read-only `Persona` type: `persona.x` and `persona["x"]` read an attribute
/// (an unknown name is an error, not `()`), `persona.has("x")` tests for one.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Persona>("Persona")
        .register_indexer_get(|p: &mut Persona, name: &str| persona_get(p, name))
        .register_fn("has", |p: &mut Persona, name: &str| p.get(name).is_some())
        .register_fn("to_map", |p: &mut Persona| {
            p.schema
                .names
                .iter()
                .zip(p.values.iter())
                .map(|(n, v)| (n.as_str().into(), v.clone()))
                .collect::<Map>()
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_persona_round_trips_and_validates() {
        let mut m = Map::new();
        m.insert("a".into(), Dynamic::from_float(0.5));
        m.insert("freq".into(), Dynamic::from("regular"));
        m.insert(
            "cats".into(),
            Dynamic::from_array(vec![Dynamic::from("Snacks")]),
        );
        let schema = Arc::new(PersonaSchema::from_map(&m));
        let int = Interner::default();
        let p = Persona::from_map(&schema, &m, &int).unwrap();
        assert_eq!(p.get_f64("a"), Some(0.5));
        assert_eq!(
            p.to_json(),
            serde_json::json!({"a": 0.5, "freq": "regular", "cats": ["Snacks"]})
        );
        assert!(p.approx_bytes() < 1024);

        let mut bad = m.clone();
        bad.insert("a".into(), Dynamic::from_float(f64::NAN));
        assert_eq!(
            Persona::from_map(&schema, &bad, &int).unwrap_err().field,
            "a"
        );
        let mut extra = m.clone();
        extra.insert("zzz".into(), Dynamic::from_int(1));
        assert_eq!(
            Persona::from_map(&schema, &extra, &int).unwrap_err().field,
            "zzz"
        );
        let mut missing = m;
        missing.remove("freq");
        assert_eq!(
            Persona::from_map(&schema, &missing, &int)
                .unwrap_err()
                .field,
            "freq"
        );
    }
}
