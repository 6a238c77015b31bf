//! Forms generated from JSON Schema, and the JSON document read back from a submitted form.
//!
//! [`build`] turns a schema and a value into a tree of [`Node`]s that `config.html` renders,
//! and [`Reader`] reads the same tree back from the submitted fields. Every input is named by
//! the dotted path of its field in `CONFIG` (`apps.relay.rules[0].url`), the path that
//! validation errors use, so each error is shown next to its input.
//!
//! How each kind of schema becomes an input:
//! - strings, numbers and integers: one input; strings whose title or description mentions a
//!   template, and values with line breaks, get a textarea;
//! - `"secret": true` strings: a password input that contains [`MASK`] when a value is stored,
//!   with a hidden `stored:<path>` marker; a blank or unchanged mask keeps the stored value;
//! - booleans: a checkbox; enums: a select with an empty choice for "not set";
//! - lists of strings or numbers: a textarea with one item per line;
//! - objects of string values (`merge_fields`): a textarea with one `KEY = value` per line;
//! - objects with properties: a fieldset of their fields;
//! - lists of objects (relay rules, forms, form fields): one fieldset per item with a
//!   "remove" checkbox, and one blank item that adds an item when filled in. This needs no
//!   JavaScript, and adds one item per save;
//! - anything else: a JSON textarea for that field only. No field of the built-in apps needs
//!   it: relay rules, forms and form fields all get fieldsets.
//!
//! Blank inputs leave their field out, so an empty optional object or list disappears.

use crate::apps::FieldError;
use crate::secret::MASK;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// Nesting depth below which fields are edited as JSON instead of as form inputs.
const MAX_DEPTH: usize = 8;

/// Largest number of items read from a submitted form for one list.
const MAX_ITEMS: usize = 200;

/// Prefix of the hidden input that marks a secret input showing a stored value.
pub const STORED: &str = "stored:";
/// Prefix of the checkbox that removes a list item or an app section.
pub const REMOVE: &str = "remove:";
/// Prefix of the checkbox that deletes an optional stored secret.
pub const CLEAR: &str = "clear:";
/// Prefix of the hidden input that marks a boolean field that was present.
pub const PRESENT: &str = "present:";
/// Prefix of the hidden input that marks an app section that is configured.
pub const SECTION: &str = "section:";

/// Returns an input name without its marker prefix: the path of the field it belongs to.
pub fn strip_marker(name: &str) -> &str {
    [STORED, REMOVE, CLEAR, PRESENT, SECTION]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name)
}

/// The input a schema is edited with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    LongText,
    Secret,
    Integer,
    Number,
    Checkbox,
    Select,
    /// A list of strings or numbers, one per line.
    Lines,
    /// An object of string values, one `KEY = value` per line.
    Pairs,
    Json,
    /// An object with properties: a fieldset.
    Group,
    /// A list of objects: a fieldset per item.
    List,
    /// One item of a [`Kind::List`].
    Item,
}

/// One field of a generated form, as the template renders it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub kind: Kind,
    /// Dotted path of the field in `CONFIG`, which is also the input's name.
    pub path: String,
    /// HTML id of the input, derived from the path.
    pub id: String,
    pub label: String,
    /// The property name, shown for people who edit the JSON.
    pub key: String,
    pub hint: String,
    pub required: bool,
    /// The input's text.
    pub value: String,
    pub checked: bool,
    pub options: Vec<String>,
    /// A secret input shows a stored value, as a mask.
    pub stored: bool,
    /// A secret was typed but is not sent back; the person types it again or keeps the
    /// stored one.
    pub retype: bool,
    /// A boolean field was present, so unchecking it stores `false` instead of leaving it out.
    pub present: bool,
    /// The blank item that adds an item to a list.
    pub new_item: bool,
    pub children: Vec<Node>,
    pub errors: Vec<String>,
}

