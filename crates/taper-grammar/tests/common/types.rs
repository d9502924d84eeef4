//! Rust types whose schemars-derived schemas cover what tool arguments use: structs,
//! enums with data (external, internal and adjacent tagging, untagged), `Option`,
//! `Vec`, maps, tuples, recursion, integer formats and bounds, doc comments.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One field: a search query.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Search {
    /// What to look for.
    pub query: String,
}

/// A shape (externally tagged enum with unit, struct, newtype and tuple variants).
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A circle.
    Circle {
        /// Radius in metres.
        radius: f64,
    },
    /// A rectangle.
    Rect { w: u16, h: u16 },
    /// A polygon, as points.
    Polygon(Vec<(i32, i32)>),
    /// A square side.
    Square(u32),
    /// Nothing.
    Empty,
}

/// A command (internally tagged).
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Move by a small step.
    Move { dx: i8, dy: i8 },
    /// Say something.
    Say { text: String },
    /// Stop.
    Stop,
}

/// An event (adjacently tagged).
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    Click(u16, u16),
    Key(char),
    Idle,
}

/// A number or a word (untagged).
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumOrWord {
    Num(i64),
    Word(String),
}

/// A tree node (recursive).
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Node {
    pub label: String,
    pub children: Vec<Node>,
    pub weight: Option<u32>,
}

/// Strict options: unknown fields are refused.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Verbose output.
    #[serde(default)]
    pub verbose: bool,
    /// Retries, 1 to 5.
    #[schemars(range(min = 1, max = 5))]
    pub retries: u8,
    /// An identifier of 3 to 12 characters.
    #[schemars(length(min = 3, max = 12))]
    pub ident: String,
}

/// Everything at once.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Rich {
    /// The id.
    pub id: u64,
    pub delta: i32,
    pub small: i16,
    pub name: String,
    pub tags: Vec<String>,
    pub shape: Shape,
    pub commands: Vec<Command>,
    pub event: Event,
    pub value: NumOrWord,
    pub tree: Option<Box<Node>>,
    pub scores: BTreeMap<String, i16>,
    pub pair: (u8, bool, String),
    pub options: Options,
    pub ratio: Option<f32>,
    pub letter: char,
    pub nothing: (),
}

/// Arguments of a calculator.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Calc {
    /// The expression.
    pub expression: String,
    /// Digits after the point.
    pub precision: Option<u8>,
}

/// Arguments of a file lookup.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Lookup {
    pub path: Vec<String>,
    pub headers: HashMap<String, String>,
    pub limit: usize,
}

/// The final answer of a structured turn.
#[derive(Debug, JsonSchema, Serialize, Deserialize)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
    pub confidence: Option<f64>,
}
