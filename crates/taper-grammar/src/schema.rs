//! JSON schemas checked for what the engine can enforce.
//!
//! The engine (llguidance) compiles draft 2020-12 schemas to grammars. It refuses
//! keywords it cannot enforce, but without saying where, and it treats a few keywords
//! of other drafts as if they applied. [`JsonSchema::new`] walks the whole schema first:
//! every keyword is either enforced, an annotation, or an error naming the keyword and
//! its JSON-pointer path. Nothing is silently dropped.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use llguidance::api::ParserLimits;
use llguidance::{GrammarBuilder, JsonCompileOptions};
use serde_json::{Map, Value, json};

use crate::error::SchemaError;

/// A JSON schema (draft 2020-12) that the engine enforces completely.
///
/// Built with [`JsonSchema::new`], which rejects what cannot be enforced with a
/// [`SchemaError`] naming the keyword and where it is. Supported: `type`, `enum`,
/// `const`, `$ref` (local and `$id`-based), `$defs`/`definitions`, `allOf`, `anyOf`,
/// `oneOf` (when its alternatives are provably disjoint, as those schemars derives for
/// enums are), `properties`, `required`, `additionalProperties`, `patternProperties`,
/// `minProperties`/`maxProperties` (with the engine's limits), `items`, `prefixItems`,
/// `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern`, string `format`s
/// (`date-time`, `time`, `date`, `duration`, `email`, `hostname`, `ipv4`, `ipv6`,
/// `uuid`, `uri`), numeric bounds and `multipleOf`, and every annotation.
///
/// What is generated is a subset of what the schema accepts, never more:
/// - object properties come in the order the schema lists them;
/// - integers are written without fraction or exponent, and integer `format`s
///   (`int8` .. `int64`, `uint8` .. `uint64`, as schemars writes them) become bounds;
///   bounds are clamped to what the engine represents: at most `i64::MAX`, at least
///   −2^63 + 1024 (so `u64` and `i64` values near their extremes are not generated);
/// - numbers have at most 100 digits before the point and at most 2 exponent digits,
///   so every number fits an `f64` (the constraint enforces this; `-0` is read as `0`
///   by [`TurnGrammar::parse`](crate::TurnGrammar::parse));
/// - JSON text is compact, with `", "` between items and `": "` after keys (the layout
///   of Python's `json.dumps`), so every output has one canonical layout.
///
/// Not supported (an error, never ignored): `not`, `uniqueItems: true` (e.g. a Rust set),
/// `contains`, `propertyNames`, `if`/`then`/`else`, `dependentRequired`,
/// `dependentSchemas`, `unevaluatedItems`, `unevaluatedProperties`, `$dynamicRef`,
/// `$dynamicAnchor`, string formats other than those above, and `$schema` other than
/// draft 2020-12. Keywords of other drafts that 2020-12 does not define
/// (`additionalItems`, `dependencies`, `$recursiveRef`, `$recursiveAnchor`) are
/// annotations in 2020-12 and are dropped, as the draft says.
///
/// # Example
///
/// ```
/// use serde_json::json;
/// use taper_grammar::{JsonSchema, SchemaError};
///
/// let ok = JsonSchema::new(json!({
///     "type": "object",
///     "properties": { "n": { "type": "integer", "format": "uint8", "minimum": 0, "maximum": 255 } },
///     "required": ["n"]
/// }))?;
/// assert_eq!(ok.as_value()["properties"]["n"]["maximum"], 255);
///
/// let err = JsonSchema::new(json!({
///     "type": "object",
///     "properties": { "tags": { "type": "array", "uniqueItems": true } }
/// }))
/// .unwrap_err();
/// assert!(matches!(
///     err,
///     SchemaError::Unsupported { ref keyword, ref path, .. }
///         if keyword == "uniqueItems" && path == "/properties/tags"
/// ));
/// # Ok::<(), SchemaError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchema {
    value: Value,
}

