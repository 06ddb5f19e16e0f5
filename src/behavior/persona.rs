//! Personas as compact Rust values.
//!
//! A run may hold a million agents, so a persona is a shared schema (attribute names and the
//! set's string table, one per set version) plus one allocation of 8-byte words: numbers and
//! booleans inline, strings as indices into the string table (every agent with
//! `frequency = "regular"` shares one string), arrays as runs of further words, and a type tag
//! byte per value. The grocery set's 19 attributes take ~0.25 KiB (a slice of Rhai `Dynamic`s,
//! 16 bytes each plus a boxed vector per array, took ~0.45 KiB). Scripts read it through the
//! read-only `Persona` type (`persona.impulsivity`, `persona["impulsivity"]`); a read rebuilds
//! the one value asked for.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map, Position};

/// Longest string attribute a persona may hold (a backstory fits; a novel does not).
pub const MAX_STRING: usize = 512;
/// Most elements of an array attribute.
pub const MAX_ARRAY: usize = 32;
/// Most attributes of a persona.
pub const MAX_ATTRIBUTES: usize = 64;
/// Strings up to this length are interned; longer ones (backstories) are unique anyway.
const INTERN_MAX: usize = 48;

/// The strings of a set's personas: a persona holds an index into this list.
#[derive(Debug, Default)]
struct Strings {
    list: RwLock<Vec<ImmutableString>>,
    /// Index of each short string already in the list.
    short: Mutex<HashMap<ImmutableString, u32>>,
}

impl Strings {
    fn add(&self, s: &ImmutableString) -> Result<u64, String> {
        let push = |s: &ImmutableString| {
            let mut list = self.list.write();
            let i = u32::try_from(list.len())
                .map_err(|_| "too many distinct persona strings (over 4 billion)".to_string())?;
            list.push(s.clone());
            Ok(i)
        };
        if s.len() > INTERN_MAX {
            return push(s).map(u64::from);
        }
        let mut short = self.short.lock();
        if let Some(i) = short.get(s.as_str()) {
            return Ok(u64::from(*i));
        }
        let i = push(s)?;
        short.insert(s.clone(), i);
        Ok(u64::from(i))
    }

    fn get(&self, i: u64) -> ImmutableString {
        // Indices come from `add` on this same list, which never shrinks.
        self.list
            .read()
            .get(i as usize)
            .cloned()
            .unwrap_or_default()
    }
}

/// The attribute names of a persona set, in order (Rhai maps are sorted by key), and the
/// set's persona strings.
#[derive(Debug)]
pub struct PersonaSchema {
    names: Vec<ImmutableString>,
    index: HashMap<ImmutableString, usize>,
    strings: Strings,
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
        PersonaSchema {
            names,
            index,
            strings: Strings::default(),
        }
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

/// The type of a packed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Bool = 0,
    Int = 1,
    Float = 2,
    Str = 3,
    /// Top-level only: the word holds `first element << 32 | length`.
    Array = 4,
}

impl Tag {
    fn from_byte(b: u8) -> Tag {
        match b {
            0 => Tag::Bool,
            1 => Tag::Int,
            2 => Tag::Float,
            3 => Tag::Str,
            _ => Tag::Array,
        }
    }
}

/// One agent's persona: immutable once generated, cheap to share with a call.
///
/// `words[0]` is the number of values `n` (attributes in schema order, then array elements),
/// the next `ceil(n / 8)` words hold one tag byte per value, then one word per value.
#[derive(Debug, Clone)]
pub struct Persona {
    schema: Arc<PersonaSchema>,
    words: Arc<[u64]>,
}

/// Why a generated attribute map is not a valid persona (the set layer adds file and function).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaFieldError {
    /// The attribute.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> PersonaFieldError {
    PersonaFieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A scalar attribute (or array element) as a tag and a word.