impl Node {
    fn new(kind: Kind, path: &str, key: &str, schema: &Value) -> Self {
        Self {
            kind,
            path: path.to_string(),
            id: input_id(path),
            label: label_of(key, schema),
            key: key.to_string(),
            hint: hint_of(schema),
            required: false,
            value: String::new(),
            checked: false,
            options: Vec::new(),
            stored: false,
            retype: false,
            present: false,
            new_item: false,
            children: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Attaches an error to the deepest node that contains its path. Returns `false` when no
    /// node of this tree contains it.
    pub fn attach(&mut self, error: &FieldError) -> bool {
        if !contains_path(&self.path, &error.path) {
            return false;
        }
        if !self.children.iter_mut().any(|child| child.attach(error)) {
            self.errors.push(error.message.clone());
        }
        true
    }

    /// Returns the id of the deepest node that contains `path`.
    pub fn id_of(&self, path: &str) -> Option<String> {
        if !contains_path(&self.path, path) {
            return None;
        }
        let deeper = self.children.iter().find_map(|child| child.id_of(path));
        Some(deeper.unwrap_or_else(|| self.id.clone()))
    }
}

/// Returns an HTML id for an input path.
pub fn input_id(path: &str) -> String {
    let safe: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("f-{safe}")
}

/// Tells whether the field at `path` is `inner` or contains it.
pub fn contains_path(path: &str, inner: &str) -> bool {
    match inner.strip_prefix(path) {
        Some(rest) => path.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

fn label_of(key: &str, schema: &Value) -> String {
    if let Some(title) = schema.get("title").and_then(Value::as_str) {
        return title.to_string();
    }
    let words = key.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hint_of(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        parts.push(description.to_string());
    }
    if let Some(example) = schema.pointer("/examples/0").and_then(Value::as_str) {
        parts.push(format!("Example: {example}"));
    }
    if let Some(default) = schema.get("default") {
        let text = default
            .as_str()
            .map_or_else(|| default.to_string(), str::to_string);
        parts.push(format!("Default: {text}"));
    }
    parts.join(". ")
}

fn type_of(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Chooses the input for a schema. `value` decides between a line and a textarea for text.
pub fn kind_of(schema: &Value, value: &Value, depth: usize) -> Kind {
    if depth > MAX_DEPTH {
        return Kind::Json;
    }
    if schema.get("enum").is_some_and(Value::is_array) {
        return Kind::Select;
    }
    match type_of(schema) {
        "string" if schema.get("secret") == Some(&Value::Bool(true)) => Kind::Secret,
        "string" if is_long_text(schema, value) => Kind::LongText,
        "string" => Kind::Text,
        "integer" => Kind::Integer,
        "number" => Kind::Number,
        "boolean" => Kind::Checkbox,
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            match type_of(items) {
                "string" | "integer" | "number" if items.get("enum").is_none() => Kind::Lines,
                "object" if items.get("properties").is_some() => Kind::List,
                _ => Kind::Json,
            }
        }
        "object" if schema.get("properties").is_some() => Kind::Group,
        "object" if type_of(&schema["additionalProperties"]) == "string" => Kind::Pairs,
        _ => Kind::Json,
    }
}

fn is_long_text(schema: &Value, value: &Value) -> bool {
    let mentions_template = ["title", "description"].iter().any(|field| {
        schema
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|text| text.to_lowercase().contains("template"))
    });
    mentions_template || value.as_str().is_some_and(|text| text.contains('\n'))
}

/// Returns an object schema's properties: required ones in their listed order, then the
/// others by name.
pub fn properties(schema: &Value) -> Vec<(String, &Value, bool)> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut ordered: Vec<(String, &Value, bool)> = required
        .iter()
        .filter_map(|key| properties.get(*key).map(|s| (key.to_string(), s, true)))
        .collect();
    for (key, schema) in properties {
        if !required.contains(&key.as_str()) {
            ordered.push((key.clone(), schema, false));
        }
    }
    ordered
}

/// Builds the form of one field. `raw` contains the text of inputs that did not parse, which is
/// shown instead of the value.
pub fn build(
    key: &str,
    schema: &Value,
    value: &Value,
    path: &str,
    raw: &HashMap<String, String>,
    depth: usize,
) -> Node {
    let kind = kind_of(schema, value, depth);
    let mut node = Node::new(kind, path, key, schema);
    match kind {
        Kind::Text | Kind::LongText | Kind::Integer | Kind::Number => {
            node.value = match value {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
        }
        Kind::Secret => {
            node.stored = value.as_str() == Some(MASK);
            node.retype = value
                .as_str()
                .is_some_and(|text| !text.is_empty() && text != MASK);
            if node.stored {
                node.value = MASK.to_string();
            }
        }
        Kind::Checkbox => {
            node.checked = value == &Value::Bool(true);
            node.present = value.is_boolean();
        }
        Kind::Select => {
            node.options = schema["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|option| {
                    option
                        .as_str()
                        .map_or_else(|| option.to_string(), str::to_string)
                })
                .collect();
            node.value = value.as_str().unwrap_or_default().to_string();
        }
        Kind::Lines => node.value = lines_text(value),
        Kind::Pairs => node.value = pairs_text(value),
        Kind::Json if !value.is_null() => {
            node.value = serde_json::to_string_pretty(value).unwrap_or_default();
        }
        Kind::Json => {}
        Kind::Group => node.children = build_fields(schema, value, path, raw, depth),
        Kind::List => node.children = build_items(schema, value, path, raw, depth),
        Kind::Item => {}
    }
    if let Some(text) = raw.get(path) {
        node.value = text.clone();
    }
    node
}

/// Builds the fields of an object schema.
pub fn build_fields(
    schema: &Value,
    value: &Value,
    path: &str,
    raw: &HashMap<String, String>,
    depth: usize,
) -> Vec<Node> {
    properties(schema)
        .into_iter()
        .map(|(key, property, required)| {
            let child_path = join(path, &key);
            let mut node = build(
                &key,
                property,
                &value[key.as_str()],
                &child_path,
                raw,
                depth + 1,
            );
            node.required = required;
            node
        })
        .collect()
}

fn build_items(
    schema: &Value,
    value: &Value,
    path: &str,
    raw: &HashMap<String, String>,
    depth: usize,
) -> Vec<Node> {
    let item_schema = &schema["items"];
    let items = value.as_array().cloned().unwrap_or_default();
    let list_label = label_of(path.rsplit(['.', ']']).next().unwrap_or(""), schema);
    let mut nodes = Vec::new();
    for index in 0..=items.len() {
        let item_path = format!("{path}[{index}]");
        let item = items.get(index).unwrap_or(&Value::Null);
        let mut node = Node::new(Kind::Item, &item_path, "", item_schema);
        node.children = build_fields(item_schema, item, &item_path, raw, depth + 1);
        node.new_item = index == items.len();
        node.label = match item.get("name").and_then(Value::as_str) {
            Some(name) => format!("{list_label}: item {} ({name})", index + 1),
            None if node.new_item => format!("Add to {}", list_label.to_lowercase()),
            None => format!("{list_label}: item {}", index + 1),
        };
        nodes.push(node);
    }
    nodes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn lines_text(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let lines: Vec<String> = items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_string)
                })
                .collect();
            lines.join("\n")
        }
        Value::String(text) => text.clone(),
        _ => String::new(),
    }
}