impl JsonSchema {
    /// Checks the schema and prepares it for the engine; see the type's documentation
    /// for what is supported.
    pub fn new(schema: Value) -> Result<Self, SchemaError> {
        let mut value = schema;
        let mut path = String::new();
        check(&mut value, &mut path, 0)?;
        let schema = JsonSchema { value };
        if let Err(reason) = compile_check(&schema.engine_value()) {
            return Err(schema.explain(reason));
        }
        Ok(schema)
    }

    /// The schema as the engine gets it (after the transformations documented on the
    /// type).
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The schema with the engine's JSON layout options attached.
    pub(crate) fn engine_value(&self) -> Value {
        with_layout(self.value.clone())
    }

    /// Turns an engine refusal into a typed error, locating a `oneOf` whose
    /// alternatives the engine could not prove disjoint.
    fn explain(&self, reason: String) -> SchemaError {
        if !reason.contains("oneOf") {
            return SchemaError::Compile { reason };
        }
        let mut one_ofs = Vec::new();
        collect_keyword(&self.value, "oneOf", &mut String::new(), &mut one_ofs);
        let located = if one_ofs.len() == 1 {
            one_ofs.pop()
        } else {
            one_ofs.into_iter().find(|suspect| {
                let mut alone = self.value.clone();
                rename_keyword_except(&mut alone, "oneOf", "anyOf", suspect, &mut String::new());
                compile_check(&with_layout(alone)).is_err_and(|r| r.contains("oneOf"))
            })
        };
        match located {
            Some(path) => SchemaError::Unsupported {
                keyword: "oneOf".into(),
                path,
                reason: "its alternatives are not provably disjoint, so exactly-one cannot be \
                         enforced"
                    .into(),
            },
            None => SchemaError::Compile { reason },
        }
    }
}

/// The JSON layout every schema is generated with (see [`JsonSchema`]).
fn with_layout(mut value: Value) -> Value {
    strip_annotations(&mut value);
    share_number_leaves(&mut value);
    let layout = json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
        "coerce_one_of": false,
        "lenient": false,
    });
    match &mut value {
        Value::Object(map) => {
            map.insert("x-guidance".into(), layout);
            value
        }
        // Boolean schemas: `true` is any JSON value, `false` nothing (an empty `enum`).
        Value::Bool(true) => json!({ "x-guidance": layout }),
        _ => json!({ "x-guidance": layout, "enum": [] }),
    }
}

