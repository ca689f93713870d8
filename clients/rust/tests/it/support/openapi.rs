//! The API document (`docs/openapi.json`) and JSON samples built from its schemas.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// The API document of the repository.
pub fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Every `(METHOD, path template)` of the document.
pub fn routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Builds sample instances of the document's schemas.
pub struct Samples<'a> {
    doc: &'a Value,
}

/// An object schema's properties and required names, with `allOf` parts merged.
pub struct ObjectShape {
    pub properties: Map<String, Value>,
    pub required: BTreeSet<String>,
}

impl<'a> Samples<'a> {
    pub fn new(doc: &'a Value) -> Self {
        Samples { doc }
    }

    /// The schema a `$ref` names, or the schema itself.
    pub fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().expect("a ref names a schema");
                self.resolve(&self.doc["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// The non-null branches of a `oneOf`/`anyOf`, or the schema itself.
    pub fn variants(&self, schema: &'a Value) -> Vec<&'a Value> {
        let schema = self.resolve(schema);
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                return branches
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                    .flat_map(|b| self.variants(b))
                    .collect();
            }
        }
        vec![schema]
    }

    /// The object shape of a schema (after `allOf` merging), if it is an object with
    /// properties.
    pub fn object_shape(&self, schema: &'a Value) -> Option<ObjectShape> {
        let schema = self.resolve(schema);
        let mut shape = ObjectShape {
            properties: Map::new(),
            required: BTreeSet::new(),
        };
        let mut found = false;
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                if let Some(inner) = self.object_shape(part) {
                    shape.properties.extend(inner.properties);
                    shape.required.extend(inner.required);
                    found = true;
                }
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            shape.properties.extend(properties.clone());
            found = true;
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            shape.required.extend(
                required
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned)),
            );
        }
        found.then_some(shape)
    }

    /// A sample with every property filled in (the first branch of nested unions).
    pub fn full(&self, schema: &'a Value) -> Value {
        let variants = self.variants(schema);
        let schema = variants[0];
        if let Some(shape) = self.object_shape(schema) {
            let mut out = Map::new();
            for (name, property) in &shape.properties {
                out.insert(name.clone(), self.full(property));
            }
            return Value::Object(out);
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values[0].clone();
        }
        if let Some(value) = schema.get("const") {
            return value.clone();
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => vec![],
        };
        match types.first().copied() {
            Some("object") => match schema.get("additionalProperties") {
                Some(inner @ Value::Object(_)) => json!({ "key": self.full(inner) }),
                _ => json!({}),
            },
            Some("array") => json!([self.full(&schema["items"])]),
            Some("string") => match schema.get("format").and_then(Value::as_str) {
                Some("uri") => json!("https://hooks.example.com/picloud"),
                _ => json!("text"),
            },
            Some("integer") => {
                let mut value = 7i64;
                if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
                    value = value.max(min);
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_i64) {
                    value = value.min(max);
                }
                json!(value)
            }
            Some("number") => json!(1.5),
            Some("boolean") => json!(true),
            // Any JSON value.
            _ => json!({ "any": [1, "two", null, { "three": true }] }),
        }
    }

    /// A sample of a 2xx answer of a route, if it has a JSON body.
    pub fn answer(&self, method: &str, path: &str) -> (u16, Option<Value>) {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        let responses = operation["responses"].as_object().expect("responses");
        let (status, response) = responses
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .expect("a success answer");
        let status: u16 = status.parse().expect("a numeric status");
        let schema = response
            .get("content")
            .and_then(|c| c.get("application/json"))
            .and_then(|c| c.get("schema"));
        (status, schema.map(|schema| self.full(schema)))
    }
}