fn pairs_text(value: &Value) -> String {
    match value {
        Value::Object(pairs) => {
            let lines: Vec<String> = pairs
                .iter()
                .map(|(key, item)| {
                    let text = item
                        .as_str()
                        .map_or_else(|| item.to_string(), str::to_string);
                    format!("{key} = {text}")
                })
                .collect();
            lines.join("\n")
        }
        Value::String(text) => text.clone(),
        _ => String::new(),
    }
}

/// Reads a submitted form back into JSON, field by field along the schema.
pub struct Reader {
    fields: HashMap<String, String>,
    /// Every submitted name, for finding the items of lists.
    names: BTreeSet<String>,
    /// Inputs that did not parse, by the path they have in the result.
    pub errors: Vec<FieldError>,
    /// The text of those inputs, to show them again as typed.
    pub raw: HashMap<String, String>,
}

impl Reader {
    /// Takes the submitted name and value pairs. When a name repeats, the last value counts.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let names = pairs.iter().map(|(name, _)| name.clone()).collect();
        let fields = pairs.into_iter().collect();
        Self {
            fields,
            names,
            errors: Vec::new(),
            raw: HashMap::new(),
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    fn fail(&mut self, path: &str, text: &str, message: String) -> Option<Value> {
        self.errors.push(FieldError::new(path, message));
        self.raw.insert(path.to_string(), text.to_string());
        Some(Value::from(text))
    }

    /// Reads one field, submitted under `input` and placed at `path` in the result. Returns
    /// `None` for a blank field.
    pub fn read(&mut self, schema: &Value, input: &str, path: &str, depth: usize) -> Option<Value> {
        let text = self.text(input).unwrap_or_default().replace("\r\n", "\n");
        let kind = kind_of(schema, &Value::from(text.as_str()), depth);
        match kind {
            Kind::Text => some_text(text.trim()),
            Kind::LongText => some_text(&text),
            Kind::Select => some_text(text.trim()),
            Kind::Secret => self.read_secret(input, text.trim()),
            Kind::Integer | Kind::Number => self.read_number(kind, path, text.trim()),
            Kind::Checkbox => {
                let checked = text == "true";
                let present = self.has(&format!("{PRESENT}{input}"));
                (checked || present).then_some(Value::Bool(checked))
            }
            Kind::Lines => self.read_lines(schema, path, &text),
            Kind::Pairs => self.read_pairs(path, &text),
            Kind::Json => self.read_json(path, &text),
            Kind::Group => self.read_fields(schema, input, path, depth),
            Kind::List => self.read_items(schema, input, path, depth),
            Kind::Item => None,
        }
    }

    fn read_secret(&self, input: &str, text: &str) -> Option<Value> {
        if self.has(&format!("{CLEAR}{input}")) {
            return None;
        }
        let stored = self.has(&format!("{STORED}{input}"));
        match text {
            "" | MASK if stored => Some(Value::from(MASK)),
            "" => None,
            typed => Some(Value::from(typed)),
        }
    }

    fn read_number(&mut self, kind: Kind, path: &str, text: &str) -> Option<Value> {
        if text.is_empty() {
            return None;
        }
        if let Ok(integer) = text.parse::<i64>() {
            return Some(Value::from(integer));
        }
        let number = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64);
        match number {
            Some(number) if kind == Kind::Number => Some(Value::Number(number)),
            _ => {
                let expected = if kind == Kind::Integer {
                    "a whole number"
                } else {
                    "a number"
                };
                self.fail(path, text, format!("{text:?} is not {expected}"))
            }
        }
    }