/// Annotation keywords of draft 2020-12: they constrain nothing, so the engine's copy
/// goes without them (less text to compile).
const ANNOTATIONS: [&str; 8] = [
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// Removes [`ANNOTATIONS`] from every schema object.
fn strip_annotations(root: &mut Value) {
    let strip = |schema: &mut Value| {
        if let Value::Object(map) = schema {
            for key in ANNOTATIONS {
                map.remove(key);
            }
        }
    };
    for_each_subschema(root, &mut |schema| strip(schema));
    strip(root);
}

/// The bound keywords of a number schema, in the order its sharing key lists them.
const BOUNDS: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// Replaces bounded number schemas (a type and bounds, nothing else: run it after
/// [`strip_annotations`]) that occur more than once (as integer formats make
/// them: every `i32` field is `{"type": "integer", "minimum": -2147483648, ...}`) by a
/// `$ref` to one shared definition.
///
/// The engine compiles a bounded integer to a regular expression of its range, which
/// costs about 0.1-0.7 ms per occurrence (most for 64-bit ranges), but compiles a
/// definition once however often it is referenced. Schemas with an `$id` below the root are left alone: a `$ref`
/// there would resolve against another base.
fn share_number_leaves(root: &mut Value) {
    if !root.is_object() || has_nested_id(root) {
        return;
    }
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for_each_subschema(root, &mut |schema| {
        if let Some(key) = number_leaf_key(schema) {
            *counts.entry(key).or_default() += 1;
        }
    });
    counts.retain(|_, n| *n > 1);
    if counts.is_empty() {
        return;
    }
    let existing: Vec<String> = root
        .get("$defs")
        .and_then(Value::as_object)
        .map(|defs| defs.keys().cloned().collect())
        .unwrap_or_default();
    let taken = |name: &str| existing.iter().any(|e| e == name);
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut defs = Vec::new();
    let mut next = 0usize;
    for_each_subschema(root, &mut |schema| {
        let Some(key) = number_leaf_key(schema).filter(|k| counts.contains_key(k)) else {
            return;
        };
        let name = names.entry(key).or_insert_with(|| {
            let mut name = format!("taper_number_{next}");
            while taken(&name) {
                next += 1;
                name = format!("taper_number_{next}");
            }
            next += 1;
            let mut def = Map::new();
            if let Value::Object(leaf) = &*schema {
                for key in std::iter::once("type").chain(BOUNDS) {
                    if let Some(v) = leaf.get(key) {
                        def.insert(key.into(), v.clone());
                    }
                }
            }
            defs.push((name.clone(), Value::Object(def)));
            name
        });
        *schema = json!({ "$ref": format!("#/$defs/{name}") });
    });
    let Value::Object(map) = root else {
        return;
    };
    let entry = map
        .entry("$defs")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(existing) = entry {
        existing.extend(defs);
    }
}

/// The sharing key of a bounded number schema with nothing but a type and bounds;
/// `None` for any other schema.
fn number_leaf_key(schema: &Value) -> Option<String> {
    let map = schema.as_object()?;
    let ty = map.get("type")?;
    let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
    let typed = match ty {
        Value::String(_) => numeric(ty),
        Value::Array(types) => types.iter().any(numeric) && types.iter().all(Value::is_string),
        _ => false,
    };
    let only_leaf_keys = map
        .keys()
        .all(|k| k == "type" || BOUNDS.contains(&k.as_str()));
    let bounded = BOUNDS.iter().any(|b| map.contains_key(*b));
    if !(typed && only_leaf_keys && bounded) {
        return None;
    }
    let mut key = ty.to_string();
    for bound in BOUNDS {
        key.push('|');
        if let Some(v) = map.get(bound) {
            key.push_str(&v.to_string());
        }
    }
    Some(key)
}

/// Whether a schema below the root has `$id`.
fn has_nested_id(root: &Value) -> bool {
    let mut found = false;
    visit_schemas(root, &mut String::new(), &mut |map, path| {
        found |= !path.is_empty() && map.contains_key("$id");
    });
    found
}

/// Calls `f` on every subschema below `value` (not on `value` itself), children before
/// their parent, so `f` may replace the schema it is given.
fn for_each_subschema(value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, sub) in map.iter_mut() {
        match sub {
            Value::Object(_) if SINGLE.contains(&key.as_str()) => {
                for_each_subschema(sub, f);
                f(sub);
            }
            Value::Array(items) if ARRAYS.contains(&key.as_str()) => {
                for item in items {
                    for_each_subschema(item, f);
                    f(item);
                }
            }
            Value::Object(entries) if MAPS.contains(&key.as_str()) => {
                for item in entries.values_mut() {
                    for_each_subschema(item, f);
                    f(item);
                }
            }
            _ => {}
        }
    }
}

/// Compiles the schema without a tokenizer: the engine's own checks.
fn compile_check(value: &Value) -> Result<(), String> {
    let compiled = catch_unwind(AssertUnwindSafe(|| {
        let builder = GrammarBuilder::new(None, ParserLimits::default());
        JsonCompileOptions::default()
            .json_to_llg_with_overrides(builder, value.clone())
            .map(|_| ())
    }));
    match compiled {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the engine failed on this schema".into()),
    }
}