fn pack_scalar(
    field: &str,
    v: &Dynamic,
    strings: &Strings,
    nested: bool,
) -> Result<(Tag, u64), PersonaFieldError> {
    if let Ok(b) = v.as_bool() {
        return Ok((Tag::Bool, u64::from(b)));
    }
    if let Ok(i) = v.as_int() {
        return Ok((Tag::Int, i as u64));
    }
    if let Ok(f) = v.as_float() {
        if !f.is_finite() {
            return Err(field_err(
                field,
                format!("must be a finite number, got {f}"),
            ));
        }
        return Ok((Tag::Float, f.to_bits()));
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        if s.len() > MAX_STRING {
            return Err(field_err(
                field,
                format!("string longer than {MAX_STRING} characters"),
            ));
        }
        let i = strings.add(&s).map_err(|m| field_err(field, m))?;
        return Ok((Tag::Str, i));
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
    /// Validates and packs a generated attribute map against `schema` (same keys).
    pub fn from_map(schema: &Arc<PersonaSchema>, map: &Map) -> Result<Self, PersonaFieldError> {
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
        let fields = schema.names.len();
        let mut values: Vec<(Tag, u64)> = Vec::with_capacity(fields);
        let mut elements: Vec<(Tag, u64)> = Vec::new();
        for name in &schema.names {
            let v = map.get(name.as_str()).ok_or_else(|| {
                field_err(
                    name,
                    "is missing (a set's personas must all have the same attributes)",
                )
            })?;
            let Some(a) = v.read_lock::<rhai::Array>() else {
                values.push(pack_scalar(name, v, &schema.strings, false)?);
                continue;
            };
            if a.len() > MAX_ARRAY {
                return Err(field_err(
                    name,
                    format!("array longer than {MAX_ARRAY} elements"),
                ));
            }
            let first = (fields + elements.len()) as u64;
            for x in a.iter() {
                elements.push(pack_scalar(name, x, &schema.strings, true)?);
            }
            values.push((Tag::Array, (first << 32) | a.len() as u64));
        }
        values.extend(elements);
        let n = values.len();
        let tag_words = n.div_ceil(8);
        let mut words = vec![0u64; 1 + tag_words + n];
        words[0] = n as u64;
        for (i, (tag, word)) in values.into_iter().enumerate() {
            words[1 + i / 8] |= (tag as u64) << (8 * (i % 8));
            words[1 + tag_words + i] = word;
        }
        Ok(Persona {
            schema: schema.clone(),
            words: words.into(),
        })
    }

    /// The tag and word of value `i` (an attribute's position, or an array element's).
    fn slot(&self, i: usize) -> (Tag, u64) {
        let n = self.words[0] as usize;
        let tag = (self.words[1 + i / 8] >> (8 * (i % 8))) as u8;
        (Tag::from_byte(tag), self.words[1 + n.div_ceil(8) + i])
    }

    fn scalar(&self, tag: Tag, word: u64) -> Dynamic {
        match tag {
            Tag::Bool => Dynamic::from_bool(word != 0),
            Tag::Int => Dynamic::from_int(word as INT),
            Tag::Float => Dynamic::from_float(FLOAT::from_bits(word)),
            Tag::Str => Dynamic::from(self.schema.strings.get(word)),
            // Arrays are never nested.
            Tag::Array => Dynamic::UNIT,
        }
    }

    /// Value `i` as scripts see it.
    fn value(&self, i: usize) -> Dynamic {
        match self.slot(i) {
            (Tag::Array, word) => {
                let (first, len) = ((word >> 32) as usize, (word & 0xffff_ffff) as usize);
                Dynamic::from_array(
                    (first..first + len)
                        .map(|j| {
                            let (t, w) = self.slot(j);
                            self.scalar(t, w)
                        })
                        .collect(),
                )
            }
            (tag, word) => self.scalar(tag, word),
        }
    }

    /// An attribute's value.
    pub fn get(&self, name: &str) -> Option<Dynamic> {
        self.schema.position(name).map(|i| self.value(i))
    }

    /// A numeric attribute as `f64` (ints widen).
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        match self.slot(self.schema.position(name)?) {
            (Tag::Float, w) => Some(FLOAT::from_bits(w)),
            (Tag::Int, w) => Some(w as INT as f64),
            _ => None,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<PersonaSchema> {
        &self.schema
    }

    /// The persona as a JSON object (what `shopsim seed` stores).
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for (i, n) in self.schema.names.iter().enumerate() {
            obj.insert(n.to_string(), dynamic_to_json(&self.value(i)));
        }
        serde_json::Value::Object(obj)
    }

    /// Approximate heap bytes held by this persona alone (short strings are shared; a long
    /// one, such as a backstory, is this persona's own).
    pub fn approx_bytes(&self) -> usize {
        // The words' allocation: two reference counts, then the words.
        let mut n = std::mem::size_of::<Self>() + 16 + self.words.len() * 8;
        for i in 0..self.words[0] as usize {
            if let (Tag::Str, w) = self.slot(i) {
                let s = self.schema.strings.get(w);
                if s.len() > INTERN_MAX {
                    n += s.len() + 16 + std::mem::size_of::<ImmutableString>();
                }
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
        Some(v) => Ok(v),
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
        .register_fn("has", |p: &mut Persona, name: &str| {
            p.schema.position(name).is_some()
        })
        .register_fn("to_map", |p: &mut Persona| {
            p.schema
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str().into(), p.value(i)))
                .collect::<Map>()
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: Vec<(&str, Dynamic)>) -> Map {
        pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
    }

    fn sample(freq: &str) -> Map {
        let mut pairs = vec![
            ("a", Dynamic::from_float(0.5)),
            ("big", Dynamic::from_int(-(1 << 40))),
            ("kids", Dynamic::from_bool(true)),
            ("freq", Dynamic::from(freq.to_string())),
            ("story", Dynamic::from("x".repeat(INTERN_MAX + 1))),
            (
                "cats",
                Dynamic::from_array(vec![
                    Dynamic::from("Snacks"),
                    Dynamic::from_int(7),
                    Dynamic::from_float(-1.25),
                    Dynamic::from_bool(false),
                ]),
            ),
            ("none", Dynamic::from_array(vec![])),
        ];
        // Enough attributes that the tags take more than one word.
        for i in 0..6 {
            pairs.push((
                ["p0", "p1", "p2", "p3", "p4", "p5"][i],
                Dynamic::from_int(i as INT),
            ));
        }
        map(pairs)
    }

    #[test]
    fn packed_persona_gives_back_every_value_with_its_type() {
        let m = sample("regular");
        let schema = Arc::new(PersonaSchema::from_map(&m));
        let p = Persona::from_map(&schema, &m).unwrap();
        for (k, v) in &m {
            let got = p.get(k).unwrap();
            assert_eq!(got.type_name(), v.type_name(), "{k}");
            assert_eq!(dynamic_to_json(&got), dynamic_to_json(v), "{k}");
        }
        assert_eq!(p.get("nope").map(|v| v.type_name()), None);
        assert_eq!(p.get_f64("a"), Some(0.5));
        assert_eq!(p.get_f64("big"), Some(-((1i64 << 40) as f64)));
        assert_eq!(p.get_f64("freq"), None);
        assert_eq!(
            p.to_json(),
            serde_json::json!({"a": 0.5, "big": -(1i64 << 40), "kids": true, "freq": "regular",
                "story": "x".repeat(INTERN_MAX + 1), "cats": ["Snacks", 7, -1.25, false],
                "none": [], "p0": 0, "p1": 1, "p2": 2, "p3": 3, "p4": 4, "p5": 5})
        );
        // 13 attributes and 4 elements: a count, 3 tag words and 17 values.
        assert_eq!(p.words.len(), 21);
        assert!(p.approx_bytes() < 512, "{}", p.approx_bytes());
    }

    #[test]
    fn short_strings_are_stored_once_per_set() {
        let schema = Arc::new(PersonaSchema::from_map(&sample("regular")));
        let a = Persona::from_map(&schema, &sample("regular")).unwrap();
        let b = Persona::from_map(&schema, &sample("regular")).unwrap();
        let c = Persona::from_map(&schema, &sample("rare")).unwrap();
        // "regular", "Snacks" and "rare" once each; every story is its own.
        assert_eq!(schema.strings.list.read().len(), 6);
        let s = |p: &Persona| p.get("freq").unwrap().into_immutable_string().unwrap();
        assert!(s(&a).ptr_eq(&s(&b)));
        assert_eq!(s(&c), "rare");
    }

    #[test]
    fn bad_attributes_are_named() {
        let m = sample("regular");
        let schema = Arc::new(PersonaSchema::from_map(&m));
        let err = |m: &Map| Persona::from_map(&schema, m).unwrap_err();
        let mut bad = m.clone();
        bad.insert("a".into(), Dynamic::from_float(f64::NAN));
        assert_eq!(err(&bad).field, "a");
        let mut nested = m.clone();
        nested.insert(
            "cats".into(),
            Dynamic::from_array(vec![Dynamic::from_array(vec![])]),
        );
        let e = err(&nested);
        assert_eq!(e.field, "cats");
        assert!(
            e.message.contains("must be bool, int, float, string"),
            "{}",
            e.message
        );
        let mut long = m.clone();
        long.insert("story".into(), Dynamic::from("y".repeat(MAX_STRING + 1)));
        assert_eq!(err(&long).field, "story");
        let mut extra = m.clone();
        extra.insert("zzz".into(), Dynamic::from_int(1));
        assert_eq!(err(&extra).field, "zzz");
        let mut missing = m;
        missing.remove("freq");
        assert_eq!(err(&missing).field, "freq");
    }
}