    fn read_lines(&mut self, schema: &Value, path: &str, text: &str) -> Option<Value> {
        let numeric = matches!(type_of(&schema["items"]), "integer" | "number");
        let mut items = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if !numeric {
                items.push(Value::from(line));
                continue;
            }
            match line.parse::<i64>() {
                Ok(value) => items.push(Value::from(value)),
                Err(_) => {
                    let message = format!("line {}: {line:?} is not a whole number", number + 1);
                    return self.fail(path, text, message);
                }
            }
        }
        (!items.is_empty()).then_some(Value::Array(items))
    }

    fn read_pairs(&mut self, path: &str, text: &str) -> Option<Value> {
        let mut pairs = Map::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match line.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    pairs.insert(key.trim().to_string(), Value::from(value.trim()));
                }
                _ => {
                    let message = format!(
                        "line {}: write one KEY = value per line, such as FNAME = first_name",
                        number + 1
                    );
                    return self.fail(path, text, message);
                }
            }
        }
        (!pairs.is_empty()).then_some(Value::Object(pairs))
    }

    fn read_json(&mut self, path: &str, text: &str) -> Option<Value> {
        if text.trim().is_empty() {
            return None;
        }
        match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(err) => self.fail(path, text, format!("not valid JSON: {err}")),
        }
    }

    /// Reads the fields of an object schema; `None` when all of them are blank.
    pub fn read_fields(
        &mut self,
        schema: &Value,
        input: &str,
        path: &str,
        depth: usize,
    ) -> Option<Value> {
        let mut object = Map::new();
        let mut empty_lists = Vec::new();
        for (key, property, required) in properties(schema) {
            let value = self.read(property, &join(input, &key), &join(path, &key), depth + 1);
            match value {
                Some(value) => {
                    object.insert(key, value);
                }
                None if required && kind_of(property, &Value::Null, depth + 1) == Kind::Lines => {
                    empty_lists.push(key);
                }
                None => {}
            }
        }
        if object.is_empty() {
            return None;
        }
        // A required list left empty is sent as `[]`, so that validation names the list
        // itself instead of reporting a missing field on the whole object.
        for key in empty_lists {
            object.insert(key, Value::Array(Vec::new()));
        }
        Some(Value::Object(object))
    }

    fn read_items(
        &mut self,
        schema: &Value,
        input: &str,
        path: &str,
        depth: usize,
    ) -> Option<Value> {
        let mut items = Vec::new();
        for index in self.item_indices(input) {
            let item_input = format!("{input}[{index}]");
            if self.has(&format!("{REMOVE}{item_input}")) {
                continue;
            }
            let item_path = format!("{path}[{}]", items.len());
            if let Some(item) =
                self.read_fields(&schema["items"], &item_input, &item_path, depth + 1)
            {
                items.push(item);
            }
        }
        (!items.is_empty()).then_some(Value::Array(items))
    }

    /// Returns the indices of the submitted items of the list named `input`, in order, at
    /// most [`MAX_ITEMS`] of them. The apps' own limits are lower, so validation names a list
    /// that is too long, and a huge form cannot make a huge page of messages.
    fn item_indices(&self, input: &str) -> Vec<usize> {
        let start = format!("{input}[");
        let mut indices = BTreeSet::new();
        for name in &self.names {
            let Some(rest) = strip_marker(name).strip_prefix(&start) else {
                continue;
            };
            let Some((digits, _)) = rest.split_once(']') else {
                continue;
            };
            if let Ok(index) = digits.parse::<usize>() {
                indices.insert(index);
            }
        }
        indices.into_iter().take(MAX_ITEMS).collect()
    }
}