/// Keywords whose value is a count.
const COUNTS: [&str; 6] = [
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
];
/// Keywords whose value is one subschema.
const SINGLE: [&str; 2] = ["items", "additionalProperties"];
/// Keywords whose value is a non-empty array of subschemas.
const ARRAYS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value is an object of subschemas.
const MAPS: [&str; 4] = ["properties", "patternProperties", "$defs", "definitions"];
/// Keywords of other drafts that 2020-12 does not define: annotations there.
const OTHER_DRAFTS: [&str; 4] = [
    "additionalItems",
    "dependencies",
    "$recursiveRef",
    "$recursiveAnchor",
];
/// 2020-12 keywords the engine cannot enforce.
const UNSUPPORTED: [(&str, &str); 15] = [
    ("not", "negation cannot be expressed as a grammar"),
    (
        "uniqueItems",
        "uniqueness of array items cannot be expressed as a grammar",
    ),
    ("contains", "the engine does not implement `contains`"),
    ("minContains", "the engine does not implement `contains`"),
    ("maxContains", "the engine does not implement `contains`"),
    (
        "propertyNames",
        "the engine does not implement `propertyNames`",
    ),
    ("if", "the engine does not implement conditionals"),
    ("then", "the engine does not implement conditionals"),
    ("else", "the engine does not implement conditionals"),
    (
        "dependentRequired",
        "the engine does not implement dependencies",
    ),
    (
        "dependentSchemas",
        "the engine does not implement dependencies",
    ),
    (
        "unevaluatedItems",
        "the engine does not implement `unevaluatedItems`",
    ),
    (
        "unevaluatedProperties",
        "the engine does not implement `unevaluatedProperties`",
    ),
    ("$dynamicRef", "dynamic references are not implemented"),
    ("$dynamicAnchor", "dynamic references are not implemented"),
];
/// String formats the engine enforces.
const STRING_FORMATS: [&str; 11] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
    "uri",
    "unknown",
];
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// How deep schemas may nest (the engine's own limit is of the same order).
const MAX_DEPTH: usize = 128;

/// Checks one schema location and everything under it, rewriting it in place for the
/// engine (dropping keywords that are annotations in 2020-12, turning integer formats
/// into bounds).
fn check(schema: &mut Value, path: &mut String, depth: usize) -> Result<(), SchemaError> {
    if depth > MAX_DEPTH {
        return Err(malformed(
            path,
            &format!("schemas nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let map = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(map) => map,
        _ => return Err(malformed(path, "a schema must be an object or a boolean")),
    };
    if let Some(uri) = map.get("$schema") {
        let uri = uri
            .as_str()
            .ok_or_else(|| malformed(path, "`$schema` must be a string"))?;
        if uri.trim_end_matches('#') != DRAFT_2020_12 {
            return Err(unsupported(
                path,
                "$schema",
                &format!("only draft 2020-12 is supported, not {uri}"),
            ));
        }
    }
    for key in OTHER_DRAFTS {
        map.remove(key);
    }
    drop_no_ops(map);
    for (keyword, reason) in UNSUPPORTED {
        if map.contains_key(keyword) {
            return Err(unsupported(path, keyword, reason));
        }
    }
    check_values(map, path)?;
    integral_counts(map);
    check_format(map, path)?;
    clamp_lower_bounds(map);

    for key in SINGLE {
        if let Some(sub) = map.get_mut(key) {
            if sub.is_array() && key == "items" {
                return Err(malformed(
                    path,
                    "in draft 2020-12 `items` is one schema (use `prefixItems` for tuples)",
                ));
            }
            descend(sub, path, &[key], |v, p| check(v, p, depth + 1))?;
        }
    }
    for key in ARRAYS {
        if let Some(sub) = map.get_mut(key) {
            let items = match sub {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    return Err(malformed(
                        path,
                        &format!("`{key}` must be a non-empty array"),
                    ));
                }
            };
            for (i, item) in items.iter_mut().enumerate() {
                descend(item, path, &[key, &i.to_string()], |v, p| {
                    check(v, p, depth + 1)
                })?;
            }
        }
    }
    for key in MAPS {
        if let Some(sub) = map.get_mut(key) {
            let entries = sub
                .as_object_mut()
                .ok_or_else(|| malformed(path, &format!("`{key}` must be an object")))?;
            for (name, item) in entries.iter_mut() {
                descend(item, path, &[key, name], |v, p| check(v, p, depth + 1))?;
            }
        }
    }
    Ok(())
}

/// Runs `f` with `segments` appended to the JSON pointer `path`.
fn descend<T>(
    value: T,
    path: &mut String,
    segments: &[&str],
    f: impl FnOnce(T, &mut String) -> Result<(), SchemaError>,
) -> Result<(), SchemaError> {
    let len = path.len();
    for segment in segments {
        push_segment(path, segment);
    }
    let result = f(value, path);
    path.truncate(len);
    result
}

/// Appends one RFC 6901 reference token.
fn push_segment(path: &mut String, segment: &str) {
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Removes keywords whose value constrains nothing, as the draft defines them.
fn drop_no_ops(map: &mut Map<String, Value>) {
    let is_true = |v: Option<&Value>| {
        v.is_some_and(|v| v == &Value::Bool(true) || v.as_object().is_some_and(Map::is_empty))
    };
    if map.get("uniqueItems") == Some(&Value::Bool(false)) {
        map.remove("uniqueItems");
    }
    // `then` and `else` without `if` are ignored; `if` without either has no effect.
    if !map.contains_key("if") {
        map.remove("then");
        map.remove("else");
    } else if !map.contains_key("then") && !map.contains_key("else") {
        map.remove("if");
    }
    // `minContains` and `maxContains` without `contains` are ignored.
    if !map.contains_key("contains") {
        map.remove("minContains");
        map.remove("maxContains");
    }
    for key in ["propertyNames", "unevaluatedItems", "unevaluatedProperties"] {
        if is_true(map.get(key)) {
            map.remove(key);
        }
    }
    for key in ["dependentRequired", "dependentSchemas"] {
        if map
            .get(key)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            map.remove(key);
        }
    }
}

/// Checks the value types of the keywords the engine reads.
fn check_values(map: &Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    const TYPES: [&str; 7] = [
        "null", "boolean", "object", "array", "number", "integer", "string",
    ];
    if let Some(t) = map.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for name in names {
            if !name.as_str().is_some_and(|n| TYPES.contains(&n)) {
                return Err(malformed(path, &format!("invalid `type` {name}")));
            }
        }
    }
    for key in COUNTS {
        if let Some(v) = map.get(key)
            && !is_non_negative_integer(v)
        {
            return Err(malformed(
                path,
                &format!("`{key}` must be a non-negative integer"),
            ));
        }
    }
    for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
        if map.get(key).is_some_and(|v| !v.is_number()) {
            return Err(malformed(path, &format!("`{key}` must be a number")));
        }
    }
    if let Some(m) = map.get("multipleOf")
        && !m.as_f64().is_some_and(|m| m > 0.0)
    {
        return Err(malformed(path, "`multipleOf` must be a number above 0"));
    }
    if let Some(r) = map.get("required") {
        let ok = r
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !ok {
            return Err(malformed(path, "`required` must be an array of strings"));
        }
    }
    if map.get("enum").is_some_and(|v| !v.is_array()) {
        return Err(malformed(path, "`enum` must be an array"));
    }
    for key in ["pattern", "$ref", "$id", "$anchor"] {
        if map.get(key).is_some_and(|v| !v.is_string()) {
            return Err(malformed(path, &format!("`{key}` must be a string")));
        }
    }
    Ok(())
}

/// Writes counts given as floats with no fraction (`2.0`, valid in 2020-12) as
/// integers, the form the engine reads.
fn integral_counts(map: &mut Map<String, Value>) {
    for key in COUNTS {
        if let Some(v) = map.get_mut(key)
            && v.as_u64().is_none()
            && let Some(f) = v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0)
        {
            *v = Value::from(f as u64);
        }
    }
}

fn is_non_negative_integer(v: &Value) -> bool {
    v.as_u64().is_some() || v.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0)
}