fn some_text(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| Value::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::AppRegistry;
    use serde_json::json;

    fn relay_schema() -> Value {
        AppRegistry::builtin().get("relay").expect("relay").schema()
    }

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn kinds_follow_the_schema() {
        let schema = relay_schema();
        let rule = &schema["properties"]["rules"]["items"];
        let kind = |key: &str| kind_of(&rule["properties"][key], &Value::Null, 1);
        assert_eq!(
            kind_of(&schema["properties"]["rules"], &Value::Null, 1),
            Kind::List
        );
        assert_eq!(kind("name"), Kind::Text);
        assert_eq!(kind("url"), Kind::Secret);
        assert_eq!(kind("events"), Kind::Lines);
        assert_eq!(kind("template"), Kind::LongText);
        assert_eq!(kind("category_ids"), Kind::Lines);
        assert_eq!(kind("include_private_messages"), Kind::Checkbox);
        let mailchimp = AppRegistry::builtin()
            .get("mailchimp")
            .expect("app")
            .schema();
        let kind = |key: &str| kind_of(&mailchimp["properties"][key], &Value::Null, 1);
        assert_eq!(kind("on_leave"), Kind::Select);
        assert_eq!(kind("merge_fields"), Kind::Pairs);
        assert_eq!(kind("consent"), Kind::Group);
        assert_eq!(kind("max_connections"), Kind::Integer);
        assert_eq!(
            kind_of(&json!({ "oneOf": [] }), &Value::Null, 1),
            Kind::Json
        );
    }

    #[test]
    fn built_form_reads_back_the_same_section() {
        let schema = relay_schema();
        let section = json!({ "rules": [{
            "name": "topics", "url": MASK, "events": ["topic_created", "post_created"],
            "template": "New topic\n{{topic.title}}", "category_ids": [4, 5],
            "include_private_messages": false
        }]});
        let node = build("relay", &schema, &section, "apps.relay", &HashMap::new(), 0);
        let mut submitted = Vec::new();
        collect_inputs(&node, &mut submitted);
        let mut reader = Reader::new(submitted);
        let read = reader.read_fields(&schema, "apps.relay", "apps.relay", 0);
        assert!(reader.errors.is_empty(), "{:?}", reader.errors);
        assert_eq!(read, Some(section));
    }

    /// Submits a built form as a browser would, without changing anything.
    fn collect_inputs(node: &Node, out: &mut Vec<(String, String)>) {
        match node.kind {
            Kind::Group | Kind::List | Kind::Item => {
                for child in &node.children {
                    collect_inputs(child, out);
                }
            }
            Kind::Checkbox => {
                if node.present {
                    out.push((format!("{PRESENT}{}", node.path), "1".into()));
                }
                if node.checked {
                    out.push((node.path.clone(), "true".into()));
                }
            }
            Kind::Secret => {
                if node.stored {
                    out.push((format!("{STORED}{}", node.path), "1".into()));
                }
                out.push((node.path.clone(), node.value.clone()));
            }
            _ => out.push((node.path.clone(), node.value.clone())),
        }
    }

    #[test]
    fn items_are_removed_added_and_renumbered() {
        let schema = relay_schema();
        let form = pairs(&[
            ("apps.relay.rules[0].name", "old"),
            ("remove:apps.relay.rules[0]", "1"),
            ("apps.relay.rules[1].name", "kept"),
            ("stored:apps.relay.rules[1].url", "1"),
            ("apps.relay.rules[1].url", ""),
            ("apps.relay.rules[2].name", ""),
            ("apps.relay.rules[2].url", ""),
            ("apps.relay.rules[10].name", "new"),
            ("apps.relay.rules[10].url", "https://hooks.example.com/x"),
            ("apps.relay.rules[10].category_ids", "4\nfour"),
        ]);
        let mut reader = Reader::new(form);
        let read = reader
            .read_fields(&schema, "apps.relay", "apps.relay", 0)
            .expect("a section");
        let names: Vec<_> = read["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|rule| rule["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(names, ["kept", "new"]);
        assert_eq!(
            read["rules"][0]["url"], MASK,
            "a blank stored secret is kept"
        );
        assert_eq!(read["rules"][1]["url"], "https://hooks.example.com/x");
        assert_eq!(reader.errors.len(), 1);
        assert_eq!(reader.errors[0].path, "apps.relay.rules[1].category_ids");
        assert_eq!(reader.raw["apps.relay.rules[1].category_ids"], "4\nfour");
    }

    #[test]
    fn long_lists_are_cut_when_read() {
        let schema = relay_schema();
        let names: Vec<String> = (0..MAX_ITEMS + 50)
            .map(|index| format!("apps.relay.rules[{index}].name"))
            .collect();
        let form: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "r")).collect();
        let mut reader = Reader::new(pairs(&form));
        let read = reader
            .read_fields(&schema, "apps.relay", "apps.relay", 0)
            .expect("a section");
        assert_eq!(read["rules"].as_array().expect("rules").len(), MAX_ITEMS);
    }

    #[test]
    fn pairs_and_secrets_read_back() {
        let mut reader = Reader::new(pairs(&[
            ("m", "FNAME = first_name\r\n\r\nLNAME=last_name"),
            ("bad", "FNAME first_name"),
            ("s", ""),
            ("t", "********"),
            ("stored:t", "1"),
            ("u", "********"),
            ("stored:u", "1"),
            ("clear:u", "1"),
        ]));
        let pairs_schema =
            json!({ "type": "object", "additionalProperties": { "type": "string" } });
        let read = reader.read(&pairs_schema, "m", "m", 1);
        assert_eq!(
            read,
            Some(json!({ "FNAME": "first_name", "LNAME": "last_name" }))
        );
        assert!(reader.read(&pairs_schema, "bad", "bad", 1).is_some());
        assert_eq!(reader.errors[0].path, "bad");
        let secret = json!({ "type": "string", "secret": true });
        assert_eq!(
            reader.read(&secret, "s", "s", 1),
            None,
            "blank without a stored value"
        );
        assert_eq!(reader.read(&secret, "t", "t", 1), Some(json!(MASK)));
        assert_eq!(reader.read(&secret, "u", "u", 1), None, "cleared");
    }

    #[test]
    fn errors_attach_to_the_deepest_field() {
        let schema = relay_schema();
        let section = json!({ "rules": [{ "name": "a", "events": ["x"] }] });
        let mut node = build("relay", &schema, &section, "apps.relay", &HashMap::new(), 0);
        let error = FieldError::new("apps.relay.rules[0].events[0]", "unknown event");
        assert!(node.attach(&error));
        let events = &node.children[0].children[0].children[2];
        assert_eq!(events.path, "apps.relay.rules[0].events");
        assert_eq!(events.errors, ["unknown event"]);
        assert!(!node.attach(&FieldError::new("apps.relayx", "other")));
        let whole = FieldError::new("apps.relay", "missing field `rules`");
        assert!(node.attach(&whole));
        assert_eq!(node.errors, ["missing field `rules`"]);
    }
}