/// The lowest lower bound the engine handles: it reads bounds as `f64` and negates
/// them as `i64`, so the bound must be above `i64::MIN` after rounding to `f64`
/// (−2^63 + 1024 is the next `f64` up).
const LOWEST_BOUND: i64 = i64::MIN + 1024;

/// Raises lower bounds below [`LOWEST_BOUND`] to it (stricter, never looser).
fn clamp_lower_bounds(map: &mut Map<String, Value>) {
    for key in ["minimum", "exclusiveMinimum"] {
        if map
            .get(key)
            .and_then(Value::as_f64)
            .is_some_and(|v| v < LOWEST_BOUND as f64)
        {
            map.remove(key);
            tighten(map, "minimum", LOWEST_BOUND, |old, new| new > old);
        }
    }
}

/// Integer formats (as schemars writes them) and their bounds, clamped to what the
/// engine represents (signed 64-bit, lower bound [`LOWEST_BOUND`]).
fn integer_format_bounds(format: &str) -> Option<(i64, i64)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" | "int" | "int128" => (LOWEST_BOUND, i64::MAX),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" | "uint" | "uint128" => (0, i64::MAX),
        _ => return None,
    })
}

/// Applies `format`: integer formats become bounds, number formats and formats on
/// schemas that cannot be strings are dropped, string formats the engine lacks are an
/// error.
fn check_format(map: &mut Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    let Some(format) = map.get("format") else {
        return Ok(());
    };
    let format = format
        .as_str()
        .ok_or_else(|| malformed(path, "`format` must be a string"))?
        .to_owned();
    if let Some((low, high)) = integer_format_bounds(&format) {
        map.remove("format");
        tighten(map, "minimum", low, |old, new| new > old);
        tighten(map, "maximum", high, |old, new| new < old);
        return Ok(());
    }
    let may_be_string = match map.get("type") {
        None => true,
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        Some(_) => true,
    };
    if format == "float" || format == "double" || !may_be_string {
        map.remove("format");
        return Ok(());
    }
    if STRING_FORMATS.contains(&format.as_str()) {
        Ok(())
    } else {
        Err(unsupported(
            path,
            "format",
            &format!("string format `{format}` cannot be enforced"),
        ))
    }
}

/// Sets `key` to `bound` unless the schema already has a tighter bound.
fn tighten(map: &mut Map<String, Value>, key: &str, bound: i64, tighter: fn(f64, f64) -> bool) {
    let replace = match map.get(key).and_then(Value::as_f64) {
        Some(old) => tighter(old, bound as f64),
        None => true,
    };
    if replace {
        map.insert(key.into(), bound.into());
    }
}

/// Paths of every schema object that holds `keyword`.
fn collect_keyword(value: &Value, keyword: &str, path: &mut String, out: &mut Vec<String>) {
    visit_schemas(value, path, &mut |map, path| {
        if map.contains_key(keyword) {
            out.push(path.to_owned());
        }
    });
}

/// Renames `keyword` to `to` everywhere except at `keep`.
fn rename_keyword_except(
    value: &mut Value,
    keyword: &str,
    to: &str,
    keep: &str,
    path: &mut String,
) {
    if let Value::Object(map) = value {
        if path != keep
            && let Some(v) = map.remove(keyword)
        {
            map.insert(to.into(), v);
        }
        for (key, sub) in map.iter_mut() {
            let len = path.len();
            push_segment(path, key);
            match sub {
                Value::Object(_) if SINGLE.contains(&key.as_str()) => {
                    rename_keyword_except(sub, keyword, to, keep, path);
                }
                Value::Array(items) if ARRAYS.contains(&key.as_str()) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = path.len();
                        let _ = write!(path, "/{i}");
                        rename_keyword_except(item, keyword, to, keep, path);
                        path.truncate(len);
                    }
                }
                Value::Object(entries) if MAPS.contains(&key.as_str()) => {
                    for (name, item) in entries.iter_mut() {
                        let len = path.len();
                        push_segment(path, name);
                        rename_keyword_except(item, keyword, to, keep, path);
                        path.truncate(len);
                    }
                }
                _ => {}
            }
            path.truncate(len);
        }
    }
}

/// Calls `f` on every schema object with its JSON pointer.
fn visit_schemas(value: &Value, path: &mut String, f: &mut dyn FnMut(&Map<String, Value>, &str)) {
    let Value::Object(map) = value else {
        return;
    };
    f(map, path);
    for (key, sub) in map {
        let len = path.len();
        push_segment(path, key);
        match sub {
            Value::Object(_) if SINGLE.contains(&key.as_str()) => visit_schemas(sub, path, f),
            Value::Array(items) if ARRAYS.contains(&key.as_str()) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    visit_schemas(item, path, f);
                    path.truncate(len);
                }
            }
            Value::Object(entries) if MAPS.contains(&key.as_str()) => {
                for (name, item) in entries {
                    let len = path.len();
                    push_segment(path, name);
                    visit_schemas(item, path, f);
                    path.truncate(len);
                }
            }
            _ => {}
        }
        path.truncate(len);
    }
}

fn malformed(path: &str, reason: &str) -> SchemaError {
    SchemaError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unsupported(path: &str, keyword: &str, reason: &str) -> SchemaError {
    SchemaError::Unsupported {
        keyword: keyword.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's copy: annotations gone, every repeated bounded number a `$ref` to
    /// one definition, single ones and unbounded ones left in place.
    #[test]
    fn the_engine_copy_shares_repeated_bounds() {
        let schema = JsonSchema::new(json!({
            "type": "object",
            "description": "args",
            "properties": {
                "a": {"type": "integer", "format": "int64", "description": "x"},
                "b": {"type": ["integer", "null"], "format": "int64"},
                "c": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                "d": {"type": "integer", "format": "uint8"},
                "e": {"type": "integer"},
                "f": {"type": "integer", "format": "int64", "multipleOf": 2},
                "g": {"type": ["integer", "null"], "format": "int64", "title": "g"}
            },
            "$defs": {"taper_number_0": {"type": "string"}}
        }))
        .expect("schema");
        let engine = schema.engine_value();
        assert!(engine.get("description").is_none());
        let props = &engine["properties"];
        assert_eq!(props["a"], json!({"$ref": "#/$defs/taper_number_1"}));
        assert_eq!(
            props["c"]["items"],
            json!({"$ref": "#/$defs/taper_number_1"})
        );
        assert_eq!(props["b"], json!({"$ref": "#/$defs/taper_number_2"}));
        assert_eq!(props["g"], json!({"$ref": "#/$defs/taper_number_2"}));
        assert_eq!(props["d"]["maximum"], 255);
        assert_eq!(props["e"], json!({"type": "integer"}));
        assert_eq!(props["f"]["multipleOf"], 2);
        let defs = &engine["$defs"];
        assert_eq!(defs["taper_number_0"], json!({"type": "string"}));
        assert_eq!(
            defs["taper_number_1"],
            json!({"type": "integer", "minimum": LOWEST_BOUND, "maximum": i64::MAX})
        );
        assert_eq!(defs["taper_number_2"]["type"], json!(["integer", "null"]));
        // What users see keeps its annotations.
        assert_eq!(schema.as_value()["properties"]["a"]["description"], "x");
    }

    /// A `$ref` below a nested `$id` would resolve against that base: no sharing.
    #[test]
    fn nested_ids_keep_their_numbers_in_place() {
        let schema = JsonSchema::new(json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "format": "int32"},
                "b": {
                    "$id": "https://example.com/b",
                    "type": "object",
                    "properties": {"n": {"type": "integer", "format": "int32"}}
                }
            }
        }))
        .expect("schema");
        let engine = schema.engine_value();
        assert!(engine.get("$defs").is_none());
        assert_eq!(engine["properties"]["a"]["maximum"], i32::MAX);
    }
}
